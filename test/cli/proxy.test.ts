import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoStack, startDemoStack } from '../../src/testing/demo-stack.js';
import { startSseOnlyServer } from '../fixtures/servers/http.js';
import { countLogins, proxyClient, startOpenServer, tempStore } from './helpers.js';

describe('gatehouse proxy', () => {
  let stack: DemoStack;
  let store: Awaited<ReturnType<typeof tempStore>>;
  let logins: ReturnType<typeof countLogins>;
  beforeAll(async () => {
    stack = await startDemoStack();
    logins = countLogins(stack);
    store = await tempStore();
  });
  afterAll(async () => {
    await Promise.all([stack?.close(), store?.cleanup()]);
  });

  it('lets a stdio client call a protected server; two proxies started together log in once', async () => {
    const env = { GATEHOUSE_STORE: store.dir, GATEHOUSE_LOGIN: `${stack.username}:${stack.password}` };
    const a = proxyClient([stack.mcpUrl], env);
    const b = proxyClient([stack.mcpUrl, '--verbose'], env);
    try {
      await Promise.all([a.client.connect(a.transport), b.client.connect(b.transport)]);
      for (const { client } of [a, b]) {
        const { tools } = await client.listTools();
        expect(tools.map((t) => t.name)).toContain('whoami');
        const result = await client.callTool({ name: 'whoami', arguments: {} });
        expect(result.structuredContent).toMatchObject({ subject: 'demo', scopes: ['mcp:tools'] });
      }
      expect(logins.registrations).toBe(1);
      expect(logins.authorizations).toBe(1);
      // Only JSON-RPC on stdout (the SDK client would have failed to parse anything else); logs on stderr.
      expect(b.stderr.join('')).toContain('gatehouse proxy: forwarding stdio to');
    } finally {
      await Promise.allSettled([a.client.close(), b.client.close()]);
    }
    // A third proxy later reuses the stored tokens: no new login.
    const c = proxyClient([stack.mcpUrl, '--transport', 'http-only'], { GATEHOUSE_STORE: store.dir });
    try {
      await c.client.connect(c.transport);
      expect((await c.client.listTools()).tools.map((t) => t.name)).toEqual(['whoami']);
      expect(logins.authorizations).toBe(1);
    } finally {
      await c.client.close();
    }
  });

  it('forwards to a server without OAuth, and answers an unreachable server with a JSON-RPC error and a fix', async () => {
    const open = await startOpenServer();
    try {
      // sse-first: the streamable-HTTP-only server refuses the SSE stream, and the proxy falls back.
      for (const extra of [[], ['--transport', 'sse-first']]) {
        const d = proxyClient([open.mcpUrl, '--no-auth', ...extra], { GATEHOUSE_STORE: store.dir });
        try {
          await d.client.connect(d.transport);
          const result = await d.client.callTool({ name: 'echo', arguments: { text: 'through the proxy' } });
          expect(result.content).toEqual([{ type: 'text', text: '{"text":"through the proxy"}' }]);
        } finally {
          await d.client.close();
        }
      }
    } finally {
      await open.close();
    }
    const e = proxyClient(['http://127.0.0.1:9/mcp', '--no-auth'], { GATEHOUSE_STORE: store.dir });
    try {
      await expect(e.client.connect(e.transport)).rejects.toThrow(/gatehouse proxy: .*fix:/);
    } finally {
      await e.client.close();
    }
  });

  it('answers a failed login with a JSON-RPC error naming the cause and the fix, also on stderr', async () => {
    const empty = await tempStore();
    const p = proxyClient([stack.mcpUrl], { GATEHOUSE_STORE: empty.dir, GATEHOUSE_LOGIN: 'demo:wrong-password' });
    const fix = 'fix: check the USER:PASSWORD given with --login (or $GATEHOUSE_LOGIN)';
    try {
      await expect(p.client.connect(p.transport)).rejects.toThrow(
        `gatehouse proxy: Automatic login failed: the authorization server refused the credentials (${fix})`,
      );
      expect(p.stderr.join('')).toContain(`refused the credentials\n${fix}\n`);
    } finally {
      await p.client.close();
      await empty.cleanup();
    }
  });

  it('answers a 401 under --no-auth or its own Authorization header with a fix naming that flag', async () => {
    const cases = [
      [['--no-auth'], 'fix: the server requires OAuth: leave out --no-auth'],
      [['--header', 'Authorization: Bearer not-a-token'], 'fix: the server refused the Authorization header given'],
    ] as const;
    for (const [flags, fix] of cases) {
      const p = proxyClient([stack.mcpUrl, ...flags], { GATEHOUSE_STORE: store.dir });
      try {
        await expect(p.client.connect(p.transport)).rejects.toThrow(`(${fix}`);
        expect(p.stderr.join('')).toContain(`\n${fix}`);
      } finally {
        await p.client.close();
      }
    }
  });

  it('falls back to SSE for an SSE-only server (http-first), and speaks SSE only with sse-only', async () => {
    const sse = await startSseOnlyServer();
    try {
      for (const args of [[`${sse.url}/mcp`], [`${sse.url}/sse`, '--transport', 'sse-only']]) {
        const p = proxyClient([...args, '--no-auth', '--verbose'], { GATEHOUSE_STORE: store.dir });
        try {
          await p.client.connect(p.transport);
          const { tools } = await p.client.listTools();
          expect(tools.map((t) => t.name)).toContain('add');
          expect(p.stderr.join('')).toContain('over SSE');
        } finally {
          await p.client.close();
        }
      }
    } finally {
      await sse.close();
    }
  });
});

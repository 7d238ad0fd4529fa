import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoStack, startDemoStack } from '../../src/testing/demo-stack.js';
import { cli, failureLines, startServe, tempStore } from './helpers.js';

const HIDE = fileURLToPath(new URL('../fixtures/hide-packages/register.mjs', import.meta.url));

/** Runs the CLI in a project where `packages` are not installed. */
const withoutPackages = (packages: string[], args: string[]) =>
  cli(args, {
    NODE_OPTIONS: `--import=${HIDE}`,
    GATEHOUSE_TEST_HIDE_PACKAGES: packages.join(','),
    GATEHOUSE_SUPERUSER_PASSWORD: 'correct horse battery',
  });

describe('errors that name the fix', () => {
  let stack: DemoStack;
  let store: Awaited<ReturnType<typeof tempStore>>;
  beforeAll(async () => {
    stack = await startDemoStack();
    store = await tempStore();
  });
  afterAll(async () => {
    await Promise.all([stack?.close(), store?.cleanup()]);
  });

  it('a missing store driver names the package to install, not "is it running"', { timeout: 60_000 }, async () => {
    const cases = [
      ['pg', 'postgres://postgres@127.0.0.1:5432/postgres'],
      ['@redis/client', 'redis://127.0.0.1:6379'],
      ['better-sqlite3', `sqlite:${join(store.dir, 'as.db')}`],
    ] as const;
    for (const [pkg, url] of cases) {
      const result = await withoutPackages(
        [pkg],
        ['serve', '--port', '0', '--store', url, '--superuser', 'admin', '--resource', 'http://127.0.0.1:1/mcp'],
      );
      expect(result.status, result.stderr).toBe(1);
      expect(result.stderr).toContain(`npm install ${pkg}`);
      expect(result.stderr).not.toMatch(/is running|writable/);
      // The same store through `admin`.
      const admin = await withoutPackages([pkg], ['admin', 'clients', 'list', '--store', url]);
      expect(admin.status).toBe(1);
      expect(admin.stderr).toContain(`fix: Install it next to gatehouse: npm install ${pkg}`);
    }
  });

  it('an unknown option or command suggests the nearest one', async () => {
    const scopes = await cli(['login', stack.mcpUrl, '--scopes', 'mcp:tools', '--store', store.dir]);
    expect(scopes.status).toBe(2);
    expect(scopes.stderr).toContain('gatehouse login: unknown option --scopes; did you mean --scope?');
    expect(scopes.stderr).not.toContain('Unknown option');
    const serve = await cli(['serve', '--resources=http://127.0.0.1:1/mcp']);
    expect(serve.stderr).toContain('unknown option --resources; did you mean --resource?');
    const far = await cli(['status', '--frobnicate']);
    expect(far.stderr).toContain('gatehouse status: unknown option --frobnicate\nfix: see `gatehouse status --help`');
    const missing = await cli(['login', stack.mcpUrl, '--scope']);
    expect(missing.stderr).toContain('--scope needs a value');
    const command = await cli(['stauts']);
    expect(command.status).toBe(2);
    expect(command.stderr).toContain('did you mean `gatehouse status`?');
  });

  it('serve --resource takes scopes separated by spaces or commas, and serve and admin take --json and --verbose', {
    timeout: 60_000,
  }, async () => {
    const db = `sqlite:${join(store.dir, `serve-${randomBytes(4).toString('hex')}.db`)}`;
    const running = await startServe(
      [
        '--store',
        db,
        '--superuser',
        'admin',
        '--verbose',
        '--resource',
        'http://127.0.0.1:8000/mcp=mcp:tools mcp:admin',
        '--resource',
        'http://127.0.0.1:8001/mcp=a, b,c',
      ],
      { GATEHOUSE_SUPERUSER_PASSWORD: 'correct horse battery' },
    );
    try {
      const metadata = (await (await fetch(`${running.url}/.well-known/oauth-authorization-server`)).json()) as {
        scopes_supported: string[];
      };
      expect(metadata.scopes_supported).toEqual(expect.arrayContaining(['mcp:tools', 'mcp:admin', 'a', 'b', 'c']));
      expect(metadata.scopes_supported.some((s) => /[\s,]/.test(s))).toBe(false);
      // --verbose is debug logging
      expect(running.output()).toContain('"level":20');
    } finally {
      await running.stop();
    }
    const admin = await cli(['admin', 'clients', 'list', '--store', db, '--json', '--verbose']);
    expect(admin.status, admin.stderr).toBe(0);
    const broken = await cli(['admin', 'clients', 'list', '--store', 'mongodb://x', '--verbose']);
    expect(broken.status).toBe(1);
    expect(broken.stderr).toMatch(/unknown store[\s\S]*at /); // the stack, under --verbose
  });

  it('token --json gives the real expiry', async () => {
    const env = { GATEHOUSE_STORE: store.dir, GATEHOUSE_LOGIN: 'demo:demo' };
    const before = Math.floor(Date.now() / 1000);
    const result = await cli(['token', stack.mcpUrl, '--json'], env);
    expect(result.status, result.stderr).toBe(0);
    const token = JSON.parse(result.stdout) as { expires_at: number; expires_in: number; access_token: string };
    const exp = JSON.parse(Buffer.from(token.access_token.split('.')[1]!, 'base64url').toString()) as { exp: number };
    // The client computes expires_at from expires_in when the response arrives: the AS's exp, within a second or two.
    expect(Math.abs(token.expires_at - exp.exp)).toBeLessThanOrEqual(2);
    expect(token.expires_at).toBeGreaterThan(before);
    expect(token.expires_in).toBeGreaterThan(0);
    expect(token.expires_in).toBeLessThanOrEqual(token.expires_at - before);
  });

  it('a wrong --login password says so in CLI words, and the failed login leaves nothing behind', async () => {
    const empty = await tempStore();
    try {
      const login = await cli(['login', stack.mcpUrl, '--login', 'demo:wrong-password', '--store', empty.dir]);
      // The fix is in the CLI's words (--login), not the client library's (`login`).
      const { message, fix } = failureLines(login, 'login', 1);
      expect(message).toMatch(/refused the credentials/);
      expect(fix).toBe('check the USER:PASSWORD given with --login (or $GATEHOUSE_LOGIN)');
      const status = await cli(['status', '--json', '--store', empty.dir]);
      expect(JSON.parse(status.stdout)).toEqual([]);
      const call = await cli(['call', stack.mcpUrl, 'whoami', '--login', 'nobody:x', '--store', empty.dir]);
      expect(call.status).not.toBe(0);
      expect(JSON.parse((await cli(['status', '--json', '--store', empty.dir])).stdout)).toEqual([]);
    } finally {
      await empty.cleanup();
    }
  });
});

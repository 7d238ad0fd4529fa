import { readdir } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoStack, startDemoStack } from '../../src/testing/demo-stack.js';
import { cli, tempStore } from './helpers.js';

// Two `gatehouse login` processes for the same server, started at once, sharing one store.

describe('concurrent gatehouse login', () => {
  let stack: DemoStack;
  let codes = 0;
  let registrations = 0;
  const countCodes = (ctx: { oidc: { params?: { grant_type?: unknown } } }) => {
    if (ctx.oidc.params?.grant_type === 'authorization_code') codes++;
  };
  beforeAll(async () => {
    stack = await startDemoStack();
    stack.authorizationServer.provider.on('grant.success', countCodes);
    stack.authorizationServer.provider.on('registration_create.success', () => registrations++);
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('both finish; one logs in (reused: false), the other reports reusing its tokens; the store stays whole', {
    timeout: 90_000,
  }, async () => {
    const store = await tempStore();
    try {
      const env = { GATEHOUSE_STORE: store.dir };
      const login = () => cli(['login', stack.mcpUrl, '--json', '--login', `${stack.username}:${stack.password}`], env);
      const [first, second] = await Promise.all([login(), login()]);
      expect(first.status, first.stderr).toBe(0);
      expect(second.status, second.stderr).toBe(0);
      expect(first.stderr + second.stderr).toBe('');
      const results = [JSON.parse(first.stdout), JSON.parse(second.stdout)] as Array<Record<string, unknown>>;
      // One login happened at the authorization server; the report of each process says which one did it.
      expect(codes).toBe(1);
      expect(registrations).toBe(1);
      expect(results.map((r) => r.reused).sort()).toEqual([false, true]);
      for (const result of results) expect(result).toMatchObject({ loggedIn: true, subject: 'demo', state: 'valid' });
      expect(results[0]!.expiresAt).toBe(results[1]!.expiresAt);

      // One readable record (no stray temporary or lock files), and its tokens work.
      const status = await cli(['status', '--json'], env);
      expect(status.stderr).toBe('');
      expect(JSON.parse(status.stdout)).toEqual([expect.objectContaining({ server: stack.mcpUrl, state: 'valid' })]);
      expect((await readdir(store.dir)).filter((f) => !f.endsWith('.key')).length).toBe(1);
      const whoami = await cli(['call', stack.mcpUrl, 'whoami', '--json'], env);
      expect(whoami.status, whoami.stderr).toBe(0);
      expect(JSON.parse(whoami.stdout).structuredContent).toMatchObject({ subject: 'demo' });

      // Once stored, a third login reuses it and says so.
      const third = await cli(['login', stack.mcpUrl, '--json'], env);
      expect(JSON.parse(third.stdout)).toMatchObject({ reused: true });
      expect(codes).toBe(1);
    } finally {
      await store.cleanup();
    }
  });
});

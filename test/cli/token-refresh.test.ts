import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/cli/store-option.js';
import { type DemoStack, startDemoStack } from '../../src/testing/demo-stack.js';
import { cli, tempStore } from './helpers.js';

// docs/cli.md, "token": the access token is refreshed first if it expires within a minute, so a script never gets
// one that dies during its request; one that has longer left is printed as stored.

describe('gatehouse token near the expiry', () => {
  let stack: DemoStack;
  let store: Awaited<ReturnType<typeof tempStore>>;
  beforeAll(async () => {
    [stack, store] = await Promise.all([startDemoStack(), tempStore()]);
  });
  afterAll(async () => {
    await Promise.all([stack?.close(), store?.cleanup()]);
  });

  it('refreshes a token with 30 s left, and keeps one with 5 min left', { timeout: 60_000 }, async () => {
    const env = { GATEHOUSE_STORE: store.dir, GATEHOUSE_KEYCHAIN: '0' };
    const login = await cli(['login', stack.mcpUrl, '--login', 'demo:demo'], env);
    expect(login.status, login.stderr).toBe(0);
    const { storage } = openStore(store.dir, env);
    const expireIn = (seconds: number) =>
      storage.update(stack.mcpUrl, (r) =>
        r?.tokens ? { ...r, tokens: { ...r.tokens, expires_at: Math.floor(Date.now() / 1000) + seconds } } : r,
      );
    const stored = async () => (await storage.getTokens(stack.mcpUrl))?.access_token;

    await expireIn(300);
    const kept = await stored();
    const first = await cli(['token', stack.mcpUrl], env);
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout.trim()).toBe(kept);

    await expireIn(30);
    const second = await cli(['token', stack.mcpUrl, '--json'], env);
    expect(second.status, second.stderr).toBe(0);
    const printed = JSON.parse(second.stdout) as { access_token: string; expires_in: number };
    expect(Object.keys(printed).sort()).toEqual(['access_token', 'expires_at', 'expires_in', 'scope', 'token_type']);
    expect(printed.access_token).not.toBe(kept);
    expect(printed.access_token).toBe(await stored());
    expect(printed.expires_in).toBeGreaterThan(60);
  });
});

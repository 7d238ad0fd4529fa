import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoStack, startDemoStack } from '../../src/testing/demo-stack.js';
import { cli, INTROSPECTOR, introspect, tempStore } from './helpers.js';

// docs/cli.md, "logout": the credentials are deleted even when the authorization server cannot be reached, and
// with --all the other credentials are still logged out of. Exit code 0, also when nothing was stored. `status`
// goes over no network, so it still lists what is stored for a server that is gone.

describe('gatehouse logout when an authorization server is gone', () => {
  let gone: DemoStack;
  let up: DemoStack;
  let store: Awaited<ReturnType<typeof tempStore>>;
  beforeAll(async () => {
    [gone, up, store] = await Promise.all([startDemoStack(), startDemoStack({ clients: [INTROSPECTOR] }), tempStore()]);
  });
  afterAll(async () => {
    await Promise.all([gone?.close(), up?.close(), store?.cleanup()]);
  });

  it('deletes its credential anyway, revokes the reachable one, and exits 0', { timeout: 60_000 }, async () => {
    const env = { GATEHOUSE_STORE: store.dir, GATEHOUSE_KEYCHAIN: '0', GATEHOUSE_LOGIN: 'demo:demo' };
    for (const stack of [gone, up]) {
      const login = await cli(['login', stack.mcpUrl], env);
      expect(login.status, login.stderr).toBe(0);
    }
    const { openStore } = await import('../../src/cli/store-option.js');
    const refreshToken = (await openStore(store.dir, env).storage.getTokens(up.mcpUrl))?.refresh_token;
    expect(refreshToken).toBeTruthy();
    await gone.close();
    // status reads the store only: a server that is gone is listed as it was stored, at once.
    const listed = await cli(['status', gone.mcpUrl, '--json'], env);
    expect(listed.status, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout)).toMatchObject({ server: gone.mcpUrl, state: 'valid', subject: 'demo' });

    const logout = await cli(['logout', '--all', '--json'], env);
    expect(logout.status, logout.stderr).toBe(0);
    const results = JSON.parse(logout.stdout) as Array<Record<string, unknown>>;
    expect(results).toHaveLength(2);
    expect(results).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ server: gone.mcpUrl, refreshToken: 'failed', deleted: true }),
        expect.objectContaining({ server: up.mcpUrl, refreshToken: 'revoked', deleted: true }),
      ]),
    );
    // The unreachable server's entry says until when its access token stays valid.
    expect(results.find((r) => r['server'] === gone.mcpUrl)?.['detail']).toMatch(/stays valid until \d{4}-/);
    expect((await introspect(up.issuer, refreshToken!)).active).toBe(false);
    const status = await cli(['status', '--json'], env);
    expect(JSON.parse(status.stdout)).toEqual([]);

    // Nothing stored: still exit 0, and `status <url>` says a login is needed (null, exit 3).
    const again = await cli(['logout', gone.mcpUrl], env);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stderr).toContain('nothing to do');
    expect(JSON.parse((await cli(['logout', '--all', '--json'], env)).stdout)).toEqual([]);
    const one = await cli(['status', up.mcpUrl, '--json'], env);
    expect(one.status).toBe(3);
    expect(JSON.parse(one.stdout)).toBeNull();
  });
});

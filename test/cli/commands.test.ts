import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseToolArguments } from '../../src/cli/commands/call.js';
import { decodeJwt } from '../../src/cli/common.js';
import { type DemoStack, startDemoStack } from '../../src/testing/demo-stack.js';
import { cli, INTROSPECTOR, introspect, startOpenServer, tempStore } from './helpers.js';

describe('gatehouse login / status / token / call / tools / logout', () => {
  let stack: DemoStack;
  let open: Awaited<ReturnType<typeof startOpenServer>>;
  let store: Awaited<ReturnType<typeof tempStore>>;
  beforeAll(async () => {
    stack = await startDemoStack({ clients: [INTROSPECTOR] });
    open = await startOpenServer();
    store = await tempStore();
  });
  afterAll(async () => {
    await Promise.all([stack?.close(), open?.close(), store?.cleanup()]);
  });

  it('lists and calls the tools of a server without OAuth (no bearer)', async () => {
    // NO_COLOR unset: still no colours, because stdout is a pipe.
    const tools = await cli(['tools', open.mcpUrl, '--store', store.dir], { NO_COLOR: undefined });
    expect(tools.stderr).toBe('');
    expect(tools.stdout).not.toContain('\u001b[');
    expect(tools.status).toBe(0);
    expect(tools.stdout).toMatch(/^echo\s+Echoes its arguments back\./m);
    const json = await cli(['tools', open.mcpUrl, '--store', store.dir, '--json', '--no-auth']);
    expect((JSON.parse(json.stdout) as Array<{ name: string }>).map((t) => t.name)).toEqual(['echo', 'fail']);

    const call = await cli(['call', open.mcpUrl, 'echo', 'text=hi', 'n=3', 'flag=true', '--store', store.dir]);
    expect(call.status).toBe(0);
    expect(JSON.parse(call.stdout)).toEqual({ text: 'hi', n: 3, flag: true });
    const jsonArgs = await cli(['call', open.mcpUrl, 'echo', '{"text": "x"}', '--json', '--store', store.dir]);
    expect(JSON.parse(jsonArgs.stdout)).toMatchObject({
      isError: false,
      content: [{ type: 'text', text: '{"text":"x"}' }],
    });

    const failed = await cli(['call', open.mcpUrl, 'fail', '--store', store.dir]);
    expect(failed.status).toBe(4);
    expect(failed.stderr).toContain('this tool always fails');
    expect(failed.stderr).toContain('fix:');
  });

  it('says to log in (exit 3) when a protected server has no stored credential and nobody can log in', async () => {
    const empty = await tempStore();
    try {
      const call = await cli(['call', stack.mcpUrl, 'whoami', '--store', empty.dir]);
      expect(call.status).toBe(3);
      expect(call.stderr).toContain(`fix: run \`gatehouse login ${stack.mcpUrl}\``);
      const token = await cli(['token', stack.mcpUrl], { GATEHOUSE_STORE: empty.dir });
      expect(token.status).toBe(3);
      expect(token.stdout).toBe('');
      const status = await cli(['status', stack.mcpUrl, '--store', empty.dir]);
      expect(status.status).toBe(3);
    } finally {
      await empty.cleanup();
    }
  });

  it('logs in headlessly, shows the credential, prints a token for the server, calls whoami, and revokes on logout', async () => {
    const env = { GATEHOUSE_STORE: store.dir };
    const login = await cli(['login', stack.mcpUrl, '--login', `${stack.username}:${stack.password}`], env);
    expect(login.stderr).toBe('');
    expect(login.status).toBe(0);
    expect(login.stdout).toContain(`Logged in to ${stack.mcpUrl} as demo`);

    const again = await cli(['login', stack.mcpUrl, '--json'], { ...env, GATEHOUSE_LOGIN: 'demo:demo' });
    expect(JSON.parse(again.stdout)).toMatchObject({ reused: true, subject: 'demo' });

    const status = await cli(['status', '--json'], env);
    expect(status.status).toBe(0);
    const credentials = JSON.parse(status.stdout) as Array<Record<string, unknown>>;
    expect(credentials).toHaveLength(1);
    expect(credentials[0]).toMatchObject({
      server: stack.mcpUrl,
      issuer: stack.issuer,
      subject: 'demo',
      scopes: ['mcp:tools'],
      refreshable: true,
      state: 'valid',
    });
    const table = await cli(['status'], env);
    expect(table.stdout).toMatch(/SERVER\s+SUBJECT\s+ISSUER\s+SCOPES\s+EXPIRES\s+REFRESH/);
    expect(table.stdout).toContain(stack.mcpUrl);

    const token = await cli(['token', stack.mcpUrl], env);
    expect(token.status).toBe(0);
    const jwt = token.stdout.trim();
    const claims = decodeJwt(jwt);
    expect(claims).toMatchObject({ aud: stack.mcpUrl, iss: stack.issuer, sub: 'demo' });

    const whoami = await cli(['call', stack.mcpUrl, 'whoami', '--json'], env);
    expect(whoami.status).toBe(0);
    expect(JSON.parse(whoami.stdout).structuredContent).toMatchObject({ subject: 'demo', scopes: ['mcp:tools'] });
    const tools = await cli(['tools', stack.mcpUrl], env);
    expect(tools.stdout).toMatch(/^whoami\s/m);

    // Expire the access token: three `token` processes at once refresh it once, and all print the new token.
    const { TokenStorage } = await import('../../src/storage/tokens.js');
    const { openDefaultTokenStore } = await import('../../src/storage/default.js');
    // The CLI's store is encrypted: open it the way the CLI does.
    const storage = new TokenStorage((await openDefaultTokenStore({ directory: store.dir })).store);
    await storage.update(stack.mcpUrl, (record) =>
      record?.tokens
        ? { ...record, tokens: { ...record.tokens, expires_at: Math.floor(Date.now() / 1000) - 10 } }
        : record,
    );
    const expired = await cli(['status', stack.mcpUrl, '--json'], env);
    expect(JSON.parse(expired.stdout)).toMatchObject({ state: 'expired', refreshable: true });
    let refreshes = 0;
    const countRefresh = (ctx: { oidc: { params?: { grant_type?: unknown } } }) => {
      if (ctx.oidc.params?.grant_type === 'refresh_token') refreshes++;
    };
    stack.authorizationServer.provider.on('grant.success', countRefresh);
    const printed = await Promise.all([1, 2, 3].map(() => cli(['token', stack.mcpUrl], env)));
    stack.authorizationServer.provider.off('grant.success', countRefresh);
    expect(printed.map((p) => p.status)).toEqual([0, 0, 0]);
    const fresh = printed.map((p) => p.stdout.trim());
    expect(new Set(fresh).size).toBe(1);
    expect(fresh[0]).not.toBe(jwt);
    expect(refreshes).toBe(1);

    // Introspect the refresh token (JWT access tokens cannot be introspected or revoked at oidc-provider).
    const refreshToken = (await storage.getTokens(stack.mcpUrl))?.refresh_token;
    expect(refreshToken).toBeTruthy();
    expect((await introspect(stack.issuer, refreshToken!)).active).toBe(true);

    const logout = await cli(['logout', stack.mcpUrl, '--json'], env);
    expect(logout.status).toBe(0);
    expect(JSON.parse(logout.stdout)).toEqual([
      expect.objectContaining({ server: stack.mcpUrl, refreshToken: 'revoked', deleted: true }),
    ]);
    expect((await introspect(stack.issuer, refreshToken!)).active).toBe(false);

    const after = await cli(['status', '--json'], env);
    expect(JSON.parse(after.stdout)).toEqual([]);
    const noToken = await cli(['token', stack.mcpUrl], env);
    expect(noToken.status).toBe(3);
  });

  it('status names each STATE and exits 3 once a login is needed; login --force logs in again', {
    timeout: 90_000,
  }, async () => {
    const own = await tempStore();
    try {
      const env = { GATEHOUSE_STORE: own.dir, GATEHOUSE_LOGIN: 'demo:demo' };
      expect((await cli(['login', stack.mcpUrl], env)).status).toBe(0);
      expect((await cli(['status'], env)).stdout).toMatch(/valid, \d+ min left/);
      const forced = await cli(['login', stack.mcpUrl, '--force', '--json'], env);
      expect(forced.status, forced.stderr).toBe(0);
      expect(JSON.parse(forced.stdout)).toMatchObject({ reused: false, loggedIn: true, subject: 'demo' });

      const { TokenStorage } = await import('../../src/storage/tokens.js');
      const { openDefaultTokenStore } = await import('../../src/storage/default.js');
      const storage = new TokenStorage((await openDefaultTokenStore({ directory: own.dir })).store);
      const past = Math.floor(Date.now() / 1000) - 10;
      const state = async () => {
        const [table, one] = await Promise.all([
          cli(['status'], { GATEHOUSE_STORE: own.dir }),
          cli(['status', stack.mcpUrl], { GATEHOUSE_STORE: own.dir }),
        ]);
        return { line: table.stdout.split('\n').find((l) => l.startsWith(stack.mcpUrl)), exit: one.status };
      };
      await storage.update(stack.mcpUrl, (r) => (r?.tokens ? { ...r, tokens: { ...r.tokens, expires_at: past } } : r));
      expect(await state()).toMatchObject({ line: expect.stringMatching(/expired, will refresh$/), exit: 0 });
      await storage.update(stack.mcpUrl, (r) =>
        r?.tokens ? { ...r, tokens: { ...r.tokens, refresh_token: undefined, expires_at: past } } : r,
      );
      expect(await state()).toMatchObject({ line: expect.stringMatching(/expired, login needed$/), exit: 3 });
      await storage.update(stack.mcpUrl, (r) => (r ? { ...r, tokens: undefined } : r));
      expect(await state()).toMatchObject({ line: expect.stringMatching(/registered, not logged in$/), exit: 3 });
    } finally {
      await own.cleanup();
    }
  });

  it('reads an mcpServers file and logs out of everything with --all', async () => {
    const config = join(store.dir, 'mcp.json');
    await writeFile(
      config,
      JSON.stringify({ mcpServers: { demo: { url: stack.mcpUrl }, open: { url: open.mcpUrl } } }),
    );
    const env = { GATEHOUSE_STORE: store.dir, GATEHOUSE_LOGIN: 'demo:demo' };
    const tools = await cli(['tools', '--config', config, '--json'], env);
    expect(tools.status).toBe(0);
    const names = (JSON.parse(tools.stdout) as Array<{ name: string }>).map((t) => t.name).sort();
    expect(names).toEqual(['demo_whoami', 'open_echo', 'open_fail']);
    const logout = await cli(['logout', '--all'], { GATEHOUSE_STORE: store.dir });
    expect(logout.stdout).toContain(`Logged out of ${stack.mcpUrl}: refresh token revoked`);
  });

  it('rejects bad usage with exit code 2 and a fix', async () => {
    for (const args of [
      ['login'],
      ['token', 'not a url'],
      ['call', stack.mcpUrl],
      ['tools'],
      ['logout'],
      ['login', 'http://example.com/mcp'],
      ['proxy', 'http://example.com/mcp'],
      ['proxy', stack.mcpUrl, '--transport', 'carrier-pigeon'],
      ['proxy', stack.mcpUrl, '--header', 'no colon'],
      ['login', stack.mcpUrl, '--callback-port', 'x'],
      ['call', stack.mcpUrl, 'whoami', 'novalue'],
    ]) {
      const result = await cli([...args, '--store', store.dir]);
      expect(result.status, args.join(' ')).toBe(2);
      expect(result.stderr).toContain('fix:');
    }
  });

  it('leaves a record written by a newer Gatehouse alone, and says so', async () => {
    const other = await tempStore();
    try {
      const { fileStore } = await import('../../src/storage/file.js');
      const file = fileStore({ directory: other.dir });
      await file.set('gatehouse:client:https://newer.example/mcp', {
        version: 99,
        server: 'https://newer.example/mcp',
      });
      const status = await cli(['status', '--store', other.dir]);
      expect(status.status).toBe(0);
      expect(status.stderr).toContain('format version 99');
      expect(status.stderr).toContain('fix: A newer Gatehouse wrote it');
      expect(await file.get('gatehouse:client:https://newer.example/mcp')).toMatchObject({ version: 99 });
    } finally {
      await other.cleanup();
    }
  });

  it('parses tool arguments', () => {
    expect(parseToolArguments([])).toEqual({});
    expect(parseToolArguments(['{"a": [1]}'])).toEqual({ a: [1] });
    expect(parseToolArguments(['a=1', 'b=x', 'c=true', 'd={"k":null}', 'e=a=b'])).toEqual({
      a: 1,
      b: 'x',
      c: true,
      d: { k: null },
      e: 'a=b',
    });
    expect(() => parseToolArguments(['[1]'])).toThrow(/key=value/);
  });
});

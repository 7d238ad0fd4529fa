import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoStack, startDemoStack } from '../../src/testing/demo-stack.js';
import { temporaryDirectory } from '../client/oauth-helpers.js';
import { cli } from './helpers.js';

// docs/cli.md, "Global options": where the CLI keeps tokens, with which file modes, and that nothing it prints or
// logs holds a secret. The key stays in a file (GATEHOUSE_KEYCHAIN=0) so its mode can be checked.

const PASSWORD = 'a-password-never-printed-0815';
let stack: DemoStack;
const home = await temporaryDirectory('cli-store-files');
beforeAll(async () => {
  stack = await startDemoStack({ password: PASSWORD });
});
afterAll(async () => {
  await stack?.close();
  await home.remove();
});

const mode = async (path: string) => (await stat(path)).mode & 0o777;

describe('the CLI token store on disk', () => {
  it('records are 0600 in 0700 directories, the key file 0600; --verbose, --debug-log (0600) and --json hold no secret', {
    timeout: 60_000,
  }, async () => {
    const store = join(home.path, 'modes');
    const log = join(home.path, 'debug.log');
    const env = { GATEHOUSE_STORE: store, GATEHOUSE_KEYCHAIN: '0' };
    const login = await cli(
      ['login', stack.mcpUrl, '--login', `demo:${PASSWORD}`, '--verbose', '--debug-log', log, '--json'],
      env,
    );
    expect(login.status, login.stderr).toBe(0);
    expect(login.stderr).toMatch(/POST \S+\/token → 200/); // --verbose shows the flow…
    // The documented --json fields (and `expired`, which status --json has too).
    expect(Object.keys(JSON.parse(login.stdout)).sort()).toEqual(
      [
        'server',
        'issuer',
        'subject',
        'scopes',
        'expiresAt',
        'expired',
        'refreshable',
        'clientId',
        'state',
        'loggedIn',
        'reused',
        'store',
      ].sort(),
    );
    const token = await cli(['token', stack.mcpUrl, '--verbose'], env);
    expect(token.status, token.stderr).toBe(0);
    const access = token.stdout.trim();
    expect(access.split('.')).toHaveLength(3);
    const status = await cli(['status', '--json', '--verbose'], env);
    expect(status.status, status.stderr).toBe(0);

    expect(await mode(store)).toBe(0o700);
    expect(await mode(join(store, 'token-store.key'))).toBe(0o600);
    const files = (await readdir(store, { recursive: true })).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) {
      expect(await mode(join(store, file, '..'))).toBe(0o700);
      expect(await mode(join(store, file))).toBe(0o600);
      const text = await readFile(join(store, file), 'utf8');
      expect(text).not.toMatch(/access_token|refresh_token|client_id/);
      expect(text).not.toContain(access);
    }
    expect(await mode(log)).toBe(0o600);

    // …and no secret: not the password, the code, the access token, or any JWT.
    const printed = [
      login.stdout,
      login.stderr,
      token.stderr,
      status.stdout,
      status.stderr,
      await readFile(log, 'utf8'),
    ].join('\n');
    expect(printed).not.toContain(PASSWORD);
    expect(printed).not.toContain(access);
    expect(printed).not.toMatch(/eyJ[\w-]+\.[\w-]+\./);
    expect(printed).not.toMatch(/[?&]code=(?!\[redacted\])/);
    expect(printed).not.toMatch(/access_token|refresh_token/);
  });

  it('is $GATEHOUSE_STORE, else $XDG_DATA_HOME/gatehouse, else ~/.local/share/gatehouse; --store takes DIR or file:DIR', {
    timeout: 60_000,
  }, async () => {
    const user = join(home.path, 'home');
    const xdg = join(home.path, 'xdg');
    const base = { HOME: user, GATEHOUSE_KEYCHAIN: '0', XDG_DATA_HOME: undefined, GATEHOUSE_LOGIN: `demo:${PASSWORD}` };
    const where = (result: { stderr: string }) => /Credentials: encrypted files in (\S+),/.exec(result.stderr)?.[1];
    // A login without any store setting lands in the platform data directory; status finds it there.
    const login = await cli(['login', stack.mcpUrl], base);
    expect(login.status, login.stderr).toBe(0);
    const dataDir = join(user, '.local', 'share', 'gatehouse');
    expect(await readdir(dataDir)).toContain('token-store.key');
    const status = await cli(['status', stack.mcpUrl], base);
    expect(status.status, status.stderr).toBe(0);
    expect(where(status)).toBe(dataDir);

    const cases: Array<[Record<string, string>, string[], string]> = [
      [{ XDG_DATA_HOME: xdg }, [], join(xdg, 'gatehouse')],
      [{ XDG_DATA_HOME: xdg, GATEHOUSE_STORE: join(home.path, 'env') }, [], join(home.path, 'env')],
      [{ GATEHOUSE_STORE: join(home.path, 'env') }, ['--store', join(home.path, 'flag')], join(home.path, 'flag')],
      [{}, ['--store', `file:${join(home.path, 'prefixed')}`], join(home.path, 'prefixed')],
    ];
    for (const [env, flags, expected] of cases) {
      const other = await cli(['status', stack.mcpUrl, ...flags], { ...base, ...env });
      expect(where(other), JSON.stringify(env)).toBe(expected);
      expect(other.status).toBe(3); // nothing stored there: a login is needed, and the data directory is not read
    }

    const backend = await cli(['status', '--store', 'redis://127.0.0.1:6379'], base);
    expect(backend.status).toBe(2);
    const [message, fix, ...rest] = backend.stderr.trimEnd().split('\n');
    expect(rest).toEqual([]);
    expect(message).toMatch(/^gatehouse status: --store must be a directory \(or file:DIR\)/);
    expect(fix).toMatch(/^fix: /);
  });
});

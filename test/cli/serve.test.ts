import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  authorizationUrl,
  Browser,
  loginFlow,
  pkce,
  RESOURCE,
  register,
  token,
} from '../authorization-server/helpers.js';
import { startServeProcess } from '../helpers/serve-process.js';
import { PASSWORD, serveFailure, startServe } from '../stores/services.js';
import { startServe as startServeJson } from './helpers.js';

const ADMIN = { username: 'admin', password: PASSWORD };
const RESOURCE_FLAG = ['--resource', `${RESOURCE}=mcp:tools`];
const flow = (url: string) => loginFlow({ url }, new Browser(), undefined, ADMIN);

describe('gatehouse serve (the built CLI, as a process)', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });
  const dataDir = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gatehouse-serve-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    return dir;
  };

  for (const store of [
    'memory',
    'sqlite:',
    // Fresh per run: a store carries the at-rest key it was first written with, and each run has a new data dir.
    `redis://127.0.0.1:6379?prefix=gatehouse-serve-test-${randomBytes(4).toString('hex')}:`,
    `postgres://postgres@127.0.0.1:5432/test?table=gatehouse_serve_test_${randomBytes(4).toString('hex')}`,
  ]) {
    it(`runs a full login on --store ${store.split(':')[0]}`, async () => {
      const running = await startServe(['--store', store, ...RESOURCE_FLAG], { GATEHOUSE_DATA_DIR: await dataDir() });
      cleanups.push(() => running.stop());
      const result = await flow(running.url);
      expect(result.first.status).toBe(200);
      expect(result.first.body['access_token']).toBeTruthy();
    });
  }

  it('keeps its signing keys in the default SQLite store (the data directory) across restarts', async () => {
    const dir = await dataDir();
    const first = await startServe(RESOURCE_FLAG, { GATEHOUSE_DATA_DIR: dir });
    const jwks1 = await (await fetch(`${first.url}/jwks`)).json();
    await first.stop();
    const second = await startServe(['--store', `sqlite:${join(dir, 'authorization-server.db')}`, ...RESOURCE_FLAG], {
      GATEHOUSE_DATA_DIR: dir,
    });
    const jwks2 = await (await fetch(`${second.url}/jwks`)).json();
    await second.stop();
    expect(jwks2).toEqual(jwks1);
  });

  it('logs structured JSON that never holds the password, the code, a token or a client secret', async () => {
    const running = await startServeJson(
      ['--store', 'memory', '--superuser', 'admin', '--resource', `${RESOURCE}=mcp:tools`, '--log-level', 'debug'],
      { GATEHOUSE_SUPERUSER_PASSWORD: PASSWORD },
    );
    cleanups.push(() => running.stop());
    const login = await flow(running.url);
    expect(login.first.status).toBe(200);
    const refreshed = await token(running, {
      grant_type: 'refresh_token',
      refresh_token: login.first.body['refresh_token']!,
      client_id: login.clientId,
    });
    expect(refreshed.status).toBe(200);
    const wrongPassword = 'wrong-password-that-must-not-be-logged';
    const redirectUri = 'http://127.0.0.1:4711/callback';
    await new Browser().authorize(
      authorizationUrl(running, {
        clientId: login.clientId,
        redirectUri,
        challenge: pkce().challenge,
        resource: RESOURCE,
      }),
      redirectUri,
      { credentials: { username: 'admin', password: wrongPassword } },
    );
    const secret = await register(running, {
      redirect_uris: ['https://app.example.com/cb'],
      token_endpoint_auth_method: 'client_secret_basic',
    });
    await new Promise((r) => setTimeout(r, 200));
    const output = running.output();
    const lines = output.split('\n').filter((l) => l.startsWith('{'));
    expect(lines.length).toBeGreaterThan(3);
    for (const line of lines) expect(() => JSON.parse(line)).not.toThrow();
    expect(output).toContain('authorization server listening');
    for (const value of [
      PASSWORD,
      wrongPassword,
      login.code,
      login.first.body['access_token']!,
      login.first.body['refresh_token']!,
      refreshed.body['access_token']!,
      refreshed.body['refresh_token']!,
      String(secret.body['client_secret']),
      String(secret.body['registration_access_token']),
    ]) {
      expect(value.length).toBeGreaterThan(8);
      expect(output).not.toContain(value);
    }
  });

  it('--json prints the listening line on stdout instead of the text line; --verbose logs debug; --no-device-flow', async () => {
    const env = { GATEHOUSE_SUPERUSER_PASSWORD: PASSWORD };
    const base = ['--store', 'memory', '--superuser', 'admin', ...RESOURCE_FLAG];
    const [verbose, quiet] = await Promise.all([
      startServeJson([...base, '--verbose', '--no-device-flow'], env),
      startServeJson([...base, '--verbose', '--log-level', 'warn'], env),
    ]);
    cleanups.push(
      () => verbose.stop(),
      () => quiet.stop(),
    );
    const listening = JSON.parse(
      verbose
        .output()
        .split('\n')
        .find((l) => l.includes('"msg":"listening"'))!,
    );
    expect(listening).toEqual({ msg: 'listening', issuer: verbose.url, url: verbose.url });
    expect(verbose.output()).not.toContain('gatehouse serve: issuer');
    expect(verbose.output()).toMatch(/"level":20,/);
    // --log-level wins over --verbose.
    expect(quiet.output()).not.toMatch(/"level":(20|30),/);

    const metadata = (await (await fetch(`${verbose.url}/.well-known/oauth-authorization-server`)).json()) as Record<
      string,
      unknown
    >;
    expect(metadata['device_authorization_endpoint']).toBeUndefined();
    expect(metadata['grant_types_supported']).not.toContain('urn:ietf:params:oauth:grant-type:device_code');
    const device = await fetch(`${verbose.url}/device/auth`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ client_id: 'x', resource: RESOURCE }),
    });
    expect(device.status).toBeGreaterThanOrEqual(400);
    const withDevice = (await (await fetch(`${quiet.url}/.well-known/oauth-authorization-server`)).json()) as Record<
      string,
      unknown
    >;
    expect(withDevice['device_authorization_endpoint']).toBe(`${quiet.url}/device/auth`);
  });

  it('says what is wrong, with a fix that names the real cause, and exits 1 (2 for bad flags)', async () => {
    const busy: Server = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => busy.close(r)));
    const busyPort = (busy.address() as { port: number }).port;
    const dir = await dataDir();
    const suffix = randomBytes(4).toString('hex');
    const env = { GATEHOUSE_DATA_DIR: dir };
    const cases: Array<{ args: string[]; env?: Record<string, string>; code: number; error: RegExp; fix: RegExp }> = [
      {
        args: ['--store', 'memory', '--port', 'x'],
        code: 2,
        error: /--port must be an integer between 0 and 65535/,
        fix: /gatehouse serve --help/,
      },
      {
        args: ['--store', 'memory', '--resource', 'notaurl'],
        code: 2,
        error: /^gatehouse serve: --resource notaurl: notaurl is not a URL/,
        fix: /--resource https:\/\/mcp\.example\.com\/mcp=scope1,scope2/,
      },
      {
        args: ['--store', 'memory', '--resource', 'https://mcp.example.com/mcp=mcp:tools,format=xml'],
        code: 2,
        error: /format=xml is not a known option or a valid value/,
        fix: /format=jwt\|opaque/,
      },
      {
        // The security default protect() applies: a token for this resource would cross the network in clear.
        args: ['--store', 'memory', '--resource', 'http://example.com/mcp=mcp:tools'],
        code: 2,
        error: /--resource http:\/\/example\.com\/mcp=mcp:tools: .*must use https \(http is allowed only on loopback\)/,
        fix: /--resource https:\/\/mcp\.example\.com\/mcp .*127\.0\.0\.1, localhost or \[::1\]/,
      },
      {
        args: ['--store', 'memory', '--upstream-resource', 'https://api.github.com'],
        code: 2,
        error: /--upstream-resource https:\/\/api\.github\.com: expected URL=NAME/,
        fix: /--upstream-resource https:\/\/api\.github\.com=github/,
      },
      {
        args: ['--store', 'memory', '--logo', 'http://example.com/logo.png'],
        code: 2,
        error: /--logo http:\/\/example\.com\/logo\.png: not an https URL/,
        fix: /--logo https:\/\/example\.com\/logo\.svg/,
      },
      {
        args: ['--store', 'memory', '--trust-proxy', 'nonsense'],
        code: 2,
        error: /--trust-proxy nonsense: /,
        fix: /--trust-proxy 10\.0\.0\.0\/8,loopback/,
      },
      {
        args: ['--store', 'memory', '--rotate-keys-every', 'monthly'],
        code: 2,
        error: /--rotate-keys-every monthly: not a duration/,
        fix: /--rotate-keys-every 30d/,
      },
      {
        args: ['--store', 'memory'],
        env: { GATEHOUSE_SUPERUSER_PASSWORD: '' },
        code: 1,
        error: /--superuser admin needs a password/,
        fix: /GATEHOUSE_SUPERUSER_PASSWORD in the environment/,
      },
      {
        args: ['--store', 'mysql://127.0.0.1/x'],
        code: 1,
        error: /unknown store mysql:/,
        fix: /--store memory, sqlite:\[PATH\], redis:\/\/HOST:6379 or postgres:/,
      },
      {
        args: ['--store', 'memory', '--users', 'no-such-users.json'],
        code: 1,
        error: /Cannot read the users file no-such-users\.json: ENOENT/,
        fix: new RegExp(`no file at ${resolve('no-such-users.json').replace(/[.]/g, '\\.')}: check the path`),
      },
      {
        args: ['--store', 'memory', '--port', String(busyPort)],
        code: 1,
        error: /cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/,
        fix: /Pick another --port, or stop what is using it/,
      },
      {
        args: ['--store', 'memory', '--host', '192.0.2.1'],
        code: 1,
        error: /cannot listen on 192\.0\.2\.1:0: .*EADDRNOTAVAIL/,
        fix: /192\.0\.2\.1 is not an address of this machine: pass --host 127\.0\.0\.1/,
      },
      {
        args: ['--store', 'redis://127.0.0.1:1'],
        code: 1,
        error: /cannot open the redis store redis:\/\/127\.0\.0\.1:1: .*ECONNREFUSED/,
        fix: /Check that redis is running/,
      },
      {
        args: ['--store', `postgres://postgres@127.0.0.1:5432/gatehouse_no_such_db_${suffix}`],
        code: 1,
        error: new RegExp(`database "gatehouse_no_such_db_${suffix}" does not exist`),
        fix: /Create that database/,
      },
      {
        args: ['--store', `postgres://no_such_role_${suffix}@127.0.0.1:5432/postgres`],
        code: 1,
        error: new RegExp(`role "no_such_role_${suffix}" does not exist`),
        fix: /Check the user name and password in --store/,
      },
      {
        args: ['--store', 'redis://no-such-host.invalid:6379'],
        code: 1,
        error: /cannot open the redis store .*ENOTFOUND/,
        fix: /host name in --store does not resolve/,
      },
    ];
    const results = await Promise.all(cases.map((c) => serveFailure(c.args, { ...env, ...c.env })));
    results.forEach((result, i) => {
      const expected = cases[i]!;
      const [error, fix, ...rest] = result.stderr.split('\n').filter((l) => l && !l.startsWith('{'));
      expect({ args: expected.args, code: result.code }).toEqual({ args: expected.args, code: expected.code });
      expect(error, expected.args.join(' ')).toMatch(expected.error);
      expect(fix, expected.args.join(' ')).toMatch(/^fix: /);
      expect(fix, expected.args.join(' ')).toMatch(expected.fix);
      expect(rest.filter((l) => !/oidc-provider WARNING/.test(l))).toEqual([]);
    });
  }, 90_000); // Eighteen processes at once on a shared machine.

  it('refuses a plain-http resource off loopback in the config file too (exit 1: a file is not a flag)', async () => {
    const refused = await startServeProcess([], { resources: [{ resource: 'http://example.com/mcp' }] }).then(
      async (running) => {
        await running.close();
        return 'it started';
      },
      (error: Error) => error.message,
    );
    expect(refused).toMatch(
      /exited with 1:\n.*a resource must use https \(http is allowed only on loopback\), got http:\/\/example\.com\/mcp\nfix: .*https URL \(or http on loopback\)/,
    );
    const loopback = await startServeProcess([], { resources: [{ resource: 'http://localhost:8000/mcp' }] });
    await loopback.close();
  });
});

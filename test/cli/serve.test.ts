import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseResourceFlag, parseStore, serve } from '../../src/authorization-server/serve.js';
import { authorizationUrl, Browser, pkce, register, token } from '../authorization-server/helpers.js';

const RESOURCE = 'http://127.0.0.1:8000/mcp';
const env = { GATEHOUSE_SUPERUSER_PASSWORD: 'correct horse battery', GATEHOUSE_DATA_DIR: '' };

async function flow(url: string) {
  const redirectUri = 'http://127.0.0.1:4711/callback';
  const reg = await register({ url }, { redirect_uris: [redirectUri] });
  const clientId = String(reg.body['client_id']);
  const { verifier, challenge } = pkce();
  const { callback } = await new Browser().authorize(
    authorizationUrl({ url }, { clientId, redirectUri, challenge, resource: RESOURCE }),
    redirectUri,
    { credentials: { username: 'admin', password: env.GATEHOUSE_SUPERUSER_PASSWORD } },
  );
  return token(
    { url },
    {
      grant_type: 'authorization_code',
      code: callback!.searchParams.get('code')!,
      redirect_uri: redirectUri,
      code_verifier: verifier,
      client_id: clientId,
      resource: RESOURCE,
    },
  );
}

describe('gatehouse serve', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of cleanups) await c();
  });

  it('parses --store and --resource', () => {
    expect(parseStore('memory', '/d')).toEqual({ backend: 'memory' });
    expect(parseStore('sqlite:', '/d')).toEqual({ backend: 'sqlite', path: '/d/authorization-server.db' });
    expect(parseStore('sqlite:/x/y.db', '/d')).toEqual({ backend: 'sqlite', path: '/x/y.db' });
    expect(parseStore('redis://127.0.0.1:6379', '/d')).toEqual({ backend: 'redis', url: 'redis://127.0.0.1:6379' });
    expect(parseStore('redis://127.0.0.1:6379/2?prefix=a:', '/d')).toEqual({
      backend: 'redis',
      url: 'redis://127.0.0.1:6379/2',
      prefix: 'a:',
    });
    expect(parseStore('postgres://u@h/db?table=t1', '/d')).toEqual({
      backend: 'postgres',
      url: 'postgres://u@h/db',
      table: 't1',
    });
    expect(() => parseStore('postgres://u@h/db?table=x;drop', '/d')).toThrow(/identifier/);
    expect(() => parseStore('mongodb://x', '/d')).toThrow(/unknown store/);
    expect(parseResourceFlag('https://mcp.example.com/mcp=a,b')).toEqual({
      resource: 'https://mcp.example.com/mcp',
      scopes: ['a', 'b'],
    });
  });

  for (const store of [
    'memory',
    'sqlite:',
    // Fresh per run: a store carries the at-rest key it was first written with, and each run has a new data dir.
    `redis://127.0.0.1:6379?prefix=gatehouse-serve-test-${randomBytes(4).toString('hex')}:`,
    `postgres://postgres@127.0.0.1:5432/test?table=gatehouse_serve_test_${randomBytes(4).toString('hex')}`,
  ]) {
    it(`runs a full flow on --store ${store.split(':')[0]}`, async () => {
      const dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-serve-'));
      const running = await serve(
        { port: 0, store, superuser: 'admin', resources: [{ resource: RESOURCE, scopes: ['mcp:tools'] }] },
        { env: { ...env, GATEHOUSE_DATA_DIR: dataDir } },
      );
      cleanups.push(() => running.close());
      const result = await flow(running.url);
      expect(result.status).toBe(200);
      expect(result.body['access_token']).toBeTruthy();
    });
  }

  it('keeps its signing keys in the store across restarts', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-serve-'));
    const config = { port: 0, superuser: 'admin', resources: [{ resource: RESOURCE }] };
    const first = await serve(config, { env: { ...env, GATEHOUSE_DATA_DIR: dataDir } });
    const jwks1 = await (await fetch(`${first.url}/jwks`)).json();
    await first.close();
    const second = await serve(config, { env: { ...env, GATEHOUSE_DATA_DIR: dataDir } });
    const jwks2 = await (await fetch(`${second.url}/jwks`)).json();
    await second.close();
    expect(jwks2).toEqual(jwks1);
  });

  it('prints a one-line fix for bad input and exits 2 for bad flags', async () => {
    const run = (args: string[], extraEnv: Record<string, string> = {}) =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, ['bin/gatehouse.js', 'serve', ...args], {
          env: { ...process.env, ...extraEnv, GATEHOUSE_SUPERUSER_PASSWORD: '' },
        });
        let stderr = '';
        child.stderr.on('data', (d) => {
          stderr += d;
        });
        child.on('close', (code) => resolve({ code, stderr }));
      });
    const noUsers = await run(['--store', 'memory', '--resource', RESOURCE, '--port', '0']);
    expect(noUsers.code).toBe(1);
    expect(noUsers.stderr).toMatch(/fix: .*--superuser/);
    const badPort = await run(['--port', 'x']);
    expect(badPort.code).toBe(2);
    const noPassword = await run(['--superuser', 'admin', '--resource', RESOURCE, '--store', 'memory']);
    expect(noPassword.stderr).toMatch(/GATEHOUSE_SUPERUSER_PASSWORD/);
  });

  it('logs structured events without the password or tokens', async () => {
    const lines: string[] = [];
    const { pino } = await import('pino');
    const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(line) });
    const running = await serve(
      {
        port: 0,
        store: 'memory',
        superuser: `admin${randomBytes(2).toString('hex')}`,
        resources: [{ resource: RESOURCE, scopes: ['mcp:tools'] }],
      },
      { env, logger },
    );
    cleanups.push(() => running.close());
    const result = await fetch(`${running.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: 'secret-looking-token',
        client_id: 'nope',
      }),
    });
    expect(result.status).toBe(401);
    const all = lines.join('\n');
    expect(all).toContain('authorization server listening');
    expect(all).not.toContain(env.GATEHOUSE_SUPERUSER_PASSWORD);
    expect(all).not.toContain('secret-looking-token');
  });
});

import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Browser, decodeJwt, loginFlow, RESOURCE, token } from '../authorization-server/helpers.js';
import { PASSWORD, startServe } from '../stores/services.js';
import { cli } from './helpers.js';

const ADMIN = { username: 'admin', password: PASSWORD };

/** `gatehouse admin …` output: one JSON object per line. */
const jsonLines = (stdout: string) =>
  stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);

const protectedHeader = (jwt: string) =>
  JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString('utf8')) as { kid: string };

// `gatehouse serve` and `gatehouse admin` as processes on one store, as an operator runs them.
describe('gatehouse admin against a running gatehouse serve', () => {
  for (const kind of ['sqlite', 'redis', 'postgres'] as const) {
    it(`lists and revokes clients and grants on ${kind}; the server sees it at once`, { timeout: 60_000 }, async () => {
      const dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-admin-'));
      const suffix = randomBytes(4).toString('hex');
      const store = {
        sqlite: `sqlite:${join(dataDir, 'as.db')}`,
        redis: `redis://127.0.0.1:6379?prefix=gatehouse-admin-test-${suffix}:`,
        postgres: `postgres://postgres@127.0.0.1:5432/test?table=gatehouse_admin_test_${suffix}`,
      }[kind];
      // Both read the at-rest key from the environment.
      const env = { GATEHOUSE_DATA_DIR: dataDir, GATEHOUSE_STORE_KEY: randomBytes(32).toString('base64url') };
      const admin = (args: string[]) => cli(['admin', ...args, '--store', store], env);
      const running = await startServe(['--store', store, '--resource', `${RESOURCE}=mcp:tools`], env);
      try {
        const flow = await loginFlow(running, new Browser(), undefined, ADMIN);
        expect(flow.first.status).toBe(200);

        const clients = await admin(['clients', 'list']);
        expect(clients.status, clients.stderr).toBe(0);
        expect(jsonLines(clients.stdout).map((l) => l['client_id'])).toContain(flow.clientId);
        const grants = await admin(['grants', 'list']);
        const grant = jsonLines(grants.stdout).find((l) => l['client_id'] === flow.clientId);
        expect(grant?.['account']).toBe('admin');

        // "its refresh tokens and codes stop working at once"
        expect((await admin(['grants', 'revoke', String(grant!['grant_id'])])).status).toBe(0);
        const refresh = await token(running, {
          grant_type: 'refresh_token',
          refresh_token: flow.first.body['refresh_token']!,
          client_id: flow.clientId,
        });
        expect(refresh.body['error']).toBe('invalid_grant');

        // "deletes it and revokes its grants; its next token request: 401 invalid_client"
        expect((await admin(['clients', 'revoke', flow.clientId])).status).toBe(0);
        const gone = await token(running, {
          grant_type: 'refresh_token',
          refresh_token: 'whatever',
          client_id: flow.clientId,
        });
        expect(gone.status).toBe(401);
        expect(gone.body['error']).toBe('invalid_client');
        expect(jsonLines((await admin(['clients', 'list'])).stdout).map((l) => l['client_id'])).not.toContain(
          flow.clientId,
        );
      } finally {
        await running.stop();
        await rm(dataDir, { recursive: true, force: true });
      }
    });
  }

  it('keys rotate --activate-in 0: the running server publishes and signs with the new keys, no restart', {
    timeout: 60_000,
  }, async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-admin-'));
    const env = { GATEHOUSE_DATA_DIR: dataDir };
    const running = await startServe(['--resource', `${RESOURCE}=mcp:tools`], env);
    try {
      const before = (await (await fetch(`${running.url}/jwks`)).json()) as { keys: Array<{ kid: string }> };
      const listed = await cli(['admin', 'keys', 'list', '--json', '--store', 'sqlite:'], env);
      expect(
        jsonLines(listed.stdout)
          .map((k) => k['kid'])
          .sort(),
      ).toEqual(before.keys.map((k) => k.kid).sort());
      const rotated = await cli(['admin', 'keys', 'rotate', '--activate-in', '0', '--store', 'sqlite:'], env);
      expect(rotated.status, rotated.stderr).toBe(0);
      const fresh = jsonLines(rotated.stdout)[0]?.['rotated'] as string[];
      expect(fresh.length).toBe(2);
      // Every instance reads the keys again every 5 seconds.
      await expect
        .poll(
          async () =>
            ((await (await fetch(`${running.url}/jwks`)).json()) as { keys: Array<{ kid: string }> }).keys.map(
              (k) => k.kid,
            ),
          {
            timeout: 12_000,
            interval: 500,
          },
        )
        .toEqual(expect.arrayContaining([...fresh, ...before.keys.map((k) => k.kid)]));
      const flow = await loginFlow(running, new Browser(), undefined, ADMIN);
      expect(fresh).toContain(protectedHeader(flow.first.body['access_token']!).kid);
      expect(decodeJwt(flow.first.body['access_token']!)['aud']).toBe(RESOURCE);
    } finally {
      await running.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('refuses bad usage with exit code 2 and a fix, and a memory store with exit 1 and a fix', async () => {
    const [nothing, noId, memory] = await Promise.all([
      cli(['admin', 'nothing']),
      cli(['admin', 'grants', 'revoke']),
      cli(['admin', 'clients', 'list', '--store', 'memory']),
    ]);
    expect(nothing.status).toBe(2);
    expect(nothing.stderr).toMatch(/expected clients[\s\S]*\nfix: /);
    expect(noId.status).toBe(2);
    expect(noId.stderr).toMatch(/needs an id[\s\S]*\nfix: /);
    expect(memory.status).toBe(1);
    expect(memory.stderr).toMatch(/memory store[\s\S]*\nfix: Point --store at the SQLite file, Redis or PostgreSQL/);
  });
});

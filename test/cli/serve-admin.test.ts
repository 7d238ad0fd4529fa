import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { serve } from '../../src/authorization-server/serve.js';
import admin from '../../src/cli/commands/admin.js';
import { loginFlow, token } from '../authorization-server/helpers.js';

const RESOURCE = 'http://127.0.0.1:8123/mcp';

async function runAdmin(args: string[]): Promise<{ code: number; lines: Array<Record<string, unknown>> }> {
  const out: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((line: string) => {
    out.push(line);
  });
  const err = vi.spyOn(console, 'error').mockImplementation(() => {});
  try {
    const code = await admin.run(args);
    return { code, lines: out.map((l) => JSON.parse(l) as Record<string, unknown>) };
  } finally {
    log.mockRestore();
    err.mockRestore();
  }
}

describe('gatehouse admin', () => {
  afterEach(() => {
    vi.restoreAllMocks();
    vi.unstubAllEnvs();
  });

  for (const kind of ['sqlite', 'redis', 'postgres'] as const) {
    it(`lists and revokes clients and grants, and rotates keys (${kind})`, { timeout: 60_000 }, async () => {
      const dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-admin-'));
      const suffix = randomBytes(4).toString('hex');
      const store = {
        sqlite: `sqlite:${join(dataDir, 'as.db')}`,
        redis: `redis://127.0.0.1:6379?prefix=gatehouse-admin-test-${suffix}:`,
        postgres: `postgres://postgres@127.0.0.1:5432/test?table=gatehouse_admin_test_${suffix}`,
      }[kind];
      // The admin command reads the at-rest key from its environment, as the server does.
      const storeKey = randomBytes(32).toString('base64url');
      vi.stubEnv('GATEHOUSE_STORE_KEY', storeKey);
      const config = {
        port: 0,
        store,
        superuser: 'alice',
        resources: [{ resource: RESOURCE, scopes: ['mcp:tools'] }],
      };
      const env = {
        GATEHOUSE_SUPERUSER_PASSWORD: 'wonderland',
        GATEHOUSE_DATA_DIR: dataDir,
        GATEHOUSE_STORE_KEY: storeKey,
      };
      let running = await serve(config, { env });
      try {
        const flow = await loginFlow({ url: running.url });
        expect(flow.first.status).toBe(200);

        const clients = await runAdmin(['clients', 'list', '--store', store]);
        expect(clients.lines.map((l) => l['client_id'])).toContain(flow.clientId);
        const grants = await runAdmin(['grants', 'list', '--store', store]);
        const grant = grants.lines.find((l) => l['client_id'] === flow.clientId);
        expect(grant?.['account']).toBe('alice');

        expect((await runAdmin(['grants', 'revoke', String(grant!['grant_id']), '--store', store])).code).toBe(0);
        const refresh = await token(
          { url: running.url },
          { grant_type: 'refresh_token', refresh_token: flow.first.body['refresh_token']!, client_id: flow.clientId },
        );
        expect(refresh.body['error']).toBe('invalid_grant');

        expect((await runAdmin(['clients', 'revoke', flow.clientId, '--store', store])).code).toBe(0);
        const gone = await token(
          { url: running.url },
          { grant_type: 'refresh_token', refresh_token: 'whatever', client_id: flow.clientId },
        );
        expect(gone.status).toBe(401);
        expect(gone.body['error']).toBe('invalid_client');

        const before = (await (await fetch(`${running.url}/jwks`)).json()) as { keys: Array<{ kid: string }> };
        const rotated = await runAdmin(['keys', 'rotate', '--activate-in', '0', '--store', store]);
        await running.close();
        running = await serve(config, { env });
        const after = (await (await fetch(`${running.url}/jwks`)).json()) as { keys: Array<{ kid: string }> };
        expect(rotated.lines[0]?.['rotated']).toContain(after.keys[0]?.kid);
        expect(after.keys.map((k) => k.kid)).toContain(before.keys[0]?.kid);
      } finally {
        await running.close();
      }
    });
  }

  it('refuses bad usage with a UsageError', async () => {
    await expect(admin.run(['nothing'])).rejects.toThrow(/expected clients/);
    await expect(admin.run(['grants', 'revoke'])).rejects.toThrow(/needs an id/);
    await expect(admin.run(['clients', 'list', '--store', 'memory'])).rejects.toThrow(/memory store/);
  });
});

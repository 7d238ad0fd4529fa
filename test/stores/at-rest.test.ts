// Data at rest, through real `gatehouse serve` processes on SQLite (the default file), Redis and PostgreSQL: after a
// login, a refresh and a token exchange, a dump of the store holds no code, token, client secret or private key in
// clear; the files the server creates are 0600 in a 0700 directory; an instance with another key refuses to start
// with a clear line; a store written by Gatehouse 0.1 (clear layout) is migrated and keeps working; the key rotates
// with the commands of docs/authorization-server.md, "Data at rest".
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from '@redis/client';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { KEYS_MODEL } from '../../src/authorization-server/keys.js';
import { oidcAdapterFactory } from '../../src/storage/oidc/factory.js';
import { openSqlite } from '../../src/storage/sqlite-driver.js';
import { token } from '../authorization-server/helpers.js';
import { login, refresh } from './flows.js';
import { BIN, DOWNSTREAM, RESOURCE, serveFailure, startServe } from './services.js';

const REDIS_URL = 'redis://127.0.0.1:6379';
const POSTGRES_URL = 'postgres://postgres@127.0.0.1:5432/test';
const EXCHANGER = { id: 'mcp-server', secret: `exchanger-secret-${randomBytes(12).toString('hex')}` };
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const newKey = () => randomBytes(32).toString('base64url');

type Kind = 'sqlite' | 'redis' | 'postgres';

interface Place {
  kind: Kind;
  dataDir: string;
  /** The --store value. */
  store: string;
  prefix: string;
  table: string;
}

function place(kind: Kind): Place {
  // A data directory the server must create itself (to check its mode).
  const dataDir = join(mkdtempSync(join(tmpdir(), 'gatehouse-at-rest-')), 'data', 'gatehouse');
  const suffix = randomBytes(4).toString('hex');
  const prefix = `gatehouse-at-rest-${suffix}:`;
  const table = `gatehouse_at_rest_${suffix}`;
  const store = {
    sqlite: 'sqlite:',
    redis: `${REDIS_URL}?prefix=${prefix}`,
    postgres: `${POSTGRES_URL}?table=${table}`,
  }[kind];
  if (kind === 'redis') cleanups.push(() => dropRedisPrefix(prefix));
  if (kind === 'postgres') cleanups.push(() => dropTable(table));
  return { kind, dataDir, store, prefix, table };
}

async function dropRedisPrefix(prefix: string): Promise<void> {
  const client = createClient({ url: REDIS_URL });
  await client.connect();
  try {
    for await (const keys of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 500 })) {
      if (keys.length) await client.del(keys);
    }
  } finally {
    await client.close();
  }
}

async function dropTable(table: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    await client.query(`DROP TABLE IF EXISTS ${table}`);
  } finally {
    await client.end();
  }
}

const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const cleanup of cleanups) await cleanup().catch(() => {});
});

/** Everything the store holds, as text: file bytes, every Redis key and value, every PostgreSQL row. */
async function dump(at: Place): Promise<string> {
  if (at.kind === 'sqlite') {
    return readdirSync(at.dataDir)
      .filter((name) => name !== 'store.key')
      .map((name) => readFileSync(join(at.dataDir, name)).toString('latin1'))
      .join('\n');
  }
  if (at.kind === 'redis') {
    const client = createClient({ url: REDIS_URL });
    await client.connect();
    try {
      const parts: string[] = [];
      for await (const keys of client.scanIterator({ MATCH: `${at.prefix}*`, COUNT: 500 })) {
        for (const key of keys) {
          const type = await client.type(key);
          const value =
            type === 'hash'
              ? JSON.stringify(await client.hGetAll(key))
              : type === 'set'
                ? (await client.sMembers(key)).join(' ')
                : String(await client.get(key));
          parts.push(`${key} ${value}`);
        }
      }
      return parts.join('\n');
    } finally {
      await client.close();
    }
  }
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    const { rows } = await client.query<{ row: string }>(`SELECT t::text AS row FROM ${at.table} t`);
    return rows.map((r) => r.row).join('\n');
  } finally {
    await client.end();
  }
}

/** Opens the store with the library and the server's key, to learn the private key material it holds. */
async function storedKeys(at: Place, key: string): Promise<{ d: string; cookie: string }> {
  const location =
    at.kind === 'sqlite'
      ? { backend: 'sqlite' as const, path: join(at.dataDir, 'authorization-server.db') }
      : at.kind === 'redis'
        ? { backend: 'redis' as const, url: REDIS_URL, prefix: at.prefix }
        : { backend: 'postgres' as const, url: POSTGRES_URL, table: at.table, purgeIntervalMs: false as const };
  const factory = oidcAdapterFactory({ ...location, encryptionKeys: [key] });
  try {
    await factory.ready();
    const keys = (await factory(KEYS_MODEL).find('current')) as unknown as {
      signing: Array<{ jwk: { d: string } }>;
      cookies: Array<{ secret: string }>;
    };
    return { d: keys.signing[0]!.jwk.d, cookie: keys.cookies[0]!.secret };
  } finally {
    await factory.close();
  }
}

function configFile(): string {
  const path = join(mkdtempSync(join(tmpdir(), 'gatehouse-at-rest-config-')), 'gatehouse.json');
  writeFileSync(
    path,
    JSON.stringify({
      clients: [
        {
          client_id: EXCHANGER.id,
          client_secret: EXCHANGER.secret,
          grant_types: [TOKEN_EXCHANGE],
          redirect_uris: [],
          response_types: [],
          token_endpoint_auth_method: 'client_secret_post',
        },
      ],
      tokenExchange: [
        { clientId: EXCHANGER.id, from: [RESOURCE], to: [{ resource: DOWNSTREAM, scopes: ['mcp:tools'] }] },
      ],
    }),
  );
  return path;
}

const lookupHash = (model: string, id: string) =>
  createHash('sha256').update(model).update('\0').update(id).digest('base64url');

describe('data at rest under gatehouse serve', () => {
  for (const kind of ['sqlite', 'redis', 'postgres'] as const) {
    it(`keeps no secret in clear in ${kind}`, { timeout: 90_000 }, async () => {
      const at = place(kind);
      const args = [
        '--store',
        at.store,
        '--config',
        configFile(),
        '--resource',
        `${RESOURCE}=mcp:tools`,
        '--resource',
        `${DOWNSTREAM}=mcp:tools`,
      ];
      const server = await startServe(args, { GATEHOUSE_DATA_DIR: at.dataDir });
      let secrets: Record<string, string>;
      let rotatedRefresh: string;
      let session: Awaited<ReturnType<typeof login>>;
      try {
        session = await login(server.url);
        const rotated = await refresh(server.url, session, session.refreshToken);
        expect(rotated.status).toBe(200);
        rotatedRefresh = rotated.body['refresh_token']!;
        const exchanged = await token(
          { url: server.url },
          {
            grant_type: TOKEN_EXCHANGE,
            subject_token: rotated.body['access_token']!,
            subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
            resource: DOWNSTREAM,
            scope: 'mcp:tools',
            client_id: EXCHANGER.id,
            client_secret: EXCHANGER.secret,
          },
        );
        expect(exchanged.status, JSON.stringify(exchanged.body)).toBe(200);
        secrets = {
          'authorization code': session.code,
          'first refresh token': session.refreshToken,
          'rotated refresh token': rotatedRefresh,
          'first access token': session.accessToken,
          'rotated access token': rotated.body['access_token']!,
          'exchanged access token': exchanged.body['access_token']!,
          'client secret': session.clientSecret,
        };
      } finally {
        await server.stop();
      }

      const key = readFileSync(join(at.dataDir, 'store.key'), 'utf8').trim();
      const { d, cookie } = await storedKeys(at, key);
      secrets['signing private key'] = d;
      secrets['cookie key'] = cookie;
      const content = await dump(at);
      // The dump is the real store: it holds the rotated refresh token's row, under the hash of the token.
      expect(content).toContain(lookupHash('RefreshToken', rotatedRefresh));
      for (const [name, secret] of Object.entries(secrets)) {
        expect(content.includes(secret), `${name} in clear in the ${kind} store`).toBe(false);
      }

      // Created 0700 / 0600, the key file too.
      expect(statSync(at.dataDir).mode & 0o777).toBe(0o700);
      expect(statSync(join(at.dataDir, 'store.key')).mode & 0o777).toBe(0o600);
      if (kind === 'sqlite') {
        for (const name of readdirSync(at.dataDir)) expect(statSync(join(at.dataDir, name)).mode & 0o777).toBe(0o600);
      }

      // An instance with another key refuses the store: one clear line, non-zero exit.
      if (kind !== 'sqlite') {
        const other = await serveFailure(['--store', at.store], {
          GATEHOUSE_DATA_DIR: mkdtempSync(join(tmpdir(), 'gatehouse-other-')),
        });
        expect(other.code).not.toBe(0);
        expect(other.stderr.split('\n')[0]).toMatch(/encrypted with another at-rest key/);
        expect(other.stderr).toContain('GATEHOUSE_STORE_KEY');
      }

      // The same instance (same key) reads everything back after a restart.
      const again = await startServe(['--store', at.store], { GATEHOUSE_DATA_DIR: at.dataDir });
      try {
        const next = await refresh(again.url, session, rotatedRefresh);
        expect(next.status, JSON.stringify(next.body)).toBe(200);
      } finally {
        await again.stop();
      }
    });
  }
});

interface FixtureRow {
  model: string;
  id: string;
  payload: Record<string, unknown>;
  grant_id: string | null;
  uid: string | null;
  user_code: string | null;
  expires_in: number | null;
  consumed_at: number | null;
}

interface Fixture {
  written: string;
  refreshToken: string;
  client: { client_id: string; client_secret: string };
  rows: FixtureRow[];
}

/**
 * The rows Gatehouse 0.1 wrote (generated by its sqlite adapter at commit e07e76a, in fixtures/store-v1.json), with
 * their times moved to now so the refresh token is still within its lifetime.
 */
function fixture(): Fixture {
  const data = JSON.parse(readFileSync(new URL('fixtures/store-v1.json', import.meta.url), 'utf8')) as Fixture;
  const shift = Math.floor((Date.now() - Date.parse(data.written)) / 1000);
  for (const row of data.rows) {
    for (const field of ['iat', 'exp']) {
      if (typeof row.payload[field] === 'number') row.payload[field] = (row.payload[field] as number) + shift;
    }
  }
  return data;
}

const V1_COLUMNS = 'model, id, payload, grant_id, uid, user_code, expires_at, consumed_at';

/** Writes the fixture in the 0.1 layout: plain ids as keys, payloads as JSON. */
async function writeLegacy(at: Place, rows: FixtureRow[]): Promise<void> {
  if (at.kind === 'sqlite') {
    const db = await openSqlite(join(at.dataDir, 'authorization-server.db'));
    db.exec(`CREATE TABLE gatehouse_oidc (model TEXT NOT NULL, id TEXT NOT NULL, payload TEXT NOT NULL, grant_id TEXT,
      uid TEXT, user_code TEXT, expires_at INTEGER, consumed_at INTEGER, PRIMARY KEY (model, id)) WITHOUT ROWID`);
    const insert = db.prepare(`INSERT INTO gatehouse_oidc (${V1_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`);
    for (const r of rows) {
      const expires = r.expires_in === null ? null : Date.now() + r.expires_in * 1000;
      insert.run(r.model, r.id, JSON.stringify(r.payload), r.grant_id, r.uid, r.user_code, expires, r.consumed_at);
    }
    db.close();
    return;
  }
  if (at.kind === 'redis') {
    const client = createClient({ url: REDIS_URL });
    await client.connect();
    try {
      for (const r of rows) {
        const key = `${at.prefix}${r.model}:${r.id}`;
        await client.hSet(key, 'payload', JSON.stringify(r.payload));
        if (r.expires_in !== null) await client.expire(key, r.expires_in);
        if (r.grant_id) await client.sAdd(`${at.prefix}grant:${r.grant_id}`, key);
      }
    } finally {
      await client.close();
    }
    return;
  }
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    await client.query(`CREATE TABLE ${at.table} (model text NOT NULL, id text NOT NULL, payload jsonb NOT NULL,
      grant_id text, uid text, user_code text, expires_at timestamptz, consumed_at timestamptz, PRIMARY KEY (model, id))`);
    for (const r of rows) {
      await client.query(
        `INSERT INTO ${at.table} (${V1_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6,
           CASE WHEN $7::float8 IS NULL THEN NULL ELSE now() + $7::float8 * interval '1 second' END, NULL)`,
        [r.model, r.id, JSON.stringify(r.payload), r.grant_id, r.uid, r.user_code, r.expires_in],
      );
    }
  } finally {
    await client.end();
  }
}

describe('a store written by Gatehouse 0.1', () => {
  for (const kind of ['sqlite', 'redis', 'postgres'] as const) {
    it(`is migrated on start and keeps working (${kind})`, { timeout: 60_000 }, async () => {
      const at = place(kind);
      const { mkdirSync } = await import('node:fs');
      mkdirSync(at.dataDir, { recursive: true, mode: 0o700 });
      const old = fixture();
      await writeLegacy(at, old.rows);
      const before = await dump(at);
      expect(before).toContain(old.refreshToken);

      const server = await startServe(['--store', at.store], {
        GATEHOUSE_DATA_DIR: at.dataDir,
        GATEHOUSE_STORE_KEY: newKey(),
      });
      try {
        const refreshed = await refresh(
          server.url,
          { clientId: old.client.client_id, clientSecret: old.client.client_secret },
          old.refreshToken,
        );
        expect(refreshed.status, JSON.stringify(refreshed.body)).toBe(200);
        const jwks = (await (await fetch(`${server.url}/jwks`)).json()) as { keys: Array<{ kid: string }> };
        const oldKeys = old.rows.find((r) => r.model === KEYS_MODEL)!.payload as { signing: Array<{ kid: string }> };
        expect(jwks.keys.map((k) => k.kid)).toContain(oldKeys.signing[0]!.kid);
      } finally {
        await server.stop();
      }
      const after = await dump(at);
      const privateKey = (old.rows.find((r) => r.model === KEYS_MODEL)!.payload as { signing: Array<{ d: string }> })
        .signing[0]!.d;
      const registrationToken = old.rows.find((r) => r.model === 'RegistrationAccessToken')!.id;
      for (const [name, secret] of Object.entries({
        'refresh token': old.refreshToken,
        'client secret': old.client.client_secret,
        'signing private key': privateKey,
        'registration access token': registrationToken,
      })) {
        expect(after.includes(secret), `${name} still in clear after migration (${kind})`).toBe(false);
      }
    });
  }
});

/** The shell block under "Rotating the at-rest key" in docs/authorization-server.md. */
function documentedRotation(): string {
  const docs = readFileSync(new URL('../../docs/authorization-server.md', import.meta.url), 'utf8');
  const section = docs.slice(docs.indexOf('Rotating the at-rest key'));
  const block = /```sh\n([\s\S]*?)```/.exec(section);
  if (!block) throw new Error('docs/authorization-server.md has no rotation commands');
  return block[1]!;
}

describe('rotating the at-rest key (docs: "Data at rest")', () => {
  it('runs the documented commands: rekey, then the new key alone', { timeout: 60_000 }, async () => {
    const at = place('sqlite');
    const first = await startServe(['--store', at.store], { GATEHOUSE_DATA_DIR: at.dataDir });
    let session: Awaited<ReturnType<typeof login>>;
    try {
      session = await login(first.url);
    } finally {
      await first.stop();
    }
    const oldKey = readFileSync(join(at.dataDir, 'store.key'), 'utf8').trim();
    // `gatehouse` on PATH is this checkout's CLI, as an installed package's bin would be.
    const bin = mkdtempSync(join(tmpdir(), 'gatehouse-bin-'));
    writeFileSync(join(bin, 'gatehouse'), `#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`, { mode: 0o755 });
    const script = `set -eu\n${documentedRotation()}\necho "NEW_KEY=$GATEHOUSE_STORE_KEY"\n`;
    const shell = await runShell(script, { GATEHOUSE_DATA_DIR: at.dataDir, PATH: `${bin}:${process.env['PATH']}` });
    expect(shell.code, shell.stderr).toBe(0);
    expect(shell.stdout).toMatch(/"rekeyed":[1-9]/);
    const freshKey = /NEW_KEY=(\S+)/.exec(shell.stdout)![1]!;
    expect(freshKey).not.toBe(oldKey);

    const second = await startServe(['--store', at.store], {
      GATEHOUSE_DATA_DIR: at.dataDir,
      GATEHOUSE_STORE_KEY: freshKey,
    });
    try {
      const refreshed = await refresh(second.url, session, session.refreshToken);
      expect(refreshed.status, JSON.stringify(refreshed.body)).toBe(200);
    } finally {
      await second.stop();
    }
    // The old key alone no longer opens the store.
    const stale = await serveFailure(['--store', at.store], {
      GATEHOUSE_DATA_DIR: at.dataDir,
      GATEHOUSE_STORE_KEY: oldKey,
    });
    expect(stale.code).not.toBe(0);
    expect(stale.stderr).toMatch(/encrypted with another at-rest key/);
  });
});

function runShell(script: string, env: Record<string, string>) {
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('GATEHOUSE_')));
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile('sh', ['-c', script], { env: { ...base, ...env } }, (error, stdout, stderr) => {
      resolve({ code: error ? Number((error as { code?: unknown }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

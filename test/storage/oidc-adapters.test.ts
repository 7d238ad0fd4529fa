import { afterAll, describe, expect, it } from 'vitest';
import { generateEncryptionKey } from '../../src/storage/encrypted.js';
import {
  memoryOidcAdapter,
  type OidcAdapterFactory,
  oidcAdapterFactory,
  postgresOidcAdapter,
  redisOidcAdapter,
  sqliteOidcAdapter,
} from '../../src/storage/index.js';
import { GRACE_MODEL, KEPT_ANSWER } from '../../src/storage/oidc/common.js';
import { openSqlite } from '../../src/storage/sqlite-driver.js';
import { POSTGRES_URL, REDIS_URL, sleep, temporaryDirectory, uniqueId } from './helpers.js';

const dir = await temporaryDirectory('oidc-adapters');
const KEYS = [generateEncryptionKey()];
const pgTable = uniqueId('oidc');
// The broadcast suite's own table: one of its instances has another at-rest key, and the first instance to open a
// table writes its key's marker, which would make the contract suite's postgres store fail to open.
const pgBroadcastTable = uniqueId('oidc_broadcast');
afterAll(async () => {
  await dir.remove();
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  await client.query(`DROP TABLE IF EXISTS ${pgTable}`);
  await client.query(`DROP TABLE IF EXISTS ${pgBroadcastTable}`);
  await client.end();
});

const backends: Array<[string, () => OidcAdapterFactory]> = [
  ['memory', () => memoryOidcAdapter()],
  ['sqlite', () => sqliteOidcAdapter({ path: `${dir.path}/oidc.db`, purgeIntervalMs: false, encryptionKeys: KEYS })],
  [
    'redis',
    () => redisOidcAdapter({ url: REDIS_URL, prefix: `gatehouse-test:${uniqueId('adapter')}:`, encryptionKeys: KEYS }),
  ],
  [
    'postgres',
    () => postgresOidcAdapter({ url: POSTGRES_URL, table: pgTable, purgeIntervalMs: false, encryptionKeys: KEYS }),
  ],
];

describe.each(backends)('oidc-provider adapter contract: %s', (_name, make) => {
  const factory = make();
  afterAll(() => factory.close());

  it('upserts, finds and destroys', async () => {
    const sessions = factory('Session');
    await sessions.upsert('s1', { uid: 'uid-1', accountId: 'a', jti: 's1' } as never, 60);
    expect(await sessions.find('s1')).toMatchObject({ uid: 'uid-1', accountId: 'a' });
    expect(await sessions.findByUid('uid-1')).toMatchObject({ jti: 's1' });
    expect(await factory('Grant').find('s1')).toBeUndefined();
    await sessions.upsert('s1', { uid: 'uid-1', accountId: 'b', jti: 's1' } as never, 60);
    expect(await sessions.find('s1')).toMatchObject({ accountId: 'b' });
    await sessions.destroy('s1');
    expect(await sessions.find('s1')).toBeUndefined();
    expect(await sessions.findByUid('uid-1')).toBeUndefined();
  });

  it('finds device codes by user code', async () => {
    const codes = factory('DeviceCode');
    await codes.upsert('d1', { userCode: 'ABCD-EFGH', grantId: 'g-device' } as never, 60);
    expect(await codes.findByUserCode('ABCD-EFGH')).toMatchObject({ userCode: 'ABCD-EFGH' });
    expect(await codes.findByUserCode('ZZZZ-ZZZZ')).toBeUndefined();
  });

  it('consumes atomically: of 20 concurrent consumers exactly one wins, the others get invalid_grant', async () => {
    const codes = factory('AuthorizationCode');
    await codes.upsert('c1', { grantId: 'g1', jti: 'c1' } as never, 60);
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => codes.consume('c1')));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(rejected).toHaveLength(19);
    for (const r of rejected) expect(r.reason).toMatchObject({ error: 'invalid_grant', statusCode: 400 });
    const found = await codes.find('c1');
    expect(typeof found?.consumed).toBe('number');
    expect(Math.abs((found!.consumed as number) - Date.now() / 1000)).toBeLessThan(5);
    // Saving it again does not un-consume it.
    await codes.upsert('c1', { grantId: 'g1', jti: 'c1' } as never, 60);
    expect(typeof (await codes.find('c1'))?.consumed).toBe('number');
    // A code that no longer exists is invalid_grant too, never a crash.
    await expect(codes.consume('nope')).rejects.toMatchObject({ error: 'invalid_grant' });
  });

  it('upsertMany writes every entry as upsert would, with indexes, lifetimes and an earlier consume kept', async () => {
    await factory('RefreshToken').upsert('many-old', { grantId: 'g-many', jti: 'many-old' } as never, 60);
    await factory('RefreshToken').consume('many-old');
    await factory.upsertMany([
      { model: 'RefreshToken', id: 'many-rt', payload: { grantId: 'g-many', jti: 'many-rt' } as never, expiresIn: 60 },
      { model: 'AccessToken', id: 'many-at', payload: { grantId: 'g-many', jti: 'many-at' } as never, expiresIn: 1 },
      { model: 'Session', id: 'many-s', payload: { uid: 'many-uid', jti: 'many-s' } as never },
      {
        model: 'RefreshToken',
        id: 'many-old',
        payload: { grantId: 'g-many', jti: 'many-old' } as never,
        expiresIn: 60,
      },
    ]);
    expect(await factory('RefreshToken').find('many-rt')).toMatchObject({ jti: 'many-rt' });
    expect(await factory('AccessToken').find('many-at')).toMatchObject({ jti: 'many-at' });
    expect(await factory('Session').findByUid('many-uid')).toMatchObject({ jti: 'many-s' });
    expect(typeof (await factory('RefreshToken').find('many-old'))?.consumed).toBe('number');
    await factory.upsertMany([]);
    await sleep(1200);
    expect(await factory('AccessToken').find('many-at')).toBeUndefined();
    await factory('RefreshToken').revokeByGrantId('g-many');
    expect(await factory('RefreshToken').find('many-rt')).toBeUndefined();
  });

  it('upsertMany with consume: of 20 concurrent rotations of one token one writes, the others write nothing', async () => {
    const refresh = factory('RefreshToken');
    await refresh.upsert('rot-old', { grantId: 'g-rot', jti: 'rot-old' } as never, 60);
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) =>
        factory.upsertMany(
          [
            { model: 'RefreshToken', id: `rot-new-${i}`, payload: { grantId: 'g-rot' } as never, expiresIn: 60 },
            { model: 'AccessToken', id: `rot-at-${i}`, payload: { grantId: 'g-rot' } as never, expiresIn: 60 },
          ],
          { model: 'RefreshToken', id: 'rot-old' },
        ),
      ),
    );
    const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
    expect(won).toHaveLength(1);
    for (const r of results) {
      if (r.status === 'rejected') expect(r.reason).toMatchObject({ error: 'invalid_grant', statusCode: 400 });
    }
    expect(typeof (await refresh.find('rot-old'))?.consumed).toBe('number');
    for (let i = 0; i < 20; i++) {
      const stored = i === won[0] ? { grantId: 'g-rot' } : undefined;
      expect(await refresh.find(`rot-new-${i}`)).toEqual(stored);
      expect(await factory('AccessToken').find(`rot-at-${i}`)).toEqual(stored);
    }
    // A token that does not exist (expired, revoked) is invalid_grant and nothing is written either.
    await expect(
      factory.upsertMany([{ model: 'AccessToken', id: 'rot-orphan', payload: {} as never, expiresIn: 60 }], {
        model: 'RefreshToken',
        id: 'rot-nope',
      }),
    ).rejects.toMatchObject({ error: 'invalid_grant', error_detail: 'refresh token not found' });
    expect(await factory('AccessToken').find('rot-orphan')).toBeUndefined();
  });

  it('keeps an answer with the token its compare-and-set consumes, readable with it only while it lives', async () => {
    const refresh = factory('RefreshToken');
    await refresh.upsert('ans-old', { grantId: 'g-ans', jti: 'ans-old' } as never, 60);
    const answer = { sealed: 'sealed-by-the-caller', expiresIn: 1, legacyId: 'ans-legacy' };
    await factory.upsertMany([], { model: 'RefreshToken', id: 'ans-old', answer });
    const found = await refresh.find('ans-old');
    expect(typeof found?.consumed).toBe('number');
    expect((found as { [KEPT_ANSWER]?: string })[KEPT_ANSWER]).toBe('sealed-by-the-caller');
    // Invisible to oidc-provider, which copies and serialises payloads.
    expect(JSON.stringify(found)).not.toContain('sealed-by-the-caller');
    expect(Object.getOwnPropertySymbols({ ...found })).toEqual([]);
    // A new store is at the current format level: no entry of its own (the previous layout).
    expect(await factory(GRACE_MODEL).find('ans-legacy')).toBeUndefined();
    // The loser of the compare-and-set keeps nothing.
    await expect(
      factory.upsertMany([], { model: 'RefreshToken', id: 'ans-old', answer: { ...answer, sealed: 'loser' } }),
    ).rejects.toMatchObject({ error: 'invalid_grant' });
    expect(((await refresh.find('ans-old')) as { [KEPT_ANSWER]?: string })[KEPT_ANSWER]).toBe('sealed-by-the-caller');
    await sleep(1200);
    const later = await refresh.find('ans-old');
    expect(typeof later?.consumed).toBe('number');
    expect((later as { [KEPT_ANSWER]?: string })[KEPT_ANSWER]).toBeUndefined();
    expect(await factory.upgrade()).toEqual({ from: 3, to: 3 });
  });

  it("a token's Grant reads as it is now, also when the token was read first (Redis reads both at once)", async () => {
    const refresh = factory('RefreshToken');
    const grants = factory('Grant');
    await grants.upsert('pf-grant', { jti: 'pf-grant', accountId: 'a', version: 1 } as never, 60);
    await refresh.upsert('pf-rt', { grantId: 'pf-grant', jti: 'pf-rt' } as never, 60);
    await refresh.find('pf-rt');
    expect(await grants.find('pf-grant')).toMatchObject({ version: 1 });
    await refresh.find('pf-rt');
    await grants.upsert('pf-grant', { jti: 'pf-grant', accountId: 'a', version: 2 } as never, 60);
    expect(await grants.find('pf-grant')).toMatchObject({ version: 2 });
    await refresh.find('pf-rt');
    await grants.destroy('pf-grant');
    expect(await grants.find('pf-grant')).toBeUndefined();
    await grants.upsert('pf-grant', { jti: 'pf-grant', accountId: 'a', version: 3 } as never, 60);
    await refresh.find('pf-rt');
    await refresh.revokeByGrantId('pf-grant');
    await grants.destroy('pf-grant');
    expect(await grants.find('pf-grant')).toBeUndefined();
    expect(await refresh.find('pf-rt')).toBeUndefined();
    // Its session the same way: saved again, or destroyed, after the token was read.
    const sessions = factory('Session');
    await sessions.upsert('pf-s', { jti: 'pf-s', uid: 'pf-uid', version: 1 } as never, 60);
    await refresh.upsert('pf-rt2', { sessionUid: 'pf-uid', jti: 'pf-rt2' } as never, 60);
    await refresh.find('pf-rt2');
    expect(await sessions.findByUid('pf-uid')).toMatchObject({ version: 1 });
    await refresh.find('pf-rt2');
    await sessions.upsert('pf-s', { jti: 'pf-s', uid: 'pf-uid', version: 2 } as never, 60);
    expect(await sessions.findByUid('pf-uid')).toMatchObject({ version: 2 });
    await refresh.find('pf-rt2');
    await sessions.destroy('pf-s');
    expect(await sessions.findByUid('pf-uid')).toBeUndefined();
    expect(await sessions.find('pf-s')).toBeUndefined();
  });

  it('revokes everything of a grant and nothing else', async () => {
    const codes = factory('AuthorizationCode');
    const refresh = factory('RefreshToken');
    const access = factory('AccessToken');
    await codes.upsert('rc', { grantId: 'g-revoke' } as never, 60);
    await refresh.upsert('rr', { grantId: 'g-revoke' } as never);
    await access.upsert('ra', { grantId: 'g-revoke' } as never, 60);
    await access.upsert('other', { grantId: 'g-keep' } as never, 60);
    await refresh.revokeByGrantId('g-revoke');
    expect(await codes.find('rc')).toBeUndefined();
    expect(await refresh.find('rr')).toBeUndefined();
    expect(await access.find('ra')).toBeUndefined();
    expect(await access.find('other')).toMatchObject({ grantId: 'g-keep' });
  });

  it('hides expired entries and purges them', async () => {
    const tokens = factory('AccessToken');
    await tokens.upsert('short', { grantId: 'g-exp' } as never, 1);
    await tokens.upsert('long', { grantId: 'g-exp' } as never, 60);
    expect(await tokens.find('short')).toBeDefined();
    await sleep(1100);
    expect(await tokens.find('short')).toBeUndefined();
    expect(await tokens.find('long')).toBeDefined();
    await factory.purgeExpired();
    expect(await tokens.find('long')).toBeDefined();
  });
});

describe('oidcAdapterFactory', () => {
  it('dispatches on backend and reports a connection failure from ready()', async () => {
    const memory = oidcAdapterFactory({ backend: 'memory' });
    await memory.ready();
    await memory('Grant').upsert('g', { accountId: 'a' } as never);
    expect(await memory('Grant').find('g')).toMatchObject({ accountId: 'a' });
    await memory.close();
    const down = oidcAdapterFactory({
      backend: 'postgres',
      url: 'postgresql://postgres@127.0.0.1:1/test',
      encryptionKeys: KEYS,
    });
    await expect(down.ready()).rejects.toThrow(/ECONNREFUSED|connect/);
    await down.close();
  });

  it('rebuilds a SQLite table of the earlier WITHOUT ROWID layout, keeping every entry', async () => {
    const path = `${dir.path}/without-rowid.db`;
    let factory = sqliteOidcAdapter({ path, purgeIntervalMs: false, encryptionKeys: KEYS });
    await factory('RefreshToken').upsert('old-rt', { grantId: 'old-g', jti: 'old-rt' } as never, 60);
    await factory('RefreshToken').consume('old-rt');
    await factory('Session').upsert('old-s', { uid: 'old-uid', jti: 'old-s' } as never, 60);
    await factory.close();
    // The table as Gatehouse created it before (same columns, WITHOUT ROWID), with the rows written above.
    const db = await openSqlite(path);
    db.exec(`CREATE TABLE earlier (model TEXT NOT NULL, id TEXT NOT NULL, payload TEXT NOT NULL, grant_id TEXT, uid TEXT,
        user_code TEXT, expires_at INTEGER, consumed_at INTEGER, PRIMARY KEY (model, id)) WITHOUT ROWID;
      INSERT INTO earlier SELECT model, id, payload, grant_id, uid, user_code, expires_at, consumed_at FROM gatehouse_oidc;
      DROP TABLE gatehouse_oidc;
      ALTER TABLE earlier RENAME TO gatehouse_oidc;
      CREATE INDEX gatehouse_oidc_grant ON gatehouse_oidc (grant_id) WHERE grant_id IS NOT NULL;`);
    db.close();

    factory = sqliteOidcAdapter({ path, purgeIntervalMs: false, encryptionKeys: KEYS });
    await factory.ready();
    expect(await factory('RefreshToken').find('old-rt')).toMatchObject({ jti: 'old-rt', consumed: expect.any(Number) });
    expect(await factory('Session').findByUid('old-uid')).toMatchObject({ jti: 'old-s' });
    await factory('RefreshToken').revokeByGrantId('old-g');
    expect(await factory('RefreshToken').find('old-rt')).toBeUndefined();
    await factory.close();
    const after = await openSqlite(path);
    const { sql } = after.prepare(`SELECT sql FROM sqlite_master WHERE name = 'gatehouse_oidc'`).get() as {
      sql: string;
    };
    after.close();
    expect(sql).not.toMatch(/WITHOUT ROWID/i);
  });

  it("SQLite reads a token's Grant and session with it; a file of the previous layout gains the columns for that", async () => {
    const path = `${dir.path}/link-columns.db`;
    let factory = sqliteOidcAdapter({ path, purgeIntervalMs: false, encryptionKeys: KEYS });
    await factory('Grant').upsert('lc-g', { jti: 'lc-g', accountId: 'a' } as never, 60);
    await factory('Session').upsert('lc-s', { jti: 'lc-s', uid: 'lc-uid' } as never, 60);
    await factory('RefreshToken').upsert(
      'lc-old',
      { jti: 'lc-old', grantId: 'lc-g', sessionUid: 'lc-uid' } as never,
      60,
    );
    await factory.close();
    // The table as the previous release created it (no grant_key, session_uid): its rows name no Grant or session.
    const db = await openSqlite(path);
    db.exec(`CREATE TABLE earlier (model TEXT NOT NULL, id TEXT NOT NULL, payload TEXT NOT NULL, grant_id TEXT, uid TEXT,
        user_code TEXT, expires_at INTEGER, consumed_at INTEGER);
      INSERT INTO earlier SELECT model, id, payload, grant_id, uid, user_code, expires_at, consumed_at FROM gatehouse_oidc;
      DROP TABLE gatehouse_oidc;
      ALTER TABLE earlier RENAME TO gatehouse_oidc;
      CREATE UNIQUE INDEX gatehouse_oidc_key ON gatehouse_oidc (model, id);
      CREATE INDEX gatehouse_oidc_uid ON gatehouse_oidc (model, uid) WHERE uid IS NOT NULL;`);
    db.close();

    factory = sqliteOidcAdapter({ path, purgeIntervalMs: false, encryptionKeys: KEYS });
    await factory.ready();
    await factory('RefreshToken').upsert(
      'lc-new',
      { jti: 'lc-new', grantId: 'lc-g', sessionUid: 'lc-uid' } as never,
      60,
    );
    const other = await openSqlite(path);
    const columns = (other.prepare('PRAGMA table_info(gatehouse_oidc)').all() as Array<{ name: string }>).map(
      (c) => c.name,
    );
    expect(columns).toEqual(expect.arrayContaining(['grant_key', 'session_uid']));
    const deleteGrantAndSession = () => other.exec(`DELETE FROM gatehouse_oidc WHERE model IN ('Grant', 'Session')`);
    const restore = async () => {
      await factory('Grant').upsert('lc-g', { jti: 'lc-g', accountId: 'a' } as never, 60);
      await factory('Session').upsert('lc-s', { jti: 'lc-s', uid: 'lc-uid' } as never, 60);
    };
    try {
      // A token written before the upgrade (or by an instance not yet upgraded): its Grant and session read alone.
      expect(await factory('RefreshToken').find('lc-old')).toMatchObject({ jti: 'lc-old' });
      deleteGrantAndSession();
      expect(await factory('Grant').find('lc-g')).toBeUndefined();
      expect(await factory('Session').findByUid('lc-uid')).toBeUndefined();
      await restore();
      // A token written now: the one statement that read it read its Grant and session too (another process
      // deleting them right after does not reach the reads that follow within the request).
      expect(await factory('RefreshToken').find('lc-new')).toMatchObject({ jti: 'lc-new' });
      deleteGrantAndSession();
      expect(await factory('Grant').find('lc-g')).toMatchObject({ accountId: 'a' });
      expect(await factory('Session').findByUid('lc-uid')).toMatchObject({ jti: 'lc-s' });
      // Each once: the next reads go to the file.
      expect(await factory('Grant').find('lc-g')).toBeUndefined();
      expect(await factory('Session').findByUid('lc-uid')).toBeUndefined();
    } finally {
      other.close();
      await factory.close();
    }
  });

  it('purgeExpired deletes expired rows (SQL backends)', async () => {
    const factory = sqliteOidcAdapter({ path: `${dir.path}/purge.db`, purgeIntervalMs: false, encryptionKeys: KEYS });
    await factory('AccessToken').upsert('x', {} as never, 1);
    await factory('AccessToken').upsert('y', {} as never);
    await sleep(1100);
    expect(await factory.purgeExpired()).toBe(1);
    await factory.close();
  });

  it('purgeExpired clears kept answers once they expire, not the consumed token (SQLite)', async () => {
    const path = `${dir.path}/answers.db`;
    const factory = sqliteOidcAdapter({ path, purgeIntervalMs: false, encryptionKeys: KEYS });
    await factory('RefreshToken').upsert('kept', { grantId: 'g-kept' } as never, 60);
    await factory('RefreshToken').upsert('kept-long', { grantId: 'g-kept' } as never, 60);
    await factory.upsertMany([], {
      model: 'RefreshToken',
      id: 'kept',
      answer: { sealed: 's', expiresIn: 1, legacyId: 'l' },
    });
    const long = { sealed: 's', expiresIn: 60, legacyId: 'l2' };
    await factory.upsertMany([], { model: 'RefreshToken', id: 'kept-long', answer: long });
    await sleep(1100);
    expect(await factory.purgeExpired()).toBe(0);
    await factory.close();
    const db = await openSqlite(path);
    const rows = db.prepare('SELECT answer, consumed_at FROM gatehouse_oidc WHERE consumed_at IS NOT NULL').all();
    db.close();
    expect(rows).toHaveLength(2);
    expect(rows.filter((row) => (row as { answer: string | null }).answer !== null)).toHaveLength(1);
  });
});

describe.each([
  [
    'redis',
    (keys: string[], space: string) => redisOidcAdapter({ url: REDIS_URL, prefix: space, encryptionKeys: keys }),
  ],
  [
    'postgres',
    (keys: string[]) =>
      postgresOidcAdapter({ url: POSTGRES_URL, table: pgBroadcastTable, purgeIntervalMs: false, encryptionKeys: keys }),
  ],
] as const)('broadcast between instances sharing a %s store', (_name, make) => {
  const space = `gatehouse-test:${uniqueId('broadcast')}:`;
  // Two instances with the store's key, a third with another one.
  const factories = [make(KEYS, space), make(KEYS, space), make([generateEncryptionKey()], space)];
  afterAll(() => Promise.all(factories.map((f) => f.close())));

  it('reaches every subscriber with the key, sealed, a value beyond 8000 bytes too; others hear nothing', async () => {
    const heard: Array<Array<Record<string, unknown>>> = [[], [], []];
    const topics = await Promise.all(factories.map((f, i) => f.broadcast!('test_topic', (v) => heard[i]!.push(v))));
    const large = 'x'.repeat(20_000);
    await topics[0]!.publish({ n: 1, large });
    await topics[1]!.publish({ n: 2 });
    for (let waited = 0; waited < 5000 && (heard[0]!.length < 2 || heard[1]!.length < 2); waited += 20) await sleep(20);
    for (const instance of [0, 1]) {
      expect(heard[instance]!.map((v) => v['n']).sort()).toEqual([1, 2]);
      expect(heard[instance]!.find((v) => v['n'] === 1)?.['large']).toBe(large);
    }
    // Sealed with another key: the third instance opens none of it.
    expect(heard[2]).toEqual([]);
    await Promise.all(topics.map((t) => t.close()));
    await topics[0]!.publish({ n: 3 }).catch(() => {});
    await sleep(200);
    expect(heard[1]!.map((v) => v['n'])).not.toContain(3);
  });
});

it('memory and SQLite adapters have no broadcast (nobody else to tell)', async () => {
  expect(memoryOidcAdapter().broadcast).toBeUndefined();
  const sqlite = sqliteOidcAdapter({
    path: `${dir.path}/no-broadcast.db`,
    purgeIntervalMs: false,
    encryptionKeys: KEYS,
  });
  expect(sqlite.broadcast).toBeUndefined();
  await sqlite.close();
});

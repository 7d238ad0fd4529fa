// docs/storage.md, "Authorization-server storage": expired entries are hidden at once and deleted by a background
// purge every `purgeIntervalMs` (60 s by default); the timer does not keep the process alive. Each store with the
// purge (memory, SQLite, PostgreSQL) gets a short interval and an entry that expires in a second: the entry leaves
// the backend with no read touching it (rows counted in the database itself; for memory, `purgeExpired()` finds
// nothing left where an adapter without the timer still finds it). Redis needs no purge: its keys carry a TTL.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { generateEncryptionKey } from '../../src/storage/encrypted.js';
import {
  memoryOidcAdapter,
  type OidcAdapterFactory,
  postgresOidcAdapter,
  redisOidcAdapter,
  sqliteOidcAdapter,
} from '../../src/storage/index.js';
import { openSqlite } from '../../src/storage/sqlite-driver.js';
import {
  buildStorageForChildren,
  POSTGRES_URL,
  REDIS_URL,
  removeFromServices,
  sleep,
  temporaryDirectory,
  uniqueId,
} from './helpers.js';

const run = promisify(execFile);
const KEYS = [generateEncryptionKey()];
const INTERVAL = 100;
const dir = await temporaryDirectory('oidc-purge-timer');
const pgTable = uniqueId('purge');
const redisPrefix = `gatehouse-test:${uniqueId('purge')}:`;
const factories: OidcAdapterFactory[] = [];
afterAll(async () => {
  await Promise.all(factories.map((f) => f.close()));
  await removeFromServices({ redisPrefix, tables: [pgTable] });
  await dir.remove();
});

const track = (factory: OidcAdapterFactory) => {
  factories.push(factory);
  return factory;
};

/** Writes one entry that expires in a second and one that lives an hour. */
async function writeEntries(factory: OidcAdapterFactory): Promise<void> {
  await factory.ready();
  await factory('Session').upsert('short-lived', { uid: 'u-short', jti: 'short-lived' } as never, 1);
  await factory('Session').upsert('long-lived', { uid: 'u-long', jti: 'long-lived' } as never, 3600);
}

/** Polls `count` (which must not go through the adapter) until it answers `expected`, for at most 5 s. */
async function eventually(count: () => Promise<number>, expected: number): Promise<number> {
  const until = Date.now() + 5_000;
  let last = await count();
  while (last !== expected && Date.now() < until) {
    await sleep(50);
    last = await count();
  }
  return last;
}

describe('the background purge deletes expired entries no read touched', () => {
  it('memory: after the interval, purgeExpired() finds nothing left; without the timer it finds the entry', async () => {
    const timed = track(memoryOidcAdapter({ purgeIntervalMs: INTERVAL }));
    const untimed = track(memoryOidcAdapter({ purgeIntervalMs: false }));
    await Promise.all([writeEntries(timed), writeEntries(untimed)]);
    await sleep(2_000 + 2 * INTERVAL);
    expect(await untimed.purgeExpired()).toBe(1);
    expect(await timed.purgeExpired()).toBe(0);
    expect(await timed('Session').find('long-lived')).toMatchObject({ uid: 'u-long' });
  });

  it('SQLite: the expired row leaves the database file, the live one stays', async () => {
    const path = `${dir.path}/purge.db`;
    const factory = track(sqliteOidcAdapter({ path, purgeIntervalMs: INTERVAL, encryptionKeys: KEYS }));
    await factory.ready();
    const db = await openSqlite(path);
    try {
      const rows = async () =>
        Number((db.prepare('SELECT count(*) AS n FROM gatehouse_oidc').get() as { n: number }).n);
      const before = await rows(); // the store's own marker
      await writeEntries(factory);
      expect(await rows()).toBe(before + 2);
      expect(await eventually(rows, before + 1)).toBe(before + 1);
    } finally {
      db.close();
    }
    expect(await factory('Session').find('long-lived')).toMatchObject({ uid: 'u-long' });
  });

  it('PostgreSQL: the expired row leaves the table, the live one stays', async () => {
    const factory = track(
      postgresOidcAdapter({ url: POSTGRES_URL, table: pgTable, purgeIntervalMs: INTERVAL, encryptionKeys: KEYS }),
    );
    await factory.ready();
    const { default: pg } = await import('pg');
    const client = new pg.Client({ connectionString: POSTGRES_URL });
    await client.connect();
    try {
      const rows = async () => Number((await client.query(`SELECT count(*) AS n FROM ${pgTable}`)).rows[0].n);
      const before = await rows(); // the store's own marker
      await writeEntries(factory);
      expect(await rows()).toBe(before + 2);
      expect(await eventually(rows, before + 1)).toBe(before + 1);
    } finally {
      await client.end();
    }
    expect(await factory('Session').find('long-lived')).toMatchObject({ uid: 'u-long' });
  });

  it('Redis: no purge needed, every key of the short-lived entry carries a TTL of at most its lifetime', async () => {
    const factory = track(redisOidcAdapter({ url: REDIS_URL, prefix: redisPrefix, encryptionKeys: KEYS }));
    await factory.ready();
    await factory('Session').upsert('short-lived', { uid: 'u-short', jti: 'short-lived' } as never, 1);
    const { createClient } = await import('@redis/client');
    const redis = createClient({ url: REDIS_URL });
    await redis.connect();
    try {
      const keys: string[] = [];
      for await (const page of redis.scanIterator({ MATCH: `${redisPrefix}*`, COUNT: 100 })) keys.push(...page);
      const data = keys.filter((key) => !key.includes('format')); // the store's format marker lives forever
      expect(data.length).toBeGreaterThan(0);
      for (const key of data) {
        const ttl = await redis.pTTL(key);
        expect(ttl, key).toBeGreaterThan(0);
        expect(ttl, key).toBeLessThanOrEqual(1_000);
      }
    } finally {
      await redis.close();
    }
  });
});

it('the purge timer does not keep the process alive: a process that never closes its adapters exits by itself', async () => {
  const entry = await buildStorageForChildren();
  const script = `
    const { memoryOidcAdapter, sqliteOidcAdapter } = await import(${JSON.stringify(entry)});
    const keys = [${JSON.stringify(KEYS[0])}];
    const memory = memoryOidcAdapter({ purgeIntervalMs: 50 });
    const sqlite = sqliteOidcAdapter({ path: ${JSON.stringify(`${dir.path}/child.db`)}, purgeIntervalMs: 50, encryptionKeys: keys });
    const defaults = memoryOidcAdapter(); // the 60 s default
    await sqlite.ready();
    await memory('Session').upsert('s', { jti: 's' }, 1);
    await sqlite('Session').upsert('s', { jti: 's' }, 1);
    await new Promise((resolve) => setTimeout(resolve, 200)); // a few purges ran
    console.log('done, not closing');
  `;
  const started = Date.now();
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { timeout: 10_000 });
  expect(stdout.trim()).toBe('done, not closing');
  expect(Date.now() - started).toBeLessThan(10_000);
});

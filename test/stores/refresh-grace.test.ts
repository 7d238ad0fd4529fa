// The refresh-token grace window under concurrency, through `gatehouse serve` processes: 50 concurrent refreshes
// of one refresh token, spread over three instances sharing Redis or PostgreSQL (one process on SQLite), give no
// invalid_grant and one new pair — every answer carries the same new refresh token — and presenting the old token
// again after the window still revokes the whole family. Each store here is new, so at the current format level
// (answers kept with the consumed token); refresh-grace-upgrade.test.ts covers a store upgraded from the previous.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { login, refresh } from './flows.js';
import { raceOneToken } from './grace.js';
import { dropPostgresTable, removeRedisPrefix, type ServeProcess, startServe } from './services.js';

const REDIS_URL = 'redis://127.0.0.1:6379';
const POSTGRES_URL = 'postgres://postgres@127.0.0.1:5432/test';
const CONCURRENT = 50;
const GRACE_SECONDS = 5; // the default

const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const cleanup of cleanups) await cleanup().catch(() => {});
});

async function instances(store: string, count: number): Promise<ServeProcess[]> {
  const config = join(mkdtempSync(join(tmpdir(), 'gatehouse-grace-')), 'gatehouse.json');
  writeFileSync(config, JSON.stringify({ refreshTokenGraceSeconds: GRACE_SECONDS }));
  // Every instance of one deployment shares the at-rest key (docs: "Data at rest").
  const env = {
    GATEHOUSE_DATA_DIR: mkdtempSync(join(tmpdir(), 'gatehouse-grace-data-')),
    GATEHOUSE_STORE_KEY: randomBytes(32).toString('base64url'),
  };
  const first = await startServe(['--store', store, '--config', config], env);
  const rest = await Promise.all(
    Array.from({ length: count - 1 }, () => startServe(['--store', store, '--config', config], env)),
  );
  const all = [first, ...rest];
  cleanups.push(() => Promise.all(all.map((s) => s.stop())));
  return all;
}

const race = (servers: ServeProcess[]) => raceOneToken(servers, CONCURRENT, GRACE_SECONDS);

describe(`${CONCURRENT} concurrent refreshes of one token`, () => {
  it('across three instances on Redis', { timeout: 120_000 }, async () => {
    const prefix = `gatehouse-grace-${randomBytes(4).toString('hex')}:`;
    cleanups.push(() => removeRedisPrefix(REDIS_URL, prefix));
    await race(await instances(`${REDIS_URL}?prefix=${prefix}`, 3));
  });

  it('across three instances on PostgreSQL', { timeout: 120_000 }, async () => {
    const table = `gatehouse_grace_${randomBytes(4).toString('hex')}`;
    cleanups.push(() => dropPostgresTable(POSTGRES_URL, table));
    await race(await instances(`${POSTGRES_URL}?table=${table}`, 3));
  });

  it('on one instance on SQLite', { timeout: 120_000 }, async () => {
    await race(await instances('sqlite:', 1));
  });
});

// SQLite commits the writes of one event-loop turn together (src/storage/group-commit.ts): chains rotating at the
// same time share transactions, and a lost compare-and-set must fail only its own rotation, never a neighbour's.
const CHAINS = 8;
const ROTATIONS = 5;
const PER_ROTATION = 3;

it(`${CHAINS} refresh chains at once on SQLite, each rotation raced ${PER_ROTATION} times: every chain holds`, {
  timeout: 120_000,
}, async () => {
  const [server] = await instances('sqlite:', 1);
  const url = server!.url;
  const chains = await Promise.all(Array.from({ length: CHAINS }, () => login(url)));
  await Promise.all(
    chains.map(async (session) => {
      let current = session.refreshToken;
      for (let rotation = 0; rotation < ROTATIONS; rotation++) {
        const answers = await Promise.all(Array.from({ length: PER_ROTATION }, () => refresh(url, session, current)));
        expect(answers.filter((a) => a.status !== 200).map((a) => JSON.stringify(a.body))).toEqual([]);
        const next = new Set(answers.map((a) => a.body['refresh_token']));
        expect(next.size).toBe(1);
        const [token] = [...next] as [string];
        expect(token).not.toBe(current);
        current = token;
      }
      // The last token of the chain is live: stored, not consumed, its family not revoked.
      const last = await refresh(url, session, current);
      expect(last.status).toBe(200);
    }),
  );
});

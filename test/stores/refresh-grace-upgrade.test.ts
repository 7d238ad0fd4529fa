// A rolling upgrade of the store format, through `gatehouse serve` processes of the previous release (built from
// git) and of this one sharing a real store, and the CLI. Before `gatehouse admin store upgrade` the two versions
// honour each other's rotations within the grace window (a second tab is not taken for reuse); the upgrade says
// what it did in one line and is idempotent; after it, 50 concurrent refreshes of one token across instances still
// give one new pair, and this version writes the new layout (which an instance of the previous one, no longer
// allowed on the store, cannot find).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FORMAT_RECHECK_MS } from '../../src/storage/oidc/common.js';
import { cli } from '../cli/helpers.js';
import { login, refresh } from './flows.js';
import { raceOneToken } from './grace.js';
import { buildPrevious } from './previous-version.js';
import { dropPostgresTable, removeRedisPrefix, type ServeProcess, sleep, startServe } from './services.js';

const REDIS_URL = 'redis://127.0.0.1:6379';
const POSTGRES_URL = 'postgres://postgres@127.0.0.1:5432/test';
const GRACE_SECONDS = 5;

const cleanups: Array<() => Promise<unknown>> = [];
let previous: Awaited<ReturnType<typeof buildPrevious>>;

beforeAll(async () => {
  previous = await buildPrevious();
  cleanups.push(async () => previous.remove());
}, 90_000);

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

/** A rotation on `rotating`, then the same (old) token presented again on `second`, as a second tab would. */
async function secondTab(rotating: ServeProcess, second: ServeProcess) {
  const session = await login(rotating.url);
  const rotated = await refresh(rotating.url, session, session.refreshToken);
  expect(rotated.status).toBe(200);
  return { rotated, again: await refresh(second.url, session, session.refreshToken) };
}

const stores = {
  sqlite: () => `sqlite:${join(mkdtempSync(join(tmpdir(), 'gatehouse-upgrade-')), 'as.db')}`,
  redis: () => {
    const prefix = `gatehouse-upgrade-${randomBytes(4).toString('hex')}:`;
    cleanups.push(() => removeRedisPrefix(REDIS_URL, prefix));
    return `${REDIS_URL}?prefix=${prefix}`;
  },
  postgres: () => {
    const table = `gatehouse_upgrade_${randomBytes(4).toString('hex')}`;
    cleanups.push(() => dropPostgresTable(POSTGRES_URL, table));
    return `${POSTGRES_URL}?table=${table}`;
  },
};

for (const kind of ['sqlite', 'redis', 'postgres'] as const) {
  it(`${kind}: previous and current instances share the store until upgrade; then the new layout`, {
    timeout: 150_000,
  }, async () => {
    const store = stores[kind]();
    const config = join(mkdtempSync(join(tmpdir(), 'gatehouse-upgrade-config-')), 'gatehouse.json');
    writeFileSync(config, JSON.stringify({ refreshTokenGraceSeconds: GRACE_SECONDS }));
    const env = {
      GATEHOUSE_DATA_DIR: mkdtempSync(join(tmpdir(), 'gatehouse-upgrade-data-')),
      GATEHOUSE_STORE_KEY: randomBytes(32).toString('base64url'),
    };
    const args = ['--store', store, '--config', config];
    const serve = async (bin?: string) => {
      const started = await startServe(args, env, 20_000, bin);
      cleanups.push(() => started.stop());
      return started;
    };
    // The previous release created the store (format level 2); this version joins it.
    const old = await serve(previous.bin);
    const current = await serve();

    // Before the upgrade each honours the other's rotation: the same new pair, not reuse.
    const byCurrent = await secondTab(current, old);
    expect(byCurrent.again.status, JSON.stringify(byCurrent.again.body)).toBe(200);
    expect(byCurrent.again.body['refresh_token']).toBe(byCurrent.rotated.body['refresh_token']);
    const byOld = await secondTab(old, current);
    expect(byOld.again.status, JSON.stringify(byOld.again.body)).toBe(200);
    expect(byOld.again.body['refresh_token']).toBe(byOld.rotated.body['refresh_token']);

    // Every instance runs this version: the upgrade, in one line, then again (nothing to do).
    await old.stop();
    const upgraded = await cli(['admin', 'store', 'upgrade', '--store', store], env);
    expect(upgraded.status, upgraded.stderr).toBe(0);
    expect(upgraded.stdout.trim().split('\n')).toHaveLength(1);
    expect(JSON.parse(upgraded.stdout)).toMatchObject({ format: 3, previous: 2 });
    const again = await cli(['admin', 'store', 'upgrade', '--store', store], env);
    expect(again.status, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({
      format: 3,
      previous: 3,
      message: expect.stringMatching(/already/),
    });

    // The running instance reads the raised level within FORMAT_RECHECK_MS; a new one reads it at start.
    const next = await serve();
    await sleep(FORMAT_RECHECK_MS + 1000);
    await raceOneToken(kind === 'sqlite' ? [current, next] : [current, next, current], 50, GRACE_SECONDS);

    // The new layout is what both write now: an instance of the previous version (which the upgrade retired) no
    // longer finds the answer of their rotations, and takes the second tab for reuse.
    const late = await serve(previous.bin);
    for (const rotating of [current, next]) {
      const { again: reused } = await secondTab(rotating, late);
      expect(reused.status).toBe(400);
      expect(reused.body['error']).toBe('invalid_grant');
    }
  });
}

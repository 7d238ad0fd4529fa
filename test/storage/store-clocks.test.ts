// docs/storage.md "Server-side stores": TTLs use the backend's own expiry (Redis PX) and PostgreSQL the database
// clock, so an instance whose clock is off neither drops fresh entries nor keeps stale ones. Against the real stores,
// with this process's clock set an hour back.
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { postgresStore, redisStore } from '../../src/storage/index.js';
import type { GatehouseStore } from '../../src/storage/types.js';
import { POSTGRES_URL, REDIS_URL, removeFromServices, sleep, uniqueId } from './helpers.js';

const run = uniqueId('clock').replace(/-/g, '_');
const stores: GatehouseStore[] = [];

afterEach(() => {
  vi.useRealTimers();
});
afterAll(async () => {
  await Promise.all(stores.map((store) => store.close()));
  await removeFromServices({ redisPrefix: `gatehouse-test:${run}:`, tables: [`${run}_pg`, `${run}_pg_lease`] });
});

describe.each([
  ['Redis', () => redisStore(REDIS_URL, { prefix: `gatehouse-test:${run}:`, namespace: 'clock' })],
  ['PostgreSQL', () => postgresStore(POSTGRES_URL, { table: `${run}_pg`, namespace: 'clock' })],
] as const)('%s expires entries on its own clock', (_name, open) => {
  it('an entry written by a process whose clock is an hour slow lives for its TTL, then goes', async () => {
    const store = open();
    stores.push(store);
    await store.get('warm-up'); // connect (and create the table) on the real clock
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() - 3_600_000 });
    await store.set('k', { v: 1 }, 1500);
    expect(await store.get('k')).toEqual({ v: 1 });
    vi.useRealTimers();
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 3_600_000 }); // and read by one an hour fast
    expect(await store.get('k')).toEqual({ v: 1 });
    vi.useRealTimers();
    await sleep(1700);
    expect(await store.get('k')).toBeUndefined();
  });
});

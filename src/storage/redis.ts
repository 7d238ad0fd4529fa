import { deadlined, STORE_DEADLINE_MS } from './oidc/common.js';
import {
  brand,
  checkNamespace,
  type GatehouseStore,
  isTtl,
  type LeaseStore,
  leaseTtl,
  loadOptional,
  toJson,
} from './types.js';

/**
 * The part of a node-redis v5 client (`@redis/client` or `redis`) that Gatehouse uses. Pass your own client
 * (already connected) to share a connection.
 */
export interface RedisClientLike {
  get(key: string): Promise<string | null | unknown>;
  set(key: string, value: string, options?: unknown): Promise<unknown>;
  del(keys: string | string[]): Promise<number | unknown>;
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  /** `EVALSHA`; without it scripts are sent whole every time. */
  evalSha?(sha1: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  scan(cursor: string, options: { MATCH: string; COUNT: number }): Promise<{ cursor: string | number; keys: string[] }>;
  close?(): Promise<unknown>;
  quit?(): Promise<unknown>;
  /** `PUBLISH`, for broadcasts between instances. */
  publish?(channel: string, message: string): Promise<unknown>;
  /** A new, unconnected client with the same options: a subscriber needs a connection of its own. */
  duplicate?(): RedisSubscriberLike;
}

/** The part of a duplicated node-redis client that subscribes to a channel. */
export interface RedisSubscriberLike {
  connect(): Promise<unknown>;
  on(event: 'error', listener: (error: unknown) => void): unknown;
  subscribe(channel: string, listener: (message: string) => void): Promise<unknown>;
  close?(): Promise<unknown>;
  quit?(): Promise<unknown>;
}

/** Options of {@link redisStore}. */
export interface RedisStoreOptions {
  /** Keys are `<prefix><namespace>:<key>`. Default prefix `gatehouse:kv:`. */
  prefix?: string;
  /** Default `default`. */
  namespace?: string;
  /** Use this connected client instead of opening one (it is then not closed by `close()`). */
  client?: RedisClientLike;
  /**
   * How long one operation (connecting included) may take before it fails with `StoreUnavailableError`, in ms.
   * Default 1500: a stalled or unreachable Redis fails a login or a request instead of hanging it.
   */
  deadlineMs?: number;
}

/**
 * Connects a node-redis client, loading `@redis/client` lazily. The first connection fails after a few tries (an
 * unreachable Redis at start is a configuration error); once connected, the client reconnects forever with at
 * most 500 ms between tries, and commands issued while it is disconnected fail at once instead of queueing.
 */
export async function connectRedis(url: string): Promise<RedisClientLike> {
  const { createClient } = await loadOptional('@redis/client', 'Redis', () => import('@redis/client'));
  let connected = false;
  const client = createClient({
    url,
    disableOfflineQueue: true,
    socket: {
      connectTimeout: 2000,
      reconnectStrategy: (retries, cause) => (!connected && retries >= 2 ? cause : Math.min(50 * 2 ** retries, 500)),
    },
  });
  // node-redis emits 'error' on connection problems; without a listener Node would crash the process.
  client.on('error', () => {});
  await client.connect();
  connected = true;
  return client as unknown as RedisClientLike;
}

/** Escapes glob characters so a namespace matches itself in SCAN MATCH. */
export function escapeRedisGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

// Deletes the lease only while it is still the caller's: a holder whose lease expired and was taken must not
// release the new holder's.
const RELEASE_LEASE =
  "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/**
 * A key-value store in Redis (through `@redis/client`, installed separately). TTLs are Redis's own (`PX`), so
 * expired keys vanish without a sweeper; `clear()` removes only this namespace's keys. Every operation has a
 * deadline (`deadlineMs`, 1.5 s): a Redis that is down, unreachable or stalled rejects with `StoreUnavailableError`.
 *
 * Leases ({@link LeaseStore}) are keys `<prefix>lease:<namespace>:<key>` set with `SET NX PX` and released by a
 * compare-and-delete script, so they expire on the Redis clock.
 *
 * @example
 * ```ts
 * import { redisStore, TokenStorage } from 'gatehouse/storage';
 *
 * const storage = new TokenStorage(redisStore('redis://localhost:6379', { namespace: 'mcp-tokens' }));
 * ```
 */
export function redisStore(url: string, options: RedisStoreOptions = {}): GatehouseStore & LeaseStore {
  const namespace = checkNamespace(options.namespace ?? 'default');
  const prefix = `${options.prefix ?? 'gatehouse:kv:'}${namespace}:`;
  const leasePrefix = `${options.prefix ?? 'gatehouse:kv:'}lease:${namespace}:`;
  let opened: Promise<RedisClientLike> | undefined;
  const client = (): Promise<RedisClientLike> => {
    opened ??= (options.client ? Promise.resolve(options.client) : connectRedis(url)).catch((error: unknown) => {
      opened = undefined;
      throw error;
    });
    return opened;
  };
  // Each command (and the connection it waits for) under the deadline: an outage is an error, never a hang.
  const run = deadlined(
    'redis',
    client,
    options.deadlineMs ?? STORE_DEADLINE_MS,
    options.client ? undefined : () => loadOptional('@redis/client', 'Redis', () => import('@redis/client')),
  );

  return brand<GatehouseStore & LeaseStore>({
    kind: 'redis',
    async get(key) {
      const raw = await run((c) => c.get(prefix + key));
      return typeof raw === 'string' ? JSON.parse(raw) : undefined;
    },
    async set(key, value, ttlMs) {
      const json = toJson(value);
      await run((c) => c.set(prefix + key, json, isTtl(ttlMs) ? { PX: Math.ceil(ttlMs) } : undefined));
    },
    async delete(key) {
      return Number(await run((c) => c.del(prefix + key))) > 0;
    },
    async clear() {
      let cursor = '0';
      do {
        const from = cursor;
        const page = await run((c) => c.scan(from, { MATCH: `${escapeRedisGlob(prefix)}*`, COUNT: 500 }));
        cursor = String(page.cursor);
        if (page.keys.length > 0) await run((c) => c.del(page.keys));
      } while (cursor !== '0');
    },
    async acquireLease(key, ttlMs, owner) {
      const answer = await run((c) => c.set(leasePrefix + key, owner, { NX: true, PX: leaseTtl(ttlMs) }));
      return answer === 'OK';
    },
    async releaseLease(key, owner) {
      const deleted = await run((c) => c.eval(RELEASE_LEASE, { keys: [leasePrefix + key], arguments: [owner] }));
      return Number(deleted) > 0;
    },
    async close() {
      const c = opened;
      opened = undefined;
      if (c && !options.client) {
        const connected = await c;
        await (connected.close ?? connected.quit)?.call(connected);
      }
    },
  });
}

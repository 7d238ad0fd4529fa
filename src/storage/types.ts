import { StorageConfigError, StorageDependencyError } from './errors.js';

/**
 * The one seam every store plugs into. A Keyv 5 or Keyv 6 instance satisfies it as it is; so does every store
 * Gatehouse ships. Values are JSON-compatible data; `ttlMs` is a lifetime in milliseconds (none when omitted).
 *
 * @example
 * ```ts
 * import Keyv from 'keyv';
 * import KeyvRedis from '@keyv/redis';
 * import { TokenStorage } from 'gatehouse/storage';
 *
 * const storage = new TokenStorage(new Keyv(new KeyvRedis('redis://localhost:6379'), { namespace: 'mcp' }));
 * ```
 */
export interface KeyValueStore {
  get(key: string): Promise<unknown>;
  set(key: string, value: unknown, ttlMs?: number): Promise<unknown>;
  delete(key: string): Promise<unknown>;
  clear?(): Promise<void>;
}

/** A store Gatehouse built: the seam plus what every Gatehouse backend guarantees. */
export interface GatehouseStore extends KeyValueStore {
  /** Backend name, e.g. `file` or `redis`. */
  readonly kind: string;
  get(key: string): Promise<unknown>;
  set(key: string, value: unknown, ttlMs?: number): Promise<void>;
  delete(key: string): Promise<boolean>;
  /** Removes every entry of this store's namespace (and nothing else). */
  clear(): Promise<void>;
  /**
   * Read-modify-write of one key. Stores that can lock across processes (the file store) do so; the others
   * serialise within this process. Returning `undefined` from `fn` deletes the entry.
   */
  update?<T>(
    key: string,
    fn: (current: unknown) => T | undefined | Promise<T | undefined>,
    ttlMs?: number,
  ): Promise<T | undefined>;
  /** Releases connections and timers. */
  close(): Promise<void>;
  /** See {@link LeaseStore.acquireLease}; present on stores shared across machines (Redis, PostgreSQL). */
  acquireLease?(key: string, ttlMs: number, owner: string): Promise<boolean>;
  /** See {@link LeaseStore.releaseLease}. */
  releaseLease?(key: string, owner: string): Promise<boolean>;
}

/**
 * The optional lease capability of a store: a short-lived exclusive claim on a name, kept in the store itself, so
 * processes that share the store but no filesystem (several machines on one Redis or PostgreSQL) can take turns.
 * The client takes one around each token refresh, so a rotating refresh token is spent once. Leases live beside
 * the store's entries, never among them (`get` never returns one), and expire on the store's own clock, so a
 * holder that crashed blocks others for at most `ttlMs`.
 *
 * `redisStore()` and `postgresStore()` implement it natively; a store without it (memory, file, a Keyv instance)
 * gets a lock file on this machine instead. A custom store opts in by having both methods (see {@link withLeases}).
 *
 * @example
 * ```ts
 * import { randomUUID } from 'node:crypto';
 * import { redisStore } from 'gatehouse/storage';
 *
 * const store = redisStore('redis://localhost:6379');
 * const owner = randomUUID();
 * if (await store.acquireLease!('nightly-job', 30_000, owner)) {
 *   try {
 *     // ... at most one holder at a time, across every machine sharing the store
 *   } finally {
 *     await store.releaseLease!('nightly-job', owner);
 *   }
 * }
 * ```
 */
export interface LeaseStore {
  /**
   * Takes the lease `key` for `owner` for `ttlMs` milliseconds, atomically: true when it is now `owner`'s, false
   * when another owner holds an unexpired lease on it (even `owner` itself: leases do not nest).
   */
  acquireLease(key: string, ttlMs: number, owner: string): Promise<boolean>;
  /** Gives the lease back, only if `owner` still holds it (it may have expired and been taken); true if it did. */
  releaseLease(key: string, owner: string): Promise<boolean>;
}

/** The store's lease capability, or `undefined` when it has none. */
export function leasesOf(store: unknown): LeaseStore | undefined {
  const candidate = store as Partial<LeaseStore> | null | undefined;
  return typeof candidate?.acquireLease === 'function' && typeof candidate.releaseLease === 'function'
    ? (candidate as LeaseStore)
    : undefined;
}

/**
 * A store whose entries live in `store` and whose leases in `leases`: how a Keyv instance (or any store) shared by
 * several machines opts in to single-flight token refresh. `leases` must be shared by the same processes as
 * `store`, e.g. a `redisStore()` on the same Redis.
 *
 * @example
 * ```ts
 * import Keyv from 'keyv';
 * import KeyvRedis from '@keyv/redis';
 * import { redisStore, TokenStorage, withLeases } from 'gatehouse/storage';
 *
 * const url = 'redis://localhost:6379';
 * const keyv = new Keyv(new KeyvRedis(url), { namespace: 'mcp' });
 * const storage = new TokenStorage(withLeases(keyv, redisStore(url, { namespace: 'mcp' })));
 * ```
 */
export function withLeases(store: StoreInput, leases: LeaseStore): KeyValueStore & LeaseStore {
  const inner = toKeyValueStore(store);
  const wrapped: KeyValueStore & LeaseStore & Partial<Pick<GatehouseStore, 'update' | 'kind' | 'close'>> = {
    get: (key) => inner.get(key),
    set: (key, value, ttlMs) => inner.set(key, value, ttlMs),
    delete: (key) => inner.delete(key),
    clear: async () => {
      await inner.clear?.();
    },
    acquireLease: (key, ttlMs, owner) => leases.acquireLease(key, ttlMs, owner),
    releaseLease: (key, owner) => leases.releaseLease(key, owner),
  };
  const gatehouse = inner as Partial<GatehouseStore>;
  if (typeof gatehouse.update === 'function') wrapped.update = gatehouse.update.bind(inner);
  return brand(wrapped);
}

/**
 * A Keyv storage adapter as Keyv itself sees it (`@keyv/redis`, `@keyv/postgres`, ...): async, stores the value it
 * is given, honours `ttl` in milliseconds where it can.
 */
export interface KeyvStoreAdapterLike {
  get(key: string): Promise<unknown>;
  set(key: string, value: unknown, ttl?: number): Promise<unknown>;
  delete(key: string): Promise<unknown>;
  clear?(): Promise<unknown>;
  namespace?: string | undefined;
}

/** A synchronous Map-like store (a `Map`, an LRU cache, ...). */
export interface MapLike {
  get(key: string): unknown;
  set(key: string, value: unknown): unknown;
  delete(key: string): unknown;
  clear?(): unknown;
}

/** Anything {@link toKeyValueStore} accepts. */
export type StoreInput = KeyValueStore | KeyvStoreAdapterLike | MapLike;

const GATEHOUSE_STORE = Symbol.for('gatehouse.storage.store');

/** Marks a store as built by Gatehouse so {@link toKeyValueStore} passes it through. */
export function brand<T extends object>(store: T): T {
  Object.defineProperty(store, GATEHOUSE_STORE, { value: true });
  return store;
}

/** True when `value` is a Keyv instance (any major version): it has `hooks`, `store` and `getMany`. */
export function isKeyv(value: unknown): value is KeyValueStore {
  return (
    typeof value === 'object' &&
    value !== null &&
    'hooks' in value &&
    'store' in value &&
    typeof (value as { getMany?: unknown }).getMany === 'function' &&
    typeof (value as { get?: unknown }).get === 'function'
  );
}

/**
 * Accepts a Keyv instance, a bare Keyv store adapter or a Map-like store and returns a {@link KeyValueStore}:
 * - a Gatehouse store or a Keyv instance is returned unchanged (Keyv already handles TTL and serialisation);
 * - a `Map` (or anything with synchronous `get`/`set`/`delete`) is wrapped so values are copied as JSON and TTLs
 *   are enforced on read;
 * - any other object with async `get`/`set`/`delete` is treated as a Keyv store adapter: values are stored as a JSON
 *   envelope carrying the expiry, and the TTL is also handed to the adapter so it can purge.
 *
 * @example
 * ```ts
 * import KeyvPostgres from '@keyv/postgres';
 * import { toKeyValueStore } from 'gatehouse/storage';
 *
 * const store = toKeyValueStore(new KeyvPostgres({ uri: 'postgresql://localhost/app' }));
 * ```
 */
export function toKeyValueStore(input: StoreInput): KeyValueStore {
  if (typeof input !== 'object' || input === null) {
    throw new StorageConfigError('A store must be an object with get, set and delete methods.');
  }
  for (const method of ['get', 'set', 'delete'] as const) {
    if (typeof (input as unknown as Record<string, unknown>)[method] !== 'function') {
      throw new StorageConfigError(
        `The store has no ${method}() method.`,
        'Pass a Keyv instance, a Keyv store adapter or a Map.',
      );
    }
  }
  if ((input as { [GATEHOUSE_STORE]?: boolean })[GATEHOUSE_STORE] || isKeyv(input)) return input as KeyValueStore;
  if (input instanceof Map) return fromMap(input);
  return fromKeyvAdapter(input as KeyvStoreAdapterLike);
}

/** Internal envelope for stores that cannot expire entries by themselves. */
interface Envelope {
  v: unknown;
  e?: number;
}

function wrap(value: unknown, ttlMs?: number): string {
  const envelope: Envelope = { v: value };
  if (isTtl(ttlMs)) envelope.e = Date.now() + ttlMs;
  return JSON.stringify(envelope);
}

function unwrap(raw: unknown): { value: unknown; expired: boolean } | undefined {
  if (raw === undefined || raw === null) return undefined;
  const envelope = (typeof raw === 'string' ? JSON.parse(raw) : raw) as Envelope;
  if (typeof envelope !== 'object' || envelope === null || !('v' in envelope)) return { value: raw, expired: false };
  return { value: envelope.v, expired: typeof envelope.e === 'number' && envelope.e <= Date.now() };
}

/** True for a usable TTL: a positive, finite number of milliseconds. */
export function isTtl(ttlMs: unknown): ttlMs is number {
  return typeof ttlMs === 'number' && Number.isFinite(ttlMs) && ttlMs > 0;
}

/** Wraps a synchronous Map-like store. Values are copied through JSON so callers never share references. */
export function fromMap(map: MapLike): KeyValueStore {
  return {
    async get(key) {
      const entry = unwrap(map.get(key));
      if (!entry) return undefined;
      if (entry.expired) {
        map.delete(key);
        return undefined;
      }
      return entry.value;
    },
    async set(key, value, ttlMs) {
      map.set(key, wrap(value, ttlMs));
    },
    async delete(key) {
      return Boolean(map.delete(key));
    },
    async clear() {
      map.clear?.();
    },
  };
}

/** Wraps a bare Keyv store adapter (without a Keyv instance around it). */
export function fromKeyvAdapter(adapter: KeyvStoreAdapterLike): KeyValueStore {
  return {
    async get(key) {
      const entry = unwrap(await adapter.get(key));
      if (!entry) return undefined;
      if (entry.expired) {
        await adapter.delete(key);
        return undefined;
      }
      return entry.value;
    },
    async set(key, value, ttlMs) {
      await adapter.set(key, wrap(value, ttlMs), isTtl(ttlMs) ? ttlMs : undefined);
    },
    async delete(key) {
      return Boolean(await adapter.delete(key));
    },
    async clear() {
      await adapter.clear?.();
    },
  };
}

/** Loads an optional driver package, turning "not installed" into a {@link StorageDependencyError}. */
export async function loadOptional<T>(pkg: string, backend: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new StorageDependencyError(pkg, backend, { cause: error });
    }
    throw error;
  }
}

/** A lease's lifetime in whole milliseconds; a lease must expire, so anything but a positive number is refused. */
export function leaseTtl(ttlMs: number): number {
  if (!isTtl(ttlMs)) throw new StorageConfigError(`A lease needs a positive lifetime in ms, got ${String(ttlMs)}.`);
  return Math.ceil(ttlMs);
}

/** Namespaces may be any non-empty string without control characters; they prefix keys as `namespace:key`. */
export function checkNamespace(namespace: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point.
  if (typeof namespace !== 'string' || namespace.length === 0 || /[\u0000-\u001f]/.test(namespace)) {
    throw new StorageConfigError(`Invalid namespace ${JSON.stringify(namespace)}.`, 'Use a short printable name.');
  }
  return namespace;
}

/** Serialises one key at a time within this process (a promise chain per key). */
export class KeyedMutex {
  readonly #tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    const result = previous.then(fn, fn);
    const tail = result.catch(() => undefined);
    this.#tails.set(key, tail);
    try {
      return await result;
    } finally {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }
}

/** JSON round trip: what every persistent backend does to a value, applied by the in-memory ones too. */
export function toJson(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw new StorageConfigError('Only JSON-serialisable values can be stored.');
  return text;
}

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

import { brand, checkNamespace, type GatehouseStore, isTtl, KeyedMutex, toJson } from './types.js';

/** Options of {@link memoryStore}. */
export interface MemoryStoreOptions {
  /** Entries of one namespace are invisible to the others sharing the same `map`. Default `default`. */
  namespace?: string;
  /** Share one backing map between several stores (e.g. namespaces). Default: a new map. */
  map?: Map<string, MemoryEntry>;
}

/** What {@link memoryStore} keeps per key: the value as JSON text and an absolute expiry in ms. */
export interface MemoryEntry {
  json: string;
  expiresAt: number | undefined;
}

/**
 * An in-process store. Nothing survives a restart; values are copied as JSON so callers never share references.
 *
 * @example
 * ```ts
 * import { memoryStore } from 'gatehouse/storage';
 *
 * const store = memoryStore();
 * await store.set('greeting', { hello: 'world' }, 60_000);
 * await store.get('greeting'); // { hello: 'world' }
 * ```
 */
export function memoryStore(options: MemoryStoreOptions = {}): GatehouseStore {
  const map = options.map ?? new Map<string, MemoryEntry>();
  const prefix = `${checkNamespace(options.namespace ?? 'default')}:`;
  const mutex = new KeyedMutex();
  let writes = 0;

  const read = (key: string): unknown => {
    const entry = map.get(prefix + key);
    if (!entry) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      map.delete(prefix + key);
      return undefined;
    }
    return JSON.parse(entry.json);
  };
  const write = (key: string, value: unknown, ttlMs?: number): void => {
    map.set(prefix + key, { json: toJson(value), expiresAt: isTtl(ttlMs) ? Date.now() + ttlMs : undefined });
    // Purge expired entries now and then so an idle map does not grow without bound.
    if (++writes % 256 === 0) {
      const now = Date.now();
      for (const [k, entry] of map) if (entry.expiresAt !== undefined && entry.expiresAt <= now) map.delete(k);
    }
  };

  return brand<GatehouseStore>({
    kind: 'memory',
    async get(key) {
      return read(key);
    },
    async set(key, value, ttlMs) {
      write(key, value, ttlMs);
    },
    async delete(key) {
      return map.delete(prefix + key);
    },
    async clear() {
      for (const key of [...map.keys()]) if (key.startsWith(prefix)) map.delete(key);
    },
    update(key, fn, ttlMs) {
      return mutex.run(key, async () => {
        const next = await fn(read(key));
        if (next === undefined) map.delete(prefix + key);
        else write(key, next, ttlMs);
        return next;
      });
    },
    async close() {},
  });
}

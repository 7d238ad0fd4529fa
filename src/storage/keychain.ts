import { KeychainUnavailableError, StorageError } from './errors.js';
import { brand, type GatehouseStore, isTtl, KeyedMutex, loadOptional, toJson } from './types.js';

/** Options of {@link keychainStore}. */
export interface KeychainStoreOptions {
  /** The keychain "service" every entry is filed under. Default `gatehouse`. */
  service?: string;
  /** Appended to the service as `service/namespace`. */
  namespace?: string;
}

type Keyring = typeof import('@napi-rs/keyring');

// Messages of keyring-rs's NoStorageAccess / PlatformFailure errors: no Secret Service, locked keychain, no D-Bus.
const UNAVAILABLE =
  /platform (secure )?storage|no storage access|secret service|d-?bus|org\.freedesktop|locked|no such interface/i;

function translate(error: unknown, service: string): Error {
  const message = error instanceof Error ? error.message : String(error);
  if (UNAVAILABLE.test(message)) {
    return new KeychainUnavailableError(`The OS keychain is not available (${message}).`, { cause: error });
  }
  return new StorageError(`Keychain operation on "${service}" failed: ${message}`, {
    code: 'ERR_STORAGE_KEYCHAIN',
    cause: error,
  });
}

/**
 * Stores each value as one entry of the OS keychain, through `@napi-rs/keyring` (installed separately): macOS
 * Keychain, Windows Credential Manager, or the Secret Service on Linux (GNOME Keyring, KWallet, KeePassXC). Where no
 * keychain service runs, every operation rejects with {@link KeychainUnavailableError}.
 *
 * Windows limits a credential to 2,560 bytes: large token sets may not fit there; use an encrypted file store.
 *
 * @example
 * ```ts
 * import { keychainStore, TokenStorage } from 'gatehouse/storage';
 *
 * const storage = new TokenStorage(keychainStore({ service: 'my-mcp-client' }));
 * ```
 */
export function keychainStore(options: KeychainStoreOptions = {}): GatehouseStore {
  const service = options.namespace
    ? `${options.service ?? 'gatehouse'}/${options.namespace}`
    : (options.service ?? 'gatehouse');
  const mutex = new KeyedMutex();
  let loaded: Promise<Keyring> | undefined;
  const keyring = (): Promise<Keyring> => {
    loaded ??= loadOptional('@napi-rs/keyring', 'keychain', () => import('@napi-rs/keyring'));
    return loaded;
  };
  // One keychain operation at a time: gnome-keyring was seen losing items when many were created at once, and a
  // desktop keychain is never a hot path.
  let queue: Promise<unknown> = Promise.resolve();
  const call = <T>(fn: (k: Keyring) => Promise<T>): Promise<T> => {
    const run = async () => {
      const k = await keyring();
      try {
        return await fn(k);
      } catch (error) {
        throw translate(error, service);
      }
    };
    const result = queue.then(run, run);
    queue = result.catch(() => undefined);
    return result;
  };

  const read = (key: string) =>
    call(async (k) => {
      const raw = await new k.AsyncEntry(service, key).getPassword();
      if (raw === null || raw === undefined) return undefined;
      const envelope = JSON.parse(raw) as { v: unknown; e?: number };
      if (typeof envelope.e === 'number' && envelope.e <= Date.now()) {
        await new k.AsyncEntry(service, key).deletePassword();
        return undefined;
      }
      return envelope.v;
    });
  const write = (key: string, value: unknown, ttlMs?: number) =>
    call(async (k) => {
      const envelope = `{"v":${toJson(value)}${isTtl(ttlMs) ? `,"e":${Date.now() + ttlMs}` : ''}}`;
      await new k.AsyncEntry(service, key).setPassword(envelope);
    });
  const remove = (key: string) => call(async (k) => new k.AsyncEntry(service, key).deletePassword());

  return brand<GatehouseStore>({
    kind: 'keychain',
    get: read,
    set: write,
    delete: remove,
    async clear() {
      const credentials = await call((k) => k.findCredentialsAsync(service));
      for (const { account } of credentials) await remove(account);
    },
    update(key, fn, ttlMs) {
      return mutex.run(key, async () => {
        const next = await fn(await read(key));
        if (next === undefined) await remove(key);
        else await write(key, next, ttlMs);
        return next;
      });
    },
    async close() {},
  });
}

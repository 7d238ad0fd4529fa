import { GatehouseError } from '../oauth/errors.js';

/**
 * Base class of every storage error. `code` starts with `ERR_STORAGE_`.
 *
 * @example
 * ```ts
 * import { StorageError } from 'gatehouse/storage';
 *
 * try {
 *   await store.get('key');
 * } catch (error) {
 *   if (error instanceof StorageError) console.error(error.code, error.hint);
 * }
 * ```
 */
export class StorageError extends GatehouseError {}

/**
 * An encrypted value could not be decrypted: wrong key, tampered bytes, or a value that was never encrypted.
 * Thrown by {@link encryptedStore} unless it was created with `onDecryptionError: 'undefined'`.
 */
export class DecryptionError extends StorageError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, {
      code: 'ERR_STORAGE_DECRYPTION',
      hint: 'Check that the encryption key (or passphrase and salt) is the one the value was written with; keep old keys in `keys` while rotating.',
      cause: options.cause,
    });
  }
}

/** The operating system has no usable keychain (e.g. Linux without a running Secret Service). */
export class KeychainUnavailableError extends StorageError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, {
      code: 'ERR_STORAGE_KEYCHAIN_UNAVAILABLE',
      hint:
        process.platform === 'linux'
          ? 'Start a Secret Service provider (gnome-keyring or KeePassXC) in a D-Bus session, or use fileStore() with encryptedStore() instead.'
          : 'Unlock the system keychain, or use fileStore() with encryptedStore() instead.',
      cause: options.cause,
    });
  }
}

/** An optional driver package (`pg`, `better-sqlite3`, ...) needed by the chosen backend is not installed. */
export class StorageDependencyError extends StorageError {
  constructor(pkg: string, backend: string, options: { cause?: unknown; message?: string; hint?: string } = {}) {
    super(options.message ?? `The ${backend} backend needs the package "${pkg}", which could not be loaded.`, {
      code: 'ERR_STORAGE_DEPENDENCY',
      hint: options.hint ?? `Install it next to gatehouse: npm install ${pkg}`,
      cause: options.cause,
    });
  }
}

/** Another process held a file-store lock for longer than `lockTimeoutMs`. */
export class LockTimeoutError extends StorageError {
  constructor(path: string, timeoutMs: number) {
    super(`Timed out after ${timeoutMs} ms waiting for the lock ${path}.`, {
      code: 'ERR_STORAGE_LOCK_TIMEOUT',
      hint: 'Another Gatehouse process is writing the same entry; if none is running, delete the .lock file.',
    });
  }
}

/** Another holder kept a lease (see `LeaseStore`) for longer than the caller would wait. */
export class LeaseTimeoutError extends StorageError {
  constructor(key: string, waitedMs: number) {
    super(`Timed out after ${waitedMs} ms waiting for the lease on ${key}.`, {
      code: 'ERR_STORAGE_LEASE_TIMEOUT',
      hint: 'Other processes sharing the store keep taking it in turn; retry, or give the lease a longer lifetime.',
    });
  }
}

/** A stored record is unreadable (not JSON, wrong shape) or was written by a newer, unknown format version. */
export class RecordFormatError extends StorageError {
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, {
      code: 'ERR_STORAGE_RECORD_FORMAT',
      hint: options.hint ?? 'The stored record is damaged; delete it and sign in again.',
      cause: options.cause,
    });
  }
}

/** Invalid configuration: a malformed key, a missing salt, an unusable namespace, ... */
export class StorageConfigError extends StorageError {
  constructor(message: string, hint?: string) {
    super(message, hint === undefined ? { code: 'ERR_STORAGE_CONFIG' } : { code: 'ERR_STORAGE_CONFIG', hint });
  }
}

/**
 * The backing store (Redis, PostgreSQL, …) did not answer: refused, dropped, or slower than the deadline. Transient:
 * retry after `retryAfterSeconds`. The authorization server answers `503 temporarily_unavailable` for it.
 *
 * @example
 * ```ts
 * import { StoreUnavailableError } from 'gatehouse/storage';
 *
 * try {
 *   await adapter('Client').find('some-client');
 * } catch (error) {
 *   if (error instanceof StoreUnavailableError) console.error(`${error.message}; retry in ${error.retryAfterSeconds} s`);
 * }
 * ```
 */
export class StoreUnavailableError extends StorageError {
  readonly retryAfterSeconds: number;
  constructor(message: string, options: { cause?: unknown; retryAfterSeconds?: number } = {}) {
    super(message, {
      code: 'ERR_STORAGE_UNAVAILABLE',
      hint: 'Check that the store is running and reachable; requests succeed again as soon as it is back.',
      cause: options.cause,
    });
    this.retryAfterSeconds = options.retryAfterSeconds ?? 1;
  }
}

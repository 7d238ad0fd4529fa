import { createHash, randomBytes, scrypt as scryptCallback } from 'node:crypto';
import { promisify } from 'node:util';
import { CompactEncrypt, compactDecrypt, decodeProtectedHeader } from 'jose';
import { DecryptionError, StorageConfigError } from './errors.js';
import { brand, type GatehouseStore, type KeyValueStore, type StoreInput, toKeyValueStore } from './types.js';

const scrypt = promisify(scryptCallback) as (
  password: string | Uint8Array,
  salt: string | Uint8Array,
  keylen: number,
  options: { N: number; r: number; p: number; maxmem: number },
) => Promise<Buffer>;

/** A 256-bit key as bytes, or as base64url/base64 text of 32 bytes. */
export type EncryptionKey = Uint8Array | string;

/** A key derived with scrypt from a passphrase and a salt (at least 16 bytes; store it next to the config). */
export interface PassphraseKey {
  passphrase: string;
  salt: string | Uint8Array;
}

/** Options of {@link encryptedStore}. Give `keys`, or `passphrase` and `salt`. */
export interface EncryptedStoreOptions {
  /** Newest first: values are encrypted with the first key and decrypted with whichever matches. */
  keys?: ReadonlyArray<EncryptionKey | PassphraseKey>;
  passphrase?: string;
  salt?: string | Uint8Array;
  /** What a read does with a value it cannot decrypt. Default `throw` (a {@link DecryptionError}). */
  onDecryptionError?: 'throw' | 'undefined';
}

// OWASP's scrypt recommendation (N=2^17, r=8, p=1): ~128 MiB and a few hundred ms, paid once per store.
const SCRYPT = { N: 2 ** 17, r: 8, p: 1, maxmem: 256 * 1024 * 1024 };

/**
 * Derives a 256-bit key from a passphrase with scrypt (N=2^17, r=8, p=1).
 *
 * @example
 * ```ts
 * import { deriveKey } from 'gatehouse/storage';
 *
 * const key = await deriveKey(process.env.TOKEN_PASSPHRASE!, 'c2FsdC1mb3ItbXktYXBw'); // Uint8Array(32)
 * ```
 */
export async function deriveKey(passphrase: string, salt: string | Uint8Array): Promise<Uint8Array> {
  const saltBytes = typeof salt === 'string' ? Buffer.from(salt, 'utf8') : salt;
  if (typeof passphrase !== 'string' || passphrase.length === 0)
    throw new StorageConfigError('The passphrase is empty.');
  if (saltBytes.length < 16) {
    throw new StorageConfigError(
      'The salt must be at least 16 bytes.',
      'Generate one with generateEncryptionKey() and keep it.',
    );
  }
  return new Uint8Array(await scrypt(passphrase.normalize('NFC'), saltBytes, 32, SCRYPT));
}

/**
 * A new random 256-bit key as base64url text, for `encryptedStore(inner, { keys: [key] })`.
 *
 * @example
 * ```ts
 * import { generateEncryptionKey } from 'gatehouse/storage';
 *
 * console.log(generateEncryptionKey()); // e.g. 'q0c3...'; keep it in a secret manager
 * ```
 */
export function generateEncryptionKey(): string {
  return randomBytes(32).toString('base64url');
}

function keyBytes(key: EncryptionKey): Uint8Array {
  if (key instanceof Uint8Array) {
    if (key.length !== 32) throw new StorageConfigError(`An encryption key must be 32 bytes, got ${key.length}.`);
    return key;
  }
  if (typeof key === 'string' && /^[A-Za-z0-9+/_-]{43}=?$/.test(key)) {
    const bytes = Buffer.from(key.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, ''), 'base64url');
    if (bytes.length === 32) return new Uint8Array(bytes);
  }
  throw new StorageConfigError(
    'An encryption key must be 32 bytes or their base64url/base64 text.',
    'Generate one with generateEncryptionKey(), or pass { passphrase, salt }.',
  );
}

interface ResolvedKey {
  kid: string;
  bytes: Uint8Array;
}

function resolvedKey(bytes: Uint8Array): ResolvedKey {
  // A short fingerprint in the header picks the right key without trial decryption; it reveals nothing usable.
  const kid = createHash('sha256').update('gatehouse-kid').update(bytes).digest('base64url').slice(0, 16);
  return { kid, bytes };
}

/**
 * Wraps any store so that values are encrypted before they reach it: JWE compact serialisation with `dir` and
 * `A256GCM` (RFC 7516), built with `jose`. The plaintext never reaches the inner store; the key name is bound inside
 * the ciphertext, so a value copied to another key does not decrypt. Keys rotate: list the new key first and keep
 * the old ones until every value has been rewritten.
 *
 * A wrong key, tampered bytes, or a value that was never encrypted raise {@link DecryptionError} (or read as
 * `undefined` with `onDecryptionError: 'undefined'`).
 *
 * @example
 * ```ts
 * import { encryptedStore, fileStore, TokenStorage } from 'gatehouse/storage';
 *
 * const store = encryptedStore(fileStore(), { keys: [process.env.TOKEN_KEY!, process.env.TOKEN_KEY_OLD!] });
 * const storage = new TokenStorage(store);
 *
 * // or from a passphrase (scrypt) and a salt of at least 16 bytes:
 * const fromPassphrase = encryptedStore(fileStore(), { passphrase: 'correct horse battery staple', salt: 'gatehouse/my-app/v1' });
 * ```
 */
export function encryptedStore(inner: StoreInput, options: EncryptedStoreOptions): GatehouseStore {
  const store: KeyValueStore = toKeyValueStore(inner);
  const specs: Array<EncryptionKey | PassphraseKey> = [...(options.keys ?? [])];
  if (options.passphrase !== undefined || options.salt !== undefined) {
    if (options.passphrase === undefined || options.salt === undefined) {
      throw new StorageConfigError('A passphrase needs a salt, and a salt needs a passphrase.');
    }
    specs.unshift({ passphrase: options.passphrase, salt: options.salt });
  }
  if (specs.length === 0) throw new StorageConfigError('encryptedStore() needs at least one key or a passphrase.');
  // Validate raw keys now so a typo fails at startup, not at the first write.
  for (const spec of specs) if (!isPassphrase(spec)) keyBytes(spec);
  const lenient = options.onDecryptionError === 'undefined';

  let keys: Promise<ResolvedKey[]> | undefined;
  const loadKeys = (): Promise<ResolvedKey[]> => {
    keys ??= Promise.all(
      specs.map(async (spec) =>
        resolvedKey(isPassphrase(spec) ? await deriveKey(spec.passphrase, spec.salt) : keyBytes(spec)),
      ),
    );
    return keys;
  };

  const decrypt = async (key: string, stored: unknown): Promise<unknown> => {
    if (typeof stored !== 'string') throw new DecryptionError(`The value of "${key}" is not encrypted.`);
    let kid: unknown;
    try {
      kid = decodeProtectedHeader(stored).kid;
    } catch (error) {
      throw new DecryptionError(`The value of "${key}" is not an encrypted value.`, { cause: error });
    }
    const all = await loadKeys();
    const ordered = [...all.filter((k) => k.kid === kid), ...all.filter((k) => k.kid !== kid)];
    let lastError: unknown;
    for (const candidate of ordered) {
      try {
        const { plaintext } = await compactDecrypt(stored, candidate.bytes, {
          keyManagementAlgorithms: ['dir'],
          contentEncryptionAlgorithms: ['A256GCM'],
        });
        const envelope = JSON.parse(new TextDecoder().decode(plaintext)) as { k?: unknown; v?: unknown };
        if (envelope.k !== key)
          throw new DecryptionError(`The value stored under "${key}" was written for another key.`);
        return envelope.v;
      } catch (error) {
        lastError = error;
      }
    }
    if (lastError instanceof DecryptionError) throw lastError;
    throw new DecryptionError(`The value of "${key}" could not be decrypted with any configured key.`, {
      cause: lastError,
    });
  };

  const encrypt = async (key: string, value: unknown): Promise<string> => {
    const [current] = await loadKeys();
    const plaintext = new TextEncoder().encode(JSON.stringify({ k: key, v: value }));
    return new CompactEncrypt(plaintext)
      .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid: current!.kid })
      .encrypt(current!.bytes);
  };
  const read = async (key: string, stored: unknown): Promise<unknown> => {
    if (stored === undefined || stored === null) return undefined;
    try {
      return await decrypt(key, stored);
    } catch (error) {
      if (lenient && error instanceof DecryptionError) return undefined;
      throw error;
    }
  };
  const innerUpdate = (store as Partial<GatehouseStore>).update?.bind(store);

  return brand<GatehouseStore>({
    // Locking stores keep their cross-process read-modify-write through the encryption layer.
    ...(innerUpdate && {
      async update<T>(key: string, fn: (current: unknown) => T | undefined | Promise<T | undefined>, ttlMs?: number) {
        let next: T | undefined;
        await innerUpdate(
          key,
          async (raw) => {
            next = await fn(await read(key, raw));
            return next === undefined ? undefined : encrypt(key, next);
          },
          ttlMs,
        );
        return next;
      },
    }),
    kind: `encrypted(${(store as Partial<GatehouseStore>).kind ?? 'keyv'})`,
    async get(key) {
      return read(key, await store.get(key));
    },
    async set(key, value, ttlMs) {
      await store.set(key, await encrypt(key, value), ttlMs);
    },
    async delete(key) {
      return Boolean(await store.delete(key));
    },
    async clear() {
      await store.clear?.();
    },
    async close() {
      await (store as Partial<GatehouseStore>).close?.();
    },
  });
}

function isPassphrase(spec: EncryptionKey | PassphraseKey): spec is PassphraseKey {
  return typeof spec === 'object' && !(spec instanceof Uint8Array);
}

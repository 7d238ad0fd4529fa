import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createSecretKey,
  type KeyObject,
  randomBytes,
  scrypt as scryptCallback,
} from 'node:crypto';
import { promisify } from 'node:util';
import { DecryptionError, StorageConfigError } from './errors.js';
import { brand, type GatehouseStore, type KeyValueStore, leasesOf, type StoreInput, toKeyValueStore } from './types.js';

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

/** A key ready to seal with: its bytes and the short fingerprint (`kid`) written into every value it seals. */
export interface SealingKey {
  kid: string;
  bytes: Uint8Array;
}

/** What sealing with a key reuses from call to call: its KeyObject and its JWE protected header. */
interface Prepared {
  secret: KeyObject;
  header: string;
  aad: Buffer;
}

// Built once per key, not per value: the authorization server seals and opens several values per token request.
const prepared = new WeakMap<SealingKey, Prepared>();

function preparedFor(key: SealingKey): Prepared {
  let ready = prepared.get(key);
  if (!ready) {
    const header = headerFor(key);
    ready = { secret: createSecretKey(key.bytes), header, aad: Buffer.from(header, 'ascii') };
    prepared.set(key, ready);
  }
  return ready;
}

/** The JWE protected header of values sealed with `key`, base64url-encoded (also their additional data). */
const headerFor = (key: SealingKey): string =>
  Buffer.from(JSON.stringify({ alg: 'dir', enc: 'A256GCM', kid: key.kid })).toString('base64url');

function resolvedKey(bytes: Uint8Array): SealingKey {
  // A short fingerprint in the header picks the right key without trial decryption; it reveals nothing usable.
  const kid = createHash('sha256').update('gatehouse-kid').update(bytes).digest('base64url').slice(0, 16);
  return { kid, bytes };
}

/** Resolves a raw key (32 bytes or their base64url/base64 text); throws {@link StorageConfigError} if malformed. */
export function sealingKey(key: EncryptionKey): SealingKey {
  return resolvedKey(keyBytes(key));
}

// The one sealing format of Gatehouse: JWE compact serialisation, `dir` + `A256GCM` (RFC 7516), the plaintext an
// envelope `{ k: name, v: value }` so that a value copied under another name does not open. Built on node:crypto
// synchronously (any JOSE library can still read it): the authorization server seals on every store write.
const B64 = 'base64url';

/** Seals `value` under `name` with `key`: a JWE compact string (a fresh random 96-bit nonce every time). */
// Nonces are cut from a block of CSPRNG output drawn 256 at a time: one `randomBytes` call costs as much as sealing
// a small value, and an authorization server seals several values per token request. Each nonce is used once.
const NONCE_BYTES = 12;
const NONCES_PER_DRAW = 256;
let nonces = Buffer.alloc(0);
let nextNonce = 0;

function freshNonce(): Buffer {
  if (nextNonce + NONCE_BYTES > nonces.length) {
    nonces = randomBytes(NONCE_BYTES * NONCES_PER_DRAW);
    nextNonce = 0;
  }
  const nonce = nonces.subarray(nextNonce, nextNonce + NONCE_BYTES);
  nextNonce += NONCE_BYTES;
  return nonce;
}

export function sealValue(key: SealingKey, name: string, value: unknown): string {
  const { secret, header, aad } = preparedFor(key);
  return sealed(secret, header, aad, name, value);
}

/**
 * {@link sealValue} with a key used for this one value (a key derived from a token): the same format, without
 * building a KeyObject and remembering it, which costs more than the sealing when the key never comes back.
 */
export function sealValueOnce(key: SealingKey, name: string, value: unknown): string {
  const header = headerFor(key);
  return sealed(key.bytes, header, Buffer.from(header, 'ascii'), name, value);
}

function sealed(secret: KeyObject | Uint8Array, header: string, aad: Buffer, name: string, value: unknown): string {
  const iv = freshNonce();
  const cipher = createCipheriv('aes-256-gcm', secret, iv);
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(JSON.stringify({ k: name, v: value }), 'utf8'), cipher.final()]);
  return `${header}..${iv.toString(B64)}.${ciphertext.toString(B64)}.${cipher.getAuthTag().toString(B64)}`;
}

/** The `kid` a sealed value names, or undefined when it is not a sealed value at all. */
export function sealedKid(sealed: string): string | undefined {
  const dot = sealed.indexOf('.');
  if (dot <= 0) return undefined;
  const encoded = sealed.slice(0, dot);
  const known = kids.get(encoded);
  if (known !== undefined) return known;
  let kid: string | undefined;
  try {
    const header = JSON.parse(Buffer.from(encoded, B64).toString('utf8')) as { kid?: unknown };
    kid = typeof header.kid === 'string' ? header.kid : '';
  } catch {
    return undefined;
  }
  // A store holds values of a handful of keys, hence of a handful of headers: remember some, parse the rest.
  if (kids.size < 64) kids.set(encoded, kid);
  return kid;
}

const kids = new Map<string, string>();

/** Opens a value sealed under `name` with whichever of `keys` matches; throws {@link DecryptionError}. */
export function openValue(keys: readonly SealingKey[], name: string, sealed: unknown): unknown {
  if (typeof sealed !== 'string') throw new DecryptionError(`The value of "${name}" is not encrypted.`);
  const parts = sealed.split('.');
  const kid = sealedKid(sealed);
  if (parts.length !== 5 || kid === undefined || parts[1] !== '') {
    throw new DecryptionError(`The value of "${name}" is not an encrypted value.`);
  }
  const [header, , iv, ciphertext, tag] = parts as [string, string, string, string, string];
  // Mostly one key (an authorization server opens several values per token request): no reordering to do.
  const ordered =
    keys.length === 1 ? keys : [...keys.filter((k) => k.kid === kid), ...keys.filter((k) => k.kid !== kid)];
  let lastError: unknown;
  for (const candidate of ordered) {
    try {
      const ready = preparedFor(candidate);
      // authTagLength: without it Node accepts a tag cut to its first 4 bytes, which a store writer could forge.
      const decipher = createDecipheriv('aes-256-gcm', ready.secret, Buffer.from(iv, B64), { authTagLength: 16 });
      decipher.setAAD(header === ready.header ? ready.aad : Buffer.from(header, 'ascii'));
      decipher.setAuthTag(Buffer.from(tag, B64));
      const plaintext = decipher.update(Buffer.from(ciphertext, B64));
      decipher.final(); // AES-GCM gives no more bytes here; it checks the tag (throws when it does not match)
      const envelope = JSON.parse(plaintext.toString('utf8')) as { k?: unknown; v?: unknown };
      if (envelope.k !== name) {
        throw new DecryptionError(`The value stored under "${name}" was written for another key.`);
      }
      return envelope.v;
    } catch (error) {
      lastError = error;
    }
  }
  if (lastError instanceof DecryptionError) throw lastError;
  throw new DecryptionError(
    `The value of "${name}" could not be decrypted with any configured key${kid ? ` (it names key ${kid})` : ''}.`,
    { cause: lastError },
  );
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

  let keys: Promise<SealingKey[]> | undefined;
  const loadKeys = (): Promise<SealingKey[]> => {
    keys ??= Promise.all(
      specs.map(async (spec) =>
        resolvedKey(isPassphrase(spec) ? await deriveKey(spec.passphrase, spec.salt) : keyBytes(spec)),
      ),
    );
    return keys;
  };

  const decrypt = async (key: string, stored: unknown): Promise<unknown> => openValue(await loadKeys(), key, stored);
  const encrypt = async (key: string, value: unknown): Promise<string> => sealValue((await loadKeys())[0]!, key, value);
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
  const leases = leasesOf(store);

  return brand<GatehouseStore>({
    // Leases name an entry but hold no value: nothing to encrypt, and the inner store's atomicity is what counts.
    ...(leases && {
      acquireLease: (key: string, ttlMs: number, owner: string) => leases.acquireLease(key, ttlMs, owner),
      releaseLease: (key: string, owner: string) => leases.releaseLease(key, owner),
    }),
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

import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { encryptedStore, generateEncryptionKey } from './encrypted.js';
import { KeychainUnavailableError, StorageError } from './errors.js';
import { defaultDataDirectory, fileStore } from './file.js';
import { keychainStore } from './keychain.js';
import { TOKEN_RECORD_VERSION } from './tokens.js';
import { brand, type GatehouseStore } from './types.js';

/** The environment variable naming the default token store's directory (the CLI's `--store` default). */
export const TOKEN_STORE_ENV = 'GATEHOUSE_STORE';

/** Name of the key file in the store directory, used where no OS keychain answers. */
export const TOKEN_KEY_FILE = 'token-store.key';

/** Options of {@link openDefaultTokenStore}. */
export interface DefaultTokenStoreOptions {
  /** The store directory. Default: `$GATEHOUSE_STORE`, else the platform data directory. */
  directory?: string;
  /**
   * Keep the encryption key in the OS keychain when one answers. Default `true`, unless the environment says
   * `GATEHOUSE_KEYCHAIN=0` (then a 0600 key file). Decided once per store, when it is created.
   */
  keychain?: boolean;
  /** Environment read for the defaults. Default `process.env`. */
  env?: NodeJS.ProcessEnv;
}

/** The default token store, opened, and where its secrets live. */
export interface DefaultTokenStore {
  store: GatehouseStore;
  /** The directory of the (encrypted) record files. */
  directory: string;
  /** Where the encryption key is kept: the OS keychain, or the 0600 key file at this path. */
  key: { in: 'keychain'; service: string; account: string } | { in: 'file'; path: string };
  /** One line for people: where credentials live. */
  description: string;
}

/** The directory of the default token store: `$GATEHOUSE_STORE` (a path or `file:PATH`), else the data directory. */
export function defaultTokenStoreDirectory(env: NodeJS.ProcessEnv = process.env): string {
  const given = env[TOKEN_STORE_ENV] || undefined;
  if (given === undefined) return defaultDataDirectory(env);
  const path = given.startsWith('file:') ? given.slice(5) : given;
  return isAbsolute(path) ? path : resolve(path);
}

const KEYCHAIN_SERVICE = 'gatehouse';

/** Creates `path` with `text` only if it does not exist yet (never visible half-written); false if it existed. */
async function createOnce(path: string, text: string): Promise<boolean> {
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
  await writeFile(temporary, text, { mode: 0o600 });
  try {
    await link(temporary, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await unlink(temporary).catch(() => {});
  }
}

const KEYCHAIN_MARK = 'keychain:';

/**
 * The key of a store directory. The first process to open the store decides where the key lives and writes that
 * into `token-store.key`: the key itself (0600), or `keychain:<account>` when the OS keychain answered. Every
 * later process follows that choice, so two processes never encrypt one store with two keys.
 */
async function resolveKey(
  directory: string,
  useKeychain: boolean,
): Promise<DefaultTokenStore['key'] & { value: string }> {
  const path = join(directory, TOKEN_KEY_FILE);
  const account = `token-store-key:${directory}`;
  for (;;) {
    const existing = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    if (existing?.startsWith(KEYCHAIN_MARK)) {
      const named = existing.slice(KEYCHAIN_MARK.length).trim();
      const value = await keychainStore({ service: KEYCHAIN_SERVICE }).get(named);
      if (typeof value !== 'string') {
        throw new KeychainUnavailableError(
          `The key of the token store in ${directory} is in the OS keychain, which does not have it here.`,
        );
      }
      return { in: 'keychain', service: KEYCHAIN_SERVICE, account: named, value };
    }
    if (existing !== undefined) return { in: 'file', path, value: existing.trim() };
    await mkdir(directory, { recursive: true, mode: 0o700 });
    if (useKeychain) {
      try {
        const keychain = keychainStore({ service: KEYCHAIN_SERVICE });
        if (typeof (await keychain.get(account)) !== 'string') await keychain.set(account, generateEncryptionKey());
        await createOnce(path, `${KEYCHAIN_MARK}${account}\n`);
        continue; // read back whatever was decided first
      } catch (error) {
        // No keychain here (no Secret Service, no D-Bus, @napi-rs/keyring not installed): a key file instead.
        if (!(error instanceof StorageError)) throw error;
      }
    }
    await createOnce(path, `${generateEncryptionKey()}\n`);
  }
}

/**
 * Records written by Gatehouse before encryption became the default are plain JSON objects: read them once and
 * write them back encrypted (the encrypted form is always a JWE string).
 */
function migratingPlaintext(encrypted: GatehouseStore, inner: GatehouseStore): GatehouseStore {
  /** The plaintext value when there is one (encrypted on the way, unless a newer Gatehouse wrote it). */
  const migrate = async (key: string): Promise<{ plaintext: unknown } | undefined> => {
    const raw = await inner.get(key);
    if (raw === undefined || raw === null || typeof raw === 'string') return undefined;
    const version = (raw as { version?: unknown }).version;
    // A record of a newer format stays as it is, for the newer Gatehouse that wrote it.
    if (!(typeof version === 'number' && version > TOKEN_RECORD_VERSION)) await encrypted.set(key, raw);
    return { plaintext: raw };
  };
  return brand<GatehouseStore>({
    kind: encrypted.kind,
    async get(key) {
      const migrated = await migrate(key);
      return migrated ? migrated.plaintext : encrypted.get(key);
    },
    set: (key, value, ttlMs) => encrypted.set(key, value, ttlMs),
    delete: (key) => encrypted.delete(key),
    clear: () => encrypted.clear(),
    close: () => encrypted.close(),
    async update(key, fn, ttlMs) {
      const migrated = await migrate(key);
      if (migrated) {
        const version = (migrated.plaintext as { version?: unknown }).version;
        if (typeof version === 'number' && version > TOKEN_RECORD_VERSION) return fn(migrated.plaintext); // refuses it
      }
      // The file store locks across processes, and encryptedStore keeps that lock.
      return encrypted.update!(key, fn, ttlMs);
    },
  });
}

/**
 * Opens the store the `gatehouse` CLI and `Client`'s `auth: 'oauth'` share by default: record files in the data
 * directory (or `$GATEHOUSE_STORE`), each encrypted (JWE, A256GCM) with a key kept in the OS keychain where one
 * answers, otherwise in a `0600` key file beside the records. Plaintext records written by earlier versions are
 * encrypted the first time they are read.
 *
 * @example
 * ```ts
 * import { openDefaultTokenStore, TokenStorage } from 'gatehouse/storage';
 *
 * const { store, description } = await openDefaultTokenStore();
 * console.log(description); // e.g. "encrypted files in ~/.local/share/gatehouse, key in the OS keychain"
 * const storage = new TokenStorage(store);
 * ```
 */
export async function openDefaultTokenStore(options: DefaultTokenStoreOptions = {}): Promise<DefaultTokenStore> {
  const directory = options.directory ?? defaultTokenStoreDirectory(options.env);
  const env = options.env ?? process.env;
  const { value, ...key } = await resolveKey(directory, options.keychain ?? env['GATEHOUSE_KEYCHAIN'] !== '0');
  const files = fileStore({ directory });
  const store = migratingPlaintext(encryptedStore(files, { keys: [value] }), files);
  const where = key.in === 'keychain' ? 'key in the OS keychain' : `key in ${key.path} (mode 0600)`;
  return { store, directory, key, description: `encrypted files in ${directory}, ${where}` };
}

/**
 * {@link openDefaultTokenStore} as a store that opens itself on first use, for places that need a store at once
 * (e.g. `new OAuth({ tokenStorage: defaultTokenStore() })`).
 *
 * @example
 * ```ts
 * import { OAuth } from 'gatehouse/client';
 * import { defaultTokenStore } from 'gatehouse/storage';
 *
 * const oauth = new OAuth({ mcpUrl: 'https://mcp.example.com/mcp', tokenStorage: defaultTokenStore() });
 * ```
 */
export function defaultTokenStore(options: DefaultTokenStoreOptions = {}): GatehouseStore {
  let opened: Promise<GatehouseStore> | undefined;
  const open = () => {
    opened ??= openDefaultTokenStore(options).then((s) => s.store);
    return opened;
  };
  return brand<GatehouseStore>({
    kind: 'default',
    get: async (key) => (await open()).get(key),
    set: async (key, value, ttlMs) => (await open()).set(key, value, ttlMs),
    delete: async (key) => (await open()).delete(key),
    clear: async () => (await open()).clear(),
    update: async (key, fn, ttlMs) => (await open()).update!(key, fn, ttlMs),
    close: async () => {
      if (opened) await (await opened).close();
    },
  });
}

import { readdir, readFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { defaultTokenStore, defaultTokenStoreDirectory, openDefaultTokenStore } from '../storage/default.js';
import { fileStore } from '../storage/file.js';
import { type TokenRecord, TokenStorage } from '../storage/tokens.js';
import type { GatehouseStore } from '../storage/types.js';
import { UsageError } from './command.js';

/** The environment variable that sets the store when `--store` is absent. */
export { TOKEN_STORE_ENV as STORE_ENV } from '../storage/default.js';

/** Prefix of the token records `OAuth` writes (TokenStorage's default). */
const KEY_PREFIX = 'gatehouse:client:';

/** Where the CLI keeps tokens, opened. */
export interface CliStore {
  /** The directory given (or the platform data directory). */
  root: string;
  /** The namespace directory holding the record files. */
  directory: string;
  store: GatehouseStore;
  storage: TokenStorage;
  /** One line for people: where the credentials live and where their encryption key is. */
  describe(): Promise<string>;
}

/**
 * Opens the token store named by `--store DIR` (or `file:DIR`), else `$GATEHOUSE_STORE`, else the platform data
 * directory (`~/.local/share/gatehouse` on Linux): record files encrypted with a key kept in the OS keychain or a
 * 0600 key file (`openDefaultTokenStore`). The same store `Client`'s `auth: 'oauth'` uses, so a token the CLI got is
 * found by library code, and the other way round.
 */
export function openStore(option: string | undefined, env: NodeJS.ProcessEnv = process.env): CliStore {
  const given = option;
  let root = defaultTokenStoreDirectory(env);
  if (given !== undefined) {
    const path = given.startsWith('file:') ? given.slice(5) : given;
    if (path.trim() === '' || /^[a-z][a-z0-9+.-]+:/i.test(path)) {
      throw new UsageError(
        `--store must be a directory (or file:DIR), got ${JSON.stringify(given)}; other backends are for programs, see docs/storage.md`,
      );
    }
    root = isAbsolute(path) ? path : resolve(path);
  }
  const store = defaultTokenStore({ directory: root, env });
  return {
    root,
    directory: fileStore({ directory: root }).directory,
    store,
    storage: new TokenStorage(store),
    describe: async () => (await openDefaultTokenStore({ directory: root, env })).description,
  };
}

/** A stored record as the CLI reads it: the token record plus what `OAuth` keeps beside it. */
export type StoredRecord = TokenRecord & {
  discovery?: {
    authorizationServerUrl?: string;
    authorizationServerMetadata?: { issuer?: string; revocation_endpoint?: string; [key: string]: unknown };
    resourceMetadata?: { resource?: string; [key: string]: unknown };
  };
};

/**
 * Every credential record in the store. Reads the file store's directory: the key-value interface stores have
 * no way to list keys (see the report: a `keys()`/`entries()` on `GatehouseStore` would make this portable).
 */
export async function listRecords(
  cli: CliStore,
  onUnreadable: (file: string, error: unknown) => void = () => {},
): Promise<StoredRecord[]> {
  let names: string[];
  try {
    names = await readdir(cli.directory);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const records: StoredRecord[] = [];
  for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
    let file: { key?: unknown; value?: unknown; expiresAt?: number };
    try {
      file = JSON.parse(await readFile(join(cli.directory, name), 'utf8')) as typeof file;
    } catch {
      continue; // removed meanwhile, or not ours
    }
    if (typeof file.key !== 'string' || !file.key.startsWith(KEY_PREFIX)) continue;
    if (file.expiresAt !== undefined && file.expiresAt <= Date.now()) continue;
    const server = file.key.slice(KEY_PREFIX.length);
    try {
      // Through the storage: it decrypts, and encrypts a plaintext record left by an older version.
      const record = await cli.storage.read(server);
      if (record) records.push(record as StoredRecord);
    } catch (error) {
      // A record a newer Gatehouse wrote, or a damaged one: left untouched, and said so.
      onUnreadable(join(cli.directory, name), error);
    }
  }
  return records;
}

import { RecordFormatError } from './errors.js';
import { memoryStore } from './memory.js';
import { type GatehouseStore, KeyedMutex, type KeyValueStore, type StoreInput, toKeyValueStore } from './types.js';

/** The format version {@link TokenStorage} writes. It lives inside each record, never in a key or a path. */
export const TOKEN_RECORD_VERSION = 2;

/** Tokens as stored: the expiry is absolute (`expires_at`, seconds since the epoch), never only `expires_in`. */
export interface StoredTokens {
  access_token: string;
  token_type: string;
  /** When the access token expires, in seconds since the epoch. Absent when the server did not say. */
  expires_at?: number;
  refresh_token?: string;
  /** When the refresh token expires (from `refresh_token_expires_in`), in seconds since the epoch. */
  refresh_token_expires_at?: number;
  scope?: string;
  id_token?: string;
  [extra: string]: unknown;
}

/** A token endpoint response (RFC 6749 §5.1), as received. */
export interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in?: number | string;
  refresh_token?: string;
  refresh_token_expires_in?: number | string;
  scope?: string;
  id_token?: string;
  [extra: string]: unknown;
}

/** Client registration (RFC 7591 response or pre-registered credentials). */
export interface StoredClientInformation {
  client_id: string;
  client_secret?: string;
  client_id_issued_at?: number;
  /** Seconds since the epoch; 0 means the secret never expires (RFC 7591 §3.2.1). */
  client_secret_expires_at?: number;
  [extra: string]: unknown;
}

/** One record per server: everything the client keeps about it. */
export interface TokenRecord {
  version: typeof TOKEN_RECORD_VERSION;
  /** The server (resource or issuer URL) this record is for, canonicalised. */
  server: string;
  tokens?: StoredTokens;
  client?: StoredClientInformation;
  /** Seconds since the epoch. */
  updated_at: number;
}

/** Options of {@link TokenStorage}. */
export interface TokenStorageOptions {
  /** Prefix of every key. Default `gatehouse:client:`. */
  keyPrefix?: string;
  /** Clock in milliseconds, for tests. */
  now?: () => number;
}

let warnedAboutMemory = false;

/**
 * The client's token storage: one record per server (keyed by its canonical URL) holding tokens with an absolute
 * `expires_at`, the client registration, and the record's own format `version`. Any Keyv instance, Keyv store
 * adapter, Map or Gatehouse store plugs in; without one, tokens live in memory (with a one-time warning).
 *
 * Records are stored without a TTL: an expired access token must not take the refresh token or the registration
 * with it. Older records are migrated on read.
 *
 * @example
 * ```ts
 * import { fileStore, TokenStorage } from 'gatehouse/storage';
 *
 * const storage = new TokenStorage(fileStore());
 * await storage.saveTokens('https://mcp.example.com/mcp', { access_token: 'at', token_type: 'Bearer', expires_in: 3600, refresh_token: 'rt' });
 * const tokens = await storage.getTokens('https://mcp.example.com/mcp'); // { ..., expires_at: 1767225600 }
 * ```
 */
export class TokenStorage {
  readonly store: KeyValueStore;
  readonly #prefix: string;
  readonly #now: () => number;
  readonly #mutex = new KeyedMutex();

  constructor(store?: StoreInput, options: TokenStorageOptions = {}) {
    if (store === undefined) {
      if (!warnedAboutMemory) {
        warnedAboutMemory = true;
        process.emitWarning(
          'Gatehouse keeps OAuth tokens in memory: they will not survive a restart. Pass a store (e.g. fileStore()) to TokenStorage to keep them.',
          { code: 'GATEHOUSE_MEMORY_TOKEN_STORAGE' },
        );
      }
      this.store = memoryStore();
    } else {
      this.store = toKeyValueStore(store);
    }
    this.#prefix = options.keyPrefix ?? 'gatehouse:client:';
    this.#now = options.now ?? Date.now;
  }

  /** The storage key of a server: the prefix and the canonical URL (lower-case scheme and host, no fragment). */
  keyFor(server: string | URL): string {
    return this.#prefix + canonicalServer(server);
  }

  /** The record for a server, migrated to the current version; `undefined` when there is none. */
  async read(server: string | URL): Promise<TokenRecord | undefined> {
    const raw = await this.store.get(this.keyFor(server));
    return raw === undefined || raw === null ? undefined : migrateTokenRecord(raw, canonicalServer(server));
  }

  /**
   * Read-modify-write of one server's record, serialised in this process and, on stores that lock (the file
   * store), across processes. Return `undefined` to delete the record.
   */
  async update(
    server: string | URL,
    fn: (current: TokenRecord | undefined) => TokenRecord | undefined | Promise<TokenRecord | undefined>,
  ): Promise<TokenRecord | undefined> {
    const key = this.keyFor(server);
    const canonical = canonicalServer(server);
    const apply = async (raw: unknown): Promise<TokenRecord | undefined> => {
      const current = raw === undefined || raw === null ? undefined : migrateTokenRecord(raw, canonical);
      const next = await fn(current);
      return next === undefined
        ? undefined
        : { ...next, version: TOKEN_RECORD_VERSION, server: canonical, updated_at: this.#seconds() };
    };
    const store = this.store as Partial<GatehouseStore>;
    if (typeof store.update === 'function') return store.update(key, apply);
    return this.#mutex.run(key, async () => {
      const next = await apply(await this.store.get(key));
      if (next === undefined) await this.store.delete(key);
      else await this.store.set(key, next);
      return next;
    });
  }

  /** The stored tokens, or `undefined`. Check {@link isAccessTokenExpired} before using the access token. */
  async getTokens(server: string | URL): Promise<StoredTokens | undefined> {
    return (await this.read(server))?.tokens;
  }

  /**
   * Stores a token response, turning `expires_in` into an absolute `expires_at` measured from `receivedAt`
   * (default: now). A response without `refresh_token` keeps the previous one (RFC 6749 §6).
   */
  async saveTokens(
    server: string | URL,
    response: TokenResponse,
    options: { receivedAt?: number } = {},
  ): Promise<StoredTokens> {
    const tokens = toStoredTokens(response, options.receivedAt ?? this.#now());
    const record = await this.update(server, (current) => {
      const previous = current?.tokens;
      if (tokens.refresh_token === undefined && previous?.refresh_token !== undefined) {
        tokens.refresh_token = previous.refresh_token;
        if (previous.refresh_token_expires_at !== undefined)
          tokens.refresh_token_expires_at = previous.refresh_token_expires_at;
      }
      return { ...(current ?? emptyRecord(canonicalServer(server))), tokens };
    });
    return record!.tokens!;
  }

  /** Removes the tokens and keeps the client registration. */
  async deleteTokens(server: string | URL): Promise<void> {
    await this.update(server, (current) => (current?.client ? { ...current, tokens: undefined } : undefined));
  }

  /** The stored client registration, or `undefined`. See {@link isClientSecretExpired}. */
  async getClient(server: string | URL): Promise<StoredClientInformation | undefined> {
    return (await this.read(server))?.client;
  }

  async saveClient(server: string | URL, client: StoredClientInformation): Promise<void> {
    await this.update(server, (current) => ({
      ...(current ?? emptyRecord(canonicalServer(server))),
      client: { ...client },
    }));
  }

  /** Forgets the registration (after `invalid_client`) and the tokens issued to it. */
  async deleteClient(server: string | URL): Promise<void> {
    await this.update(server, () => undefined);
  }

  /** Removes everything stored for the server. */
  async delete(server: string | URL): Promise<void> {
    await this.store.delete(this.keyFor(server));
  }

  #seconds(): number {
    return Math.floor(this.#now() / 1000);
  }
}

function emptyRecord(server: string): TokenRecord {
  return { version: TOKEN_RECORD_VERSION, server, updated_at: 0 };
}

/** Canonical form of a server URL used in keys: as parsed by WHATWG URL, without fragment or trailing slashes. */
export function canonicalServer(server: string | URL): string {
  const url = new URL(String(server));
  url.hash = '';
  let text = url.href;
  if (url.search === '') while (text.endsWith('/') && !text.endsWith('//')) text = text.slice(0, -1);
  return text;
}

function seconds(value: unknown): number | undefined {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  return typeof n === 'number' && Number.isFinite(n) && n >= 0 ? n : undefined;
}

/** Converts a token response to stored tokens with absolute expiries. `receivedAt` is in milliseconds. */
export function toStoredTokens(response: TokenResponse, receivedAt: number = Date.now()): StoredTokens {
  const { expires_in, refresh_token_expires_in, ...rest } = response;
  const tokens: StoredTokens = { ...rest };
  const base = Math.floor(receivedAt / 1000);
  const lifetime = seconds(expires_in);
  if (lifetime !== undefined) tokens.expires_at = base + Math.floor(lifetime);
  const refreshLifetime = seconds(refresh_token_expires_in);
  if (refreshLifetime !== undefined) tokens.refresh_token_expires_at = base + Math.floor(refreshLifetime);
  return tokens;
}

/**
 * True when the access token has expired or will within `skewSeconds` (default 30). Tokens without `expires_at`
 * count as valid until the server rejects them.
 */
export function isAccessTokenExpired(
  tokens: StoredTokens,
  options: { now?: number; skewSeconds?: number } = {},
): boolean {
  if (tokens.expires_at === undefined) return false;
  return tokens.expires_at - (options.skewSeconds ?? 30) <= Math.floor((options.now ?? Date.now()) / 1000);
}

/**
 * True when the client secret has expired. `0` or absent means it never expires (RFC 7591); a value in the past
 * is simply expired (the caller re-registers), never an error.
 */
export function isClientSecretExpired(client: StoredClientInformation, now: number = Date.now()): boolean {
  const at = seconds(client.client_secret_expires_at);
  return at !== undefined && at !== 0 && at <= Math.floor(now / 1000);
}

/**
 * Brings a stored record to the current version.
 *
 * - Version 1 (or no `version`): the shape the MCP TypeScript SDK's examples persist — `tokens` with a relative
 *   `expires_in`, `clientInformation` or `client_information`, and `savedAt` in ms. `expires_in` becomes
 *   `expires_at` counted from `savedAt`; without `savedAt` the access token is treated as expired (so the client
 *   refreshes) while the refresh token and registration are kept.
 * - Version 2: validated and returned.
 * - A newer version: {@link RecordFormatError}, so an older Gatehouse never overwrites what a newer one wrote.
 */
export function migrateTokenRecord(raw: unknown, server: string): TokenRecord {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new RecordFormatError(`The stored record for ${server} is not an object.`);
  }
  const record = raw as Record<string, unknown>;
  const version = record['version'] ?? 1;
  if (version === TOKEN_RECORD_VERSION) {
    checkTokens(record['tokens'], server);
    return record as unknown as TokenRecord;
  }
  if (version === 1) {
    const savedAtMs = seconds(record['savedAt'] ?? record['saved_at']);
    const migrated: TokenRecord = {
      version: TOKEN_RECORD_VERSION,
      server,
      updated_at: savedAtMs === undefined ? 0 : Math.floor(savedAtMs / 1000),
    };
    const tokens = record['tokens'];
    if (tokens !== undefined && tokens !== null) {
      checkTokens(tokens, server);
      const t = tokens as TokenResponse & { expires_at?: number };
      migrated.tokens = toStoredTokens(t, savedAtMs ?? 0);
      if (savedAtMs === undefined && t.expires_in !== undefined) migrated.tokens.expires_at = 0;
      if (typeof t.expires_at === 'number') migrated.tokens.expires_at = t.expires_at;
    }
    const client = record['client'] ?? record['clientInformation'] ?? record['client_information'];
    if (client && typeof client === 'object' && typeof (client as { client_id?: unknown }).client_id === 'string') {
      migrated.client = client as StoredClientInformation;
    }
    return migrated;
  }
  throw new RecordFormatError(
    `The stored record for ${server} has format version ${String(version)}, which this Gatehouse does not know.`,
    {
      hint: 'A newer Gatehouse wrote it: upgrade Gatehouse (the record is left untouched).',
    },
  );
}

function checkTokens(tokens: unknown, server: string): void {
  if (tokens === undefined) return;
  if (
    typeof tokens !== 'object' ||
    tokens === null ||
    typeof (tokens as { access_token?: unknown }).access_token !== 'string' ||
    typeof (tokens as { token_type?: unknown }).token_type !== 'string'
  ) {
    throw new RecordFormatError(`The stored tokens for ${server} lack access_token or token_type.`);
  }
}

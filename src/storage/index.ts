/**
 * `gatehouse/storage`: where Gatehouse keeps state.
 *
 * - Client side: {@link TokenStorage} over any {@link KeyValueStore} (a Keyv instance, a Keyv store adapter, a Map,
 *   or one of ours: {@link memoryStore}, {@link fileStore}, {@link keychainStore}, {@link sqliteStore},
 *   {@link redisStore}, {@link postgresStore}, {@link dynamoStore}), optionally wrapped in {@link encryptedStore};
 *   stores shared across machines also hold leases ({@link LeaseStore}) for single-flight token refresh.
 * - Authorization server: oidc-provider adapters ({@link oidcAdapterFactory}) over memory, SQLite, Redis and
 *   PostgreSQL, with atomic one-time redemption.
 *
 * Importing this module loads no database driver and not oidc-provider: each backend loads its driver on first use.
 *
 * @packageDocumentation
 */
export {
  type DefaultTokenStore,
  type DefaultTokenStoreOptions,
  defaultTokenStore,
  defaultTokenStoreDirectory,
  openDefaultTokenStore,
  TOKEN_KEY_FILE,
  TOKEN_STORE_ENV,
} from './default.js';
export { type DynamoStoreOptions, dynamoStore } from './dynamo.js';
export {
  deriveKey,
  type EncryptedStoreOptions,
  type EncryptionKey,
  encryptedStore,
  generateEncryptionKey,
  type PassphraseKey,
} from './encrypted.js';
export {
  DecryptionError,
  KeychainUnavailableError,
  LeaseTimeoutError,
  LockTimeoutError,
  RecordFormatError,
  StorageConfigError,
  StorageDependencyError,
  StorageError,
  StoreUnavailableError,
} from './errors.js';
export { defaultDataDirectory, type FileStoreOptions, fileStore } from './file.js';
export { type KeychainStoreOptions, keychainStore } from './keychain.js';
export { type MemoryStoreOptions, memoryStore } from './memory.js';
export type {
  Adapter,
  AdapterPayload,
  Broadcast,
  OidcAdapterCommonOptions,
  OidcAdapterFactory,
} from './oidc/common.js';
export { type OidcAdapterOptions, oidcAdapterFactory } from './oidc/factory.js';
export { MemoryOidcAdapter, memoryOidcAdapter } from './oidc/memory.js';
export { PostgresOidcAdapter, type PostgresOidcAdapterOptions, postgresOidcAdapter } from './oidc/postgres.js';
export { RedisOidcAdapter, type RedisOidcAdapterOptions, redisOidcAdapter } from './oidc/redis.js';
export { SqliteOidcAdapter, type SqliteOidcAdapterOptions, sqliteOidcAdapter } from './oidc/sqlite.js';
export { type PostgresStoreOptions, postgresStore } from './postgres.js';
export { type RedisClientLike, type RedisStoreOptions, redisStore } from './redis.js';
export { type SqliteStoreOptions, sqliteStore } from './sqlite.js';
export {
  canonicalServer,
  isAccessTokenExpired,
  isClientSecretExpired,
  migrateTokenRecord,
  type StoredClientInformation,
  type StoredTokens,
  TOKEN_RECORD_VERSION,
  type TokenRecord,
  type TokenResponse,
  TokenStorage,
  type TokenStorageOptions,
  toStoredTokens,
} from './tokens.js';
export {
  fromKeyvAdapter,
  fromMap,
  type GatehouseStore,
  isKeyv,
  type KeyValueStore,
  type KeyvStoreAdapterLike,
  type LeaseStore,
  leasesOf,
  type MapLike,
  type StoreInput,
  toKeyValueStore,
  withLeases,
} from './types.js';

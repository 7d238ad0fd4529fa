import type { OidcAdapterCommonOptions, OidcAdapterFactory } from './common.js';
import { memoryOidcAdapter } from './memory.js';
import { type PostgresOidcAdapterOptions, postgresOidcAdapter } from './postgres.js';
import { type RedisOidcAdapterOptions, redisOidcAdapter } from './redis.js';
import { type SqliteOidcAdapterOptions, sqliteOidcAdapter } from './sqlite.js';

/** Which backend {@link oidcAdapterFactory} builds, and its settings. */
export type OidcAdapterOptions =
  | ({ backend: 'memory' } & OidcAdapterCommonOptions)
  | ({ backend: 'sqlite' } & SqliteOidcAdapterOptions)
  | ({ backend: 'redis' } & RedisOidcAdapterOptions)
  | ({ backend: 'postgres' } & PostgresOidcAdapterOptions);

/**
 * Builds the oidc-provider `adapter` for a backend. Every backend consumes one-time artifacts (authorization codes,
 * rotated refresh tokens) atomically: of two instances redeeming one code at once, one wins and the other answers
 * `invalid_grant`. Drivers load on first use, so only the chosen backend's package must be installed.
 *
 * @example
 * ```ts
 * import Provider from 'oidc-provider';
 * import { oidcAdapterFactory } from 'gatehouse/storage';
 *
 * const adapter = oidcAdapterFactory({ backend: 'sqlite', path: './gatehouse.db' });
 * await adapter.ready();
 * const provider = new Provider('https://auth.example.com', { adapter });
 * // on shutdown:
 * await adapter.close();
 * ```
 */
export function oidcAdapterFactory(options: OidcAdapterOptions): OidcAdapterFactory {
  switch (options.backend) {
    case 'memory':
      return memoryOidcAdapter(options);
    case 'sqlite':
      return sqliteOidcAdapter(options);
    case 'redis':
      return redisOidcAdapter(options);
    case 'postgres':
      return postgresOidcAdapter(options);
  }
}

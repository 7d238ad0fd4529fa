import type { Pool, PoolConfig } from 'pg';
import { openPgPool, withSchemaLock } from '../postgres.js';
import { sqlIdentifier } from '../sqlite.js';
import {
  type Adapter,
  type AdapterPayload,
  alreadyConsumed,
  guarded,
  indexesOf,
  type OidcAdapterCommonOptions,
  type OidcAdapterFactory,
  purgeTimer,
} from './common.js';

/** Options of {@link postgresOidcAdapter}. Give `url` or `pool`. */
export interface PostgresOidcAdapterOptions extends OidcAdapterCommonOptions {
  url?: string;
  /** An existing pool (not closed by `close()`). */
  pool?: Pool;
  poolConfig?: PoolConfig;
  /** Table name. Default `gatehouse_oidc`. */
  table?: string;
}

/** Expiry and consumption use the database clock, so instances with skewed clocks agree. */
const LIVE = '(expires_at IS NULL OR expires_at > now())';

class PostgresBackend {
  readonly pool: Promise<Pool>;

  constructor(
    readonly table: string,
    options: PostgresOidcAdapterOptions,
  ) {
    this.pool = (async () => {
      const pool = options.pool ?? (await openPgPool(options.url ?? '', options.poolConfig));
      await withSchemaLock(
        pool,
        table,
        `CREATE TABLE IF NOT EXISTS ${table} (
          model text NOT NULL,
          id text NOT NULL,
          payload jsonb NOT NULL,
          grant_id text,
          uid text,
          user_code text,
          expires_at timestamptz,
          consumed_at timestamptz,
          PRIMARY KEY (model, id));
        CREATE INDEX IF NOT EXISTS ${table}_grant ON ${table} (grant_id) WHERE grant_id IS NOT NULL;
        CREATE INDEX IF NOT EXISTS ${table}_uid ON ${table} (model, uid) WHERE uid IS NOT NULL;
        CREATE INDEX IF NOT EXISTS ${table}_user_code ON ${table} (model, user_code) WHERE user_code IS NOT NULL;
        CREATE INDEX IF NOT EXISTS ${table}_expires ON ${table} (expires_at) WHERE expires_at IS NOT NULL;`,
      );
      return pool;
    })();
    this.pool.catch(() => {});
  }

  /** Runs a query with the store deadline; an unreachable database becomes `StoreUnavailableError`. */
  query<R extends object = Record<string, unknown>>(sql: string, params: unknown[]) {
    return guarded(
      'postgres',
      this.pool.then((pool) => pool.query<R>(sql, params)),
    );
  }

  async purge(): Promise<number> {
    return (await this.query(`DELETE FROM ${this.table} WHERE expires_at <= now()`, [])).rowCount ?? 0;
  }
}

interface Row {
  payload: AdapterPayload;
  consumed: number | null;
}

/** oidc-provider adapter over PostgreSQL (`pg`); any number of instances may share the table. */
export class PostgresOidcAdapter implements Adapter {
  constructor(
    readonly model: string,
    private readonly backend: PostgresBackend,
  ) {}

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    const { grantId, uid, userCode } = indexesOf(this.model, payload);
    const t = this.backend.table;
    await this.backend.query(
      `INSERT INTO ${t} (model, id, payload, grant_id, uid, user_code, expires_at, consumed_at)
       VALUES ($1, $2, $3::jsonb, $4, $5, $6,
         CASE WHEN $7::float8 IS NULL THEN NULL ELSE now() + $7::float8 * interval '1 second' END,
         CASE WHEN $8::float8 IS NULL THEN NULL ELSE to_timestamp($8::float8) END)
       ON CONFLICT (model, id) DO UPDATE SET payload = excluded.payload, grant_id = excluded.grant_id,
         uid = excluded.uid, user_code = excluded.user_code, expires_at = excluded.expires_at,
         consumed_at = COALESCE(${t}.consumed_at, excluded.consumed_at)`,
      [
        this.model,
        id,
        JSON.stringify(payload),
        grantId ?? null,
        uid ?? null,
        userCode ?? null,
        typeof expiresIn === 'number' ? expiresIn : null,
        typeof payload.consumed === 'number' ? payload.consumed : null,
      ],
    );
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    return this.#findBy('id', id);
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return this.#findBy('uid', uid);
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return this.#findBy('user_code', userCode);
  }

  async #findBy(column: 'id' | 'uid' | 'user_code', value: string): Promise<AdapterPayload | undefined> {
    const { rows } = await this.backend.query<Row>(
      `SELECT payload, floor(extract(epoch FROM consumed_at))::float8 AS consumed
       FROM ${this.backend.table} WHERE model = $1 AND ${column} = $2 AND ${LIVE} LIMIT 1`,
      [this.model, value],
    );
    const row = rows[0];
    if (!row) return undefined;
    if (row.consumed !== null) row.payload.consumed = row.consumed;
    return row.payload;
  }

  async consume(id: string): Promise<void> {
    // Compare-and-set. Under READ COMMITTED a concurrent UPDATE of the same row waits for the first to commit,
    // then re-checks `consumed_at IS NULL` on the new row version and matches nothing: exactly one winner.
    const result = await this.backend.query(
      `UPDATE ${this.backend.table} SET consumed_at = now() WHERE model = $1 AND id = $2 AND consumed_at IS NULL AND ${LIVE}`,
      [this.model, id],
    );
    if (result.rowCount === 1) return;
    const { rows } = await this.backend.query(
      `SELECT 1 FROM ${this.backend.table} WHERE model = $1 AND id = $2 AND ${LIVE}`,
      [this.model, id],
    );
    return alreadyConsumed(this.model, rows.length > 0 ? 'consumed' : 'missing');
  }

  async destroy(id: string): Promise<void> {
    await this.backend.query(`DELETE FROM ${this.backend.table} WHERE model = $1 AND id = $2`, [this.model, id]);
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    await this.backend.query(`DELETE FROM ${this.backend.table} WHERE grant_id = $1`, [grantId]);
  }
}

/**
 * An oidc-provider `adapter` over PostgreSQL, for several authorization-server instances sharing one database.
 *
 * @example
 * ```ts
 * import Provider from 'oidc-provider';
 * import { postgresOidcAdapter } from 'gatehouse/storage';
 *
 * const adapter = postgresOidcAdapter({ url: process.env.DATABASE_URL });
 * await adapter.ready();
 * const provider = new Provider('https://auth.example.com', { adapter });
 * ```
 */
export function postgresOidcAdapter(options: PostgresOidcAdapterOptions): OidcAdapterFactory {
  const backend = new PostgresBackend(sqlIdentifier(options.table ?? 'gatehouse_oidc'), options);
  const timer = purgeTimer(options.purgeIntervalMs, () => backend.purge(), options.onError ?? (() => {}));
  return Object.assign((model: string): Adapter => new PostgresOidcAdapter(model, backend), {
    ready: async () => {
      await backend.pool;
    },
    purgeExpired: () => backend.purge(),
    close: async () => {
      if (timer) clearInterval(timer);
      if (!options.pool) await (await backend.pool.catch(() => undefined))?.end();
    },
  });
}

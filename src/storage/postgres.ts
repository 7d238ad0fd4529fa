import type { Pool, PoolConfig } from 'pg';
import { deadlined, STORE_DEADLINE_MS } from './oidc/common.js';
import { sqlIdentifier } from './sqlite.js';
import {
  brand,
  checkNamespace,
  type GatehouseStore,
  isTtl,
  type LeaseStore,
  leaseTtl,
  loadOptional,
  toJson,
} from './types.js';

/** Options of {@link postgresStore}. */
export interface PostgresStoreOptions {
  /** Table name. Default `gatehouse_kv`. */
  table?: string;
  /** Default `default`. */
  namespace?: string;
  /** Use this pool instead of opening one (it is then not closed by `close()`). */
  pool?: Pool;
  /** Extra `pg` pool settings. */
  poolConfig?: PoolConfig;
  /**
   * How long one operation (connecting and creating the table included) may take before it fails with
   * `StoreUnavailableError`, in ms. Default 1500: an unreachable or stalled database fails a login or a request
   * instead of hanging it.
   */
  deadlineMs?: number;
}

/** Opens a `pg` pool, loading the driver lazily. */
export async function openPgPool(connectionString: string, config: PoolConfig = {}): Promise<Pool> {
  const pg = await loadOptional('pg', 'PostgreSQL', () => import('pg'));
  // Connecting fails fast (an unreachable database is an outage, not a wait); idle connections dropped by a
  // database restart are replaced on next use instead of crashing the process.
  const pool = new pg.default.Pool({ connectionString, max: 10, connectionTimeoutMillis: 2000, ...config });
  pool.on('error', () => {});
  return pool;
}

/**
 * Runs `fn` while holding a transaction-scoped advisory lock named `name`, so that several instances starting
 * together do a one-time job (create the schema, migrate) once instead of racing.
 */
export async function withAdvisoryLock<T>(
  pool: Pool,
  name: string,
  fn: (client: import('pg').PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  // A checked-out client has no pool listener: without one, a dropped connection would crash the process.
  const ignore = () => {};
  client.on('error', ignore);
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [name]);
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.off('error', ignore);
    client.release();
  }
}

/**
 * Creates a schema under an advisory lock: `CREATE TABLE IF NOT EXISTS` is not concurrency-safe in PostgreSQL.
 */
export async function withSchemaLock(pool: Pool, name: string, sql: string): Promise<void> {
  await withAdvisoryLock(pool, name, async (client) => {
    await client.query(sql);
  });
}

/**
 * A key-value store in PostgreSQL (through `pg`, installed separately). Values are `jsonb`; expiry uses the
 * database clock, so instances with skewed clocks agree; expired rows are hidden on read and purged on write. Every
 * operation has a deadline (`deadlineMs`, 1.5 s): a database that is down, unreachable or stalled rejects with
 * `StoreUnavailableError`.
 *
 * Leases ({@link LeaseStore}) are rows of the table `<table>_lease`: taking one inserts the row, or
 * takes over an expired one, in a single `INSERT … ON CONFLICT … DO UPDATE … WHERE expires_at <= now()`; giving it
 * back deletes the row only for its owner. They are rows rather than advisory locks because an advisory lock
 * belongs to one connection, and a pool hands the connection to someone else between two queries.
 *
 * @example
 * ```ts
 * import { postgresStore, TokenStorage } from 'gatehouse/storage';
 *
 * const storage = new TokenStorage(postgresStore('postgresql://app@db/app', { namespace: 'mcp-tokens' }));
 * ```
 */
export function postgresStore(
  connectionString: string,
  options: PostgresStoreOptions = {},
): GatehouseStore & LeaseStore {
  const table = sqlIdentifier(options.table ?? 'gatehouse_kv');
  const leaseTable = sqlIdentifier(`${table}_lease`);
  const namespace = checkNamespace(options.namespace ?? 'default');
  const ownsPool = options.pool === undefined;
  let opened: Promise<Pool> | undefined;
  let writes = 0;

  const pool = (): Promise<Pool> => {
    opened ??= (async () => {
      const p = options.pool ?? (await openPgPool(connectionString, options.poolConfig));
      await withSchemaLock(
        p,
        table,
        `CREATE TABLE IF NOT EXISTS ${table} (
          namespace text NOT NULL,
          key text NOT NULL,
          value jsonb NOT NULL,
          expires_at timestamptz,
          PRIMARY KEY (namespace, key));
        CREATE INDEX IF NOT EXISTS ${table}_expires ON ${table} (expires_at) WHERE expires_at IS NOT NULL;
        CREATE TABLE IF NOT EXISTS ${leaseTable} (
          namespace text NOT NULL,
          key text NOT NULL,
          owner text NOT NULL,
          expires_at timestamptz NOT NULL,
          PRIMARY KEY (namespace, key));`,
      );
      return p;
    })().catch((error: unknown) => {
      opened = undefined;
      throw error;
    });
    return opened;
  };
  // Each statement (and the connection and schema it waits for) under the deadline: an outage is an error, never
  // a hang.
  const run = deadlined(
    'postgres',
    pool,
    options.deadlineMs ?? STORE_DEADLINE_MS,
    ownsPool ? () => loadOptional('pg', 'PostgreSQL', () => import('pg')) : undefined,
  );

  return brand<GatehouseStore & LeaseStore>({
    kind: 'postgres',
    async get(key) {
      const { rows } = await run((p) =>
        p.query<{ value: string }>(
          `SELECT value::text AS value FROM ${table} WHERE namespace = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > now())`,
          [namespace, key],
        ),
      );
      return rows[0] === undefined ? undefined : JSON.parse(rows[0].value);
    },
    async set(key, value, ttlMs) {
      await run((p) =>
        p.query(
          `INSERT INTO ${table} (namespace, key, value, expires_at)
           VALUES ($1, $2, $3::jsonb, CASE WHEN $4::float8 IS NULL THEN NULL ELSE now() + $4::float8 * interval '1 millisecond' END)
           ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at`,
          [namespace, key, toJson(value), isTtl(ttlMs) ? ttlMs : null],
        ),
      );
      if (++writes % 256 === 0) await run((p) => p.query(`DELETE FROM ${table} WHERE expires_at <= now()`));
    },
    async delete(key) {
      const result = await run((p) =>
        p.query(`DELETE FROM ${table} WHERE namespace = $1 AND key = $2`, [namespace, key]),
      );
      return (result.rowCount ?? 0) > 0;
    },
    async clear() {
      await run((p) => p.query(`DELETE FROM ${table} WHERE namespace = $1`, [namespace]));
    },
    async acquireLease(key, ttlMs, owner) {
      const ms = leaseTtl(ttlMs);
      // One statement: a concurrent taker waits on the row and then sees it unexpired, so only one wins.
      const { rowCount } = await run((p) =>
        p.query(
          `INSERT INTO ${leaseTable} (namespace, key, owner, expires_at)
         VALUES ($1, $2, $3, now() + $4::float8 * interval '1 millisecond')
         ON CONFLICT (namespace, key) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
         WHERE ${leaseTable}.expires_at <= now()`,
          [namespace, key, owner, ms],
        ),
      );
      return (rowCount ?? 0) > 0;
    },
    async releaseLease(key, owner) {
      const { rowCount } = await run((p) =>
        p.query(`DELETE FROM ${leaseTable} WHERE namespace = $1 AND key = $2 AND owner = $3`, [namespace, key, owner]),
      );
      return (rowCount ?? 0) > 0;
    },
    async close() {
      const p = opened;
      opened = undefined;
      if (p && ownsPool) await (await p).end();
    },
  });
}

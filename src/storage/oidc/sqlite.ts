import { sqlIdentifier } from '../sqlite.js';
import { openSqlite, type SqliteDatabase, type SqliteStatement } from '../sqlite-driver.js';
import {
  type Adapter,
  type AdapterPayload,
  alreadyConsumed,
  epochSeconds,
  indexesOf,
  type OidcAdapterCommonOptions,
  type OidcAdapterFactory,
  purgeTimer,
} from './common.js';

/** Options of {@link sqliteOidcAdapter}. */
export interface SqliteOidcAdapterOptions extends OidcAdapterCommonOptions {
  /** Database file (`:memory:` for a private in-memory database). */
  path: string;
  /** Table name. Default `gatehouse_oidc`. */
  table?: string;
}

interface Row {
  payload: string;
  consumed_at: number | null;
}

/** Shared state of one SQLite backend: one connection, prepared statements. */
class SqliteBackend {
  readonly #db: Promise<SqliteDatabase>;

  constructor(path: string, table: string) {
    this.#db = openSqlite(path).then((db) => {
      db.exec(`CREATE TABLE IF NOT EXISTS ${table} (
        model TEXT NOT NULL,
        id TEXT NOT NULL,
        payload TEXT NOT NULL,
        grant_id TEXT,
        uid TEXT,
        user_code TEXT,
        expires_at INTEGER,
        consumed_at INTEGER,
        PRIMARY KEY (model, id)
      ) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS ${table}_grant ON ${table} (grant_id) WHERE grant_id IS NOT NULL;
      CREATE INDEX IF NOT EXISTS ${table}_uid ON ${table} (model, uid) WHERE uid IS NOT NULL;
      CREATE INDEX IF NOT EXISTS ${table}_user_code ON ${table} (model, user_code) WHERE user_code IS NOT NULL;
      CREATE INDEX IF NOT EXISTS ${table}_expires ON ${table} (expires_at) WHERE expires_at IS NOT NULL;`);
      return db;
    });
    this.table = table;
  }

  readonly table: string;

  db(): Promise<SqliteDatabase> {
    return this.#db;
  }

  readonly #statements = new Map<string, SqliteStatement>();

  /** A prepared statement, compiled once per SQL text: compiling on every call cost more than running it. */
  async statement(sql: string): Promise<SqliteStatement> {
    let prepared = this.#statements.get(sql);
    if (!prepared) {
      prepared = (await this.#db).prepare(sql);
      this.#statements.set(sql, prepared);
    }
    return prepared;
  }

  async purge(): Promise<number> {
    return Number((await this.statement(`DELETE FROM ${this.table} WHERE expires_at <= ?`)).run(Date.now()).changes);
  }
}

const LIVE = '(expires_at IS NULL OR expires_at > ?)';

function payloadOf(row: Row | undefined): AdapterPayload | undefined {
  if (!row) return undefined;
  const payload = JSON.parse(row.payload) as AdapterPayload;
  if (row.consumed_at !== null) payload.consumed = row.consumed_at;
  return payload;
}

/** oidc-provider adapter over SQLite (`node:sqlite` or `better-sqlite3`); several processes may share the file. */
export class SqliteOidcAdapter implements Adapter {
  constructor(
    readonly model: string,
    private readonly backend: SqliteBackend,
  ) {}

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    const { grantId, uid, userCode } = indexesOf(this.model, payload);
    // A consumed artifact stays consumed even if it is saved again.
    (
      await this.backend.statement(
        `INSERT INTO ${this.backend.table} (model, id, payload, grant_id, uid, user_code, expires_at, consumed_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (model, id) DO UPDATE SET payload = excluded.payload, grant_id = excluded.grant_id,
           uid = excluded.uid, user_code = excluded.user_code, expires_at = excluded.expires_at,
           consumed_at = COALESCE(consumed_at, excluded.consumed_at)`,
      )
    ).run(
      this.model,
      id,
      JSON.stringify(payload),
      grantId ?? null,
      uid ?? null,
      userCode ?? null,
      typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : null,
      typeof payload.consumed === 'number' ? payload.consumed : null,
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
    const row = (
      await this.backend.statement(
        `SELECT payload, consumed_at FROM ${this.backend.table} WHERE model = ? AND ${column} = ? AND ${LIVE} LIMIT 1`,
      )
    ).get(this.model, value, Date.now()) as Row | undefined;
    return payloadOf(row);
  }

  async consume(id: string): Promise<void> {
    // Compare-and-set: only the first UPDATE finds consumed_at NULL; SQLite serialises writers across processes.
    const { changes } = (
      await this.backend.statement(
        `UPDATE ${this.backend.table} SET consumed_at = ? WHERE model = ? AND id = ? AND consumed_at IS NULL AND ${LIVE}`,
      )
    ).run(epochSeconds(), this.model, id, Date.now());
    if (Number(changes) === 1) return;
    const exists = (
      await this.backend.statement(`SELECT 1 FROM ${this.backend.table} WHERE model = ? AND id = ? AND ${LIVE}`)
    ).get(this.model, id, Date.now());
    return alreadyConsumed(this.model, exists ? 'consumed' : 'missing');
  }

  async destroy(id: string): Promise<void> {
    (await this.backend.statement(`DELETE FROM ${this.backend.table} WHERE model = ? AND id = ?`)).run(this.model, id);
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    (await this.backend.statement(`DELETE FROM ${this.backend.table} WHERE grant_id = ?`)).run(grantId);
  }
}

/**
 * An oidc-provider `adapter` over an SQLite file: the embedded default for `gatehouse serve`.
 *
 * @example
 * ```ts
 * import Provider from 'oidc-provider';
 * import { sqliteOidcAdapter } from 'gatehouse/storage';
 *
 * const adapter = sqliteOidcAdapter({ path: './gatehouse.db' });
 * await adapter.ready();
 * const provider = new Provider('https://auth.example.com', { adapter });
 * ```
 */
export function sqliteOidcAdapter(options: SqliteOidcAdapterOptions): OidcAdapterFactory {
  const backend = new SqliteBackend(options.path, sqlIdentifier(options.table ?? 'gatehouse_oidc'));
  // Keep an early open failure from becoming an unhandled rejection; ready() and every call still report it.
  backend.db().catch(() => {});
  const timer = purgeTimer(options.purgeIntervalMs, () => backend.purge(), options.onError ?? (() => {}));
  return Object.assign((model: string): Adapter => new SqliteOidcAdapter(model, backend), {
    ready: async () => {
      await backend.db();
    },
    purgeExpired: () => backend.purge(),
    close: async () => {
      if (timer) clearInterval(timer);
      (await backend.db().catch(() => undefined))?.close();
    },
  });
}

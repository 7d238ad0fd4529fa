import { sqlIdentifier } from '../sqlite.js';
import { checkpointInBackground, openSqlite, type SqliteDatabase, type SqliteStatement } from '../sqlite-driver.js';
import { AtRest, type AtRestOptions, FORMAT_MARKER } from './at-rest.js';
import {
  type Adapter,
  type AdapterPayload,
  alreadyConsumed,
  type ConsumeEntry,
  epochSeconds,
  GRANTABLE,
  type OidcAdapterCommonOptions,
  type OidcAdapterFactory,
  PrefetchedEntries,
  purgeTimer,
  type UpsertEntry,
} from './common.js';

/** Options of {@link sqliteOidcAdapter}. */
export interface SqliteOidcAdapterOptions extends OidcAdapterCommonOptions, AtRestOptions {
  /** Database file (`:memory:` for a private in-memory database). Created 0600 if it does not exist. */
  path: string;
  /** Table name. Default `gatehouse_oidc`. */
  table?: string;
}

interface Row {
  payload: string;
  consumed_at: number | null;
}

// Entries of the old layout (plain id, JSON payload) start with `{`; sealed payloads are JWE compact strings.
const LEGACY = `substr(payload, 1, 1) = '{'`;

/**
 * The table and its indexes. A rowid table with a unique index on (model, id): sealed payloads are 1–2.5 KB, and in a
 * `WITHOUT ROWID` table (an index b-tree) rows above about 1 KB spill to overflow pages, which doubled the cost of
 * every write. Tables of that earlier layout are rebuilt by `migrate()`.
 */
const schema = (table: string): string => `CREATE TABLE IF NOT EXISTS ${table} (
    model TEXT NOT NULL,
    id TEXT NOT NULL,
    payload TEXT NOT NULL,
    grant_id TEXT,
    uid TEXT,
    user_code TEXT,
    expires_at INTEGER,
    consumed_at INTEGER,
    grant_key TEXT,
    session_uid TEXT
  );
  CREATE UNIQUE INDEX IF NOT EXISTS ${table}_key ON ${table} (model, id);
  CREATE INDEX IF NOT EXISTS ${table}_grant ON ${table} (grant_id) WHERE grant_id IS NOT NULL;
  CREATE INDEX IF NOT EXISTS ${table}_uid ON ${table} (model, uid) WHERE uid IS NOT NULL;
  CREATE INDEX IF NOT EXISTS ${table}_user_code ON ${table} (model, user_code) WHERE user_code IS NOT NULL;
  CREATE INDEX IF NOT EXISTS ${table}_expires ON ${table} (expires_at) WHERE expires_at IS NOT NULL;`;

const LIVE = '(expires_at IS NULL OR expires_at > ?)';

const COLUMNS = 'model, id, payload, grant_id, uid, user_code, expires_at, consumed_at';

/**
 * Columns a token's row gained after the first release of this layout: the row key of its Grant and the uid index
 * of its session, so that one SELECT reads all three (see {@link FIND_WITH_GRANT}). Added by `migrate()`; rows
 * written without them (by an older instance sharing the file) are read the old way, one entry at a time.
 */
const LINK_COLUMNS = ['grant_key', 'session_uid'] as const;

/**
 * A token with, when its row names them, its Grant and its session: oidc-provider's refresh grant (and code grant,
 * introspection) reads those right after the token. One statement, one read transaction, instead of three.
 */
const FIND_WITH_GRANT = (table: string) => `SELECT t.id, t.payload, t.consumed_at,
    g.id AS grant_row, g.payload AS grant_payload, g.consumed_at AS grant_consumed,
    t.session_uid, s.id AS session_row, s.payload AS session_payload, s.consumed_at AS session_consumed
  FROM ${table} t
  LEFT JOIN ${table} g ON g.model = 'Grant' AND g.id = t.grant_key AND (g.expires_at IS NULL OR g.expires_at > ?)
  LEFT JOIN ${table} s ON s.model = 'Session' AND s.uid = t.session_uid AND (s.expires_at IS NULL OR s.expires_at > ?)
  WHERE t.model = ? AND t.id = ? AND (t.expires_at IS NULL OR t.expires_at > ?) LIMIT 1`;

interface RowWithGrant extends Row {
  id: string;
  grant_row: string | null;
  grant_payload: string | null;
  grant_consumed: number | null;
  session_uid: string | null;
  session_row: string | null;
  session_payload: string | null;
  session_consumed: number | null;
}

/** Shared state of one SQLite backend: one connection, prepared statements. */
class SqliteBackend {
  readonly #db: Promise<SqliteDatabase>;

  constructor(
    path: string,
    readonly table: string,
    readonly atRest: AtRest,
  ) {
    this.#db = openSqlite(path).then(async (db) => {
      db.exec(schema(table));
      this.#stopCheckpoints = await checkpointInBackground(db, path);
      return db;
    });
  }

  #stopCheckpoints: () => Promise<void> = async () => {};

  async close(): Promise<void> {
    const db = await this.#db.catch(() => undefined);
    await this.#stopCheckpoints();
    db?.close();
  }

  db(): Promise<SqliteDatabase> {
    return this.#db;
  }

  readonly #statements = new Map<string, SqliteStatement>();

  /** Grants and sessions read with a token ({@link FIND_WITH_GRANT}): a Grant by its row key, a session by its uid. */
  readonly prefetched = new PrefetchedEntries<Row>();

  /** A prepared statement, compiled once per SQL text: compiling on every call cost more than running it. */
  async statement(sql: string): Promise<SqliteStatement> {
    return this.prepared(await this.#db, sql);
  }

  prepared(db: SqliteDatabase, sql: string): SqliteStatement {
    let prepared = this.#statements.get(sql);
    if (!prepared) {
      prepared = db.prepare(sql);
      this.#statements.set(sql, prepared);
    }
    return prepared;
  }

  /** Writes an entry: hashed key and indexes, sealed payload. A consumed artifact stays consumed if saved again. */
  write(db: SqliteDatabase, model: string, id: string, payload: AdapterPayload, expiresIn?: number): void {
    const row = this.atRest.row(model, id, payload);
    const grantable = GRANTABLE.has(model);
    this.prepared(
      db,
      `INSERT INTO ${this.table} (${COLUMNS}, ${LINK_COLUMNS.join(', ')})
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (model, id) DO UPDATE SET payload = excluded.payload, grant_id = excluded.grant_id,
         uid = excluded.uid, user_code = excluded.user_code, expires_at = excluded.expires_at,
         consumed_at = COALESCE(consumed_at, excluded.consumed_at), grant_key = excluded.grant_key,
         session_uid = excluded.session_uid`,
    ).run(
      model,
      row.key,
      row.sealed,
      row.grant,
      row.uid,
      row.userCode,
      typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : null,
      typeof payload.consumed === 'number' ? payload.consumed : null,
      grantable && typeof payload.grantId === 'string' ? this.atRest.lookup('Grant', payload.grantId) : null,
      grantable && typeof payload.sessionUid === 'string'
        ? (this.atRest.index('uid', payload.sessionUid) ?? null)
        : null,
    );
    // After the write: a token read before it may have brought the old Grant or session along.
    this.prefetched.forget(row.key);
    if (row.uid !== null) this.prefetched.forget(row.uid);
  }

  /**
   * Several writes in one transaction: one commit (one write-ahead-log append) instead of one per entry. With
   * `consume`, its compare-and-set runs first in the same transaction; when it finds nothing to consume, the
   * transaction rolls back and the call rejects as `consume` does.
   */
  async writeMany(entries: readonly UpsertEntry[], consume?: ConsumeEntry): Promise<void> {
    const db = await this.#db;
    if (!consume && entries.length === 0) return;
    if (!consume && entries.length === 1) {
      const [{ model, id, payload, expiresIn }] = entries as [UpsertEntry];
      return this.write(db, model, id, payload, expiresIn);
    }
    let lost: 'consumed' | 'missing' | undefined;
    // Synchronous from BEGIN to COMMIT: nothing else in this process runs in between.
    db.exec('BEGIN IMMEDIATE');
    try {
      if (consume) lost = this.consumeIn(db, consume.model, consume.id);
      if (!lost) for (const { model, id, payload, expiresIn } of entries) this.write(db, model, id, payload, expiresIn);
      db.exec(lost ? 'ROLLBACK' : 'COMMIT');
    } catch (error) {
      db.exec('ROLLBACK');
      throw error;
    }
    if (lost) return alreadyConsumed(consume!.model, lost);
  }

  /**
   * Compare-and-set of `consumed_at`: only the first UPDATE finds it NULL; SQLite serialises writers across
   * processes. Undefined when this call consumed the entry, else why it could not.
   */
  consumeIn(db: SqliteDatabase, model: string, id: string): 'consumed' | 'missing' | undefined {
    const key = this.atRest.lookup(model, id);
    const { changes } = this.prepared(
      db,
      `UPDATE ${this.table} SET consumed_at = ? WHERE model = ? AND id = ? AND consumed_at IS NULL AND ${LIVE}`,
    ).run(epochSeconds(), model, key, Date.now());
    if (Number(changes) === 1) return undefined;
    const exists = this.prepared(db, `SELECT 1 FROM ${this.table} WHERE model = ? AND id = ? AND ${LIVE}`).get(
      model,
      key,
      Date.now(),
    );
    return exists ? 'consumed' : 'missing';
  }

  async purge(): Promise<number> {
    return Number((await this.statement(`DELETE FROM ${this.table} WHERE expires_at <= ?`)).run(Date.now()).changes);
  }

  /**
   * Brings a store of the old layout to the hashed, sealed one (once: a format marker records it), then checks that
   * this instance's key opens the store. The old rows are rewritten through the adapter and the file is vacuumed so
   * no clear copy stays in free pages.
   */
  async migrate(): Promise<void> {
    const db = await this.#db;
    const markerKey = this.atRest.lookup(FORMAT_MARKER.model, FORMAT_MARKER.id);
    const readMarker = () =>
      db.prepare(`SELECT payload FROM ${this.table} WHERE model = ? AND id = ?`).get(FORMAT_MARKER.model, markerKey) as
        | { payload: string }
        | undefined;
    let rewrote = 0;
    // Synchronous, in one IMMEDIATE transaction: another process migrating at the same time waits, then finds the marker.
    db.exec('BEGIN IMMEDIATE');
    try {
      const { sql } = db.prepare(`SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?`).get(this.table) as {
        sql: string;
      };
      if (/WITHOUT\s+ROWID/i.test(sql)) {
        // The earlier layout: copied into a rowid table of the same columns, which then takes its name.
        const previous = `${this.table}_without_rowid`;
        db.exec(`ALTER TABLE ${this.table} RENAME TO ${previous};
          DROP INDEX IF EXISTS ${this.table}_key; DROP INDEX IF EXISTS ${this.table}_grant;
          DROP INDEX IF EXISTS ${this.table}_uid; DROP INDEX IF EXISTS ${this.table}_user_code;
          DROP INDEX IF EXISTS ${this.table}_expires;
          ${schema(this.table)}
          INSERT INTO ${this.table} (${COLUMNS}) SELECT ${COLUMNS} FROM ${previous};
          DROP TABLE ${previous};`);
      }
      const columns = new Set(
        (db.prepare(`PRAGMA table_info(${this.table})`).all() as Array<{ name: string }>).map((c) => c.name),
      );
      for (const column of LINK_COLUMNS) {
        if (!columns.has(column)) db.exec(`ALTER TABLE ${this.table} ADD COLUMN ${column} TEXT`);
      }
      if (!readMarker()) {
        const now = Date.now();
        const rows = db
          .prepare(`SELECT model, id, payload, expires_at, consumed_at FROM ${this.table} WHERE ${LEGACY}`)
          .all() as Array<{
          model: string;
          id: string;
          payload: string;
          expires_at: number | null;
          consumed_at: number | null;
        }>;
        for (const row of rows) {
          if (row.expires_at !== null && row.expires_at <= now) continue;
          const payload = JSON.parse(row.payload) as AdapterPayload;
          if (row.consumed_at !== null) payload.consumed = Number(row.consumed_at);
          const expiresIn = row.expires_at === null ? undefined : (Number(row.expires_at) - now) / 1000;
          this.write(db, row.model, row.id, payload, expiresIn);
        }
        db.prepare(`DELETE FROM ${this.table} WHERE ${LEGACY}`).run();
        this.write(db, FORMAT_MARKER.model, FORMAT_MARKER.id, { format: 2 } as never);
        rewrote = rows.length;
      }
      db.exec('COMMIT');
    } catch (error) {
      db.exec('ROLLBACK');
      throw error;
    }
    if (rewrote > 0) {
      // No clear copy may stay behind in free pages or the write-ahead log.
      db.exec('VACUUM');
      db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    }
    this.atRest.checkMarker('sqlite', markerKey, readMarker()!.payload);
  }
}

/** oidc-provider adapter over SQLite (`better-sqlite3`); several processes may share the file. */
export class SqliteOidcAdapter implements Adapter {
  constructor(
    readonly model: string,
    private readonly backend: SqliteBackend,
  ) {}

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    this.backend.write(await this.backend.db(), this.model, id, payload, expiresIn);
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    const { backend } = this;
    const lookup = backend.atRest.lookup(this.model, id);
    if (this.model === 'Grant') {
      const prefetched = backend.prefetched.take(lookup);
      if (prefetched) return this.#opened(lookup, prefetched.value);
    }
    if (!GRANTABLE.has(this.model)) return this.#findBy('id', lookup);
    const now = Date.now();
    const row = (await backend.statement(FIND_WITH_GRANT(backend.table))).get(now, now, this.model, lookup, now) as
      | RowWithGrant
      | undefined;
    if (!row) return undefined;
    if (row.grant_row !== null && row.grant_payload !== null) {
      backend.prefetched.put(row.grant_row, { payload: row.grant_payload, consumed_at: row.grant_consumed });
    }
    if (row.session_uid !== null && row.session_row !== null && row.session_payload !== null) {
      const session = { payload: row.session_payload, consumed_at: row.session_consumed };
      backend.prefetched.put(row.session_uid, session, row.session_row);
    }
    return this.#opened(row.id, row);
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    const index = this.backend.atRest.index('uid', uid)!;
    const prefetched = this.backend.prefetched.take(index);
    if (prefetched?.lookup) return this.#opened(prefetched.lookup, prefetched.value);
    return this.#findBy('uid', index);
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return this.#findBy('user_code', this.backend.atRest.index('userCode', userCode)!);
  }

  async #findBy(column: 'id' | 'uid' | 'user_code', value: string): Promise<AdapterPayload | undefined> {
    const row = (
      await this.backend.statement(
        `SELECT id, payload, consumed_at FROM ${this.backend.table} WHERE model = ? AND ${column} = ? AND ${LIVE} LIMIT 1`,
      )
    ).get(this.model, value, Date.now()) as (Row & { id: string }) | undefined;
    return row && this.#opened(row.id, row);
  }

  #opened(lookup: string, row: Row): AdapterPayload {
    const { payload } = this.backend.atRest.open(lookup, row.payload);
    if (row.consumed_at !== null) payload.consumed = row.consumed_at;
    return payload;
  }

  async consume(id: string): Promise<void> {
    const lost = this.backend.consumeIn(await this.backend.db(), this.model, id);
    if (lost) return alreadyConsumed(this.model, lost);
  }

  async destroy(id: string): Promise<void> {
    const lookup = this.backend.atRest.lookup(this.model, id);
    (await this.backend.statement(`DELETE FROM ${this.backend.table} WHERE model = ? AND id = ?`)).run(
      this.model,
      lookup,
    );
    this.backend.prefetched.forget(lookup);
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    (await this.backend.statement(`DELETE FROM ${this.backend.table} WHERE grant_id = ?`)).run(
      this.backend.atRest.index('grant', grantId)!,
    );
    this.backend.prefetched.forget(this.backend.atRest.lookup('Grant', grantId));
  }
}

/**
 * An oidc-provider `adapter` over an SQLite file: the embedded default for `gatehouse serve`. Entries are looked up
 * by a hash of their id and their payloads are sealed with `encryptionKeys`; a file of the old clear layout is
 * migrated by `ready()`.
 *
 * @example
 * ```ts
 * import Provider from 'oidc-provider';
 * import { sqliteOidcAdapter } from 'gatehouse/storage';
 *
 * const adapter = sqliteOidcAdapter({ path: './gatehouse.db', encryptionKeys: [process.env.GATEHOUSE_STORE_KEY!] });
 * await adapter.ready();
 * const provider = new Provider('https://auth.example.com', { adapter });
 * ```
 */
export function sqliteOidcAdapter(options: SqliteOidcAdapterOptions): OidcAdapterFactory {
  const backend = new SqliteBackend(
    options.path,
    sqlIdentifier(options.table ?? 'gatehouse_oidc'),
    new AtRest(options.encryptionKeys ?? []),
  );
  const adapter = (model: string): Adapter => new SqliteOidcAdapter(model, backend);
  const migrated = backend.migrate();
  // Keep an early open failure from becoming an unhandled rejection; ready() and every call still report it.
  migrated.catch(() => {});
  const timer = purgeTimer(options.purgeIntervalMs, () => backend.purge(), options.onError ?? (() => {}));
  return Object.assign(adapter, {
    ready: () => migrated,
    purgeExpired: () => backend.purge(),
    close: async () => {
      if (timer) clearInterval(timer);
      await backend.close();
    },
    list: async (model: string) => {
      const rows = (
        await backend.statement(
          `SELECT id, payload FROM ${backend.table} WHERE model = ? AND ${LIVE} AND NOT ${LEGACY}`,
        )
      ).all(model, Date.now()) as Array<{ id: string; payload: string }>;
      return rows.map((row) => backend.atRest.open(row.id, row.payload)).sort((a, b) => a.id.localeCompare(b.id));
    },
    rekey: async () => {
      await migrated;
      const db = await backend.db();
      const rows = db.prepare(`SELECT model, id, payload FROM ${backend.table}`).all() as Array<{
        model: string;
        id: string;
        payload: string;
      }>;
      const update = db.prepare(`UPDATE ${backend.table} SET payload = ? WHERE model = ? AND id = ?`);
      let changed = 0;
      db.exec('BEGIN IMMEDIATE');
      try {
        for (const row of rows) {
          const resealed = backend.atRest.reseal(row.id, row.payload);
          if (resealed !== undefined) changed += Number(update.run(resealed, row.model, row.id).changes);
        }
        db.exec('COMMIT');
      } catch (error) {
        db.exec('ROLLBACK');
        throw error;
      }
      return changed;
    },
    upsertMany: (entries: readonly UpsertEntry[], consume?: ConsumeEntry) => backend.writeMany(entries, consume),
  });
}

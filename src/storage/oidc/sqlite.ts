import { GroupCommit } from '../group-commit.js';
import { sqlIdentifier } from '../sqlite.js';
import {
  checkpointInBackground,
  openSqlite,
  type SqliteDatabase,
  type SqliteStatement,
  type SqliteValue,
} from '../sqlite-driver.js';
import { AtRest, type AtRestOptions, FORMAT_MARKER } from './at-rest.js';
import {
  type Adapter,
  type AdapterPayload,
  alreadyConsumed,
  answerEntry,
  type ConsumeEntry,
  epochSeconds,
  FORMAT_LEVEL,
  FormatLevel,
  formatLevelOf,
  GRANTABLE,
  type KeptAnswer,
  type OidcAdapterCommonOptions,
  type OidcAdapterFactory,
  PrefetchedEntries,
  purgeTimer,
  type UpsertEntry,
  upsertOnceOpened,
  withKeptAnswer,
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
    session_uid TEXT,
    answer TEXT,
    answer_expires_at INTEGER
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
 * Columns of format level 3: the grace answer kept with a consumed refresh token (sealed by the caller with a key
 * derived from that token) and until when (ms). Added by `migrate()`; an index of the answers still held lets the
 * purge clear them once their window closes, as the entries of their own expired before.
 */
const ANSWER_COLUMNS = { answer: 'TEXT', answer_expires_at: 'INTEGER' } as const;
const ANSWER_INDEX = (table: string) =>
  `CREATE INDEX IF NOT EXISTS ${table}_answer ON ${table} (answer_expires_at) WHERE answer IS NOT NULL`;

/**
 * A token with, when its row names them, its Grant and its session: oidc-provider's refresh grant (and code grant,
 * introspection) reads those right after the token. One statement, one read transaction, instead of three.
 */
const FIND_WITH_GRANT = (table: string) => `SELECT t.id, t.payload, t.consumed_at, t.answer, t.answer_expires_at,
    g.id AS grant_row, g.payload AS grant_payload, g.consumed_at AS grant_consumed,
    t.session_uid, s.id AS session_row, s.payload AS session_payload, s.consumed_at AS session_consumed
  FROM ${table} t
  LEFT JOIN ${table} g ON g.model = 'Grant' AND g.id = t.grant_key AND (g.expires_at IS NULL OR g.expires_at > ?)
  LEFT JOIN ${table} s ON s.model = 'Session' AND s.uid = t.session_uid AND (s.expires_at IS NULL OR s.expires_at > ?)
  WHERE t.model = ? AND t.id = ? AND (t.expires_at IS NULL OR t.expires_at > ?) LIMIT 1`;

interface RowWithGrant extends Row {
  id: string;
  answer: string | null;
  answer_expires_at: number | null;
  grant_row: string | null;
  grant_payload: string | null;
  grant_consumed: number | null;
  session_uid: string | null;
  session_row: string | null;
  session_payload: string | null;
  session_consumed: number | null;
}

/** The values of one row's upsert, sealed and hashed before its transaction: see {@link SqliteBackend.row}. */
interface RowWrite {
  params: SqliteValue[];
  key: string;
  uid: string | null;
}

/** Shared state of one SQLite backend: one connection, prepared statements, the group commit of its writes. */
class SqliteBackend {
  readonly #db: Promise<SqliteDatabase>;
  #commits: GroupCommit | undefined;

  constructor(
    path: string,
    readonly table: string,
    readonly atRest: AtRest,
  ) {
    this.#db = openSqlite(path).then(async (db) => {
      db.exec(schema(table));
      this.#stopCheckpoints = await checkpointInBackground(db, path);
      this.#commits = new GroupCommit(db);
      return db;
    });
  }

  #stopCheckpoints: () => Promise<void> = async () => {};

  async close(): Promise<void> {
    const db = await this.#db.catch(() => undefined);
    await this.#stopCheckpoints();
    // Writes still queued are committed (and acknowledged) before the connection goes.
    this.#commits?.flush();
    db?.close();
  }

  db(): Promise<SqliteDatabase> {
    return this.#db;
  }

  /**
   * Runs a write in this turn's shared transaction ({@link GroupCommit}): a token request's writes, and those of
   * every other request served in the same turn, cost one commit. Settles once that transaction has committed.
   */
  async commit<T>(work: (db: SqliteDatabase) => T): Promise<T> {
    await this.#db;
    return this.#commits!.run(work);
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

  /**
   * What {@link put} writes for an entry: hashed key and indexes, sealed payload. Computed when the write is
   * issued, outside its transaction: the sealing is most of a write's CPU and runs once per row even when a failed
   * batch runs the write again, and a value that cannot be sealed rejects its own caller before any batch.
   */
  row(model: string, id: string, payload: AdapterPayload, expiresIn?: number): RowWrite {
    const row = this.atRest.row(model, id, payload);
    const grantable = GRANTABLE.has(model);
    const params = [
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
    ];
    return { params, key: row.key, uid: row.uid };
  }

  /** Upserts a prepared row. A consumed artifact stays consumed if saved again. */
  put(db: SqliteDatabase, { params, key, uid }: RowWrite): void {
    this.prepared(
      db,
      `INSERT INTO ${this.table} (${COLUMNS}, ${LINK_COLUMNS.join(', ')})
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (model, id) DO UPDATE SET payload = excluded.payload, grant_id = excluded.grant_id,
         uid = excluded.uid, user_code = excluded.user_code, expires_at = excluded.expires_at,
         consumed_at = COALESCE(consumed_at, excluded.consumed_at), grant_key = excluded.grant_key,
         session_uid = excluded.session_uid`,
    ).run(...params);
    // After the write: a token read before it may have brought the old Grant or session along.
    this.prefetched.forget(key);
    if (uid !== null) this.prefetched.forget(uid);
  }

  /** Writes an entry at once, inside a transaction the caller holds (the migration). */
  write(db: SqliteDatabase, model: string, id: string, payload: AdapterPayload, expiresIn?: number): void {
    this.put(db, this.row(model, id, payload, expiresIn));
  }

  /**
   * Several writes, all or none, in this turn's transaction. With `consume`, its compare-and-set runs first; when it
   * finds nothing to consume, nothing of this call is written (the UPDATE changed no row, so there is nothing to
   * undo and the batch goes on for the others) and the call rejects as `consume` does.
   */
  async writeMany(entries: readonly UpsertEntry[], consume?: ConsumeEntry): Promise<void> {
    if (!consume && entries.length === 0) return;
    // Below format level 3 an answer is an entry of its own, where instances of the previous version look.
    const answer = consume?.answer && this.level.current() ? consume.answer : undefined;
    if (consume?.answer && !answer) entries = [...entries, answerEntry(consume.answer)];
    const rows = entries.map(({ model, id, payload, expiresIn }) => this.row(model, id, payload, expiresIn));
    const lost = await this.commit((db) => {
      const lost = consume ? this.consumeIn(db, consume.model, consume.id, answer) : undefined;
      if (!lost) for (const row of rows) this.put(db, row);
      return lost;
    });
    if (lost) return alreadyConsumed(consume!.model, lost);
  }

  /**
   * Compare-and-set of `consumed_at`: only the first UPDATE finds it NULL; SQLite serialises writers across
   * processes. Undefined when this call consumed the entry, else why it could not.
   */
  consumeIn(db: SqliteDatabase, model: string, id: string, answer?: KeptAnswer): 'consumed' | 'missing' | undefined {
    const key = this.atRest.lookup(model, id);
    const { changes } = answer
      ? this.prepared(
          db,
          `UPDATE ${this.table} SET consumed_at = ?, answer = ?, answer_expires_at = ?
           WHERE model = ? AND id = ? AND consumed_at IS NULL AND ${LIVE}`,
        ).run(epochSeconds(), answer.sealed, Date.now() + answer.expiresIn * 1000, model, key, Date.now())
      : this.prepared(
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

  purge(): Promise<number> {
    return this.commit((db) => {
      const now = Date.now();
      // Kept answers go when their window closes, not with the (long-lived) consumed token.
      this.prepared(
        db,
        `UPDATE ${this.table} SET answer = NULL, answer_expires_at = NULL
         WHERE answer IS NOT NULL AND answer_expires_at <= ?`,
      ).run(now);
      return Number(this.prepared(db, `DELETE FROM ${this.table} WHERE expires_at <= ?`).run(now).changes);
    });
  }

  /** The store's format level, from its marker (read in the background now and then: see {@link FormatLevel}). */
  readonly level = new FormatLevel(async () => this.readLevel(await this.#db));

  readLevel(db: SqliteDatabase): number {
    const key = this.atRest.lookup(FORMAT_MARKER.model, FORMAT_MARKER.id);
    const row = db
      .prepare(`SELECT payload FROM ${this.table} WHERE model = ? AND id = ?`)
      .get(FORMAT_MARKER.model, key) as { payload: string } | undefined;
    return row ? formatLevelOf(this.atRest.open(key, row.payload).payload) : 2;
  }

  /** Raises the format marker to {@link FORMAT_LEVEL} (`gatehouse admin store upgrade`). */
  async upgrade(): Promise<{ from: number; to: number }> {
    const db = await this.#db;
    db.exec('BEGIN IMMEDIATE');
    let from: number;
    try {
      from = this.readLevel(db);
      if (from < FORMAT_LEVEL) this.write(db, FORMAT_MARKER.model, FORMAT_MARKER.id, { format: FORMAT_LEVEL } as never);
      db.exec('COMMIT');
    } catch (error) {
      db.exec('ROLLBACK');
      throw error;
    }
    const to = Math.max(from, FORMAT_LEVEL);
    this.level.set(to);
    return { from, to };
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
      // Instances of the previous version name their columns: they neither see nor mind these.
      for (const [column, type] of Object.entries(ANSWER_COLUMNS)) {
        if (!columns.has(column)) db.exec(`ALTER TABLE ${this.table} ADD COLUMN ${column} ${type}`);
      }
      db.exec(ANSWER_INDEX(this.table));
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
        // A store this version creates (or brings from the 0.1 layout) starts at the current format level.
        this.write(db, FORMAT_MARKER.model, FORMAT_MARKER.id, { format: FORMAT_LEVEL } as never);
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
    this.level.set(this.readLevel(db));
  }
}

/** oidc-provider adapter over SQLite (`better-sqlite3`); several processes may share the file. */
export class SqliteOidcAdapter implements Adapter {
  constructor(
    readonly model: string,
    private readonly backend: SqliteBackend,
  ) {}

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    const row = this.backend.row(this.model, id, payload, expiresIn);
    await this.backend.commit((db) => this.backend.put(db, row));
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
    const live = row.answer !== null && row.answer_expires_at !== null && row.answer_expires_at > now;
    return withKeptAnswer(this.#opened(row.id, row), live ? row.answer : null);
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
    const lost = await this.backend.commit((db) => this.backend.consumeIn(db, this.model, id));
    if (lost) return alreadyConsumed(this.model, lost);
  }

  async destroy(id: string): Promise<void> {
    const { backend } = this;
    const lookup = backend.atRest.lookup(this.model, id);
    await backend.commit((db) => {
      backend.prepared(db, `DELETE FROM ${backend.table} WHERE model = ? AND id = ?`).run(this.model, lookup);
      backend.prefetched.forget(lookup);
    });
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    const { backend } = this;
    const index = backend.atRest.index('grant', grantId)!;
    await backend.commit((db) => {
      backend.prepared(db, `DELETE FROM ${backend.table} WHERE grant_id = ?`).run(index);
      backend.prefetched.forget(backend.atRest.lookup('Grant', grantId));
    });
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
    upsertMany: upsertOnceOpened(migrated, (entries, consume) => backend.writeMany(entries, consume)),
    upgrade: async () => {
      await migrated;
      return backend.upgrade();
    },
  });
}

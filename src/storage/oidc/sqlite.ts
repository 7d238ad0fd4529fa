import { sqlIdentifier } from '../sqlite.js';
import { checkpointInBackground, openSqlite, type SqliteDatabase, type SqliteStatement } from '../sqlite-driver.js';
import { AtRest, type AtRestOptions, FORMAT_MARKER } from './at-rest.js';
import {
  type Adapter,
  type AdapterPayload,
  alreadyConsumed,
  type ConsumeEntry,
  epochSeconds,
  type OidcAdapterCommonOptions,
  type OidcAdapterFactory,
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
    consumed_at INTEGER
  );
  CREATE UNIQUE INDEX IF NOT EXISTS ${table}_key ON ${table} (model, id);
  CREATE INDEX IF NOT EXISTS ${table}_grant ON ${table} (grant_id) WHERE grant_id IS NOT NULL;
  CREATE INDEX IF NOT EXISTS ${table}_uid ON ${table} (model, uid) WHERE uid IS NOT NULL;
  CREATE INDEX IF NOT EXISTS ${table}_user_code ON ${table} (model, user_code) WHERE user_code IS NOT NULL;
  CREATE INDEX IF NOT EXISTS ${table}_expires ON ${table} (expires_at) WHERE expires_at IS NOT NULL;`;

const LIVE = '(expires_at IS NULL OR expires_at > ?)';

const COLUMNS = 'model, id, payload, grant_id, uid, user_code, expires_at, consumed_at';

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
    this.prepared(
      db,
      `INSERT INTO ${this.table} (model, id, payload, grant_id, uid, user_code, expires_at, consumed_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (model, id) DO UPDATE SET payload = excluded.payload, grant_id = excluded.grant_id,
         uid = excluded.uid, user_code = excluded.user_code, expires_at = excluded.expires_at,
         consumed_at = COALESCE(consumed_at, excluded.consumed_at)`,
    ).run(
      model,
      row.key,
      row.sealed,
      row.grant,
      row.uid,
      row.userCode,
      typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : null,
      typeof payload.consumed === 'number' ? payload.consumed : null,
    );
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
    return this.#findBy('id', this.backend.atRest.lookup(this.model, id));
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return this.#findBy('uid', this.backend.atRest.index('uid', uid)!);
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
    if (!row) return undefined;
    const { payload } = this.backend.atRest.open(row.id, row.payload);
    if (row.consumed_at !== null) payload.consumed = row.consumed_at;
    return payload;
  }

  async consume(id: string): Promise<void> {
    const lost = this.backend.consumeIn(await this.backend.db(), this.model, id);
    if (lost) return alreadyConsumed(this.model, lost);
  }

  async destroy(id: string): Promise<void> {
    (await this.backend.statement(`DELETE FROM ${this.backend.table} WHERE model = ? AND id = ?`)).run(
      this.model,
      this.backend.atRest.lookup(this.model, id),
    );
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    (await this.backend.statement(`DELETE FROM ${this.backend.table} WHERE grant_id = ?`)).run(
      this.backend.atRest.index('grant', grantId)!,
    );
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

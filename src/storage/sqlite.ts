import type BetterSqlite3 from 'better-sqlite3';
import { StorageConfigError } from './errors.js';
import { brand, checkNamespace, type GatehouseStore, isTtl, KeyedMutex, loadOptional, toJson } from './types.js';

/** Options of {@link sqliteStore}. */
export interface SqliteStoreOptions {
  /** Table name. Default `gatehouse_kv`. */
  table?: string;
  /** Default `default`. */
  namespace?: string;
}

/** Opens a database with the settings every Gatehouse SQLite user wants: WAL, a busy timeout, foreign keys. */
export async function openSqlite(path: string): Promise<BetterSqlite3.Database> {
  const { default: Database } = await loadOptional('better-sqlite3', 'SQLite', () => import('better-sqlite3'));
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  // Several processes may share the file (e.g. two `gatehouse serve`): wait for the writer instead of failing.
  db.pragma('busy_timeout = 5000');
  db.pragma('synchronous = NORMAL');
  return db;
}

/** Validates an SQL identifier we interpolate (table names cannot be bound as parameters). */
export function sqlIdentifier(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)) {
    throw new StorageConfigError(`Invalid table name ${JSON.stringify(name)}.`, 'Use letters, digits and underscores.');
  }
  return name;
}

/**
 * A key-value store in an SQLite file (through `better-sqlite3`, installed separately). Expired rows are hidden on
 * read and purged on write.
 *
 * @example
 * ```ts
 * import { sqliteStore, TokenStorage } from 'gatehouse/storage';
 *
 * const storage = new TokenStorage(sqliteStore('./tokens.db'));
 * ```
 */
export function sqliteStore(path: string, options: SqliteStoreOptions = {}): GatehouseStore {
  const table = sqlIdentifier(options.table ?? 'gatehouse_kv');
  const namespace = checkNamespace(options.namespace ?? 'default');
  const mutex = new KeyedMutex();
  let opened: Promise<BetterSqlite3.Database> | undefined;
  let writes = 0;

  const db = (): Promise<BetterSqlite3.Database> => {
    opened ??= openSqlite(path).then((database) => {
      database.exec(`CREATE TABLE IF NOT EXISTS ${table} (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        expires_at INTEGER,
        PRIMARY KEY (namespace, key)
      ) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS ${table}_expires ON ${table} (expires_at) WHERE expires_at IS NOT NULL;`);
      return database;
    });
    return opened;
  };

  const read = (database: BetterSqlite3.Database, key: string): unknown => {
    const row = database
      .prepare(`SELECT value FROM ${table} WHERE namespace = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)`)
      .get(namespace, key, Date.now()) as { value: string } | undefined;
    return row === undefined ? undefined : JSON.parse(row.value);
  };
  const write = (database: BetterSqlite3.Database, key: string, value: unknown, ttlMs?: number): void => {
    database
      .prepare(
        `INSERT INTO ${table} (namespace, key, value, expires_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at`,
      )
      .run(namespace, key, toJson(value), isTtl(ttlMs) ? Date.now() + ttlMs : null);
    if (++writes % 256 === 0) database.prepare(`DELETE FROM ${table} WHERE expires_at <= ?`).run(Date.now());
  };
  const remove = (database: BetterSqlite3.Database, key: string): boolean =>
    database.prepare(`DELETE FROM ${table} WHERE namespace = ? AND key = ?`).run(namespace, key).changes > 0;

  return brand<GatehouseStore>({
    kind: 'sqlite',
    async get(key) {
      return read(await db(), key);
    },
    async set(key, value, ttlMs) {
      write(await db(), key, value, ttlMs);
    },
    async delete(key) {
      return remove(await db(), key);
    },
    async clear() {
      (await db()).prepare(`DELETE FROM ${table} WHERE namespace = ?`).run(namespace);
    },
    update(key, fn, ttlMs) {
      return mutex.run(key, async () => {
        const database = await db();
        const next = await fn(read(database, key));
        if (next === undefined) remove(database, key);
        else write(database, key, next, ttlMs);
        return next;
      });
    },
    async close() {
      if (opened) (await opened).close();
      opened = undefined;
    },
  });
}

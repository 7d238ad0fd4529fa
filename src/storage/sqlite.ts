import { StorageConfigError } from './errors.js';
import { openSqlite, type SqliteDatabase } from './sqlite-driver.js';
import { brand, checkNamespace, type GatehouseStore, isTtl, KeyedMutex, toJson } from './types.js';

/** Options of {@link sqliteStore}. */
export interface SqliteStoreOptions {
  /** Table name. Default `gatehouse_kv`. */
  table?: string;
  /** Default `default`. */
  namespace?: string;
}

/** Validates an SQL identifier we interpolate (table names cannot be bound as parameters). */
export function sqlIdentifier(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)) {
    throw new StorageConfigError(`Invalid table name ${JSON.stringify(name)}.`, 'Use letters, digits and underscores.');
  }
  return name;
}

/**
 * A key-value store in an SQLite file, through Node's built-in `node:sqlite` (Node >= 22.13) or, on older Nodes, the
 * optional peer `better-sqlite3`. Expired rows are hidden on read and purged on write.
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
  let opened: Promise<SqliteDatabase> | undefined;
  let writes = 0;

  const db = (): Promise<SqliteDatabase> => {
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

  const read = (database: SqliteDatabase, key: string): unknown => {
    const row = database
      .prepare(`SELECT value FROM ${table} WHERE namespace = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)`)
      .get(namespace, key, Date.now()) as { value: string } | undefined;
    return row === undefined ? undefined : JSON.parse(row.value);
  };
  const write = (database: SqliteDatabase, key: string, value: unknown, ttlMs?: number): void => {
    database
      .prepare(
        `INSERT INTO ${table} (namespace, key, value, expires_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at`,
      )
      .run(namespace, key, toJson(value), isTtl(ttlMs) ? Date.now() + ttlMs : null);
    if (++writes % 256 === 0) database.prepare(`DELETE FROM ${table} WHERE expires_at <= ?`).run(Date.now());
  };
  const remove = (database: SqliteDatabase, key: string): boolean =>
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

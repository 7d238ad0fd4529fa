import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { StorageDependencyError } from './errors.js';
import { loadOptional } from './types.js';

// One small seam over the two SQLite drivers Gatehouse can use: Node's built-in `node:sqlite` (no flag from Node
// 22.13 / 23.4, nothing to compile) and, on older Nodes, the optional peer `better-sqlite3`. Both expose the same
// synchronous shape (`exec`, `prepare().run/get`, `close`), so the store and the oidc adapter are written once
// against the structural types below; no driver's own types reach the public `.d.ts` files.

/** A value SQLite binds or returns. */
export type SqliteValue = string | number | bigint | null | Uint8Array;

/** A prepared statement: the part both drivers share. */
export interface SqliteStatement {
  run(...params: SqliteValue[]): { changes: number | bigint };
  get(...params: SqliteValue[]): unknown;
  all(...params: SqliteValue[]): unknown[];
}

/** An open SQLite connection: the part both drivers share. */
export interface SqliteDatabase {
  exec(sql: string): void;
  prepare(sql: string): SqliteStatement;
  close(): void;
}

/** Which driver opened the database. */
export type SqliteDriverName = 'node:sqlite' | 'better-sqlite3';

interface SqliteDriver {
  name: SqliteDriverName;
  open(path: string): SqliteDatabase;
  /** What a worker thread loads to open the same driver: `node:sqlite`, or the resolved path of better-sqlite3. */
  module: string;
}

interface NodeSqliteModule {
  DatabaseSync: new (path: string) => SqliteDatabase;
}

/**
 * `node:sqlite` when this Node provides it without a flag, else undefined. Node prints an ExperimentalWarning the
 * first time the module loads; it describes our internal choice of driver, not anything the user did, so exactly
 * that warning is dropped while we load it.
 */
function builtinSqlite(): NodeSqliteModule | undefined {
  const getBuiltinModule = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
  if (typeof getBuiltinModule !== 'function') return undefined;
  const emitWarning = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const text = typeof warning === 'string' ? warning : warning.message;
    if (/^SQLite is an experimental feature/.test(text)) return;
    return (emitWarning as (...args: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  try {
    return getBuiltinModule.call(process, 'node:sqlite') as NodeSqliteModule | undefined;
  } finally {
    process.emitWarning = emitWarning;
  }
}

let driver: Promise<SqliteDriver> | undefined;

async function loadDriver(): Promise<SqliteDriver> {
  const builtin = builtinSqlite();
  if (builtin) return { name: 'node:sqlite', open: (path) => new builtin.DatabaseSync(path), module: 'node:sqlite' };
  const { default: Database } = await loadOptional('better-sqlite3', 'SQLite', async () => {
    // A variable specifier keeps TypeScript from needing the optional package's types.
    const specifier = 'better-sqlite3';
    return (await import(specifier)) as { default: new (path: string) => SqliteDatabase };
  }).catch((error: unknown) => {
    if (!(error instanceof StorageDependencyError)) throw error;
    throw new StorageDependencyError('better-sqlite3', 'SQLite', {
      cause: error.cause,
      message: `The SQLite backend needs Node >= 22.13 (built-in node:sqlite) or the package "better-sqlite3"; this is Node ${process.versions.node} and better-sqlite3 could not be loaded.`,
      hint: 'Install it next to gatehouse: npm install better-sqlite3 (or run on Node >= 22.13, which has SQLite built in).',
    });
  });
  return {
    name: 'better-sqlite3',
    open: (path) => new Database(path),
    module: createRequire(import.meta.url).resolve('better-sqlite3'),
  };
}

/** The driver, loaded once; a failed load is retried on the next call (e.g. after `npm install better-sqlite3`). */
function sqliteDriver(): Promise<SqliteDriver> {
  driver ??= loadDriver().catch((error: unknown) => {
    driver = undefined;
    throw error;
  });
  return driver;
}

/** The driver this process uses: `node:sqlite` where Node has it built in, else `better-sqlite3`. */
export async function sqliteDriverName(): Promise<SqliteDriverName> {
  return (await sqliteDriver()).name;
}

/** Opens a database with the settings every Gatehouse SQLite user wants: WAL, a busy timeout, fast syncs. */
export async function openSqlite(path: string): Promise<SqliteDatabase> {
  const db = (await sqliteDriver()).open(path);
  db.exec('PRAGMA journal_mode = WAL');
  // Several processes may share the file (e.g. two `gatehouse serve`): wait for the writer instead of failing.
  db.exec('PRAGMA busy_timeout = 5000');
  // Durability: in WAL mode NORMAL syncs at checkpoints, not at every commit. A commit survives a crash of the
  // process (it is in the WAL file before COMMIT returns); only an OS crash or power loss can lose the last commits,
  // and then whole transactions roll back in order (never a torn or corrupt file). For the authorization server that
  // means at worst a rotation is undone together with everything after it: the old refresh token is live again and
  // the new one never existed, a consistent earlier state. FULL would add an fsync to every token request.
  db.exec('PRAGMA synchronous = NORMAL');
  return db;
}

// The checkpointer's thread: its own connection to the file, PASSIVE checkpoints (they never block writers or
// readers) every `intervalMs`. The log restarts from its beginning only at a commit that finds it completely copied,
// so while the process keeps committing, a pass that ended behind is followed at once by another (each copies only
// what came since) until one catches up. Errors (a busy or closed file) are skipped: the next tick tries again.
const CHECKPOINTER = `
const { workerData } = require('node:worker_threads');
const { module, path, intervalMs } = workerData;
// As builtinSqlite() does: the experimental warning of node:sqlite says nothing the user did.
const emitWarning = process.emitWarning;
process.emitWarning = (warning, ...rest) =>
  /^SQLite is an experimental feature/.test(String(warning?.message ?? warning)) ? undefined : emitWarning.call(process, warning, ...rest);
const Database = module === 'node:sqlite' ? process.getBuiltinModule('node:sqlite').DatabaseSync : require(module);
process.emitWarning = emitWarning;
const db = new Database(path);
db.exec('PRAGMA busy_timeout = 1000');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
setInterval(() => {
  try {
    for (let pass = 0; pass < 20; pass++) {
      const { log, checkpointed } = checkpoint.get();
      if (log <= 0 || checkpointed >= log) break;
    }
  } catch {}
}, intervalMs);
`;

/**
 * Moves the write-ahead log's checkpoints off the event loop. SQLite runs a checkpoint inside the COMMIT that
 * crosses 1000 log pages, copying them into the database file and syncing it: with `synchronous = NORMAL` that sync
 * is the only one, and on the thread that commits it stalled every request in the process. Here a worker thread
 * with its own connection checkpoints every `intervalMs` instead, and the connection's own checkpoint waits for a
 * log four times as long: it then finds the pages already copied by the worker and only has to sync, and it is what
 * lets the log restart under a load that never pauses. If the worker cannot start or dies, the usual threshold comes
 * back. Returns a function that stops the worker (before the connection closes, which checkpoints what is left).
 */
export async function checkpointInBackground(
  db: SqliteDatabase,
  path: string,
  intervalMs = 100,
): Promise<() => Promise<void>> {
  if (path === ':memory:' || path === '' || path.startsWith('file::memory:')) return async () => {};
  const { module } = await sqliteDriver();
  db.exec('PRAGMA wal_autocheckpoint = 4000');
  // A log that grew during a burst is cut back to this size when it restarts, instead of staying at its peak.
  db.exec('PRAGMA journal_size_limit = 16777216');
  const worker = new Worker(CHECKPOINTER, { eval: true, workerData: { module, path, intervalMs } });
  worker.unref();
  let stopped = false;
  const restore = () => {
    if (stopped) return;
    stopped = true;
    try {
      db.exec('PRAGMA wal_autocheckpoint = 1000');
    } catch {
      // the connection is closed already
    }
  };
  worker.once('error', restore);
  worker.once('exit', restore);
  return async () => {
    stopped = true;
    await worker.terminate();
  };
}

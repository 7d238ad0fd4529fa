import type { SqliteDatabase } from './sqlite-driver.js';

interface Pending {
  work: (db: SqliteDatabase) => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit for one SQLite connection: the writes queued in one turn of the event loop run together in one
 * `BEGIN IMMEDIATE … COMMIT`, at `setImmediate` (after the poll phase, so every request whose data arrived in that
 * turn has queued its writes). A commit costs a lock round, a write-ahead-log append of every page the transaction
 * dirtied and the system calls around them; pages several writes share (the table's tail, the expiry index's tail,
 * a grant's index entries) go to the log once per batch instead of once per write.
 *
 * - A write's promise settles only after its batch has committed (or failed): nothing acknowledged is lost to a
 *   crash of the process (the commit is in the log file before `COMMIT` returns).
 * - When one write of a batch throws, the batch rolls back and every write of it runs again alone, in order, each in
 *   its own transaction, so only the bad one rejects. A failing `BEGIN` or `COMMIT` (the file locked by another
 *   process beyond the busy timeout, a full disk) rejects the whole batch: it is no one write's fault, and retrying
 *   each alone would block the event loop once per write.
 * - Reads do not go through here: they run on the connection at once and see committed data only, since a batch
 *   runs synchronously from `BEGIN` to `COMMIT`. A read issued after an awaited write sees it.
 *
 * `work` must be synchronous and may run twice (the first run rolled back): SQL, and nothing outside the database
 * it could not do again.
 *
 * @example
 * ```ts
 * const commits = new GroupCommit(db);
 * const [a, b] = await Promise.all([
 *   commits.run((db) => db.prepare('INSERT INTO t (v) VALUES (?)').run(1).changes),
 *   commits.run((db) => db.prepare('INSERT INTO t (v) VALUES (?)').run(2).changes),
 * ]); // one transaction
 * ```
 */
export class GroupCommit {
  #queue: Pending[] = [];
  #scheduled: NodeJS.Immediate | undefined;
  /** Transactions committed so far, and writes they carried: how well writes are grouped. */
  readonly stats = { commits: 0, writes: 0 };

  constructor(private readonly db: SqliteDatabase) {}

  /** Queues `work` for this turn's transaction; resolves with its result once that transaction has committed. */
  run<T>(work: (db: SqliteDatabase) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
      this.#scheduled ??= setImmediate(() => this.flush());
    });
  }

  /** Commits what is queued now (e.g. before the connection closes); otherwise it runs by itself. */
  flush(): void {
    if (this.#scheduled) clearImmediate(this.#scheduled);
    this.#scheduled = undefined;
    const batch = this.#queue;
    this.#queue = [];
    if (batch.length === 0) return;
    const results: unknown[] = [];
    try {
      this.db.exec('BEGIN IMMEDIATE');
    } catch (error) {
      for (const entry of batch) entry.reject(error);
      return;
    }
    let failed = false;
    for (const entry of batch) {
      try {
        results.push(entry.work(this.db));
      } catch {
        failed = true;
        break;
      }
    }
    if (failed) {
      this.#rollback();
      for (const entry of batch) this.#alone(entry);
      return;
    }
    try {
      this.db.exec('COMMIT');
    } catch (error) {
      this.#rollback();
      for (const entry of batch) entry.reject(error);
      return;
    }
    this.stats.commits++;
    this.stats.writes += batch.length;
    for (const [i, entry] of batch.entries()) entry.resolve(results[i]);
  }

  /** One write in its own transaction, after its batch failed. */
  #alone(entry: Pending): void {
    let result: unknown;
    try {
      this.db.exec('BEGIN IMMEDIATE');
      try {
        result = entry.work(this.db);
        this.db.exec('COMMIT');
      } catch (error) {
        this.#rollback();
        throw error;
      }
    } catch (error) {
      entry.reject(error);
      return;
    }
    this.stats.commits++;
    this.stats.writes++;
    entry.resolve(result);
  }

  #rollback(): void {
    try {
      this.db.exec('ROLLBACK');
    } catch {
      // Some errors (a full disk, an I/O error) end the transaction by themselves: there is nothing to undo.
    }
  }
}

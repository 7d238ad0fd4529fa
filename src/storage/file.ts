import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chmod, link, mkdir, open, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { homedir, hostname } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { LockTimeoutError, RecordFormatError } from './errors.js';
import { brand, checkNamespace, type GatehouseStore, isTtl, KeyedMutex, toJson } from './types.js';

/**
 * The per-user data directory for Gatehouse:
 * - Linux and other Unixes: `$XDG_DATA_HOME/gatehouse`, else `~/.local/share/gatehouse`;
 * - macOS: `~/Library/Application Support/gatehouse`;
 * - Windows: `%APPDATA%\gatehouse`.
 *
 * The path never contains a version number: records carry their own format version (see {@link TokenStorage}).
 *
 * @example
 * ```ts
 * import { defaultDataDirectory } from 'gatehouse/storage';
 *
 * defaultDataDirectory(); // '/home/ada/.local/share/gatehouse'
 * ```
 */
export function defaultDataDirectory(
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
  home: string = homedir(),
): string {
  if (platform === 'win32') return join(env['APPDATA'] || join(home, 'AppData', 'Roaming'), 'gatehouse');
  if (platform === 'darwin') return join(home, 'Library', 'Application Support', 'gatehouse');
  // The XDG spec says relative values are invalid and must be ignored.
  const xdg = env['XDG_DATA_HOME'];
  return join(xdg && isAbsolute(xdg) ? xdg : join(home, '.local', 'share'), 'gatehouse');
}

/** Options of {@link fileStore}. */
export interface FileStoreOptions {
  /** Where the store lives. Default: {@link defaultDataDirectory}. */
  directory?: string;
  /** A subdirectory per namespace. Default `default`. */
  namespace?: string;
  /** How long to wait for another process's lock on the same key. Default 10 s. */
  lockTimeoutMs?: number;
  /** A lock older than this is taken over even if its owner looks alive. Default 30 s. */
  staleLockMs?: number;
  /** fsync files and the directory on every write. Default `true`; turn off only for throwaway data. */
  durable?: boolean;
}

/** One record file: readable JSON holding the key, so a directory listing plus `cat` tells what is stored. */
interface FileRecord {
  key: string;
  value: unknown;
  expiresAt?: number;
  updatedAt: string;
}

const RECORD_SUFFIX = '.json';

/** File name for a key: a readable slug plus a hash, safe on every filesystem and case-insensitive ones. */
export function fileNameForKey(key: string): string {
  const slug = key.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 64);
  const hash = createHash('sha256').update(key, 'utf8').digest('hex').slice(0, 32);
  return `${slug}.${hash}${RECORD_SUFFIX}`;
}

/**
 * A store of one JSON file per key, for tokens on the user's machine.
 *
 * - Directory mode 0700, files mode 0600 (on POSIX).
 * - Atomic writes: a temporary file is written, fsynced and renamed over the record, so a crash leaves the old
 *   record or the new one, never half of one.
 * - An inter-process lock per key (`<record>.lock`, created with `O_EXCL`), so concurrent writers and
 *   {@link GatehouseStore.update | update()} from several processes lose nothing. Locks left by a killed process
 *   are taken over at once when their owner's pid is gone on this host, else after `staleLockMs`.
 * - JSON only: nothing read from disk can execute.
 *
 * @example
 * ```ts
 * import { fileStore, TokenStorage } from 'gatehouse/storage';
 *
 * const storage = new TokenStorage(fileStore()); // ~/.local/share/gatehouse/default/*.json
 * ```
 */
export function fileStore(options: FileStoreOptions = {}): GatehouseStore & { readonly directory: string } {
  const directory = join(options.directory ?? defaultDataDirectory(), checkNamespace(options.namespace ?? 'default'));
  const lockTimeoutMs = options.lockTimeoutMs ?? 10_000;
  const staleLockMs = options.staleLockMs ?? 30_000;
  const durable = options.durable ?? true;
  const mutex = new KeyedMutex();
  let ready: Promise<void> | undefined;

  const ensureDirectory = (): Promise<void> => {
    ready ??= (async () => {
      await mkdir(directory, { recursive: true, mode: 0o700 });
      // The namespace directory is ours: tighten it even if it was created earlier with a looser umask.
      if (process.platform !== 'win32') await chmod(directory, 0o700);
    })().catch((error: unknown) => {
      ready = undefined;
      throw error;
    });
    return ready;
  };

  const pathFor = (key: string): string => join(directory, fileNameForKey(key));

  const readRecord = async (key: string): Promise<FileRecord | undefined> => {
    const path = pathFor(key);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    let record: FileRecord;
    try {
      record = JSON.parse(text) as FileRecord;
    } catch (error) {
      throw new RecordFormatError(`The file ${path} is not valid JSON.`, { cause: error });
    }
    if (typeof record !== 'object' || record === null || record.key !== key) return undefined;
    return record;
  };

  const liveValue = (record: FileRecord | undefined): unknown =>
    record === undefined || (record.expiresAt !== undefined && record.expiresAt <= Date.now())
      ? undefined
      : record.value;

  const writeRecord = async (key: string, value: unknown, ttlMs?: number): Promise<void> => {
    const record: FileRecord = {
      key,
      value: JSON.parse(toJson(value)) as unknown,
      updatedAt: new Date().toISOString(),
    };
    if (isTtl(ttlMs)) record.expiresAt = Date.now() + ttlMs;
    const target = pathFor(key);
    // Temporary names do not end in .json, so readers and listings never mistake a half-written file for a record.
    const temporary = `${target}.${process.pid}.${randomUUID()}.tmp`;
    const handle = await open(temporary, 'wx', 0o600);
    try {
      await handle.writeFile(`${JSON.stringify(record, null, 2)}\n`, 'utf8');
      if (durable) await handle.sync();
    } catch (error) {
      await handle.close();
      await unlink(temporary).catch(() => {});
      throw error;
    }
    await handle.close();
    await rename(temporary, target);
    if (durable) await syncDirectory(directory);
  };

  const removeRecord = async (key: string): Promise<boolean> => {
    try {
      await unlink(pathFor(key));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw error;
    }
    if (durable) await syncDirectory(directory);
    return true;
  };

  // In-process mutex first (cheap), then the file lock (for other processes).
  const locked = <T>(key: string, fn: () => Promise<T>): Promise<T> =>
    mutex.run(key, async () => {
      await ensureDirectory();
      const release = await acquireLock(`${pathFor(key)}.lock`, lockTimeoutMs, staleLockMs);
      try {
        return await fn();
      } finally {
        await release();
      }
    });

  return brand({
    kind: 'file',
    directory,
    async get(key: string) {
      return liveValue(await readRecord(key));
    },
    async set(key: string, value: unknown, ttlMs?: number) {
      await locked(key, () => writeRecord(key, value, ttlMs));
    },
    async delete(key: string) {
      return locked(key, () => removeRecord(key));
    },
    async clear() {
      let names: string[];
      try {
        names = await readdir(directory);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw error;
      }
      const now = Date.now();
      await Promise.all(
        names.map(async (name) => {
          const path = join(directory, name);
          if (name.endsWith(RECORD_SUFFIX)) return unlink(path).catch(() => {});
          // Temporary files of a crashed writer; a young one may belong to a write in progress.
          if (name.endsWith('.tmp') && now - (await stat(path).catch(() => ({ mtimeMs: now }))).mtimeMs > 60_000) {
            return unlink(path).catch(() => {});
          }
        }),
      );
    },
    update<T>(key: string, fn: (current: unknown) => T | undefined | Promise<T | undefined>, ttlMs?: number) {
      return locked(key, async () => {
        const next = await fn(liveValue(await readRecord(key)));
        if (next === undefined) await removeRecord(key);
        else await writeRecord(key, next, ttlMs);
        return next;
      });
    },
    async close() {},
  });
}

async function syncDirectory(directory: string): Promise<void> {
  // Persists the rename itself. Windows cannot open directories; there the rename is durable enough.
  if (process.platform === 'win32') return;
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

interface LockOwner {
  pid: number;
  host: string;
  token: string;
  createdAt: number;
}

const HOST = hostname();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Takes `<path>` as an exclusive lock file and returns the function that releases it. Exported for tests.
 * @internal
 */
export async function acquireLock(path: string, timeoutMs: number, staleMs: number): Promise<() => Promise<void>> {
  const owner: LockOwner = { pid: process.pid, host: HOST, token: randomUUID(), createdAt: Date.now() };
  const body = JSON.stringify(owner);
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(path, body, { flag: 'wx', mode: 0o600 });
      return async () => {
        // Only remove the lock if it is still ours (it may have been taken over as stale).
        const current = await readFile(path, 'utf8').catch(() => '');
        if (current === body) await unlink(path).catch(() => {});
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    if (await breakIfStale(path, staleMs)) continue;
    if (Date.now() > deadline) throw new LockTimeoutError(path, timeoutMs);
    await sleep(Math.min(1 + attempt * 2, 25) + Math.random() * 5);
  }
}

function isStale(text: string, mtimeMs: number, staleMs: number): boolean {
  const age = Date.now() - mtimeMs;
  let owner: Partial<LockOwner>;
  try {
    owner = JSON.parse(text) as Partial<LockOwner>;
  } catch {
    // Empty or partial: its owner is between create and write, or died there.
    return age > Math.min(staleMs, 2_000);
  }
  if (age > staleMs) return true;
  if (owner.host !== HOST || typeof owner.pid !== 'number') return false;
  if (owner.pid === process.pid) return false;
  try {
    process.kill(owner.pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
  return isZombie(owner.pid);
}

/** A killed process that its parent has not reaped yet still answers kill(pid, 0); on Linux, /proc tells. */
function isZombie(pid: number): boolean {
  if (process.platform !== 'linux') return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return false;
  }
}

/** Removes a stale lock. Moves it aside first and checks it is the one judged stale, so a fresh lock survives. */
async function breakIfStale(path: string, staleMs: number): Promise<boolean> {
  let text: string;
  let mtimeMs: number;
  try {
    [text, mtimeMs] = await Promise.all([readFile(path, 'utf8'), stat(path).then((s) => s.mtimeMs)]);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw error;
  }
  if (!isStale(text, mtimeMs, staleMs)) return false;
  const aside = `${path}.${randomUUID()}.stale`;
  try {
    await rename(path, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw error;
  }
  const moved = await readFile(aside, 'utf8').catch(() => '');
  if (moved !== text) {
    // We moved a lock someone took in between: put it back unless yet another one exists.
    await link(aside, path).catch(() => {});
  }
  await unlink(aside).catch(() => {});
  return true;
}

import { createHash, randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LeaseTimeoutError } from '../storage/errors.js';
import { acquireLock } from '../storage/file.js';
import { KeyedMutex, type LeaseStore } from '../storage/types.js';

/** Options of {@link withCredentialLock}. */
export interface CredentialLockOptions {
  /** Directory of the lock files. Default `<os tmpdir>/gatehouse-locks`. */
  directory?: string;
  /** How long to wait for another holder. Default 10 minutes: an interactive login may hold the lock that long. */
  waitMs?: number;
  /** A lock older than this is taken over even if its owner looks alive. Default 15 minutes. */
  staleMs?: number;
}

// Within one process a promise chain is cheaper than the file lock, and it also orders callers fairly.
const mutex = new KeyedMutex();

/**
 * Runs `fn` while holding the lock of one credential (a token storage key), in this process and across processes
 * of this user on this machine. Two processes never spend the same rotating refresh token, and one login per server
 * runs at a time: whoever waited re-reads storage afterwards and finds the other's tokens.
 *
 * Lock files live outside the token store on purpose, so any store (Keyv, Redis, a file store) gets the same
 * guarantee; a lock left by a killed process is taken over as soon as its pid is gone.
 */
export async function withCredentialLock<T>(
  key: string,
  fn: () => Promise<T>,
  options: CredentialLockOptions = {},
): Promise<T> {
  const directory = options.directory ?? join(tmpdir(), 'gatehouse-locks');
  const name = createHash('sha256').update(key, 'utf8').digest('hex').slice(0, 40);
  return mutex.run(name, async () => {
    await mkdir(directory, { recursive: true, mode: 0o700 });
    const release = await acquireLock(
      join(directory, `${name}.lock`),
      options.waitMs ?? 600_000,
      options.staleMs ?? 900_000,
    );
    try {
      return await fn();
    } finally {
      await release();
    }
  });
}

/** Options of {@link withStoreLease}. */
export interface StoreLeaseOptions<T> {
  /** The lease's lifetime: how long a holder that died blocks the others. */
  ttlMs: number;
  /**
   * Asked between attempts while another process holds the lease: a value other than `undefined` ends the wait
   * with that value (the holder did the work, e.g. stored refreshed tokens). Default: never.
   */
  settled?: () => Promise<T | undefined>;
  /** Give up ({@link LeaseTimeoutError}) after this long. Default twice `ttlMs`: time for a holder to die and expire. */
  waitMs?: number;
}

/**
 * Runs `fn` while holding the lease `key` in a shared store (Redis, PostgreSQL), so that across every machine
 * sharing the store one process at a time runs it. While another holds the lease, polls with backoff (20 ms
 * growing to 500 ms) and asks `settled()` whether the holder's work already answers ours. A holder that crashed
 * holds the lease until it expires (`ttlMs`); the lease is released as soon as `fn` ends.
 */
export async function withStoreLease<T>(
  leases: LeaseStore,
  key: string,
  fn: () => Promise<T>,
  options: StoreLeaseOptions<T>,
): Promise<T> {
  const owner = `${hostname()}:${process.pid}:${randomUUID()}`;
  const waitMs = options.waitMs ?? options.ttlMs * 2;
  const deadline = Date.now() + waitMs;
  for (let attempt = 0; ; attempt++) {
    if (await leases.acquireLease(key, options.ttlMs, owner)) {
      try {
        return await fn();
      } finally {
        // A store that is unreachable now lets the lease expire instead; the caller's result stands.
        await leases.releaseLease(key, owner).catch(() => false);
      }
    }
    const done = await options.settled?.();
    if (done !== undefined) return done;
    if (Date.now() >= deadline) throw new LeaseTimeoutError(key, waitMs);
    await sleep(Math.min(20 * 1.5 ** attempt, 500) * (0.75 + Math.random() / 2));
  }
}

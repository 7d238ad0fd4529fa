import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquireLock } from '../storage/file.js';
import { KeyedMutex } from '../storage/types.js';

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

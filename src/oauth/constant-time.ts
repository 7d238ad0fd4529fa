import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Compares two secrets (state, nonces, client secrets) in time that depends on neither their contents nor their
 * lengths: both are hashed to 32 bytes first, then compared with `timingSafeEqual`.
 *
 * @example
 * ```ts
 * if (!constantTimeEqual(returnedState, expectedState)) throw new Error('state mismatch');
 * ```
 */
export function constantTimeEqual(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();

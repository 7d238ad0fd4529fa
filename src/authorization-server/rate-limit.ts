/** Login attempt limits: a fixed window per key (username and client address), in this process. */
export interface LoginRateLimit {
  /** Failed attempts allowed per window. Default 10. */
  attempts?: number;
  /** Window length in seconds. Default 300. */
  windowSeconds?: number;
}

/** Counts failures per key; `blocked(key)` says whether a key must wait, and how long. */
export class RateLimiter {
  readonly #attempts: number;
  readonly #windowMs: number;
  readonly #windows = new Map<string, { start: number; failures: number }>();

  constructor(options: LoginRateLimit = {}) {
    this.#attempts = options.attempts ?? 10;
    this.#windowMs = (options.windowSeconds ?? 300) * 1000;
  }

  /** Seconds until `key` may try again, or 0. */
  blocked(key: string): number {
    const entry = this.#windows.get(key);
    if (!entry) return 0;
    const elapsed = Date.now() - entry.start;
    if (elapsed >= this.#windowMs) {
      this.#windows.delete(key);
      return 0;
    }
    return entry.failures >= this.#attempts ? Math.ceil((this.#windowMs - elapsed) / 1000) : 0;
  }

  failure(key: string): void {
    const now = Date.now();
    const entry = this.#windows.get(key);
    if (!entry || now - entry.start >= this.#windowMs) this.#windows.set(key, { start: now, failures: 1 });
    else entry.failures++;
    if (this.#windows.size > 10_000) {
      for (const [k, e] of this.#windows) if (now - e.start >= this.#windowMs) this.#windows.delete(k);
    }
  }

  success(key: string): void {
    this.#windows.delete(key);
  }
}

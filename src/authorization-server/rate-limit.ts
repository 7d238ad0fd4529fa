import type { IncomingMessage } from 'node:http';
import proxyAddr from 'proxy-addr';
import {
  type IRateLimiterStoreOptions,
  RateLimiterMemory,
  RateLimiterPostgres,
  RateLimiterRedis,
  RateLimiterRes,
} from 'rate-limiter-flexible';

/**
 * Failed-login limits. Three counters, so that one attacker's failures never lock other users out and there is no
 * global lockout: per account and client address (the attacker on the attacked account), per client address (the
 * attacker on any account), per account (a distributed attack on one account locks only that account).
 */
export interface LoginRateLimit {
  /** Failed attempts allowed per account and client address per window. Default 10. */
  attempts?: number;
  /** Failed attempts allowed per client address, on any account, per window. Default 5 × `attempts`. */
  addressAttempts?: number;
  /** Failed attempts allowed per account, from any address, per window. Default 10 × `attempts`. */
  accountAttempts?: number;
  /** Window length in seconds. Default 300. */
  windowSeconds?: number;
  /**
   * Where the counters live, so that instances sharing a store share their limits (N instances allow what one
   * allows). Default: this process's memory. `gatehouse serve` uses the Redis or PostgreSQL it stores in.
   */
  store?: LoginRateLimitStore;
}

/** A shared backend for {@link LoginRateLimit} counters. */
export type LoginRateLimitStore =
  | { backend: 'redis' /** A connected node-redis v5 client. */; client: unknown; prefix: string }
  | { backend: 'postgres' /** A `pg` Pool. */; pool: unknown; table: string };

/** Which proxies may set `X-Forwarded-For`: a hop count, or addresses/CIDRs (`loopback`, `10.0.0.0/8`, …). */
export type TrustProxy = number | string[];

/**
 * The client address of a request: the socket's, or, behind trusted proxies, the nearest untrusted address in
 * `X-Forwarded-For` (so a client cannot choose its address by sending the header itself).
 */
export function clientAddress(req: IncomingMessage, trust: TrustProxy | undefined): string {
  if (trust === undefined || trust === 0) return req.socket.remoteAddress ?? 'unknown';
  const trusted = typeof trust === 'number' ? (_address: string, hop: number) => hop < trust : proxyAddr.compile(trust);
  return proxyAddr(req as Parameters<typeof proxyAddr>[0], trusted);
}

/** Counts failed logins; `wait()` says how many seconds a login attempt must wait (0: go ahead). */
export interface LoginLimiter {
  wait(address: string, account: string): Promise<number>;
  failure(address: string, account: string): Promise<void>;
  success(address: string, account: string): Promise<void>;
}

type Limiter = RateLimiterMemory | RateLimiterRedis | RateLimiterPostgres;

function limiter(points: number, duration: number, keyPrefix: string, store: LoginRateLimitStore | undefined) {
  const base = { points, duration, keyPrefix };
  if (!store) return new RateLimiterMemory(base);
  if (store.backend === 'redis') {
    return new RateLimiterRedis({
      ...base,
      keyPrefix: `${store.prefix}${keyPrefix}`,
      storeClient: store.client,
      useRedisPackage: true,
    } as IRateLimiterStoreOptions);
  }
  return new RateLimiterPostgres({
    ...base,
    storeClient: store.pool,
    storeType: 'pool',
    tableName: store.table,
    // The table is created once by createLoginLimiter (below), not by each limiter racing the others.
    tableCreated: true,
    clearExpiredByTimeout: false,
  } as IRateLimiterStoreOptions);
}

/** Builds the three failed-login counters on the given store (creating the PostgreSQL table if needed). */
export async function createLoginLimiter(options: LoginRateLimit = {}): Promise<LoginLimiter> {
  const attempts = options.attempts ?? 10;
  const window = Math.max(1, Math.round(options.windowSeconds ?? 300));
  const store = options.store;
  if (store?.backend === 'postgres') {
    const { withSchemaLock } = await import('../storage/postgres.js');
    await withSchemaLock(
      store.pool as Parameters<typeof withSchemaLock>[0],
      store.table,
      `CREATE TABLE IF NOT EXISTS ${store.table} (key varchar(255) PRIMARY KEY, points integer NOT NULL DEFAULT 0, expire bigint)`,
    );
  }
  const perAccountAndAddress = limiter(attempts, window, 'login_aa', store);
  const perAddress = limiter(options.addressAttempts ?? attempts * 5, window, 'login_a', store);
  const perAccount = limiter(options.accountAttempts ?? attempts * 10, window, 'login_u', store);
  const keys = (address: string, account: string) =>
    [
      [perAccountAndAddress, `${address}\n${account.toLowerCase()}`],
      [perAddress, address],
      [perAccount, account.toLowerCase()],
    ] as Array<[Limiter, string]>;
  return {
    async wait(address, account) {
      const waits = await Promise.all(
        keys(address, account).map(async ([l, key]) => secondsLeft(await l.get(key), l.points)),
      );
      return Math.max(...waits);
    },
    async failure(address, account) {
      await Promise.all(keys(address, account).map(([l, key]) => l.consume(key).catch(overLimitIsFine)));
    },
    async success(address, account) {
      // A success ends the consecutive failures of this account from this address; the other counters stay, so
      // an attacker cannot reset them by logging into an account of their own.
      await perAccountAndAddress.delete(`${address}\n${account.toLowerCase()}`);
    },
  };
}

/** Counts wrong device-flow user codes per client address; `wait()` says how long entry is refused (0: go ahead). */
export interface UserCodeLimiter {
  wait(address: string): Promise<number>;
  failure(address: string): Promise<void>;
}

/**
 * The brute-force limit on device-flow user codes (RFC 8628 §5.1): `attempts` wrong codes per client address per
 * window, on the login limits' store (created first by {@link createLoginLimiter}), so instances share it.
 */
export function createUserCodeLimiter(
  attempts: number,
  options: Pick<LoginRateLimit, 'windowSeconds' | 'store'> = {},
): UserCodeLimiter {
  const window = Math.max(1, Math.round(options.windowSeconds ?? 300));
  const counter = limiter(attempts, window, 'device_a', options.store);
  return {
    async wait(address) {
      return secondsLeft(await counter.get(address), attempts);
    },
    async failure(address) {
      await counter.consume(address).catch(overLimitIsFine);
    },
  };
}

const secondsLeft = (res: RateLimiterRes | null, points: number) =>
  res && res.consumedPoints >= points ? Math.max(1, Math.ceil(res.msBeforeNext / 1000)) : 0;

/** A consume past the limit rejects with the counter's state: that is what a failure past the limit is. */
const overLimitIsFine = (rejection: unknown) => {
  if (!(rejection instanceof RateLimiterRes)) throw rejection;
};

/**
 * Reads a trust-proxy setting: a hop count (`1`, `"2"`), or addresses/CIDRs and the names `loopback`,
 * `linklocal`, `uniquelocal` (`"loopback,10.0.0.0/8"`, `["10.0.0.0/8"]`). Throws a TypeError naming the bad part.
 */
export function parseTrustProxy(value: number | string | readonly string[]): TrustProxy {
  if (typeof value === 'number' || /^\d+$/.test(String(value))) {
    const hops = Number(value);
    if (!Number.isInteger(hops) || hops < 0 || hops > 10) throw new TypeError(`${value} is not a hop count (0-10)`);
    return hops;
  }
  const list = (typeof value === 'string' ? value.split(',') : [...value]).map((s) => s.trim()).filter(Boolean);
  if (list.length === 0) throw new TypeError('no proxy addresses given');
  try {
    proxyAddr.compile(list);
  } catch (cause) {
    throw new TypeError(`${list.join(',')}: ${(cause as Error).message}`);
  }
  return list;
}

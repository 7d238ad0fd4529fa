import type { Adapter, AdapterPayload } from 'oidc-provider';
import { StoreUnavailableError } from '../errors.js';

export type { Adapter, AdapterPayload };

/**
 * An oidc-provider `adapter` setting: a factory (not a class, so each backend shares one connection across the
 * models) plus lifecycle helpers.
 */
export interface OidcAdapterFactory {
  (model: string): Adapter;
  /** Resolves once the backend is connected and its schema exists; rejects with the connection error. */
  ready(): Promise<void>;
  /** Deletes expired entries now; resolves to how many went (Redis expires keys itself and reports 0). */
  purgeExpired(): Promise<number>;
  /** Stops the purge timer and closes connections the factory opened. */
  close(): Promise<void>;
  /** The live entries of one model (`Client`, `Grant`, …), for administration. */
  list(model: string): Promise<Array<{ id: string; payload: AdapterPayload }>>;
  /** Re-seals every entry with the first at-rest key (after a key rotation); resolves to how many changed. */
  rekey(): Promise<number>;
  /**
   * Writes several entries as `upsert` would, all or none, in one transaction or round trip: what a token request
   * issues (the new refresh token, the access token's record, the grace-window answer) costs one commit, not three.
   * With `consume`, the same transaction first consumes that entry as `adapter(model).consume(id)` would (a
   * compare-and-set); when it was already consumed or is gone, nothing is written and the call rejects as `consume`
   * does (`invalid_grant`). A rotated refresh token is redeemed and its successor stored in one commit.
   */
  upsertMany(entries: readonly UpsertEntry[], consume?: ConsumeEntry): Promise<void>;
  /**
   * Subscribes to `topic` (letters, digits and `_`), which every instance sharing the store hears: Redis pub/sub on
   * a connection of its own, PostgreSQL `LISTEN`/`NOTIFY`. Values cross the store sealed with the at-rest key,
   * bound to the topic; one that does not open (another key, tampered) is dropped. Delivery is at most once and only
   * to subscribers listening at the time: a caller that needs to know waits for an answer of its own. Present on
   * Redis and PostgreSQL only (memory and SQLite have nobody to tell).
   *
   * @example
   * ```ts
   * const store = redisOidcAdapter({ url: 'redis://localhost:6379', encryptionKeys: [process.env.GATEHOUSE_STORE_KEY!] });
   * const topic = await store.broadcast!('cache_flush', (value) => console.log('heard', value));
   * await topic.publish({ reason: 'rotated' }); // every subscribed instance, this one too, hears { reason: 'rotated' }
   * await topic.close();
   * ```
   */
  broadcast?(topic: string, onmessage: (value: AdapterPayload) => void): Promise<Broadcast>;
  /**
   * Raises the store's format level to {@link FORMAT_LEVEL} (run once every instance sharing the store runs this
   * version: `gatehouse admin store upgrade`); resolves to the level before and after. Idempotent.
   */
  upgrade(): Promise<{ from: number; to: number }>;
}

/** A subscription to a store's topic, from {@link OidcAdapterFactory.broadcast}. */
export interface Broadcast {
  /** Sends `value` (JSON) to every subscriber of the topic; resolves once the store took it. */
  publish(value: AdapterPayload): Promise<void>;
  /** Stops listening (the connection it held is released). */
  close(): Promise<void>;
}

/** Checks a topic name of {@link OidcAdapterFactory.broadcast}: it is part of a channel name. */
export function checkTopic(topic: string): string {
  if (!/^[A-Za-z0-9_]{1,32}$/.test(topic)) throw new TypeError(`invalid broadcast topic: ${JSON.stringify(topic)}`);
  return topic;
}

/**
 * The store format this version writes once the store says so. Level 2: hashed keys, sealed payloads, a rotated
 * refresh token's grace answer in an entry of its own ({@link GRACE_MODEL}). Level 3: that answer is kept with the
 * consumed token itself, written by the compare-and-set that consumes it and read with the token. Instances of the
 * previous version read only level 2, so a store stays there until `gatehouse admin store upgrade`.
 */
export const FORMAT_LEVEL = 3;

/** The model of a grace answer's own entry (format level 2): payload `{ sealed }`, id {@link KeptAnswer.legacyId}. */
export const GRACE_MODEL = 'GatehouseRefreshGrace';

/**
 * A payload read by `find` carries, under this (non-enumerable) key, the answer kept with the consumed entry while
 * it lives (format level 3): the sealed text of {@link KeptAnswer.sealed}.
 */
export const KEPT_ANSWER: unique symbol = Symbol('gatehouse.keptAnswer');

/** The response kept for a rotated refresh token during its grace window, sealed by the caller with its own key. */
export interface KeptAnswer {
  /** Sealed with a key derived from the consumed token: stored as is, not sealed again at rest. */
  sealed: string;
  /** Seconds it stays readable. */
  expiresIn: number;
  /** Its id as a {@link GRACE_MODEL} entry, where a store below level 3 writes it (and older instances read it). */
  legacyId: string;
}

/** The entry {@link OidcAdapterFactory.upsertMany} consumes before it writes: `adapter(model).consume(id)`. */
export interface ConsumeEntry {
  model: string;
  id: string;
  /** The answer to keep with it, written by the same compare-and-set (or as its own entry below level 3). */
  answer?: KeptAnswer;
}

/** The {@link GRACE_MODEL} entry holding `answer` in the format level 2 layout. */
export function answerEntry(answer: KeptAnswer): UpsertEntry {
  return {
    model: GRACE_MODEL,
    id: answer.legacyId,
    payload: { sealed: answer.sealed } as never,
    expiresIn: answer.expiresIn,
  };
}

/** Attaches a kept answer to a payload read by `find` (see {@link KEPT_ANSWER}). */
export function withKeptAnswer(payload: AdapterPayload, sealed: string | null | undefined): AdapterPayload {
  if (typeof sealed === 'string') Object.defineProperty(payload, KEPT_ANSWER, { value: sealed, enumerable: false });
  return payload;
}

/** The format level a store's marker payload records (level 2 wrote `{ format: 2 }`). */
export function formatLevelOf(payload: unknown): number {
  const level = (payload as { format?: unknown } | undefined)?.format;
  return typeof level === 'number' ? level : 2;
}

/**
 * A store's format level as this instance last read it. Other instances (or `gatehouse admin store upgrade`) may
 * raise it at any time: it is read again, in the background, at most every {@link FORMAT_RECHECK_MS}, so running
 * instances start writing the new layout within seconds. Writing the old layout a little longer is always safe.
 */
export class FormatLevel {
  #level = 2;
  #checkedAt = 0;
  #checking = false;

  constructor(readonly read: () => Promise<number>) {}

  set(level: number): void {
    this.#level = level;
    this.#checkedAt = Date.now();
  }

  /** Whether the store is at {@link FORMAT_LEVEL}; starts a background re-read when the last one is old. */
  current(): boolean {
    if (this.#level < FORMAT_LEVEL && !this.#checking && Date.now() - this.#checkedAt > FORMAT_RECHECK_MS) {
      this.#checking = true;
      this.read()
        .then((level) => this.set(level))
        .catch(() => {
          this.#checkedAt = Date.now();
        })
        .finally(() => {
          this.#checking = false;
        });
    }
    return this.#level >= FORMAT_LEVEL;
  }
}

/** How often an instance below {@link FORMAT_LEVEL} reads its store's format marker again. */
export const FORMAT_RECHECK_MS = 5000;

/** One write of {@link OidcAdapterFactory.upsertMany}: the arguments of `adapter(model).upsert(id, payload, expiresIn)`. */
export interface UpsertEntry {
  model: string;
  id: string;
  payload: AdapterPayload;
  expiresIn?: number;
}

/** Writes entries of the old layout through the adapter (hashed, sealed), skipping expired ones. */
export async function rewriteLegacy(
  adapter: (model: string) => Adapter,
  entries: ReadonlyArray<{
    model: string;
    id: string;
    payload: AdapterPayload;
    expiresIn?: number;
    consumed?: number;
  }>,
): Promise<void> {
  for (const entry of entries) {
    if (entry.expiresIn !== undefined && entry.expiresIn <= 0) continue;
    const payload = entry.consumed === undefined ? entry.payload : { ...entry.payload, consumed: entry.consumed };
    await adapter(entry.model).upsert(entry.id, payload, entry.expiresIn);
  }
}

/** Models whose entries belong to a grant and go when it is revoked (as in oidc-provider's memory adapter). */
export const GRANTABLE = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
]);

/** Entries that `consume()` marks: one-time artifacts redeemed at the token endpoint. */
const LABELS: Record<string, string> = {
  AuthorizationCode: 'authorization code',
  RefreshToken: 'refresh token',
  DeviceCode: 'device code',
  BackchannelAuthenticationRequest: 'backchannel authentication request',
  PreAuthorizedCode: 'pre-authorized code',
};

/**
 * The error a losing concurrent redemption gets. oidc-provider checks `consumed` on the object it read earlier and
 * then calls `adapter.consume()`, so two requests can both pass the check; our adapters make `consume()` a
 * compare-and-set and throw oidc-provider's own `InvalidGrant` for the loser, which its error handler turns into
 * HTTP 400 `invalid_grant` (never a 500).
 */
export async function alreadyConsumed(model: string, reason: 'consumed' | 'missing'): Promise<never> {
  const { errors } = await import('oidc-provider');
  const label = LABELS[model] ?? model;
  throw new errors.InvalidGrant(reason === 'consumed' ? `${label} already consumed` : `${label} not found`);
}

/** How long an entry read together with a token stays usable for that request's `Grant.find` or `findByUid`. */
const PREFETCH_MS = 1000;

/**
 * Entries a backend read together with a token (its Grant, its session): oidc-provider's refresh and code grants
 * read those right after the token, and take them from here instead of the store, each once and within
 * {@link PREFETCH_MS}. A backend forgets an entry when this process changes it (saved again, destroyed, revoked);
 * a session is kept under its uid index key and forgotten by its own `lookup` too.
 */
export class PrefetchedEntries<Value> {
  readonly #entries = new Map<string, { value: Value; lookup?: string; at: number }>();

  put(key: string, value: Value, lookup?: string): void {
    const now = Date.now();
    // Oldest first (insertion order): drop what nobody took in time, and never hold more than a few hundred.
    for (const [old, entry] of this.#entries) {
      if (now - entry.at <= PREFETCH_MS && this.#entries.size < 512) break;
      this.#entries.delete(old);
    }
    this.#entries.delete(key);
    this.#entries.set(key, { value, ...(lookup !== undefined && { lookup }), at: now });
  }

  /** The entry put under `key` in the last {@link PREFETCH_MS}, once; undefined when there is none. */
  take(key: string): { value: Value; lookup?: string } | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    this.#entries.delete(key);
    return Date.now() - entry.at <= PREFETCH_MS ? entry : undefined;
  }

  /** Drops an entry this process changes: by its key, or by a session's `lookup`. */
  forget(key: string): void {
    if (this.#entries.size === 0 || this.#entries.delete(key)) return;
    for (const [at, entry] of this.#entries) if (entry.lookup === key) this.#entries.delete(at);
  }
}

/** Current time in whole seconds, as oidc-provider stores `consumed`. */
export const epochSeconds = (): number => Math.floor(Date.now() / 1000);

/** Runs `purge` every `intervalMs` without keeping the process alive; errors are reported, not thrown. */
export function purgeTimer(
  intervalMs: number | false | undefined,
  purge: () => Promise<unknown>,
  onError: (error: unknown) => void,
): NodeJS.Timeout | undefined {
  if (intervalMs === false || intervalMs === 0) return undefined;
  const timer = setInterval(() => {
    purge().catch(onError);
  }, intervalMs ?? 60_000);
  timer.unref();
  return timer;
}

/** Secondary-index values of a payload. */
export function indexesOf(
  model: string,
  payload: AdapterPayload,
): { grantId?: string; uid?: string; userCode?: string } {
  return {
    grantId: GRANTABLE.has(model) && typeof payload.grantId === 'string' ? payload.grantId : undefined,
    uid: model === 'Session' && typeof payload.uid === 'string' ? payload.uid : undefined,
    userCode: typeof payload.userCode === 'string' ? payload.userCode : undefined,
  };
}

/** Common options of every oidc adapter backend. */
export interface OidcAdapterCommonOptions {
  /** How often expired entries are deleted, in ms; `false` turns the timer off. Default 60 s. */
  purgeIntervalMs?: number | false;
  /** Called with errors from the background purge. Default: ignore. */
  onError?: (error: unknown) => void;
}

/**
 * How long one store operation may take before it counts as an outage. Generous next to the ~1 ms a healthy store
 * takes, and short enough that a request answers `503` well within 2 s instead of hanging.
 */
export const STORE_DEADLINE_MS = 1500;

const TRANSPORT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
const DRIVER_ERRORS = new Set([
  'ClientClosedError',
  'ClientOfflineError',
  'SocketClosedUnexpectedlyError',
  'ConnectionTimeoutError',
  'SocketTimeoutError',
  'ReconnectStrategyError',
]);

/**
 * Whether an error means "the store is not reachable" rather than "the request is wrong": transport errors, the
 * node-redis offline/closed errors, and PostgreSQL's connection-exception (08xxx) and shutdown (57P0x) states.
 */
export function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const { code } = error as { code?: unknown };
  if (typeof code === 'string' && (TRANSPORT_CODES.has(code) || /^(08|57P0)/.test(code))) return true;
  if (DRIVER_ERRORS.has(error.name) || DRIVER_ERRORS.has(error.constructor.name)) return true;
  if (/Connection terminated|connection timeout|timeout exceeded when trying to connect/i.test(error.message)) {
    return true;
  }
  const { errors } = error as { errors?: unknown };
  return Array.isArray(errors) && errors.some(isConnectionError);
}

/**
 * Runs one store operation with a deadline, turning an unreachable or silent store into
 * {@link StoreUnavailableError}; any other error passes through unchanged.
 */
export async function guarded<T>(store: string, operation: Promise<T>, deadlineMs = STORE_DEADLINE_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new StoreUnavailableError(`the ${store} store did not answer within ${deadlineMs} ms`)),
      deadlineMs,
    );
  });
  try {
    return await Promise.race([operation, deadline]);
  } catch (error) {
    if (error instanceof StoreUnavailableError || !isConnectionError(error)) throw error;
    throw new StoreUnavailableError(`the ${store} store is unavailable: ${(error as Error).message}`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The runner of a key-value store's operations: each waits for the store's connection (`open`) and runs under
 * {@link guarded}'s deadline. `loadDriver` (the optional package) runs once, before any clock starts: a missing
 * package is a `StorageDependencyError`, not an outage.
 */
export function deadlined<C>(
  store: string,
  open: () => Promise<C>,
  deadlineMs: number,
  loadDriver?: () => Promise<unknown>,
): <T>(operation: (connection: C) => Promise<T>) => Promise<T> {
  let loaded: Promise<unknown> | undefined;
  return async (operation) => {
    if (loadDriver) {
      loaded ??= loadDriver();
      await loaded;
    }
    return guarded(store, open().then(operation), deadlineMs);
  };
}

/**
 * {@link OidcAdapterFactory.upsertMany} of a store that opens in the background (`opened`): where a grace answer
 * goes depends on the format level, which is known once the store is open, so such a write waits for it.
 */
export function upsertOnceOpened(
  opened: Promise<unknown>,
  write: (entries: readonly UpsertEntry[], consume?: ConsumeEntry) => Promise<void>,
): OidcAdapterFactory['upsertMany'] {
  return async (entries, consume) => {
    if (consume?.answer) await opened;
    return write(entries, consume);
  };
}

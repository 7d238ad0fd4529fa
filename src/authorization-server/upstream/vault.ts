import type { Logger } from 'pino';
import type { GatehouseStore, KeyValueStore } from '../../storage/types.js';
import { UpstreamError } from './errors.js';
import { tokenRequest, type UpstreamTokenResponse } from './http.js';
import type { UpstreamContext, UpstreamProvider } from './providers.js';

/** What the vault keeps per (subject, upstream). Only ever written through an encrypted store. */
export interface UpstreamTokenRecord {
  version: 1;
  upstream: string;
  access_token: string;
  token_type: string;
  /** Seconds since the epoch; absent when the upstream gave no lifetime (GitHub OAuth Apps). */
  expires_at?: number;
  refresh_token?: string;
  /** Granted scopes, when the upstream said. */
  scope?: string[];
  updated_at: number;
}

/** A usable upstream access token. */
export interface UpstreamAccessToken {
  access_token: string;
  token_type: string;
  /** Seconds since the epoch, when known. */
  expires_at?: number;
  scope?: string[];
}

/** What a refresh attempt leads to: the record to use (or the error to throw) and what to write. */
interface RefreshOutcome {
  record?: UpstreamTokenRecord;
  error?: unknown;
  write: 'set' | 'delete' | 'none';
}

/** Seconds before expiry at which a token counts as expired (and is refreshed). */
const SKEW_SECONDS = 30;

const key = (subject: string, upstream: string) => `tokens:${encodeURIComponent(subject)}:${upstream}`;

/**
 * Upstream tokens per (subject, upstream), in an encrypted store. {@link get} returns a live access token,
 * refreshing it first when it has expired — once per (subject, upstream) however many callers ask at once.
 */
export class UpstreamTokenVault {
  readonly #store: KeyValueStore;
  readonly #providers: ReadonlyMap<string, UpstreamProvider>;
  readonly #context: UpstreamContext;
  readonly #now: () => number;
  readonly #linkUrl: (upstream: string, scopes?: readonly string[]) => string;
  readonly #logger: Logger | undefined;
  readonly #inflight = new Map<string, Promise<UpstreamTokenRecord>>();

  constructor(options: {
    store: KeyValueStore;
    providers: ReadonlyMap<string, UpstreamProvider>;
    context: UpstreamContext;
    now: () => number;
    linkUrl: (upstream: string, scopes?: readonly string[]) => string;
    logger?: Logger;
  }) {
    this.#store = options.store;
    this.#providers = options.providers;
    this.#context = options.context;
    this.#now = options.now;
    this.#linkUrl = options.linkUrl;
    this.#logger = options.logger;
  }

  #seconds(): number {
    return Math.floor(this.#now() / 1000);
  }

  /** Stores a token response (a login, a refresh). A response without a refresh token keeps the previous one. */
  async save(
    subject: string,
    upstream: string,
    response: UpstreamTokenResponse,
    previous?: UpstreamTokenRecord,
  ): Promise<UpstreamTokenRecord> {
    const record = this.#build(upstream, response, previous);
    await this.#store.set(key(subject, upstream), record);
    return record;
  }

  #build(upstream: string, response: UpstreamTokenResponse, previous?: UpstreamTokenRecord): UpstreamTokenRecord {
    const now = this.#seconds();
    const record: UpstreamTokenRecord = {
      version: 1,
      upstream,
      access_token: response.access_token,
      token_type: response.token_type,
      updated_at: now,
    };
    if (response.expires_in !== undefined) record.expires_at = now + Math.floor(response.expires_in);
    const refresh = response.refresh_token ?? previous?.refresh_token;
    if (refresh) record.refresh_token = refresh;
    const scope = response.scope ?? previous?.scope;
    if (scope) record.scope = scope;
    return record;
  }

  /** The stored record, as stored (possibly expired). */
  async read(subject: string, upstream: string): Promise<UpstreamTokenRecord | undefined> {
    const value = (await this.#store.get(key(subject, upstream))) as UpstreamTokenRecord | undefined | null;
    return value && value.version === 1 ? value : undefined;
  }

  /** Deletes the tokens of one (subject, upstream). */
  async delete(subject: string, upstream: string): Promise<void> {
    await this.#store.delete(key(subject, upstream));
  }

  #notLinked(upstream: string, reason: 'not_linked' | 'revoked', scopes?: readonly string[]): UpstreamError {
    const provider = this.#providers.get(upstream);
    const displayName = provider?.displayName ?? upstream;
    const linkUrl = this.#linkUrl(upstream, scopes);
    return new UpstreamError({
      error: 'invalid_grant',
      reason,
      description:
        reason === 'not_linked'
          ? `the user has not linked ${displayName}; they can grant access at ${linkUrl}`
          : `the user's ${displayName} authorization was revoked or has expired; they can grant it again at ${linkUrl}`,
      userMessage:
        reason === 'not_linked'
          ? `Connect your ${displayName} account to continue.`
          : `Your ${displayName} access has expired or was revoked. Connect ${displayName} again to continue.`,
      upstream,
      linkUrl,
    });
  }

  /**
   * A live access token for (subject, upstream): the stored one, or a refreshed one when it has expired.
   * Throws {@link UpstreamError}: `not_linked` or `revoked` (with `linkUrl`), or `unavailable`.
   */
  async get(subject: string, upstream: string): Promise<UpstreamAccessToken> {
    if (!this.#providers.has(upstream)) {
      throw new UpstreamError({
        error: 'invalid_target',
        reason: 'unknown_upstream',
        description: `no upstream named ${upstream} is configured`,
        userMessage: 'This sign-in option is not available.',
        upstream,
      });
    }
    let record = await this.read(subject, upstream);
    if (!record) throw this.#notLinked(upstream, 'not_linked');
    if (this.#expired(record)) record = await this.#refreshOnce(subject, upstream);
    return {
      access_token: record.access_token,
      token_type: record.token_type,
      ...(record.expires_at !== undefined && { expires_at: record.expires_at }),
      ...(record.scope && { scope: record.scope }),
    };
  }

  #expired(record: UpstreamTokenRecord): boolean {
    return record.expires_at !== undefined && record.expires_at - SKEW_SECONDS <= this.#seconds();
  }

  #refreshOnce(subject: string, upstream: string): Promise<UpstreamTokenRecord> {
    const k = key(subject, upstream);
    const pending = this.#inflight.get(k);
    if (pending) return pending;
    const promise = this.#refresh(subject, upstream).finally(() => this.#inflight.delete(k));
    this.#inflight.set(k, promise);
    return promise;
  }

  /**
   * Refreshes under the store's read-modify-write lock when it has one (the file store locks across processes),
   * so instances sharing a store spend a rotating refresh token once; otherwise read, refresh, write.
   */
  async #refresh(subject: string, upstream: string): Promise<UpstreamTokenRecord> {
    const update = (this.#store as Partial<GatehouseStore>).update?.bind(this.#store);
    if (!update) {
      const current = await this.read(subject, upstream);
      const outcome = await this.#refreshed(subject, upstream, current);
      if (outcome.write === 'delete') await this.delete(subject, upstream);
      else if (outcome.write === 'set') await this.#store.set(key(subject, upstream), outcome.record);
      if (outcome.error) throw outcome.error;
      return outcome.record!;
    }
    let outcome: RefreshOutcome | undefined;
    await update(key(subject, upstream), async (raw) => {
      const current = raw && (raw as UpstreamTokenRecord).version === 1 ? (raw as UpstreamTokenRecord) : undefined;
      outcome = await this.#refreshed(subject, upstream, current);
      return outcome.write === 'delete' ? undefined : (outcome.record ?? current);
    });
    if (outcome!.error) throw outcome!.error;
    return outcome!.record!;
  }

  /** Decides what a refresh does with the current record; never writes. */
  async #refreshed(
    subject: string,
    upstream: string,
    current: UpstreamTokenRecord | undefined,
  ): Promise<RefreshOutcome> {
    // Another caller (or instance) may have refreshed since this one looked.
    if (!current) return { error: this.#notLinked(upstream, 'not_linked'), write: 'none' };
    if (!this.#expired(current)) return { record: current, write: 'none' };
    const provider = this.#providers.get(upstream)!;
    if (!current.refresh_token) {
      this.#logger?.info({ upstream, subject }, 'upstream token expired and there is no refresh token');
      return { error: this.#notLinked(upstream, 'revoked'), write: 'delete' };
    }
    let response: UpstreamTokenResponse;
    try {
      const endpoints = await provider.endpoints(this.#context);
      response = await tokenRequest({
        upstream,
        displayName: provider.displayName,
        endpoint: endpoints.tokenEndpoint,
        params: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: current.refresh_token }),
        clientId: provider.clientId,
        clientSecret: provider.clientSecret,
        auth: provider.tokenEndpointAuthMethod,
        ...this.#context,
      });
    } catch (error) {
      if (error instanceof UpstreamError && error.error === 'invalid_grant') {
        this.#logger?.info({ upstream, subject, reason: error.description }, 'upstream refresh refused');
        // The refresh token is dead: forget it, so the next request says "link again" at once.
        return { error: this.#notLinked(upstream, 'revoked'), write: 'delete' };
      }
      this.#logger?.warn({ upstream, subject, reason: (error as Error).message }, 'upstream refresh failed');
      return { record: current, error, write: 'none' };
    }
    this.#logger?.debug({ upstream, subject }, 'upstream token refreshed');
    return { record: this.#build(upstream, response, current), write: 'set' };
  }

  /** The error for a token that lacks `missing` scopes: names the link URL that asks for them. */
  insufficientScope(upstream: string, missing: readonly string[]): UpstreamError {
    const provider = this.#providers.get(upstream);
    const displayName = provider?.displayName ?? upstream;
    const linkUrl = this.#linkUrl(upstream, missing);
    return new UpstreamError({
      error: 'invalid_scope',
      reason: 'insufficient_scope',
      description: `the user's ${displayName} authorization lacks ${missing.join(' ')}; they can grant it at ${linkUrl}`,
      userMessage: `Grant ${displayName} the additional access (${missing.join(', ')}) to continue.`,
      upstream,
      linkUrl,
    });
  }
}

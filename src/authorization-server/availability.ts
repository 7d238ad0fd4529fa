import type { IncomingMessage, ServerResponse } from 'node:http';
import type Provider from 'oidc-provider';
import { type Adapter, errors as oidcErrors } from 'oidc-provider';
import { StoreUnavailableError } from '../storage/errors.js';
import { answerEntry, type ConsumeEntry, type UpsertEntry } from '../storage/oidc/common.js';
import { escapeHtml, PAGE_HEADERS, page } from './html.js';

const DESCRIPTION = 'the authorization server cannot reach its store; retry shortly';

/** Whether an error is a store outage, before or after {@link withStoreAvailability} translated it. */
export function isStoreOutage(error: unknown): boolean {
  return (
    error instanceof StoreUnavailableError ||
    (error instanceof oidcErrors.OIDCProviderError && error.error === 'temporarily_unavailable')
  );
}

function retryAfter(error: unknown): string {
  return String(error instanceof StoreUnavailableError ? error.retryAfterSeconds : 1);
}

function translated(error: unknown): unknown {
  if (!(error instanceof StoreUnavailableError)) return error;
  // oidc-provider hides 5xx errors behind `server_error`; this one is safe and useful to show.
  const outage = new oidcErrors.TemporarilyUnavailable(DESCRIPTION, { cause: error });
  Object.assign(outage, { status: 503, statusCode: 503, expose: true, retryAfter: retryAfter(error) });
  return outage;
}

/** A store that can also write several entries at once (all or none), after consuming one (see `upsertMany`). */
export type BatchingAdapterFactory = ((model: string) => Adapter) & {
  upsertMany(entries: readonly UpsertEntry[], consume?: ConsumeEntry): Promise<void>;
};

/**
 * Wraps the store so that an outage reaches oidc-provider as its own `temporarily_unavailable` error (HTTP 503)
 * instead of a `500 server_error`. A store without `upsertMany` (a hand-made adapter) writes such batches one entry
 * after the other.
 */
export function withStoreAvailability(
  adapter: ((model: string) => Adapter) & {
    upsertMany?: (entries: readonly UpsertEntry[], consume?: ConsumeEntry) => Promise<void>;
    upgrade?: () => Promise<unknown>;
  },
): BatchingAdapterFactory {
  const guard =
    <A extends unknown[], R>(call: (...args: A) => Promise<R>) =>
    (...args: A): Promise<R> =>
      call(...args).catch((error: unknown) => {
        throw translated(error);
      });
  const upsertMany = guard(async (entries: readonly UpsertEntry[], consume?: ConsumeEntry) => {
    // A hand-made upsertMany of one parameter knows nothing of `consume`: it must not be skipped silently.
    // A store without `upgrade` predates kept answers (`ConsumeEntry.answer`): it gets the answer as an entry of its own.
    if (consume?.answer && !adapter.upgrade) {
      const { answer, ...rest } = consume;
      entries = [...entries, answerEntry(answer)];
      consume = rest;
    }
    if (adapter.upsertMany && (!consume || adapter.upsertMany.length >= 2)) {
      return adapter.upsertMany(entries, consume);
    }
    if (consume) await adapter(consume.model).consume(consume.id);
    if (adapter.upsertMany) return adapter.upsertMany(entries);
    for (const { model, id, payload, expiresIn } of entries) await adapter(model).upsert(id, payload, expiresIn);
  });
  const factory = (model: string): Adapter => {
    const inner = adapter(model);
    return {
      upsert: guard((id, payload, expiresIn) => inner.upsert(id, payload, expiresIn)),
      find: guard((id) => inner.find(id)),
      findByUid: guard((uid) => inner.findByUid(uid)),
      findByUserCode: guard((userCode) => inner.findByUserCode(userCode)),
      consume: guard((id) => inner.consume(id)),
      destroy: guard((id) => inner.destroy(id)),
      revokeByGrantId: guard((grantId) => inner.revokeByGrantId(grantId)),
    } satisfies Adapter;
  };
  return Object.assign(factory, { upsertMany });
}

/** Adds `Retry-After` to every `503` oidc-provider answers. */
export function installRetryAfter(provider: Provider): void {
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.status === 503 && !ctx.response.get('retry-after')) ctx.set('Retry-After', '1');
  });
}

/**
 * Answers a request that failed on a store outage outside oidc-provider (login and consent pages): `503`,
 * `Retry-After`, and the OAuth error as JSON, or as a page for a browser.
 */
export function answerStoreOutage(req: IncomingMessage, res: ServerResponse, error: unknown): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const wantsHtml = /text\/html/.test(req.headers.accept ?? '');
  if (wantsHtml) {
    res.writeHead(503, { ...PAGE_HEADERS, 'retry-after': retryAfter(error) });
    res.end(page('Temporarily unavailable', `<h1>Temporarily unavailable</h1><p>${escapeHtml(DESCRIPTION)}.</p>`));
    return;
  }
  res.writeHead(503, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'retry-after': retryAfter(error),
  });
  res.end(JSON.stringify({ error: 'temporarily_unavailable', error_description: DESCRIPTION }));
}

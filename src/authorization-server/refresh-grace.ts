import { createHash, createHmac } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Adapter, KoaContextWithOIDC } from 'oidc-provider';
import Provider from 'oidc-provider';
import * as refreshTokenGrant from 'oidc-provider/lib/actions/grants/refresh_token.js';
import * as grantHelpers from 'oidc-provider/lib/helpers/grants.js';
import { openValue, type SealingKey, sealingKey, sealValueOnce } from '../storage/encrypted.js';
import {
  answerEntry,
  type ConsumeEntry,
  GRACE_MODEL,
  KEPT_ANSWER,
  type KeptAnswer,
  type UpsertEntry,
} from '../storage/oidc/common.js';
import type { BatchingAdapterFactory } from './availability.js';

export { GRACE_MODEL };

// HKDF-SHA256 (RFC 5869) of the token, salt `gatehouse`, info `refresh-grace-v1`, 32 bytes: one HMAC to extract and
// one to expand (32 bytes is a single block), the same key `hkdfSync` derives at a third of its cost per refresh.
const GRACE_INFO = Buffer.from('refresh-grace-v1\x01', 'latin1');

/** The store id and the sealing key of the grace answer kept for a rotated refresh token. */
export function keyFor(token: string): { id: string; key: SealingKey } {
  return { id: graceId(token), key: graceKey(token) };
}

/** The id of a grace answer's entry of its own (format level 2): SHA-256 of the token. */
const graceId = (token: string): string => createHash('sha256').update(token).digest('base64url');

/** The key a grace answer is sealed with (see GRACE_INFO). */
const graceKey = (token: string): SealingKey => {
  const pseudorandomKey = createHmac('sha256', 'gatehouse').update(token).digest();
  return sealingKey(new Uint8Array(createHmac('sha256', pseudorandomKey).update(GRACE_INFO).digest()));
};

// The cached response holds a live token pair, so it is sealed with a key derived from the old refresh token: the
// store alone (a database dump, even with the at-rest key) cannot read it, only a holder of the old token can. Each
// such key seals one value (see sealValueOnce).
const seal = (key: SealingKey, value: unknown): string => sealValueOnce(key, 'refresh-grace', value);
const open = (key: SealingKey, sealed: string): unknown => openValue([key], 'refresh-grace', sealed);

/** Thrown from inside the refresh grant when a grace-window response is found: carries the response body. */
class GraceHit extends Error {
  constructor(readonly body: unknown) {
    super('refresh token grace window hit');
  }
}

/** A refresh-token grant in progress: the client asking, the writes waiting for its end, the token it redeems. */
interface RefreshRequest {
  clientId: string;
  writes: UpsertEntry[];
  /** The refresh token oidc-provider consumed (rotated), consumed for real with {@link RefreshRequest.writes}. */
  consumes?: string;
}

/**
 * The refresh grant in progress of each request. oidc-provider runs every request in its own async context
 * (`Provider.ctx`), so the adapter finds the request it serves without a second `AsyncLocalStorage`, whose hook
 * would run for every promise of the process.
 */
const refreshRequests = new WeakMap<object, RefreshRequest>();

function currentRefreshRequest(): RefreshRequest | undefined {
  const ctx = Provider.ctx;
  return ctx === undefined ? undefined : refreshRequests.get(ctx);
}

/**
 * Models whose writes during a refresh-token grant wait for its end and then go to the store together, with the
 * grace-window answer, in one transaction or round trip (`upsertMany`): the new refresh token and the access token
 * (or the record of a JWT access token). The compare-and-set `consume` of the old refresh token waits too and runs
 * first in that same transaction: the rotation is one commit, and the writes happen only if this request won it.
 * Nothing is answered before they are stored, and a grant that fails halfway stores none of them.
 */
const DEFERRED = new Set(['RefreshToken', 'AccessToken']);

/** The answer a `find` of a consumed refresh token brought along (format level 3), opened; undefined when none. */
function answerWith(payload: unknown, secret: SealingKey): { body: unknown } | undefined {
  const sealed = (payload as { [KEPT_ANSWER]?: string } | undefined)?.[KEPT_ANSWER];
  if (typeof sealed !== 'string') return undefined;
  try {
    return { body: open(secret, sealed) };
  } catch {
    return { body: undefined };
  }
}

/**
 * The response kept for a rotated token, waiting briefly for a concurrent request still writing it; undefined when
 * none comes within the window (then the token counts as reused). Looked for in both layouts: with the consumed
 * token (format level 3), and in an entry of its own (level 2, what instances of the previous version write).
 */
async function keptResponse(
  adapter: (model: string) => Adapter,
  graceSeconds: number,
  token: string,
  consumedAt: number | undefined,
): Promise<unknown> {
  const { id: key, key: secret } = keyFor(token);
  // Until the window closes (a loaded winner may take a while to answer), then the token counts as reused.
  const until = ((consumedAt ?? Date.now() / 1000) + graceSeconds) * 1000;
  while (Date.now() <= until) {
    const [entry, consumed] = await Promise.all([
      adapter(GRACE_MODEL).find(key) as Promise<{ sealed?: string } | undefined>,
      adapter('RefreshToken').find(token),
    ]);
    const inRow = answerWith(consumed, secret);
    if (inRow) return inRow.body;
    if (entry?.sealed) {
      try {
        return open(secret, entry.sealed);
      } catch {
        return undefined;
      }
    }
    await sleep(50);
  }
  return undefined;
}

/**
 * Wraps the store for the refresh-token grant of {@link installRefreshGrace}: writes of the new tokens and the
 * consume of the old one are collected (see {@link DEFERRED}), and, with a grace window, reading a rotated
 * (consumed) refresh token still within the window answers with the response kept for it instead of letting
 * oidc-provider treat it as reuse. Only consumed tokens pay for the window; the common path costs no extra read.
 */
export function withRefreshGrace(
  adapter: (model: string) => Adapter,
  graceSeconds: number,
): (model: string) => Adapter {
  const deferring = (model: string): Adapter => {
    const inner = adapter(model);
    if (!DEFERRED.has(model)) return inner;
    return {
      ...forward(inner),
      upsert: (id, payload, expiresIn) => {
        const request = currentRefreshRequest();
        if (!request) return inner.upsert(id, payload, expiresIn);
        request.writes.push({ model, id, payload, ...(expiresIn !== undefined && { expiresIn }) });
        return Promise.resolve();
      },
      consume: (id) => {
        const request = currentRefreshRequest();
        if (!request || model !== 'RefreshToken' || request.consumes !== undefined) return inner.consume(id);
        request.consumes = id;
        return Promise.resolve();
      },
    };
  };
  if (graceSeconds <= 0) return deferring;
  return (model: string) => {
    const inner = deferring(model);
    if (model !== 'RefreshToken') return inner;
    const find = async (id: string) => {
      const payload = await inner.find(id);
      const context = currentRefreshRequest();
      const consumed = payload?.consumed;
      if (!context || !payload || typeof consumed !== 'number' || payload['clientId'] !== context.clientId) {
        return payload;
      }
      // Format level 3: the answer came with the token, no second lookup. Else the entry of its own (level 2).
      const inRow = Date.now() <= (consumed + graceSeconds) * 1000 ? answerWith(payload, graceKey(id)) : undefined;
      const body = inRow ? inRow.body : await keptResponse(adapter, graceSeconds, id, consumed);
      if (body !== undefined) throw new GraceHit(body);
      return payload;
    };
    return { ...forward(inner), find } satisfies Adapter;
  };
}

/** An adapter passing every call to `inner` (bound, so methods may be replaced one by one). */
function forward(inner: Adapter): Adapter {
  return {
    upsert: (id, payload, expiresIn) => inner.upsert(id, payload, expiresIn),
    find: (id) => inner.find(id),
    findByUid: (uid) => inner.findByUid(uid),
    findByUserCode: (userCode) => inner.findByUserCode(userCode),
    consume: (id) => inner.consume(id),
    destroy: (id) => inner.destroy(id),
    revokeByGrantId: (grantId) => inner.revokeByGrantId(grantId),
  };
}

/** oidc-provider's grant helpers bound to `provider`, as its built-in grant handlers expect them. */
export function boundGrantHelpers(provider: Provider): Record<string, (...args: unknown[]) => unknown> {
  return Object.fromEntries(
    Object.entries(grantHelpers as Record<string, unknown>)
      .filter((entry): entry is [string, (...args: unknown[]) => unknown] => typeof entry[1] === 'function')
      .map(([name, helper]) => [name, helper.bind(undefined, provider)]),
  );
}

/**
 * Replaces oidc-provider's `refresh_token` grant with one that stores what it issues in one write (see
 * {@link DEFERRED}) and keeps reuse detection (a rotated token presented again revokes the whole grant) but allows
 * a grace window (field note 15): within `graceSeconds` after a rotation, presenting the rotated token again returns
 * the same new pair instead of revoking. Works across instances, since the pair is kept in the shared store. Use with
 * a store wrapped by {@link withRefreshGrace}.
 */
export function installRefreshGrace(provider: Provider, adapter: BatchingAdapterFactory, graceSeconds: number) {
  const helpers = boundGrantHelpers(provider);
  const original = (ctx: KoaContextWithOIDC) => refreshTokenGrant.handler(provider, helpers, ctx);

  const params = new Set([...refreshTokenGrant.parameters, 'resource']);
  provider.registerGrantType(
    'refresh_token',
    async (ctx: KoaContextWithOIDC) => {
      const token = ctx.oidc.params?.['refresh_token'];
      const request: RefreshRequest = { clientId: ctx.oidc.client?.clientId ?? '', writes: [] };
      refreshRequests.set(ctx, request);
      try {
        await original(ctx);
      } catch (error) {
        if (error instanceof GraceHit) {
          ctx.body = error.body;
          return;
        }
        throw error;
      } finally {
        refreshRequests.delete(ctx);
      }
      let answer: KeptAnswer | undefined;
      if (graceSeconds > 0 && typeof token === 'string' && ctx.oidc.entities['RotatedRefreshToken'] && ctx.body) {
        const sealed = seal(graceKey(token), ctx.body);
        // The entry id is needed only below format level 3: hashed when the store asks for it.
        answer = {
          sealed,
          expiresIn: Math.ceil(graceSeconds) + 5,
          get legacyId() {
            return graceId(token);
          },
        };
      }
      let consume: ConsumeEntry | undefined;
      if (request.consumes !== undefined && (answer === undefined || request.consumes === token)) {
        // Kept with the token it answers for, by the same compare-and-set (the store picks the layout).
        consume = { model: 'RefreshToken', id: request.consumes, ...(answer && { answer }) };
      } else if (answer) {
        request.writes.push(answerEntry(answer));
      }
      try {
        await adapter.upsertMany(request.writes, consume);
      } catch (error) {
        // Of several requests that all read the token before any consumed it, one wins the store's
        // compare-and-set; the others answer with the winner's response instead of invalid_grant (the second tab,
        // across instances). What they issued themselves was never stored.
        const lostRace = (error as { error?: unknown }).error === 'invalid_grant';
        if (!lostRace || !consume || graceSeconds <= 0) throw error;
        const body = await keptResponse(adapter, graceSeconds, consume.id, undefined);
        if (body === undefined) throw error;
        ctx.body = body;
      }
    },
    params,
    ['resource'],
  );
}

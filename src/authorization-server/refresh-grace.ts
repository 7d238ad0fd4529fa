import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash, hkdfSync } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type Provider from 'oidc-provider';
import type { Adapter, KoaContextWithOIDC } from 'oidc-provider';
import * as refreshTokenGrant from 'oidc-provider/lib/actions/grants/refresh_token.js';
import * as grantHelpers from 'oidc-provider/lib/helpers/grants.js';
import { openValue, type SealingKey, sealingKey, sealValue } from '../storage/encrypted.js';

/** The model under which the response to a just-rotated refresh token is kept for the grace window. */
export const GRACE_MODEL = 'GatehouseRefreshGrace';

function keyFor(token: string): { id: string; key: SealingKey } {
  const id = createHash('sha256').update(token).digest('base64url');
  const key = sealingKey(new Uint8Array(hkdfSync('sha256', token, 'gatehouse', 'refresh-grace-v1', 32)));
  return { id, key };
}

// The cached response holds a live token pair, so it is sealed with a key derived from the old refresh token: the
// store alone (a database dump, even with the at-rest key) cannot read it, only a holder of the old token can.
const seal = (key: SealingKey, value: unknown): string => sealValue(key, 'refresh-grace', value);
const open = (key: SealingKey, sealed: string): unknown => openValue([key], 'refresh-grace', sealed);

/** Thrown from inside the refresh grant when a grace-window response is found: carries the response body. */
class GraceHit extends Error {
  constructor(readonly body: unknown) {
    super('refresh token grace window hit');
  }
}

const graceContext = new AsyncLocalStorage<{ clientId: string }>();

/**
 * Wraps the store so that, inside a refresh-token grant, reading a rotated (consumed) refresh token still within the
 * grace window answers with the response kept for it instead of letting oidc-provider treat it as reuse. Only
 * consumed tokens pay for this; the common path costs no extra read.
 */
export function withRefreshGrace(
  adapter: (model: string) => Adapter,
  graceSeconds: number,
): (model: string) => Adapter {
  if (graceSeconds <= 0) return adapter;
  const store = adapter(GRACE_MODEL);
  // The response kept for a rotated token, waiting briefly for a concurrent request still writing it; undefined
  // when none comes in time (then the token counts as reused).
  const keptResponse = async (token: string, consumedAt: number | undefined): Promise<unknown> => {
    const { id: key, key: secret } = keyFor(token);
    // Until the window closes (a loaded winner may take a while to answer), then the token counts as reused.
    const until = ((consumedAt ?? Date.now() / 1000) + graceSeconds) * 1000;
    while (Date.now() <= until) {
      const entry = (await store.find(key)) as { sealed?: string } | undefined;
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
  };
  return (model: string) => {
    const inner = adapter(model);
    if (model !== 'RefreshToken') return inner;
    const find = async (id: string) => {
      const payload = await inner.find(id);
      const context = graceContext.getStore();
      const consumed = payload?.consumed;
      if (!context || !payload || typeof consumed !== 'number' || payload['clientId'] !== context.clientId) {
        return payload;
      }
      const body = await keptResponse(id, consumed);
      if (body !== undefined) throw new GraceHit(body);
      return payload;
    };
    // Of several requests that all read the token before any consumed it, one wins the store's compare-and-set;
    // the others answer with the winner's response instead of invalid_grant (the second tab, across instances).
    const consume = async (id: string) => {
      try {
        await inner.consume(id);
      } catch (error) {
        const lostRace = (error as { error?: unknown }).error === 'invalid_grant';
        if (!lostRace || !graceContext.getStore()) throw error;
        const body = await keptResponse(id, undefined);
        if (body === undefined) throw error;
        throw new GraceHit(body);
      }
    };
    return {
      find,
      consume,
      upsert: (id, payload, expiresIn) => inner.upsert(id, payload, expiresIn),
      findByUid: (uid) => inner.findByUid(uid),
      findByUserCode: (userCode) => inner.findByUserCode(userCode),
      destroy: (id) => inner.destroy(id),
      revokeByGrantId: (grantId) => inner.revokeByGrantId(grantId),
    } satisfies Adapter;
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
 * Replaces oidc-provider's `refresh_token` grant with one that keeps reuse detection (a rotated token presented
 * again revokes the whole grant) but allows a grace window (field note 15): within `graceSeconds` after a
 * rotation, presenting the rotated token again returns the same new pair instead of revoking. Works across
 * instances, since the pair is kept in the shared store. Use with a store wrapped by {@link withRefreshGrace}.
 */
export function installRefreshGrace(provider: Provider, adapter: (model: string) => Adapter, graceSeconds: number) {
  const helpers = boundGrantHelpers(provider);
  const original = (ctx: KoaContextWithOIDC) => refreshTokenGrant.handler(provider, helpers, ctx);
  if (graceSeconds <= 0) return;
  const store = adapter(GRACE_MODEL);

  const params = new Set([...refreshTokenGrant.parameters, 'resource']);
  provider.registerGrantType(
    'refresh_token',
    async (ctx: KoaContextWithOIDC) => {
      const token = ctx.oidc.params?.['refresh_token'];
      const clientId = ctx.oidc.client?.clientId ?? '';
      try {
        await graceContext.run({ clientId }, () => original(ctx));
      } catch (error) {
        if (error instanceof GraceHit) {
          ctx.body = error.body;
          return;
        }
        throw error;
      }
      if (typeof token === 'string' && ctx.oidc.entities['RotatedRefreshToken'] && ctx.body) {
        const { id, key } = keyFor(token);
        await store.upsert(id, { sealed: seal(key, ctx.body) } as never, Math.ceil(graceSeconds) + 5);
      }
    },
    params,
    ['resource'],
  );
}

import { AsyncLocalStorage } from 'node:async_hooks';
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type Provider from 'oidc-provider';
import type { Adapter, KoaContextWithOIDC } from 'oidc-provider';
import * as refreshTokenGrant from 'oidc-provider/lib/actions/grants/refresh_token.js';
import * as grantHelpers from 'oidc-provider/lib/helpers/grants.js';

/** The model under which the response to a just-rotated refresh token is kept for the grace window. */
export const GRACE_MODEL = 'GatehouseRefreshGrace';

function keyFor(token: string): { id: string; key: Buffer } {
  const id = createHash('sha256').update(token).digest('base64url');
  const key = Buffer.from(hkdfSync('sha256', token, 'gatehouse', 'refresh-grace-v1', 32));
  return { id, key };
}

// The cached response holds a live token pair, so it is encrypted with a key derived from the old refresh
// token: the store alone (a database dump) cannot read it, only a holder of the old token can.
function seal(key: Buffer, value: unknown): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const data = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
  return [iv, cipher.getAuthTag(), data].map((b) => b.toString('base64url')).join('.');
}

function open(key: Buffer, sealed: string): unknown {
  const [iv, tag, data] = sealed.split('.').map((part) => Buffer.from(part, 'base64url'));
  if (!iv || !tag || !data) return undefined;
  const decipher = createDecipheriv('aes-256-gcm', key, iv);
  decipher.setAuthTag(tag);
  return JSON.parse(Buffer.concat([decipher.update(data), decipher.final()]).toString('utf8'));
}

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
      const { id: key, key: secret } = keyFor(id);
      // A concurrent request may still be writing the new pair: wait for it, briefly, while in the window.
      for (let attempt = 0; attempt < 20; attempt++) {
        if (Date.now() / 1000 - consumed > graceSeconds) return payload;
        const entry = (await store.find(key)) as { sealed?: string } | undefined;
        if (entry?.sealed) {
          let body: unknown;
          try {
            body = open(secret, entry.sealed);
          } catch {
            return payload;
          }
          throw new GraceHit(body);
        }
        await sleep(100);
      }
      return payload;
    };
    return {
      find,
      upsert: (id, payload, expiresIn) => inner.upsert(id, payload, expiresIn),
      findByUid: (uid) => inner.findByUid(uid),
      findByUserCode: (userCode) => inner.findByUserCode(userCode),
      consume: (id) => inner.consume(id),
      destroy: (id) => inner.destroy(id),
      revokeByGrantId: (grantId) => inner.revokeByGrantId(grantId),
    } satisfies Adapter;
  };
}

/**
 * Replaces oidc-provider's `refresh_token` grant with one that keeps reuse detection (a rotated token presented
 * again revokes the whole grant) but allows a grace window (field note 15): within `graceSeconds` after a
 * rotation, presenting the rotated token again returns the same new pair instead of revoking. Works across
 * instances, since the pair is kept in the shared store. Use with a store wrapped by {@link withRefreshGrace}.
 */
export function installRefreshGrace(provider: Provider, adapter: (model: string) => Adapter, graceSeconds: number) {
  const helpers = Object.fromEntries(
    Object.entries(grantHelpers as Record<string, unknown>)
      .filter((entry): entry is [string, (...args: unknown[]) => unknown] => typeof entry[1] === 'function')
      .map(([name, helper]) => [name, helper.bind(undefined, provider)]),
  );
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

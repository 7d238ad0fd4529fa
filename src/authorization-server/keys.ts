import { hkdfSync, randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import type { Adapter } from 'oidc-provider';

/** The model name under which signing and cookie keys are kept in the store. */
export const KEYS_MODEL = 'GatehouseKeys';
/** The id of the key set within {@link KEYS_MODEL}. */
export const KEYS_ID = 'current';
/** How many signing keys are kept per algorithm: the current one signs, older ones stay in the JWKS to verify. */
const KEEP_SIGNING_KEYS = 3;
/**
 * The access-token signing algorithms: RS256, which RFC 9068 requires every resource server to accept, and ES256.
 * Each has its own key; both are published and rotated together.
 */
export const SIGNING_ALGORITHMS = ['RS256', 'ES256'] as const;
/** One of {@link SIGNING_ALGORITHMS}. */
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];

/** The key material of an authorization server. Private: it never leaves the store and the process. */
export interface KeySet {
  /** Private JWKs, one current key per algorithm first; the first of each `alg` signs, all are published. */
  signing: JWK[];
  /** Cookie-signing secrets; the first signs, all verify. */
  cookies: string[];
}

async function newSigningKey(alg: SigningAlgorithm): Promise<JWK> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  return { ...(await exportJWK(privateKey)), kid: randomBytes(8).toString('hex'), alg, use: 'sig' };
}

/** A fresh key for every signing algorithm. */
async function newSigningKeys(): Promise<JWK[]> {
  return Promise.all(SIGNING_ALGORITHMS.map(newSigningKey));
}

function isKeySet(value: unknown): value is KeySet {
  const v = value as Partial<KeySet> | undefined;
  return Array.isArray(v?.signing) && v.signing.length > 0 && Array.isArray(v.cookies) && v.cookies.length > 0;
}

/** Reads the key set from the store, generating and saving one on first start. */
export async function loadOrCreateKeys(adapter: Adapter): Promise<KeySet> {
  const existing = await adapter.find(KEYS_ID);
  if (isKeySet(existing)) {
    // A key set from before an algorithm was added gets a key for it, kept beside the existing ones.
    const missing = SIGNING_ALGORITHMS.filter((alg) => !existing.signing.some((k) => k.alg === alg));
    if (missing.length === 0) return { signing: existing.signing, cookies: existing.cookies };
    const upgraded: KeySet = {
      signing: [...(await Promise.all(missing.map(newSigningKey))), ...existing.signing],
      cookies: existing.cookies,
    };
    await adapter.upsert(KEYS_ID, upgraded as never);
    const stored = await adapter.find(KEYS_ID);
    return isKeySet(stored) ? { signing: stored.signing, cookies: stored.cookies } : upgraded;
  }
  const created: KeySet = { signing: await newSigningKeys(), cookies: [randomBytes(32).toString('base64url')] };
  await adapter.upsert(KEYS_ID, created as never);
  // Two instances starting at once: whoever wrote last wins, and both use what is stored.
  const stored = await adapter.find(KEYS_ID);
  return isKeySet(stored) ? { signing: stored.signing, cookies: stored.cookies } : created;
}

/**
 * Adds a new signing key per algorithm (they sign from the next start on) and a new cookie key; keeps the previous
 * two keys of each algorithm in the JWKS so tokens they signed still verify. Returns the first new key's `kid`.
 *
 * @example
 * ```ts
 * import { rotateKeys, KEYS_MODEL } from 'gatehouse/authorization-server';
 * import { oidcAdapterFactory } from 'gatehouse/storage';
 *
 * const store = oidcAdapterFactory({ backend: 'redis', url: 'redis://127.0.0.1:6379' });
 * const { kid } = await rotateKeys(store(KEYS_MODEL)); // then restart the servers
 * ```
 */
export async function rotateKeys(adapter: Adapter): Promise<{ kid: string; kids: string[] }> {
  const current = await loadOrCreateKeys(adapter);
  const fresh = await newSigningKeys();
  const next: KeySet = {
    signing: [...fresh, ...current.signing].slice(0, KEEP_SIGNING_KEYS * SIGNING_ALGORITHMS.length),
    cookies: [randomBytes(32).toString('base64url'), ...current.cookies].slice(0, KEEP_SIGNING_KEYS),
  };
  await adapter.upsert(KEYS_ID, next as never);
  return { kid: fresh[0]!.kid!, kids: next.signing.map((k) => k.kid!) };
}

/**
 * The HMAC keys of the login and consent form tokens, derived from the stored cookie keys: every instance sharing
 * the store accepts a form another instance rendered. The first signs; all verify.
 */
export function formTokenSecrets(keys: KeySet): Buffer[] {
  return keys.cookies.map((cookie) =>
    Buffer.from(hkdfSync('sha256', Buffer.from(cookie, 'base64url'), Buffer.alloc(0), 'gatehouse form token', 32)),
  );
}

import { hkdfSync, randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import type { Adapter } from 'oidc-provider';
import { JWKS_CACHE_SECONDS } from '../oauth/discovery.js';

/** The model name under which signing and cookie keys are kept in the store. */
export const KEYS_MODEL = 'GatehouseKeys';
/** The id of the key set within {@link KEYS_MODEL}. */
export const KEYS_ID = 'current';
/**
 * The access-token signing algorithms: RS256, which RFC 9068 requires every resource server to accept, and ES256.
 * Each has its own key; both are published and rotated together.
 */
export const SIGNING_ALGORITHMS = ['RS256', 'ES256'] as const;
/** One of {@link SIGNING_ALGORITHMS}. */
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];

/**
 * Seconds between a rotation and the moment its keys sign, by default: the {@link JWKS_CACHE_SECONDS} a resource
 * server keeps a JWKS, plus five minutes for every instance to have read the new keys (they do every few seconds)
 * and for clock skew. Until then the new keys are only published.
 */
export const DEFAULT_ACTIVATION_SECONDS = JWKS_CACHE_SECONDS + 300;
/** Older signing keys kept in the store per algorithm (the servers stop publishing them by time, see below). */
const KEEP_OLDER_SIGNING_KEYS = 10;
/** Older cookie keys that still verify: a session cookie signed with one is re-signed with the current key on use. */
const KEEP_OLDER_COOKIE_KEYS = 2;
/** Seconds a retired key stays published beyond the lifetime of its last token: instance clock skew. */
const DROP_MARGIN_SECONDS = 5;

/** The key material a server uses at one moment. Private: it never leaves the store and the process. */
export interface KeySet {
  /** Private JWKs: the signing key of each `alg` first, then keys that are only published (pending, retiring). */
  signing: JWK[];
  /** Cookie-signing secrets; the first signs, all verify. */
  cookies: string[];
}

/** A signing key as stored: the private JWK and when it starts signing (epoch seconds). */
interface StoredSigningKey {
  jwk: JWK;
  activatesAt: number;
  /** When it stopped signing, for keys of the store layout before scheduled keys (unknown, so: when first read). */
  retiredAt?: number;
}
interface StoredCookieKey {
  secret: string;
  activatesAt: number;
}
/** The stored record: every key with its schedule. */
export interface StoredKeys {
  version: 2;
  signing: StoredSigningKey[];
  cookies: StoredCookieKey[];
}

/** Where a signing key is in its life. */
export type KeyState = 'pending' | 'active' | 'retiring';

/** One signing key, as `gatehouse admin keys list` shows it. Times are epoch seconds. */
export interface KeyStatus {
  kid: string;
  alg: string;
  state: KeyState;
  activatesAt: number;
  /** When a newer key took over (retiring keys). */
  retiredAt?: number;
  /** When it leaves the JWKS: its last token has expired (retiring keys). */
  dropsAt?: number;
}

const nowSeconds = () => Date.now() / 1000;

async function newSigningKey(alg: SigningAlgorithm): Promise<JWK> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  return { ...(await exportJWK(privateKey)), kid: randomBytes(8).toString('hex'), alg, use: 'sig' };
}

const newCookieKey = () => randomBytes(32).toString('base64url');

/** A fresh generation of keys: one signing key per algorithm and a cookie key, all signing from `activatesAt`. */
async function newGeneration(activatesAt: number): Promise<Pick<StoredKeys, 'signing' | 'cookies'>> {
  const jwks = await Promise.all(SIGNING_ALGORITHMS.map(newSigningKey));
  return {
    signing: jwks.map((jwk) => ({ jwk, activatesAt })),
    cookies: [{ secret: newCookieKey(), activatesAt }],
  };
}

/**
 * Reads the stored record, in either layout. The layout before scheduled keys (`{ signing: JWK[], cookies: string[] }`,
 * the first key of each algorithm signing) reads as keys active since ever; its older keys count as retired at `now`,
 * so they stay published for one more token lifetime.
 */
export function readStoredKeys(value: unknown, now = nowSeconds()): StoredKeys | undefined {
  const v = value as Partial<StoredKeys> & { signing?: unknown[]; cookies?: unknown[] };
  if (!Array.isArray(v?.signing) || v.signing.length === 0 || !Array.isArray(v.cookies) || v.cookies.length === 0) {
    return undefined;
  }
  if (v.version === 2) return { version: 2, signing: v.signing, cookies: v.cookies };
  const seen = new Set<unknown>();
  const signing = (v.signing as JWK[]).map((jwk) => {
    const first = !seen.has(jwk.alg);
    seen.add(jwk.alg);
    return first ? { jwk, activatesAt: 0 } : { jwk, activatesAt: 0, retiredAt: now };
  });
  const cookies = (v.cookies as string[]).map((secret, i) => ({ secret, activatesAt: -i }));
  return { version: 2, signing, cookies };
}

/** Newest activation first; equal activations keep their stored order (the first of a legacy set signs). */
function byActivation<T extends { activatesAt: number }>(keys: readonly T[]): T[] {
  return [...keys].sort((a, b) => b.activatesAt - a.activatesAt);
}

/**
 * The state of every signing key at `now`, given the longest lifetime of a token this server signs (`retention`,
 * seconds). Per algorithm: the newest key whose activation has passed signs; newer ones are pending; older ones are
 * retiring until their last token has expired, then dropped (absent here).
 */
export function keyStatuses(stored: StoredKeys, retention: number, now = nowSeconds()): KeyStatus[] {
  const statuses: KeyStatus[] = [];
  const algorithms = [...new Set(stored.signing.map((k) => k.jwk.alg!))];
  for (const alg of algorithms) {
    const keys = byActivation(stored.signing.filter((k) => k.jwk.alg === alg));
    let successor: StoredSigningKey | undefined;
    let active = false;
    for (const key of keys) {
      const base = { kid: key.jwk.kid!, alg, activatesAt: key.activatesAt };
      if (key.activatesAt > now) {
        statuses.push({ ...base, state: 'pending' });
      } else if (!active) {
        active = true;
        statuses.push({ ...base, state: 'active' });
      } else {
        const retiredAt = key.retiredAt ?? successor!.activatesAt;
        const dropsAt = retiredAt + retention + DROP_MARGIN_SECONDS;
        if (now < dropsAt) statuses.push({ ...base, state: 'retiring', retiredAt, dropsAt });
      }
      successor = key;
    }
  }
  return statuses;
}

/**
 * What a server uses at `now`: the published signing keys (active first, so oidc-provider, which signs with the first
 * key of an algorithm, signs with it) and the cookie keys (active first). `changesAt` is the next moment this changes
 * by time alone (an activation or a drop).
 */
export function keySetAt(
  stored: StoredKeys,
  retention: number,
  now = nowSeconds(),
): { keys: KeySet; changesAt: number; statuses: KeyStatus[] } {
  const statuses = keyStatuses(stored, retention, now);
  const jwkOf = new Map(stored.signing.map((k) => [k.jwk.kid!, k.jwk]));
  const rank: Record<KeyState, number> = { active: 0, pending: 1, retiring: 2 };
  const signing = [...statuses].sort((a, b) => rank[a.state] - rank[b.state]).map((s) => jwkOf.get(s.kid)!);
  const cookies = byActivation(stored.cookies);
  const activeCookie = cookies.findIndex((c) => c.activatesAt <= now);
  const cookieKeys =
    activeCookie === -1
      ? cookies
      : [
          cookies[activeCookie]!,
          ...cookies.slice(0, activeCookie),
          ...cookies.slice(activeCookie + 1, activeCookie + 1 + KEEP_OLDER_COOKIE_KEYS),
        ];
  const moments = [
    ...statuses.flatMap((s) => (s.state === 'pending' ? [s.activatesAt] : s.dropsAt ? [s.dropsAt] : [])),
    ...cookies.filter((c) => c.activatesAt > now).map((c) => c.activatesAt),
  ];
  return {
    keys: { signing, cookies: cookieKeys.map((c) => c.secret) },
    changesAt: moments.length ? Math.min(...moments) : Number.POSITIVE_INFINITY,
    statuses,
  };
}

/**
 * Reads the stored keys, generating and saving a first generation on first start (and a key for an algorithm added
 * since the store was written).
 */
export async function loadOrCreateStoredKeys(adapter: Adapter): Promise<StoredKeys> {
  const existing = readStoredKeys(await adapter.find(KEYS_ID));
  if (existing) {
    const missing = SIGNING_ALGORITHMS.filter((alg) => !existing.signing.some((k) => k.jwk.alg === alg));
    if (missing.length === 0) return existing;
    const added = await Promise.all(missing.map(newSigningKey));
    await adapter.upsert(KEYS_ID, {
      ...existing,
      signing: [...added.map((jwk) => ({ jwk, activatesAt: 0 })), ...existing.signing],
    } as never);
  } else {
    await adapter.upsert(KEYS_ID, { version: 2, ...(await newGeneration(0)) } as never);
  }
  // Two instances starting at once: whoever wrote last wins, and both use what is stored.
  return readStoredKeys(await adapter.find(KEYS_ID))!;
}

/**
 * Reads the key set from the store as a server uses it now, generating and saving one on first start.
 *
 * @example
 * ```ts
 * import { KEYS_MODEL, loadOrCreateKeys } from 'gatehouse/authorization-server';
 * import { oidcAdapterFactory } from 'gatehouse/storage';
 *
 * const store = oidcAdapterFactory({ backend: 'sqlite', path: './gatehouse.db' });
 * const { signing } = await loadOrCreateKeys(store(KEYS_MODEL));
 * console.log(signing.map((key) => key.kid));
 * ```
 */
export async function loadOrCreateKeys(adapter: Adapter, retention = 3600): Promise<KeySet> {
  return keySetAt(await loadOrCreateStoredKeys(adapter), retention).keys;
}

/** Options of {@link rotateKeys}. */
export interface RotateKeysOptions {
  /**
   * Seconds until the new keys sign. Until then every instance publishes them in its JWKS beside the current ones.
   * Default {@link DEFAULT_ACTIVATION_SECONDS}: resource servers that fetched the JWKS just before the rotation have
   * fetched it again by then.
   */
  activateIn?: number;
}

/**
 * Adds a new generation of keys (a signing key per algorithm and a cookie key) that every instance sharing the store
 * publishes within seconds and signs with from `activatesAt` on; the keys it replaces stay published until their
 * last token has expired. No restart is needed.
 *
 * @example
 * ```ts
 * import { rotateKeys, KEYS_MODEL } from 'gatehouse/authorization-server';
 * import { oidcAdapterFactory } from 'gatehouse/storage';
 *
 * const store = oidcAdapterFactory({ backend: 'redis', url: 'redis://127.0.0.1:6379' });
 * const { kids, activatesAt } = await rotateKeys(store(KEYS_MODEL), { activateIn: 900 });
 * console.log(`${kids.join(', ')} sign from ${new Date(activatesAt * 1000).toISOString()}`);
 * ```
 */
export async function rotateKeys(
  adapter: Adapter,
  options: RotateKeysOptions = {},
): Promise<{ kid: string; kids: string[]; activatesAt: number }> {
  const activateIn = options.activateIn ?? DEFAULT_ACTIVATION_SECONDS;
  if (!Number.isFinite(activateIn) || activateIn < 0) throw new RangeError('activateIn must be a number of seconds');
  const now = nowSeconds();
  const current = await loadOrCreateStoredKeys(adapter);
  const activatesAt = now + activateIn;
  const fresh = await newGeneration(activatesAt);
  // The store keeps pending keys and the newest older ones; which of those are still published is decided by time.
  const keepNewest = <T extends { activatesAt: number }>(keys: T[], older: number) => {
    const sorted = byActivation(keys);
    const pending = sorted.filter((k) => k.activatesAt > now);
    return [...pending, ...sorted.filter((k) => k.activatesAt <= now).slice(0, older + 1)];
  };
  const signing = SIGNING_ALGORITHMS.flatMap((alg) =>
    keepNewest(
      current.signing.filter((k) => k.jwk.alg === alg),
      KEEP_OLDER_SIGNING_KEYS,
    ),
  );
  const next: StoredKeys = {
    version: 2,
    signing: [...fresh.signing, ...signing],
    cookies: [...fresh.cookies, ...keepNewest(current.cookies, KEEP_OLDER_COOKIE_KEYS)],
  };
  await adapter.upsert(KEYS_ID, next as never);
  const kids = fresh.signing.map((k) => k.jwk.kid!);
  return { kid: kids[0]!, kids, activatesAt };
}

/**
 * The longest a token signed under this configuration can live, in seconds: access tokens and client-credentials
 * tokens (the resource's `accessTokenTtl`, default 3600) and ID tokens (3600), unless `providerConfiguration.ttl`
 * says otherwise. A signing key stays published this long after it stops signing. A lifetime given as a function
 * cannot be known: then the longest session, 14 days.
 */
export function longestTokenLifetime(
  resources: ReadonlyArray<{ accessTokenTtl?: number | undefined }>,
  ttl: Record<string, unknown> = {},
): number {
  const lifetime = (kind: string, otherwise: number) => {
    const value = ttl[kind];
    return typeof value === 'number' ? value : value === undefined ? otherwise : 14 * 24 * 3600;
  };
  const perResource = Math.max(0, ...resources.map((r) => r.accessTokenTtl ?? 3600));
  return Math.max(
    lifetime('AccessToken', perResource),
    lifetime('ClientCredentials', perResource),
    lifetime('IdToken', 3600),
  );
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

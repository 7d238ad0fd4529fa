import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { calculateJwkThumbprint, EmbeddedJWK, type JWK, errors as joseErrors, jwtVerify } from 'jose';
import { OAuthProtocolError } from '../oauth/errors.js';
import { guarded } from '../storage/oidc/common.js';
import { leasesOf, type StoreInput, toKeyValueStore } from '../storage/types.js';

/** Options of DPoP (RFC 9449) at a protected resource: `protect({ dpop })`. */
export interface DpopOptions {
  /**
   * Accept only DPoP-bound tokens (a Bearer token is refused, and the metadata says
   * `dpop_bound_access_tokens_required: true`). Default false: both, but a DPoP-bound token always needs its proof.
   */
  required?: boolean;
  /** Proof signature algorithms accepted and advertised. Default ES256, RS256, PS256, EdDSA. */
  algorithms?: string[];
  /** How old (by `iat`) a proof may be, in seconds. Default 60. */
  maxAgeSeconds?: number;
  /** Clock skew tolerated on `iat`, in seconds. Default 5. */
  clockTolerance?: number;
  /**
   * Where seen proof `jti`s are remembered (for `maxAgeSeconds` plus skew): a Keyv instance, a Keyv store adapter,
   * a Gatehouse store or a Map. Share one store (Redis, PostgreSQL) between instances so that a proof replayed to
   * another instance is refused too; `redisStore()` and `postgresStore()` record a `jti` atomically (their lease), so
   * simultaneous presentations of one proof at several instances let exactly one through. A store that cannot be
   * reached, or does not answer within 1.5 s, answers 503. Default: this process's memory.
   */
  replayStore?: StoreInput;
  /**
   * Server nonces (RFC 9449 §9): a proof must carry a nonce this server issued (sent in `DPoP-Nonce`), at most
   * `lifetimeSeconds` old (default 300). Instances that share `secret` accept each other's nonces. Default off.
   */
  nonce?: boolean | { secret?: string | Uint8Array; lifetimeSeconds?: number };
}

const DEFAULT_ALGORITHMS = ['ES256', 'RS256', 'PS256', 'EdDSA'];

/** The `ath` of a proof for `token`: base64url(SHA-256(token)). */
function accessTokenHash(token: string): string {
  return createHash('sha256').update(token, 'ascii').digest('base64url');
}

/** `htu` compared as RFC 9449 §4.3 says: without query and fragment, scheme and host case-insensitive. */
function normalizeHtu(value: string): string | undefined {
  const url = URL.parse(value);
  if (!url) return undefined;
  return `${url.protocol}//${url.host}${url.pathname}`;
}

/** An `invalid_dpop_proof` error (401). */
export class InvalidDpopProofError extends OAuthProtocolError {
  constructor(description: string, options: { cause?: unknown } = {}) {
    super('invalid_dpop_proof', description, { status: 401, ...options });
  }
}

/** A `use_dpop_nonce` error (401): the client retries with the nonce in the `DPoP-Nonce` header. */
export class UseDpopNonceError extends OAuthProtocolError {
  constructor(description: string) {
    super('use_dpop_nonce', description, { status: 401 });
  }
}

/** Checks DPoP proofs for one protected resource; made by `protect()` from {@link DpopOptions}. */
export interface DpopChecker {
  readonly required: boolean;
  readonly algorithms: string[];
  /** A fresh nonce for the `DPoP-Nonce` header, when nonces are on. */
  nonce(): string | undefined;
  /**
   * Verifies the proof of `request` for `token`, bound to `jkt` (RFC 9449 §4.3 and §7.1). `publicUrl` is the
   * request URL as the client addressed it. Throws {@link InvalidDpopProofError} or {@link UseDpopNonceError}.
   */
  verify(request: Request, publicUrl: string, token: string, jkt: string): Promise<void>;
}

/** Builds the {@link DpopChecker} of {@link DpopOptions}. */
export function dpopChecker(options: DpopOptions = {}): DpopChecker {
  const algorithms = options.algorithms ?? DEFAULT_ALGORITHMS;
  const maxAge = options.maxAgeSeconds ?? 60;
  const clockTolerance = options.clockTolerance ?? 5;
  const replay = options.replayStore ? toKeyValueStore(options.replayStore) : toKeyValueStore(new Map());
  // A store with leases (redisStore, postgresStore) inserts a jti atomically: of simultaneous presentations of one
  // proof, at any instance, exactly one takes it. Others read then write; `claiming` closes that gap in-process.
  const leases = leasesOf(replay);
  const claiming = new Set<string>();
  /** Records `key`; false when it was already recorded. */
  async function firstUse(key: string, ttlMs: number): Promise<boolean> {
    if (leases) return leases.acquireLease(key, ttlMs, randomUUID());
    if (claiming.has(key)) return false;
    claiming.add(key);
    try {
      if ((await replay.get(key)) !== undefined) return false;
      await replay.set(key, 1, ttlMs);
      return true;
    } finally {
      claiming.delete(key);
    }
  }
  const nonceOptions = options.nonce === true ? {} : options.nonce || undefined;
  const nonceSecret = nonceOptions
    ? nonceOptions.secret === undefined
      ? randomBytes(32)
      : Buffer.from(nonceOptions.secret)
    : undefined;
  const nonceLifetime = nonceOptions?.lifetimeSeconds ?? 300;

  const sign = (time: string) => createHmac('sha256', nonceSecret!).update(time).digest('base64url');
  function nonce(): string | undefined {
    if (!nonceSecret) return undefined;
    const time = Math.floor(Date.now() / 1000).toString(36);
    return `${time}.${sign(time)}`;
  }
  function nonceValid(value: unknown): boolean {
    if (typeof value !== 'string') return false;
    const [time, mac] = value.split('.');
    if (!time || !mac) return false;
    const expected = Buffer.from(sign(time));
    const given = Buffer.from(mac);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return false;
    const age = Math.floor(Date.now() / 1000) - Number.parseInt(time, 36);
    return age >= -clockTolerance && age <= nonceLifetime;
  }

  async function verify(request: Request, publicUrl: string, token: string, jkt: string): Promise<void> {
    const headers = request.headers.get('dpop');
    if (!headers) throw new InvalidDpopProofError('a DPoP proof (the DPoP header) is required with this token');
    if (headers.includes(',')) throw new InvalidDpopProofError('exactly one DPoP proof is allowed');
    let payload: Record<string, unknown>;
    let jwk: JWK;
    try {
      const verified = await jwtVerify(headers, EmbeddedJWK, {
        typ: 'dpop+jwt',
        algorithms,
        maxTokenAge: maxAge,
        clockTolerance,
        requiredClaims: ['jti', 'htm', 'htu', 'iat'],
      });
      payload = verified.payload;
      jwk = verified.protectedHeader.jwk!;
    } catch (error) {
      const reason =
        error instanceof joseErrors.JOSEAlgNotAllowed
          ? `the proof algorithm is not one of ${algorithms.join(', ')}`
          : error instanceof joseErrors.JWTClaimValidationFailed || error instanceof joseErrors.JWTExpired
            ? `the proof's ${(error as joseErrors.JWTClaimValidationFailed).claim} claim is invalid: ${
                (error as joseErrors.JWTClaimValidationFailed).reason
              }`
            : 'the proof is malformed or its signature is invalid';
      throw new InvalidDpopProofError(reason, { cause: error });
    }
    if (payload['htm'] !== request.method) {
      throw new InvalidDpopProofError(`the proof's htm ${String(payload['htm'])} is not ${request.method}`);
    }
    const htu = typeof payload['htu'] === 'string' ? normalizeHtu(payload['htu']) : undefined;
    if (!htu || (htu !== normalizeHtu(publicUrl) && htu !== normalizeHtu(request.url))) {
      throw new InvalidDpopProofError(`the proof's htu ${String(payload['htu'])} is not this URL`);
    }
    if (payload['ath'] !== accessTokenHash(token)) {
      throw new InvalidDpopProofError('the proof is not for this access token (ath)');
    }
    if ((await calculateJwkThumbprint(jwk, 'sha256')) !== jkt) {
      throw new InvalidDpopProofError('the proof key is not the key this token is bound to (cnf.jkt)');
    }
    if (nonceSecret && !nonceValid(payload['nonce'])) {
      throw new UseDpopNonceError('a fresh DPoP nonce is required: retry with the DPoP-Nonce this answer carries');
    }
    const key = `dpop-jti:${createHash('sha256')
      .update(`${jkt} ${String(payload['jti'])}`)
      .digest('base64url')}`;
    let fresh: boolean;
    try {
      // The deadline of the server-side stores (1.5 s): a stalled store must not hold requests forever.
      fresh = await guarded('DPoP replay', firstUse(key, (maxAge + 2 * clockTolerance) * 1000));
    } catch (error) {
      // Not the caller's fault, and no reason to accept a proof that may be a replay.
      throw new OAuthProtocolError(
        'temporarily_unavailable',
        'the DPoP replay store cannot be reached or did not answer',
        {
          status: 503,
          cause: error,
        },
      );
    }
    if (!fresh) throw new InvalidDpopProofError('this DPoP proof was already used');
  }

  return { required: options.required ?? false, algorithms, nonce, verify };
}

/** The `cnf.jkt` (DPoP key thumbprint) of a verified token's claims, if it is DPoP-bound. */
export function boundKeyThumbprint(claims: unknown): string | undefined {
  const cnf = (claims as { cnf?: { jkt?: unknown } } | undefined)?.cnf;
  return typeof cnf?.jkt === 'string' ? cnf.jkt : undefined;
}

import { InsufficientUserAuthenticationError } from './errors.js';
import type { AuthInfo } from './verifier.js';

/**
 * How recent or how strong the user's login must be for an operation (RFC 9470). Both are checked against the
 * token's claims: `auth_time` and `acr` of a JWT access token, or the same members of an introspection answer.
 *
 * @example
 * ```ts
 * import type { AuthenticationRequirement } from 'gatehouse/server';
 *
 * // A login in the last five minutes, by password on the authorization server's own login page.
 * const requirement: AuthenticationRequirement = { maxAge: 300, acrValues: ['urn:gatehouse:acr:password'] };
 * ```
 */
export interface AuthenticationRequirement {
  /** The most seconds since the user logged in (`auth_time`). A token without `auth_time` does not qualify. */
  maxAge?: number;
  /** Authentication context classes, any one of which qualifies (`acr`). A token without `acr` does not qualify. */
  acrValues?: string[];
}

/** Checks a requirement's shape once, when protect() is configured. */
export function assertRequirement(where: string, requirement: AuthenticationRequirement): void {
  const { maxAge, acrValues } = requirement;
  if (maxAge !== undefined && !(Number.isInteger(maxAge) && maxAge >= 0)) {
    throw new TypeError(`${where}.maxAge must be a whole number of seconds (0 or more)`);
  }
  if (acrValues !== undefined && (!Array.isArray(acrValues) || acrValues.some((v) => typeof v !== 'string' || !v))) {
    throw new TypeError(`${where}.acrValues must be a list of acr values`);
  }
  if (maxAge === undefined && !acrValues?.length) {
    throw new TypeError(`${where} needs maxAge or acrValues`);
  }
}

/**
 * Why `authInfo`'s login falls short of `requirement`, as the error `protect()` answers with; `undefined` when it
 * meets it. The claims are those a Gatehouse verifier puts in `authInfo.extra.claims`.
 *
 * @example
 * ```ts
 * import { checkUserAuthentication } from 'gatehouse/server';
 *
 * const error = checkUserAuthentication(authInfo, { maxAge: 300 });
 * if (error) return error.toResponse(); // 401 insufficient_user_authentication
 * ```
 */
export function checkUserAuthentication(
  authInfo: AuthInfo,
  requirement: AuthenticationRequirement,
  nowSeconds: number = Date.now() / 1000,
): InsufficientUserAuthenticationError | undefined {
  const claims = (authInfo.extra?.['claims'] ?? {}) as Record<string, unknown>;
  const { maxAge, acrValues } = requirement;
  if (acrValues?.length) {
    const acr = claims['acr'];
    if (typeof acr !== 'string' || !acrValues.includes(acr)) {
      const had = typeof acr === 'string' ? `; the token's is ${acr}` : '; the token names none';
      return new InsufficientUserAuthenticationError(
        `this operation needs an authentication context of ${acrValues.join(' or ')}${had}`,
        requirement,
      );
    }
  }
  if (maxAge !== undefined) {
    const authTime = claims['auth_time'];
    if (typeof authTime !== 'number') {
      return new InsufficientUserAuthenticationError(
        `this operation needs a login within the last ${maxAge} seconds; the token does not say when the user logged in`,
        requirement,
      );
    }
    if (nowSeconds - authTime > maxAge) {
      return new InsufficientUserAuthenticationError(
        `this operation needs a login within the last ${maxAge} seconds; the user logged in ${Math.floor(nowSeconds - authTime)} seconds ago`,
        requirement,
      );
    }
  }
  return undefined;
}

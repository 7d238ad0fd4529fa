/**
 * One rule set for redirect URIs, applied when a client is registered (DCR, configuration, CIMD) and when
 * `/authorize` compares the requested `redirect_uri` with the registered ones (field note 18).
 */

const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost']);
const FORBIDDEN_SCHEMES = new Set(['javascript:', 'data:', 'vbscript:', 'file:', 'blob:', 'about:']);

/** `http://127.0.0.1…`, `http://[::1]…` or `http://localhost…`: an RFC 8252 §7.3 loopback redirect. */
export function isLoopbackRedirect(uri: string | URL): boolean {
  const url = typeof uri === 'string' ? URL.parse(uri) : uri;
  return url !== null && url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname);
}

/** A private-use URI scheme redirect (`cursor://…`, `com.example.app:/cb`), RFC 8252 §7.1. */
export function isCustomSchemeRedirect(uri: string | URL): boolean {
  const url = typeof uri === 'string' ? URL.parse(uri) : uri;
  return url !== null && url.protocol !== 'http:' && url.protocol !== 'https:' && !FORBIDDEN_SCHEMES.has(url.protocol);
}

/**
 * Why a redirect URI may not be registered, or `undefined` if it may: absolute, no fragment, no wildcard, `https`,
 * or `http` on a loopback host, or a private-use scheme that is not a script or data scheme.
 */
export function redirectUriProblem(uri: unknown): string | undefined {
  if (typeof uri !== 'string' || uri.length === 0) return 'redirect_uris must be non-empty strings';
  if (uri.length > 2048) return 'a redirect URI must be at most 2048 characters';
  const url = URL.parse(uri);
  if (!url) return `${uri} is not an absolute URI`;
  if (uri.includes('#')) return `${uri} must not contain a fragment`;
  if (uri.includes('*')) return `${uri} must not contain a wildcard`;
  if (FORBIDDEN_SCHEMES.has(url.protocol)) return `${uri} uses a forbidden scheme`;
  if (url.protocol === 'http:' && !LOOPBACK_HOSTS.has(url.hostname)) {
    return `${uri} uses http on a non-loopback host; use https, or http://127.0.0.1 for native apps`;
  }
  if (url.username || url.password) return `${uri} must not contain credentials`;
  return undefined;
}

/**
 * Whether a client registered without `application_type` should be treated as native: every redirect is a
 * loopback or a private-use scheme (field note 16).
 */
export function looksNative(redirectUris: unknown): boolean {
  return (
    Array.isArray(redirectUris) &&
    redirectUris.length > 0 &&
    redirectUris.every((uri) => typeof uri === 'string' && (isLoopbackRedirect(uri) || isCustomSchemeRedirect(uri)))
  );
}

function withoutPort(uri: string): string | undefined {
  const url = URL.parse(uri);
  if (!url || !isLoopbackRedirect(url)) return undefined;
  url.port = '';
  return url.href;
}

/**
 * Whether `requested` matches one of `registered`: exactly, or — for native and CIMD clients — a loopback redirect
 * on any port (RFC 8252 §7.3) with the same scheme, host, path and query.
 */
export function redirectMatches(requested: string, registered: readonly string[], anyLoopbackPort: boolean): boolean {
  if (registered.includes(requested)) return true;
  if (!anyLoopbackPort) return false;
  const stripped = withoutPort(requested);
  return stripped !== undefined && registered.some((allowed) => withoutPort(allowed) === stripped);
}

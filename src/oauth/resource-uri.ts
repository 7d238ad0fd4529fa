/**
 * Canonical resource URIs (RFC 8707 §2, MCP authorization "Canonical Server URI").
 *
 * Every comparison of a resource or audience in Gatehouse goes through {@link canonicalResourceUri}, so that
 * `https://MCP.example.com:443/mcp/` and `https://mcp.example.com/mcp` are the same resource everywhere.
 */

/** Thrown (as a `TypeError`) when a value cannot be a resource indicator. */
export class InvalidResourceUriError extends TypeError {
  constructor(value: string, reason: string) {
    super(`Invalid resource URI ${JSON.stringify(value)}: ${reason}`);
    this.name = 'InvalidResourceUriError';
  }
}

/**
 * Normalises a resource URI: lower-case scheme and host (URL parsing does this), no default port, no fragment,
 * and no trailing slash (the root becomes the bare origin). Query strings are kept: they are rare but
 * significant. Only `https:` and `http:` are accepted.
 *
 * @example
 * ```ts
 * import { canonicalResourceUri } from 'gatehouse/oauth';
 *
 * canonicalResourceUri('HTTPS://MCP.Example.com:443/mcp/'); // 'https://mcp.example.com/mcp'
 * canonicalResourceUri('http://127.0.0.1:8000/');          // 'http://127.0.0.1:8000'
 * ```
 */
export function canonicalResourceUri(value: string | URL): string {
  const raw = String(value);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new InvalidResourceUriError(raw, 'not an absolute URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new InvalidResourceUriError(raw, `scheme ${url.protocol} is not http(s)`);
  }
  if (url.username || url.password) throw new InvalidResourceUriError(raw, 'credentials are not allowed');
  url.hash = '';
  let path = url.pathname;
  while (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
  if (path === '/') path = '';
  return `${url.protocol}//${url.host}${path}${url.search}`;
}

/** {@link canonicalResourceUri}, or `undefined` for a value that is not a valid resource URI (to look it up safely). */
export function canonicalResourceUriOrUndefined(value: string | URL): string | undefined {
  try {
    return canonicalResourceUri(value);
  } catch {
    return undefined;
  }
}

/** True when two resource URIs name the same resource once canonicalised. Invalid URIs never match. */
export function sameResource(a: string | URL, b: string | URL): boolean {
  try {
    return canonicalResourceUri(a) === canonicalResourceUri(b);
  } catch {
    return false;
  }
}

/** True for `http:` URLs whose host is a loopback address or `localhost` (allowed without TLS). */
export function isLoopbackUrl(value: string | URL): boolean {
  let url: URL;
  try {
    url = new URL(String(value));
  } catch {
    return false;
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127(?:\.\d{1,3}){3}$/.test(host);
}

/**
 * The transport rule for every OAuth and MCP URL: `https:`, or `http:` on loopback only.
 * Returns the parsed URL, or throws a `TypeError` naming what is wrong.
 */
export function assertSecureUrl(value: string | URL, what: string): URL {
  let url: URL;
  try {
    url = new URL(String(value));
  } catch {
    throw new TypeError(`${what} must be an absolute URL, got ${JSON.stringify(String(value))}`);
  }
  if (url.protocol === 'https:') return url;
  if (url.protocol === 'http:' && isLoopbackUrl(url)) return url;
  throw new TypeError(`${what} must use https (http is allowed only on loopback), got ${url.href}`);
}

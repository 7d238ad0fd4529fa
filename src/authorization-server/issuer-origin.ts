import type { IncomingMessage } from 'node:http';

/**
 * Makes every URL the server derives from a request (endpoints in metadata, redirects, cookie security) come from the
 * issuer, never from the request's `Host` or `X-Forwarded-Host`/`-Proto`: a forged Host header would otherwise put an
 * attacker's token endpoint into the metadata a client (or a cache in front) trusts. oidc-provider reads the origin
 * through Koa, which honours the `X-Forwarded-*` pair only with `proxy` on, so the provider runs with `proxy` on and
 * these headers are always set here. `X-Forwarded-For` is dropped unless a proxy is trusted, so the client address
 * Koa reports stays the socket's.
 *
 * @example
 * ```ts
 * const pin = issuerOrigin('https://auth.example.com', false);
 * pin(req); // req.headers.host === 'auth.example.com', x-forwarded-proto 'https'
 * ```
 */
export function issuerOrigin(issuer: string, trustForwardedFor: boolean): (req: IncomingMessage) => void {
  const url = new URL(issuer);
  const proto = url.protocol.slice(0, -1);
  return (req) => {
    req.headers.host = url.host;
    req.headers['x-forwarded-host'] = url.host;
    req.headers['x-forwarded-proto'] = proto;
    if (!trustForwardedFor) delete req.headers['x-forwarded-for'];
  };
}

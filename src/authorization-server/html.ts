/** HTML escaping and the page shell shared by every page the authorization server renders. */

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes a value for HTML text and attribute contexts. Every dynamic value in a page goes through it. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** Headers every HTML page carries: no framing, no caching, no inline script. */
export const PAGE_HEADERS: Record<string, string> = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'x-frame-options': 'DENY',
  'content-security-policy':
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
};

/**
 * {@link PAGE_HEADERS} for a page whose form ends in a redirect to `redirectUri`: browsers apply CSP `form-action`
 * to the redirects after a submission, so the client's redirect origin (or private-use scheme) is allowed too.
 */
export function pageHeadersFor(redirectUri: string | undefined): Record<string, string> {
  const url = redirectUri ? URL.parse(redirectUri) : null;
  let target = '';
  if (url && (url.protocol === 'https:' || url.protocol === 'http:')) target = ` ${url.origin}`;
  else if (url && /^[a-z][a-z0-9+.-]*:$/.test(url.protocol)) target = ` ${url.protocol}`;
  return {
    ...PAGE_HEADERS,
    'content-security-policy': `default-src 'none'; style-src 'unsafe-inline'; form-action 'self'${target}; frame-ancestors 'none'`,
  };
}

/** A complete, accessible HTML document around already-escaped body markup. */
export function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; background: #f4f5f7; color: #1d2330; margin: 0; }
  main { max-width: 26rem; margin: 4rem auto; background: #fff; padding: 2rem; border-radius: 12px;
         box-shadow: 0 1px 3px rgba(0,0,0,.12); }
  h1 { font-size: 1.4rem; margin-top: 0; }
  label { display: block; margin: 1rem 0 .25rem; font-weight: 600; }
  input[type=text], input[type=password] { width: 100%; box-sizing: border-box; padding: .6rem; font-size: 1rem;
         border: 1px solid #9aa3b5; border-radius: 6px; }
  button { margin-top: 1.5rem; padding: .6rem 1.2rem; font-size: 1rem; border-radius: 6px; border: 0;
           background: #2454d6; color: #fff; cursor: pointer; }
  button.secondary { background: #e3e6ec; color: #1d2330; margin-left: .5rem; }
  a.button { display: block; text-align: center; padding: .6rem 1.2rem; border-radius: 6px; background: #1d2330;
             color: #fff; text-decoration: none; font-weight: 600; }
  ul.upstreams { list-style: none; padding: 0; display: grid; gap: .5rem; } p.or { color: #5a6275; }
  .error { color: #a31d1d; background: #fdeaea; padding: .5rem .75rem; border-radius: 6px; }
  ul { padding-left: 1.2rem; } code { background: #eef0f4; padding: 0 .25rem; border-radius: 4px; }
</style>
</head>
<body><main>${body}</main></body>
</html>`;
}

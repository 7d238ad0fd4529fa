/** HTML escaping and the page shell shared by every page the authorization server renders. */
import { createHash } from 'node:crypto';

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes a value for HTML text and attribute contexts. Every dynamic value in a page goes through it. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** Markup that is already escaped: what {@link html} returns. Inserted into another template as is. */
export class SafeHtml {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

/**
 * The page templating: a tagged template whose interpolated values are escaped with {@link escapeHtml} — the one
 * escaping path — unless they are {@link SafeHtml} (a nested template). Arrays are joined; `undefined`, `null` and
 * `false` render nothing, so `${cond && html`…`}` works.
 *
 * @example
 * ```ts
 * const name = '<script>';
 * html`<p>Hello ${name}</p>`.value; // '<p>Hello &lt;script&gt;</p>'
 * ```
 */
export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0]!;
  values.forEach((value, i) => {
    out += render(value) + strings[i + 1]!;
  });
  return new SafeHtml(out);
}

function render(value: unknown): string {
  if (value === undefined || value === null || value === false) return '';
  if (value instanceof SafeHtml) return value.value;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(value);
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
export function pageHeadersFor(redirectUri: string | undefined, logoUrl?: string): Record<string, string> {
  const url = redirectUri ? URL.parse(redirectUri) : null;
  let target = '';
  if (url && (url.protocol === 'https:' || url.protocol === 'http:')) target = ` ${url.origin}`;
  else if (url && /^[a-z][a-z0-9+.-]*:$/.test(url.protocol)) target = ` ${url.protocol}`;
  return {
    ...PAGE_HEADERS,
    'content-security-policy': `default-src 'none'; style-src 'unsafe-inline';${imageSource(logoUrl)} form-action 'self'${target}; frame-ancestors 'none'`,
  };
}

/** The CSP `img-src` that lets the configured logo (and nothing else) load. */
function imageSource(logoUrl: string | undefined): string {
  const logo = logoUrl ? URL.parse(logoUrl) : null;
  if (!logo) return '';
  return logo.protocol === 'data:' ? ' img-src data:;' : ` img-src ${logo.origin};`;
}

/**
 * `headers` with one inline script allowed by its hash (CSP `script-src 'sha256-…'`): every other script, inline or
 * not, stays refused.
 */
export function allowingInlineScript(headers: Record<string, string>, script: string): Record<string, string> {
  const hash = createHash('sha256').update(script).digest('base64');
  const policy = headers['content-security-policy'] ?? PAGE_HEADERS['content-security-policy']!;
  return {
    ...headers,
    'content-security-policy': policy.replace(
      "default-src 'none';",
      `default-src 'none'; script-src 'sha256-${hash}';`,
    ),
  };
}

/** A complete, accessible HTML document around already-escaped body markup. */
export function page(title: string, body: string | SafeHtml): string {
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
  h1 { font-size: 1.4rem; margin-top: 0; overflow-wrap: anywhere; } strong { overflow-wrap: anywhere; }
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
  ul { padding-left: 1.2rem; } code { background: #eef0f4; padding: 0 .25rem; border-radius: 4px;
         overflow-wrap: anywhere; }
  header.brand { display: flex; align-items: center; gap: .75rem; margin-bottom: 1.25rem; font-weight: 600; }
  header.brand img { max-height: 40px; max-width: 10rem; }
  h2 { font-size: 1.05rem; margin: 1.25rem 0 .25rem; }
  .client-id, .uri, .account { color: #4a5263; font-size: .92rem; }
  .uri { margin: 0; } a { color: #1d47b8; }
  section.resource { border-top: 1px solid #e3e6ec; } ul.scopes li { margin: .25rem 0; }
  .user-code { font: 600 1.3rem ui-monospace, monospace; letter-spacing: .12em; }
  input#user_code { font: 600 1.2rem ui-monospace, monospace; letter-spacing: .12em; text-transform: uppercase; }
</style>
</head>
<body><main>${body}</main></body>
</html>`;
}

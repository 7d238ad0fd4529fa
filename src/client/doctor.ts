import { authorizationServerMetadataUrls, protectedResourceMetadataUrls } from '../oauth/discovery.js';
import {
  type AuthorizationServerMetadata,
  type ProtectedResourceMetadata,
  parseAuthorizationServerMetadata,
  parseProtectedResourceMetadata,
} from '../oauth/metadata.js';
import { canonicalResourceUri, isLoopbackUrl } from '../oauth/resource-uri.js';
import { findBearerChallenge } from '../oauth/www-authenticate.js';
import { DiscoveryError } from './errors.js';
import { clientFetch, describeNetworkFailure } from './network.js';

/** The outcome of one diagnostic check. */
export interface DoctorCheck {
  /** Stable identifier, e.g. `issuer-match`. */
  id: string;
  status: 'pass' | 'warn' | 'fail' | 'skip';
  title: string;
  detail: string;
  /** What to change, for `warn` and `fail`. */
  fix?: string;
}

/** Every check run against one MCP server URL. */
export interface DoctorReport {
  url: string;
  ok: boolean;
  checks: DoctorCheck[];
  /** Every URL probed, in order, with its HTTP status (0: no answer). */
  probes: Array<{ url: string; status: number }>;
}

interface Fetched {
  status: number;
  headers: Headers;
  body: unknown;
  error?: string;
  /** Why no answer came, with its fix (a refused connection, an unknown host, an untrusted certificate). */
  failure?: { message: string; hint?: string };
}

/** Whether a response is what an MCP endpoint sends back to a JSON-RPC POST: JSON-RPC, or an SSE stream of it. */
function looksLikeMcp(response: Fetched): boolean {
  if ((response.headers.get('content-type') ?? '').startsWith('text/event-stream')) return true;
  return (response.body as { jsonrpc?: unknown } | undefined)?.jsonrpc === '2.0';
}

function describeAnswer(response: Fetched): string {
  const type = (response.headers.get('content-type') ?? '').split(';')[0]!.trim();
  const kind = type === 'text/html' ? ' (a web page)' : type === 'application/json' ? ' (JSON, but not JSON-RPC)' : '';
  return `HTTP ${response.status}${type ? ` ${type}` : ''}${kind}`;
}

/**
 * Probes an MCP server the way a spec-following client discovers it, and explains what would break a login:
 * the 401 challenge, protected-resource metadata (challenge URL, path form, root), authorization-server metadata
 * (RFC 8414 and OIDC variants in spec order), issuer match, PKCE S256, registration options, secure endpoints and
 * resource/audience consistency.
 *
 * @example
 * ```ts
 * import { diagnose } from 'gatehouse/client';
 *
 * const report = await diagnose('https://mcp.example.com/mcp');
 * for (const check of report.checks) console.log(check.status, check.title, check.fix ?? '');
 * ```
 */
export async function diagnose(
  url: string,
  options: { fetch?: typeof fetch; timeoutMs?: number } = {},
): Promise<DoctorReport> {
  const fetchFn = options.fetch ?? clientFetch;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const checks: DoctorCheck[] = [];
  const probes: DoctorReport['probes'] = [];
  const add = (check: DoctorCheck) => checks.push(check);

  async function get(target: string, init?: RequestInit): Promise<Fetched> {
    try {
      const response = await fetchFn(target, {
        ...init,
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
        headers: { accept: 'application/json', ...(init?.headers as Record<string, string>) },
      });
      probes.push({ url: target, status: response.status });
      const text = await response.text();
      let body: unknown;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        body = undefined;
      }
      return { status: response.status, headers: response.headers, body };
    } catch (error) {
      probes.push({ url: target, status: 0 });
      const failure = describeNetworkFailure(error, target);
      return {
        status: 0,
        headers: new Headers(),
        body: undefined,
        error: (error as Error).message,
        failure: failure && { message: failure.message, hint: failure.hint },
      };
    }
  }

  /** The issuer, when `target` is an authorization server's issuer URL (its own metadata says so). */
  async function authorizationServerAt(target: URL): Promise<string | undefined> {
    const candidates = new Set([
      ...authorizationServerMetadataUrls(target.href),
      ...authorizationServerMetadataUrls(target.origin),
    ]);
    for (const candidate of candidates) {
      const response = await get(candidate);
      const issuer = (response.body as { issuer?: unknown } | undefined)?.issuer;
      if (response.status === 200 && typeof issuer === 'string' && URL.parse(issuer)?.origin === target.origin) {
        return issuer;
      }
    }
    return undefined;
  }

  let serverUrl: URL;
  try {
    serverUrl = new URL(url);
    if (serverUrl.protocol !== 'https:' && serverUrl.protocol !== 'http:') throw new Error('not http(s)');
  } catch {
    add({
      id: 'server-url',
      status: 'fail',
      title: 'Server URL',
      detail: `${JSON.stringify(url)} is not an http(s) URL`,
      fix: 'Pass the MCP endpoint URL, e.g. https://mcp.example.com/mcp',
    });
    return { url, ok: false, checks, probes };
  }
  if (serverUrl.protocol === 'http:' && !isLoopbackUrl(serverUrl)) {
    add({
      id: 'server-url',
      status: 'fail',
      title: 'Server URL',
      detail: 'plain http on a non-loopback host: tokens would travel in clear',
      fix: 'Serve the MCP endpoint over https.',
    });
  }

  // 1. The unauthenticated request and its challenge.
  const probe = await get(serverUrl.href, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
  });
  let challengeUrl: string | undefined;
  if (probe.status === 0) {
    add({
      id: 'server-reachable',
      status: 'fail',
      title: 'Server answers',
      detail: `no answer from ${serverUrl.href}: ${probe.failure?.message ?? probe.error}`,
      fix: probe.failure?.hint ?? 'Check the URL, that the server runs, and the network path to it.',
    });
    return { url, ok: false, checks, probes };
  }
  if (probe.status === 401) {
    const challenge = findBearerChallenge(probe.headers.get('www-authenticate'));
    challengeUrl = challenge?.params['resource_metadata'];
    add(
      challenge
        ? {
            id: 'challenge',
            status: challengeUrl ? 'pass' : 'warn',
            title: '401 challenge',
            detail: challengeUrl
              ? `Bearer challenge points at ${challengeUrl}`
              : 'Bearer challenge without resource_metadata: clients must guess the metadata URL',
            fix: challengeUrl ? undefined : 'Add resource_metadata="<metadata URL>" to the WWW-Authenticate header.',
          }
        : {
            id: 'challenge',
            status: 'fail',
            title: '401 challenge',
            detail: 'HTTP 401 without a Bearer WWW-Authenticate header',
            fix: 'Answer 401 with WWW-Authenticate: Bearer resource_metadata="…" (RFC 9728 §5.1).',
          },
    );
  } else if (looksLikeMcp(probe) || probe.status === 405) {
    // 405: a POST to an SSE-only (2024-11-05) endpoint.
    add({
      id: 'challenge',
      status: 'warn',
      title: '401 challenge',
      detail: `an unauthenticated request got HTTP ${probe.status}, not 401: the server may not require OAuth`,
    });
  } else {
    // Not MCP at all: the URL of the authorization server, a web page, some other API.
    const issuer = await authorizationServerAt(serverUrl);
    add(
      issuer
        ? {
            id: 'authorization-server-url',
            status: 'fail',
            title: 'The URL is an MCP server',
            detail: `${serverUrl.href} is an authorization server (issuer ${issuer}), not an MCP server`,
            fix: "Pass the MCP server's URL (the protected resource, e.g. https://mcp.example.com/mcp), not its authorization server's.",
          }
        : {
            id: 'mcp-endpoint',
            status: 'fail',
            title: 'The URL is an MCP server',
            detail: `${serverUrl.href} does not speak MCP: a JSON-RPC POST got ${describeAnswer(probe)}`,
            fix: "Check the URL: it must be the server's MCP endpoint (often ending in /mcp), as its documentation gives it.",
          },
    );
    return { url, ok: false, checks, probes };
  }

  // 2. Protected-resource metadata, in the order a client tries it.
  const prmCandidates = [
    ...new Set([...(challengeUrl ? [challengeUrl] : []), ...protectedResourceMetadataUrls(serverUrl)]),
  ];
  let prm: ProtectedResourceMetadata | undefined;
  let prmUrl: string | undefined;
  const prmTried: string[] = [];
  for (const candidate of prmCandidates) {
    const response = await get(candidate);
    prmTried.push(`${candidate} → ${response.status || 'no answer'}`);
    if (response.status !== 200) continue;
    try {
      prm = parseProtectedResourceMetadata(response.body, candidate);
      prmUrl = candidate;
      break;
    } catch (error) {
      add({
        id: 'resource-metadata-valid',
        status: 'fail',
        title: 'Protected-resource metadata is valid',
        detail: (error as Error).message,
        fix: 'Serve a JSON document with at least "resource" and "authorization_servers".',
      });
    }
  }
  if (!prm || !prmUrl) {
    add({
      id: 'resource-metadata',
      status: 'fail',
      title: 'Protected-resource metadata (RFC 9728)',
      detail: `The server publishes no protected-resource metadata (RFC 9728), so clients cannot find its authorization server (tried ${prmTried.join('; ')})`,
      fix: `The server must serve it at ${protectedResourceMetadataUrls(serverUrl)[0]} (and the root form for older clients); check that the URL is the MCP endpoint.`,
    });
    return { url, ok: false, checks, probes };
  }
  add({
    id: 'resource-metadata',
    status: 'pass',
    title: 'Protected-resource metadata (RFC 9728)',
    detail: `found at ${prmUrl}`,
  });
  const missingForms = protectedResourceMetadataUrls(serverUrl).filter(
    (u) => !probes.some((p) => p.url === u && p.status === 200),
  );
  if (missingForms.length && prmUrl === challengeUrl) {
    for (const form of missingForms) {
      const response = await get(form);
      if (response.status === 200) continue;
      add({
        id: 'resource-metadata-forms',
        status: 'warn',
        title: 'Metadata at every well-known form',
        detail: `${form} answers ${response.status || 'nothing'}; clients that do not read the challenge will miss it`,
        fix: 'Serve the document at the path form and the root form too.',
      });
    }
  }

  // 3. The metadata's resource must name this server.
  const expected = canonicalResourceUri(serverUrl);
  let declared: string | undefined;
  try {
    declared = canonicalResourceUri(prm.resource);
  } catch {
    declared = undefined;
  }
  if (declared === expected) {
    add({ id: 'resource-match', status: 'pass', title: 'Metadata resource matches the server', detail: expected });
  } else if (declared && expected.startsWith(`${declared}/`)) {
    add({
      id: 'resource-match',
      status: 'warn',
      title: 'Metadata resource matches the server',
      detail: `resource is ${prm.resource}, a parent of ${expected}: tokens will carry that audience`,
      fix: `Set the resource to ${expected} unless one token should serve every path below ${declared}.`,
    });
  } else {
    add({
      id: 'resource-match',
      status: 'fail',
      title: 'Metadata resource matches the server',
      detail: `resource is ${prm.resource} but the server is ${expected}; clients refuse this (audience mix-up)`,
      fix: `Set "resource" to ${expected} (the exact MCP URL, no trailing slash) on the server and on the AS.`,
    });
  }

  // 4. Authorization-server metadata.
  const issuer = prm.authorization_servers?.[0];
  if (!issuer) {
    add({
      id: 'authorization-servers',
      status: 'fail',
      title: 'Authorization server named',
      detail: 'the metadata lists no authorization_servers',
      fix: 'Add "authorization_servers": ["<issuer URL>"] to the protected-resource metadata.',
    });
    return { url, ok: false, checks, probes };
  }
  add({ id: 'authorization-servers', status: 'pass', title: 'Authorization server named', detail: issuer });
  let asMeta: AuthorizationServerMetadata | undefined;
  let asMetaUrl: string | undefined;
  const asTried: string[] = [];
  for (const candidate of authorizationServerMetadataUrls(issuer)) {
    const response = await get(candidate);
    asTried.push(`${candidate} → ${response.status || 'no answer'}`);
    if (response.status !== 200) continue;
    try {
      asMeta = parseAuthorizationServerMetadata(response.body, candidate);
      asMetaUrl = candidate;
      break;
    } catch (error) {
      asTried.push(`(invalid: ${(error as Error).message})`);
    }
  }
  if (!asMeta || !asMetaUrl) {
    add({
      id: 'as-metadata',
      status: 'fail',
      title: 'Authorization-server metadata (RFC 8414 / OIDC)',
      detail: `not found: ${asTried.join('; ')}`,
      fix: `Serve it at ${authorizationServerMetadataUrls(issuer)[0]}, or fix the issuer in authorization_servers.`,
    });
    return { url, ok: false, checks, probes };
  }
  add({
    id: 'as-metadata',
    status: 'pass',
    title: 'Authorization-server metadata (RFC 8414 / OIDC)',
    detail: `found at ${asMetaUrl}`,
  });

  add(
    asMeta.issuer === issuer
      ? { id: 'issuer-match', status: 'pass', title: 'Issuer matches', detail: issuer }
      : {
          id: 'issuer-match',
          status: 'fail',
          title: 'Issuer matches',
          detail: `metadata says issuer ${asMeta.issuer} but the resource names ${issuer}; clients must refuse it (RFC 8414 §3.3)`,
          fix: 'Make authorization_servers and the AS issuer the exact same string (scheme, host, port, path, trailing slash).',
        },
  );

  const methods = asMeta.code_challenge_methods_supported;
  add(
    methods?.includes('S256')
      ? {
          id: 'pkce',
          status: 'pass',
          title: 'PKCE S256 supported',
          detail: `code_challenge_methods_supported: ${methods.join(', ')}`,
        }
      : {
          id: 'pkce',
          status: 'fail',
          title: 'PKCE S256 supported',
          detail: methods ? `only ${methods.join(', ')}` : 'code_challenge_methods_supported is missing',
          fix: 'Advertise "code_challenge_methods_supported": ["S256"]; MCP clients refuse to go on without it.',
        },
  );

  const registration: string[] = ['pre-registered client IDs'];
  if (asMeta.client_id_metadata_document_supported) registration.push('client ID metadata documents (CIMD)');
  if (asMeta.registration_endpoint) registration.push(`dynamic registration at ${asMeta.registration_endpoint}`);
  add(
    registration.length > 1
      ? { id: 'registration', status: 'pass', title: 'Client registration', detail: registration.join(', ') }
      : {
          id: 'registration',
          status: 'warn',
          title: 'Client registration',
          detail: 'neither CIMD nor dynamic registration: every client needs a pre-registered client ID',
          fix: 'Enable client_id_metadata_document_supported or a registration_endpoint, or hand out client IDs.',
        },
  );

  for (const name of ['authorization_endpoint', 'token_endpoint'] as const) {
    const endpoint = asMeta[name];
    if (!endpoint) {
      add({ id: name, status: 'fail', title: `${name} present`, detail: 'missing', fix: `Publish ${name}.` });
    } else if (!endpoint.startsWith('https:') && !isLoopbackUrl(endpoint)) {
      add({
        id: name,
        status: 'fail',
        title: `${name} uses https`,
        detail: endpoint,
        fix: 'Serve OAuth endpoints over https.',
      });
    }
  }

  const scopes = asMeta.scopes_supported;
  add(
    scopes?.includes('offline_access')
      ? {
          id: 'offline-access',
          status: 'pass',
          title: 'Refresh tokens available',
          detail: 'offline_access is advertised',
        }
      : {
          id: 'offline-access',
          status: 'warn',
          title: 'Refresh tokens available',
          detail: 'offline_access is not advertised: clients may get no refresh token and must log in again hourly',
          fix: 'Advertise offline_access in scopes_supported if the AS issues refresh tokens.',
        },
  );

  return { url, ok: !checks.some((c) => c.status === 'fail'), checks, probes };
}

/** The error codes of the problems a failed login or connect is explained by; other failed checks: `ERR_DISCOVERY`. */
const PROBLEM_CODES: Record<string, string> = {
  'mcp-endpoint': 'ERR_NOT_MCP_SERVER',
  'authorization-server-url': 'ERR_AUTHORIZATION_SERVER_URL',
  'resource-metadata': 'ERR_NO_RESOURCE_METADATA',
};

/**
 * Why logging in to (or connecting to) `url` cannot work, as the error to throw: the first check of
 * {@link diagnose} that fails, its fix, and `gatehouse doctor <url>` for the whole report. `undefined` when every
 * check passes (the failure lies elsewhere) or the server does not answer (the request's own error says why).
 *
 * @example
 * ```ts
 * import { explainLoginFailure } from 'gatehouse/client';
 *
 * const problem = await explainLoginFailure('https://example.com/');
 * if (problem) console.error(`${problem.message}\n${problem.hint}`); // "… does not speak MCP …"
 * ```
 */
export async function explainLoginFailure(
  url: string,
  options: { fetch?: typeof fetch; timeoutMs?: number; cause?: unknown } = {},
): Promise<DiscoveryError | undefined> {
  const report = await diagnose(url, options).catch(() => undefined);
  const failed = report?.checks.find((check) => check.status === 'fail');
  if (!failed || failed.id === 'server-reachable') return undefined;
  let shown = url;
  try {
    shown = canonicalResourceUri(url); // as the user wrote it: no trailing slash on a bare origin
  } catch {
    // diagnose() reported it; keep it as given
  }
  return new DiscoveryError(failed.detail, {
    code: PROBLEM_CODES[failed.id] ?? 'ERR_DISCOVERY',
    hint: `${failed.fix ?? 'Fix what the report shows.'} \`gatehouse doctor ${shown}\` checks every step of the discovery.`,
    cause: options.cause,
  });
}

const SYMBOL: Record<DoctorCheck['status'], string> = { pass: '✓', warn: '!', fail: '✗', skip: '-' };
const COLOUR: Record<DoctorCheck['status'], string> = { pass: '32', warn: '33', fail: '31', skip: '90' };

/** Renders a report as a table a person can read; colours only when asked (on a TTY). */
export function formatDoctorReport(report: DoctorReport, options: { colour?: boolean } = {}): string {
  const paint = (status: DoctorCheck['status'], text: string) =>
    options.colour ? `\u001b[${COLOUR[status]}m${text}\u001b[0m` : text;
  const width = Math.max(...report.checks.map((c) => c.title.length), 10);
  const lines = [`gatehouse doctor ${report.url}`, ''];
  for (const check of report.checks) {
    lines.push(
      `${paint(check.status, `${SYMBOL[check.status]} ${check.status.padEnd(4)}`)}  ${check.title.padEnd(width)}  ${check.detail}`,
    );
    if (check.fix && check.status !== 'pass') lines.push(`${' '.repeat(8 + width)}fix: ${check.fix}`);
  }
  const failed = report.checks.filter((c) => c.status === 'fail').length;
  const warned = report.checks.filter((c) => c.status === 'warn').length;
  lines.push(
    '',
    report.ok
      ? `OK: a spec-following MCP client can log in${warned ? ` (${warned} warning${warned > 1 ? 's' : ''})` : ''}.`
      : `${failed} problem${failed > 1 ? 's' : ''} will break logins.`,
  );
  return lines.join('\n');
}

import { splitScopes } from '../../oauth/scopes.js';
import { UpstreamError } from './errors.js';

/** A token endpoint answer, normalised (GitHub answers form-encoded unless asked for JSON; both are read). */
export interface UpstreamTokenResponse {
  access_token: string;
  token_type: string;
  expires_in?: number;
  refresh_token?: string;
  id_token?: string;
  /** Granted scopes; GitHub separates them with commas, everyone else with spaces. */
  scope?: string[];
}

/** How a client authenticates at an upstream token endpoint. */
export type UpstreamClientAuth = 'client_secret_basic' | 'client_secret_post' | 'none';

export const USER_AGENT = 'gatehouse-upstream';

/** Parses a body as JSON, or as `application/x-www-form-urlencoded`, whatever the content type claims. */
export function parseTokenBody(text: string, contentType: string): Record<string, unknown> | undefined {
  const tryJson = () => {
    try {
      const value = JSON.parse(text) as unknown;
      return value && typeof value === 'object' && !Array.isArray(value)
        ? (value as Record<string, unknown>)
        : undefined;
    } catch {
      return undefined;
    }
  };
  const tryForm = () => {
    if (!text.includes('=')) return undefined;
    return Object.fromEntries(new URLSearchParams(text)) as Record<string, unknown>;
  };
  return contentType.includes('json') ? (tryJson() ?? tryForm()) : (tryForm() ?? tryJson());
}

function unavailable(upstream: string, what: string, cause?: unknown): UpstreamError {
  return new UpstreamError({
    error: 'temporarily_unavailable',
    reason: 'unavailable',
    description: `${upstream}: ${what}`,
    userMessage: `We could not reach ${upstream}. Try again in a moment.`,
    upstream,
    cause,
  });
}

/**
 * POSTs to an upstream token endpoint with `Accept: application/json` and reads JSON or form-encoded answers.
 * An `error` member fails the request even with HTTP 200 (GitHub does that). Errors never carry the body's tokens.
 */
export async function tokenRequest(options: {
  upstream: string;
  displayName: string;
  endpoint: string;
  params: URLSearchParams;
  clientId: string;
  clientSecret: string | undefined;
  auth: UpstreamClientAuth;
  fetch: typeof fetch;
  timeoutMs: number;
}): Promise<UpstreamTokenResponse> {
  const headers = new Headers({
    'content-type': 'application/x-www-form-urlencoded',
    accept: 'application/json',
    'user-agent': USER_AGENT,
  });
  const body = new URLSearchParams(options.params);
  if (options.auth === 'client_secret_basic' && options.clientSecret !== undefined) {
    const id = encodeURIComponent(options.clientId);
    const secret = encodeURIComponent(options.clientSecret);
    headers.set('authorization', `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`);
  } else {
    body.set('client_id', options.clientId);
    if (options.auth === 'client_secret_post' && options.clientSecret !== undefined)
      body.set('client_secret', options.clientSecret);
  }
  let response: Response;
  try {
    response = await options.fetch(options.endpoint, {
      method: 'POST',
      headers,
      body,
      redirect: 'error',
      signal: AbortSignal.timeout(options.timeoutMs),
    });
  } catch (cause) {
    throw unavailable(options.displayName, `the token endpoint cannot be reached (${(cause as Error).message})`, cause);
  }
  const text = await response.text().catch(() => '');
  const json = parseTokenBody(text, response.headers.get('content-type') ?? '');
  const error = json?.['error'];
  if (typeof error === 'string' && error) {
    const description = typeof json?.['error_description'] === 'string' ? json['error_description'] : undefined;
    throw new UpstreamError({
      // The MCP client did nothing wrong: a refused code or refresh token at the upstream is an invalid grant here.
      error: response.status >= 500 ? 'temporarily_unavailable' : 'invalid_grant',
      reason: error === 'invalid_grant' || error === 'bad_verification_code' ? 'revoked' : 'upstream_error',
      description: `${options.displayName} token endpoint answered ${error}${description ? `: ${description.slice(0, 200)}` : ''}`,
      userMessage: `${options.displayName} refused the sign-in (${error}).`,
      upstream: options.upstream,
    });
  }
  if (response.status >= 500)
    throw unavailable(options.displayName, `the token endpoint answered HTTP ${response.status}`);
  if (!response.ok || !json) {
    throw new UpstreamError({
      error: 'server_error',
      reason: 'upstream_error',
      description: `${options.displayName} token endpoint answered HTTP ${response.status} without a usable body`,
      userMessage: `${options.displayName} gave an answer we could not understand.`,
      upstream: options.upstream,
      status: 502,
    });
  }
  const accessToken = json['access_token'];
  if (typeof accessToken !== 'string' || !accessToken) {
    throw new UpstreamError({
      error: 'server_error',
      reason: 'upstream_error',
      description: `${options.displayName} token endpoint answered without an access_token`,
      userMessage: `${options.displayName} gave an answer we could not understand.`,
      upstream: options.upstream,
      status: 502,
    });
  }
  const expiresIn = Number(json['expires_in']);
  const result: UpstreamTokenResponse = {
    access_token: accessToken,
    token_type: typeof json['token_type'] === 'string' ? json['token_type'] : 'Bearer',
  };
  if (json['expires_in'] !== undefined && Number.isFinite(expiresIn) && expiresIn > 0) result.expires_in = expiresIn;
  if (typeof json['refresh_token'] === 'string' && json['refresh_token']) result.refresh_token = json['refresh_token'];
  if (typeof json['id_token'] === 'string' && json['id_token']) result.id_token = json['id_token'];
  const scope = typeof json['scope'] === 'string' ? splitScopes(json['scope']) : undefined;
  if (scope) result.scope = scope;
  return result;
}

/** GETs JSON from an upstream (discovery, userinfo, user API). `undefined` for 401/403/404. */
export async function getJson(options: {
  upstream: string;
  displayName: string;
  url: string;
  accessToken?: string;
  accept?: string;
  headers?: Record<string, string>;
  fetch: typeof fetch;
  timeoutMs: number;
}): Promise<Record<string, unknown> | undefined> {
  const headers = new Headers({ accept: options.accept ?? 'application/json', 'user-agent': USER_AGENT });
  for (const [k, v] of Object.entries(options.headers ?? {})) headers.set(k, v);
  if (options.accessToken) headers.set('authorization', `Bearer ${options.accessToken}`);
  let response: Response;
  try {
    response = await options.fetch(options.url, {
      headers,
      redirect: 'error',
      signal: AbortSignal.timeout(options.timeoutMs),
    });
  } catch (cause) {
    throw unavailable(options.displayName, `${options.url} cannot be reached (${(cause as Error).message})`, cause);
  }
  if (response.status === 401 || response.status === 403 || response.status === 404) {
    await response.body?.cancel();
    return undefined;
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw unavailable(options.displayName, `${options.url} answered HTTP ${response.status}`);
  }
  const body = (await response.json().catch(() => undefined)) as unknown;
  if (!body || typeof body !== 'object') {
    throw unavailable(options.displayName, `${options.url} did not answer JSON`);
  }
  return body as Record<string, unknown>;
}

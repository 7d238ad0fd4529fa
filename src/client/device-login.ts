/**
 * The device authorization grant (RFC 8628) from the client's side: ask for a device code, show the user where to
 * enter it, and poll the token endpoint at the server's pace (`interval`, `slow_down`) until the user approves,
 * declines (`access_denied`) or the code expires (`expired_token`).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type AuthorizationServerMetadata,
  assertSecureTokenEndpoint,
  fetchToken,
  type OAuthClientInformationMixed,
  type OAuthClientProvider,
  OAuthError,
  type OAuthTokens,
  parseErrorResponse,
  selectClientAuthMethod,
} from '@modelcontextprotocol/client';
import { DEVICE_CODE_GRANT_TYPE, DeviceAuthorizationResponseSchema } from '../oauth/device.js';
import { assertOpenableUrl } from './browser.js';
import { AuthenticationError, AuthorizationDeniedError, DeviceCodeExpiredError } from './errors.js';

/** What the user needs to approve a device login: where to go and the code to enter there. */
export interface DeviceCodePrompt {
  /** The page where the user enters the code, e.g. `https://auth.example.com/device`. */
  verificationUri: string;
  /** The same page with the code filled in (to open directly, or show as a QR code), when the server gives one. */
  verificationUriComplete?: string;
  /** The code to enter, e.g. `BDWP-HQPK`. */
  userCode: string;
  /** Seconds until the code expires. */
  expiresIn: number;
  /** The MCP server the login is for. */
  server: string;
}

/** Shows a {@link DeviceCodePrompt} to the user. */
export type DeviceCodeHandler = (prompt: DeviceCodePrompt) => void | Promise<void>;

/** The default {@link DeviceCodeHandler}: writes the address and the code to stderr. */
export const printDeviceCode: DeviceCodeHandler = (prompt) => {
  const minutes = Math.max(1, Math.round(prompt.expiresIn / 60));
  process.stderr.write(
    `To log in to ${prompt.server}, open ${prompt.verificationUri} in a browser on any device and enter the code\n\n` +
      `    ${prompt.userCode}\n\n` +
      (prompt.verificationUriComplete ? `(or open ${prompt.verificationUriComplete})\n` : '') +
      `The code expires in ${minutes} minute${minutes === 1 ? '' : 's'}. Waiting for the approval…\n`,
  );
};

/** A device-code string shown to the user: printable ASCII only, so it cannot carry terminal escapes. */
const PRINTABLE = /^[\x21-\x7e][\x20-\x7e]{0,63}$/;

/** Everything {@link deviceLogin} needs about the authorization server, the client and the request. */
export interface DeviceLoginRequest {
  authorizationServerUrl: string | URL;
  metadata: AuthorizationServerMetadata & { device_authorization_endpoint?: string };
  client: OAuthClientInformationMixed;
  /** The provider whose client authentication and DPoP the token requests use. */
  provider: OAuthClientProvider;
  server: string;
  scope?: string;
  resource?: URL | string;
  onDeviceCode: DeviceCodeHandler;
  /** The longest wait for the approval, in milliseconds (the code's own expiry also ends it). */
  timeoutMs: number;
  fetchFn: typeof fetch;
}

/** Client authentication of the device authorization request, as at the token endpoint (RFC 8628 §3.1). */
function authenticate(client: OAuthClientInformationMixed, metadata: DeviceLoginRequest['metadata']) {
  const headers = new Headers({ 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' });
  const body = new URLSearchParams({ client_id: client.client_id });
  const method = selectClientAuthMethod(client, metadata.token_endpoint_auth_methods_supported ?? []);
  const secret = 'client_secret' in client ? client.client_secret : undefined;
  if (method === 'client_secret_basic' && secret) {
    const pair = `${encodeURIComponent(client.client_id)}:${encodeURIComponent(secret)}`;
    headers.set('authorization', `Basic ${Buffer.from(pair).toString('base64')}`);
    body.delete('client_id');
  } else if (method === 'client_secret_post' && secret) {
    body.set('client_secret', secret);
  }
  return { headers, body };
}

/**
 * Runs a device login to the end and returns the tokens: the device authorization request (with `scope` and the
 * RFC 8707 `resource`, so the token is bound to the MCP server), the prompt, and the polls. Throws
 * {@link AuthorizationDeniedError} when the user declines, {@link DeviceCodeExpiredError} when the code expires,
 * and the server's `OAuthError` for anything else it refuses (e.g. `unauthorized_client`).
 */
export async function deviceLogin(request: DeviceLoginRequest): Promise<OAuthTokens> {
  const { metadata } = request;
  const endpoint = metadata.device_authorization_endpoint;
  if (!endpoint) throw new TypeError('deviceLogin needs metadata with a device_authorization_endpoint');
  assertSecureTokenEndpoint(endpoint);
  const { headers, body } = authenticate(request.client, metadata);
  if (request.scope) body.set('scope', request.scope);
  if (request.resource) body.set('resource', String(request.resource));
  const response = await request.fetchFn(endpoint, { method: 'POST', headers, body });
  if (!response.ok) throw await parseErrorResponse(response);
  const parsed = DeviceAuthorizationResponseSchema.safeParse(await response.json().catch(() => undefined));
  if (!parsed.success || !PRINTABLE.test(parsed.data.user_code)) {
    throw new AuthenticationError(`The device authorization response of ${endpoint} is malformed`, {
      code: 'ERR_DEVICE_RESPONSE',
      hint: 'The authorization server does not implement RFC 8628 correctly; log in with a browser instead.',
    });
  }
  const answer = parsed.data;
  const verificationUri = assertOpenableUrl(answer.verification_uri).href;
  const complete = answer.verification_uri_complete && assertOpenableUrl(answer.verification_uri_complete).href;
  await request.onDeviceCode({
    verificationUri,
    ...(complete && { verificationUriComplete: complete }),
    userCode: answer.user_code,
    expiresIn: answer.expires_in,
    server: request.server,
  });

  const deadline = Date.now() + Math.min(answer.expires_in * 1000, request.timeoutMs);
  let interval = answer.interval ?? 5;
  // fetchToken with this grant's parameters, and the provider's client authentication and DPoP.
  const poller = {
    clientMetadata: request.provider.clientMetadata,
    clientInformation: () => request.client,
    prepareTokenRequest: () =>
      new URLSearchParams({ grant_type: DEVICE_CODE_GRANT_TYPE, device_code: answer.device_code }),
    addClientAuthentication: request.provider.addClientAuthentication,
    dpop: request.provider.dpop?.bind(request.provider),
  } as OAuthClientProvider;
  for (;;) {
    await sleep(interval * 1000);
    if (Date.now() > deadline) throw new DeviceCodeExpiredError();
    try {
      return await fetchToken(poller, request.authorizationServerUrl, {
        metadata,
        ...(request.resource !== undefined && { resource: request.resource }),
        fetchFn: request.fetchFn,
      });
    } catch (error) {
      if (!(error instanceof OAuthError)) throw error;
      if (error.code === 'authorization_pending') continue;
      // RFC 8628 §3.5: this and every later poll waits 5 seconds longer.
      if (error.code === 'slow_down') interval += 5;
      else if (error.code === 'expired_token') throw new DeviceCodeExpiredError();
      else if (error.code === 'access_denied') throw new AuthorizationDeniedError('access_denied', error.message);
      else throw error;
    }
  }
}

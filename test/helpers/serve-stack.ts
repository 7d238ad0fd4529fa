import type { IncomingMessage, ServerResponse } from 'node:http';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { listen, type RunningServer, toNodeListener } from '../../src/server/node.js';
import { type FetchHandler, type ProtectOptions, protect } from '../../src/server/protect.js';
import { authorizationUrl, Browser, pkce, register, token } from '../authorization-server/helpers.js';
import { whoamiMcp } from '../server/helpers.js';
import { SERVE_USER } from './serve-process.js';

/** A loopback HTTP server whose fetch handler is set later (its URL is needed to configure the AS first). */
export interface Slot extends RunningServer {
  /** `${url}/mcp` */
  mcpUrl: string;
  set(handler: FetchHandler): void;
}

/** Serves `whoamiMcp()` on the slot, protected by JWTs of `issuer` with the scope `mcp:tools`; `extra` adds to that. */
export function serveWhoami(slot: Slot, issuer: string, extra: Partial<ProtectOptions> = {}): void {
  const verifier = jwtVerifier({ issuer });
  const options = { resource: slot.mcpUrl, authorizationServers: [issuer], verifier, requiredScopes: ['mcp:tools'] };
  slot.set(protect(whoamiMcp(), { ...options, ...extra }));
}

export async function startSlot(): Promise<Slot> {
  let target: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const running = await listen((req, res) => {
    if (target) target(req, res);
    else res.writeHead(503).end();
  });
  return {
    ...running,
    mcpUrl: `${running.url}/mcp`,
    set(handler) {
      target = toNodeListener(handler);
    },
  };
}

/** A confidential client (a resource server) pre-registered in the config file. */
export const RESOURCE_SERVER_CLIENT = {
  client_id: 'mcp-server',
  client_secret: 'mcp-server-secret-0123456789abcdef',
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
} as const;

/**
 * Registers a native client at `issuer` and runs the authorization-code flow as the serve superuser for
 * `resource`; returns the token response and the client id.
 */
export async function userTokens(
  issuer: string,
  resource: string,
  scope = 'mcp:tools offline_access',
): Promise<{ clientId: string; status: number; body: Record<string, string> }> {
  const redirectUri = 'http://127.0.0.1:4711/callback';
  const reg = await register({ url: issuer }, { redirect_uris: [redirectUri], client_name: 'Test client' });
  if (reg.status !== 201) throw new Error(`registration failed: ${JSON.stringify(reg.body)}`);
  const clientId = String(reg.body['client_id']);
  const { verifier, challenge } = pkce();
  const { callback } = await new Browser().authorize(
    authorizationUrl({ url: issuer }, { clientId, redirectUri, challenge, resource, scope }),
    redirectUri,
    { credentials: SERVE_USER },
  );
  const code = callback?.searchParams.get('code');
  if (!code) throw new Error(`no code: ${callback?.href}`);
  const result = await token(
    { url: issuer },
    {
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
      client_id: clientId,
      resource,
    },
  );
  return { clientId, ...result };
}

/** POSTs to the AS introspection endpoint as the resource-server client. */
export async function introspectAs(
  issuer: string,
  tokenValue: string,
): Promise<{ active: boolean; [claim: string]: unknown }> {
  const basic = Buffer.from(`${RESOURCE_SERVER_CLIENT.client_id}:${RESOURCE_SERVER_CLIENT.client_secret}`).toString(
    'base64',
  );
  const response = await fetch(`${issuer}/token/introspection`, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: tokenValue }),
  });
  if (!response.ok) throw new Error(`introspection answered ${response.status}: ${await response.text()}`);
  return (await response.json()) as { active: boolean };
}

/** Revokes a token as the public client it was issued to (RFC 7009). */
export async function revokeAs(issuer: string, clientId: string, tokenValue: string): Promise<number> {
  const response = await fetch(`${issuer}/token/revocation`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: tokenValue, client_id: clientId }),
  });
  await response.body?.cancel();
  return response.status;
}

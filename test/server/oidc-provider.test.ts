import {
  Client,
  type OAuthClientProvider,
  StreamableHTTPClientTransport,
  UnauthorizedError,
} from '@modelcontextprotocol/client';
import type { ClientMetadata } from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuthorizationServer } from '../../src/authorization-server/server.js';
import { staticUsers } from '../../src/authorization-server/users.js';
import { headlessAuthorize } from '../../src/client/headless-login.js';
import { introspectionVerifier } from '../../src/server/introspection-verifier.js';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { listen, type RunningServer, toNodeListener } from '../../src/server/node.js';
import { protect } from '../../src/server/protect.js';
import { DEMO_SCOPE, type DemoStack, startDemoStack } from '../../src/testing/demo-stack.js';
import { callTool, rpc, whoamiMcp } from './helpers.js';

const SECRET = 'resource-server-secret-that-is-long-enough';

describe('the resource server against oidc-provider (startDemoStack)', () => {
  let stack: DemoStack;
  let server: RunningServer;
  let opaqueAs: RunningServer;
  let opaqueIssuer: string;
  let introspectedUrl: string;
  let jwtResource: string;
  const extra = 'http://127.0.0.1:9/elsewhere';
  const client: ClientMetadata = {
    client_id: 'resource-server',
    client_secret: SECRET,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  };

  beforeAll(async () => {
    let target: Parameters<typeof listen>[0] = () => {};
    server = await listen((req, res) => target(req, res));
    introspectedUrl = `${server.url}/mcp`;
    jwtResource = `${server.url}/jwt`;
    stack = await startDemoStack({ extraResources: [jwtResource, extra], clients: [client] });

    // oidc-provider does not introspect structured (JWT) tokens, so the introspection tests use an
    // authorization server that issues opaque ones.
    let asTarget: Parameters<typeof listen>[0] = () => {};
    opaqueAs = await listen((req, res) => asTarget(req, res));
    opaqueIssuer = opaqueAs.url;
    const known = new Set([introspectedUrl, extra]);
    const as = await createAuthorizationServer({
      issuer: opaqueIssuer,
      authenticator: await staticUsers({ demo: 'demo' }),
      resources: [...known].map((resource) => ({ resource, scopes: [DEMO_SCOPE] })),
      clients: [client],
      providerConfiguration: {
        features: {
          introspection: { enabled: true },
          revocation: { enabled: true },
          clientCredentials: { enabled: true },
          resourceIndicators: {
            enabled: true,
            defaultResource: async (_ctx, _client, oneOf) => oneOf ?? introspectedUrl,
            useGrantedResource: async () => true,
            getResourceServerInfo: async (_ctx, indicator) => ({
              scope: DEMO_SCOPE,
              audience: indicator,
              accessTokenTTL: 600,
              accessTokenFormat: 'opaque',
            }),
          },
        },
      },
    });
    asTarget = as.listener;

    target = toNodeListener(
      protect(whoamiMcp(), {
        resource: introspectedUrl,
        authorizationServers: [opaqueIssuer],
        requiredScopes: [DEMO_SCOPE],
        verifier: introspectionVerifier({
          endpoint: `${opaqueIssuer}/token/introspection`,
          clientId: 'resource-server',
          clientSecret: SECRET,
          issuer: opaqueIssuer,
          cacheTtl: 0,
        }),
      }),
    );
  });
  afterAll(async () => {
    await server?.close();
    await opaqueAs?.close();
    await stack?.close();
  });

  async function clientCredentialsToken(resource: string, issuer = opaqueIssuer): Promise<string> {
    const response = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`resource-server:${SECRET}`).toString('base64')}`,
      },
      body: new URLSearchParams({ grant_type: 'client_credentials', resource, scope: DEMO_SCOPE }),
    });
    const body = (await response.json()) as { access_token?: string };
    expect(response.status, JSON.stringify(body)).toBe(200);
    return body.access_token!;
  }

  it('jwtVerifier discovers the JWKS from oidc-provider metadata and checks the audience', async () => {
    const verifier = jwtVerifier({ issuer: stack.issuer });
    const token = await clientCredentialsToken(jwtResource, stack.issuer);
    const authInfo = await verifier.verify(token, { resource: jwtResource });
    expect(authInfo.scopes).toContain(DEMO_SCOPE);
    expect(authInfo.clientId).toBe('resource-server');
    await expect(verifier.verify(token, { resource: stack.mcpUrl })).rejects.toThrow(/audience mismatch/);
  });

  it('introspection: an active token runs the tool', async () => {
    const token = await clientCredentialsToken(introspectedUrl);
    const result = await callTool(introspectedUrl, token, 'whoami');
    expect(result.structuredContent).toMatchObject({ clientId: 'resource-server', scopes: [DEMO_SCOPE] });
  });

  it('introspection: an unknown token and a token for another resource are refused with 401', async () => {
    const unknown = await rpc(introspectedUrl, 'tools/list', {}, 'opaque-token-the-as-never-issued');
    expect(unknown.status).toBe(401);
    expect(unknown.headers.get('www-authenticate')).toContain('not active');
    const other = await rpc(introspectedUrl, 'tools/list', {}, await clientCredentialsToken(extra));
    expect(other.status).toBe(401);
    expect(other.headers.get('www-authenticate')).toContain(`received ${extra}`);
  });

  it('introspection: a revoked token is refused with 401', async () => {
    const token = await clientCredentialsToken(introspectedUrl);
    expect((await rpc(introspectedUrl, 'tools/list', {}, token)).status).toBe(200);
    const revocation = await fetch(`${opaqueIssuer}/token/revocation`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`resource-server:${SECRET}`).toString('base64')}`,
      },
      body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
    });
    expect(revocation.status).toBe(200);
    const response = await rpc(introspectedUrl, 'tools/list', {}, token);
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toContain('invalid_token');
  });

  it('introspection: wrong resource-server credentials answer 500, not 401 (it is our fault, not the caller’s)', async () => {
    const verifier = introspectionVerifier({
      endpoint: `${opaqueIssuer}/token/introspection`,
      clientId: 'resource-server',
      clientSecret: 'wrong',
    });
    await expect(verifier.verify('x', { resource: introspectedUrl })).rejects.toMatchObject({ status: 500 });
  });

  it('the SDK client, unmodified, completes the OAuth flow against the protected server', async () => {
    const redirectUrl = 'http://127.0.0.1:1/callback';
    let clientInformation: Awaited<ReturnType<OAuthClientProvider['clientInformation']>>;
    let tokens: Awaited<ReturnType<OAuthClientProvider['tokens']>>;
    let codeVerifier = '';
    let callback: URL | undefined;
    const provider: OAuthClientProvider = {
      get redirectUrl() {
        return redirectUrl;
      },
      get clientMetadata() {
        return {
          client_name: 'SDK test client',
          redirect_uris: [redirectUrl],
          grant_types: ['authorization_code', 'refresh_token'],
          response_types: ['code'],
          token_endpoint_auth_method: 'none',
        };
      },
      clientInformation: () => clientInformation,
      saveClientInformation: (info) => {
        clientInformation = info;
      },
      tokens: () => tokens,
      saveTokens: (next) => {
        tokens = next;
      },
      redirectToAuthorization: async (url) => {
        callback = await headlessAuthorize(url, redirectUrl, { username: stack.username, password: stack.password });
      },
      saveCodeVerifier: (verifier) => {
        codeVerifier = verifier;
      },
      codeVerifier: () => codeVerifier,
    };

    const first = new StreamableHTTPClientTransport(new URL(stack.mcpUrl), { authProvider: provider });
    const client = new Client({ name: 'sdk-test', version: '1.0.0' });
    await expect(client.connect(first)).rejects.toBeInstanceOf(UnauthorizedError);
    const code = callback?.searchParams.get('code');
    expect(code, callback?.href).toBeTruthy();
    await first.finishAuth(callback!.searchParams);
    expect(tokens?.access_token).toBeTruthy();

    const again = new Client({ name: 'sdk-test', version: '1.0.0' });
    await again.connect(new StreamableHTTPClientTransport(new URL(stack.mcpUrl), { authProvider: provider }));
    try {
      const result = await again.callTool({ name: 'whoami', arguments: {} });
      expect(result.structuredContent).toMatchObject({ subject: stack.username, scopes: [DEMO_SCOPE] });
    } finally {
      await again.close();
    }
  });
});

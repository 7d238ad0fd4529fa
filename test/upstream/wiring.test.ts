import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuthorizationServer, createAuthorizationServer } from '../../src/authorization-server/index.js';
import {
  githubUpstream,
  UpstreamError,
  type UpstreamIdentity,
  upstreamAuthenticator,
} from '../../src/authorization-server/upstream/index.js';
import { headlessAuthorize } from '../../src/client/headless-login.js';
import { authorizationUrl, decodeJwt, pkce, RESOURCE, register, token } from '../authorization-server/helpers.js';
import { type GithubDouble, startGithubDouble } from './github-double.js';
import { engine } from './helpers.js';

/**
 * A prototype of the phase-2 wiring (docs/upstream-identity.md, "Planned wiring", steps 1-5) in front of the real
 * authorization server, in "upstream only" mode: it shows the integration points work with oidc-provider's
 * path-scoped interaction cookie. The real wiring belongs in interactions.ts / server.ts.
 */
function upstreamFrontDoor(as: AuthorizationServer, identity: UpstreamIdentity, upstreamName: string) {
  const redirect = (res: ServerResponse, location: string) => {
    res.writeHead(303, { location, 'cache-control': 'no-store' });
    res.end();
  };
  const fail = async (req: IncomingMessage, res: ServerResponse, error: unknown) => {
    if (!(error instanceof UpstreamError)) throw error;
    // The real page shows error.userMessage first; here the interaction ends at once with the OAuth error.
    await as.provider.interactionFinished(
      req,
      res,
      { error: error.error, error_description: error.description },
      { mergeWithLastSubmission: false },
    );
  };
  return async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/upstream/callback') {
      try {
        const { interactionUid } = await identity.resolveUpstreamCallback(url);
        return redirect(res, `/interaction/${interactionUid}/upstream/callback${url.search}`);
      } catch (error) {
        if (!(error instanceof UpstreamError)) throw error;
        res.writeHead(400, { 'content-type': 'text/plain' });
        res.end(error.userMessage);
        return;
      }
    }
    const match = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/upstream\/([a-z0-9-]+))?$/.exec(url.pathname);
    if (match && req.method === 'GET') {
      const details = await as.provider.interactionDetails(req, res);
      if (details.uid !== match[1]) throw new Error('interaction mismatch');
      if (match[2] === 'callback') {
        try {
          const account = await identity.completeUpstreamLogin({ callbackUrl: url, interactionUid: details.uid });
          await as.provider.interactionFinished(
            req,
            res,
            { login: { accountId: account.subject } },
            { mergeWithLastSubmission: false },
          );
        } catch (error) {
          await fail(req, res, error);
        }
        return;
      }
      if (match[2]) {
        const { authorizationUrl } = await identity.beginUpstreamLogin({
          provider: match[2],
          interactionUid: details.uid,
        });
        return redirect(res, authorizationUrl);
      }
      if (details.prompt.name === 'login') return redirect(res, `/interaction/${details.uid}/upstream/${upstreamName}`);
    }
    as.listener(req, res);
  };
}

describe('prototype wiring: an MCP client signs in to Gatehouse through the GitHub upstream', () => {
  let gh: GithubDouble;
  let server: Server;
  let issuer: string;
  let setup: ReturnType<typeof engine>;

  beforeAll(async () => {
    gh = await startGithubDouble({
      clientId: 'gh',
      clientSecret: 'gh-secret',
      users: [
        {
          id: 31337,
          login: 'octocat',
          password: 'hunter2',
          emails: [{ email: 'octocat@example.com', primary: true, verified: true }],
        },
        { id: 2, login: 'denier', password: 'pw' },
      ],
      denyingUsers: ['denier'],
    });
    let handler: ((req: IncomingMessage, res: ServerResponse) => Promise<void>) | undefined;
    server = createServer((req, res) => {
      handler!(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    setup = engine({
      issuer,
      providers: [
        githubUpstream({ clientId: 'gh', clientSecret: 'gh-secret', baseUrl: gh.url, apiBaseUrl: gh.apiUrl }),
      ],
      resources: [{ resource: gh.apiUrl, upstream: 'github' }],
    });
    const as = await createAuthorizationServer({
      issuer,
      authenticator: upstreamAuthenticator(setup.identity),
      resources: [{ resource: RESOURCE, scopes: ['mcp:tools'] }],
      refreshTokenGraceSeconds: 0,
    });
    handler = upstreamFrontDoor(as, setup.identity, 'github');
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await gh.close();
  });

  it('logs in headlessly on both hops; the Gatehouse token names the local subject and holds no upstream token', async () => {
    const redirectUri = 'http://127.0.0.1:4711/callback';
    const reg = await register({ url: issuer }, { redirect_uris: [redirectUri], client_name: 'MCP client' });
    const clientId = String(reg.body['client_id']);
    const { verifier, challenge } = pkce();
    const callback = await headlessAuthorize(
      authorizationUrl({ url: issuer }, { clientId, redirectUri, challenge, scope: 'mcp:tools' }),
      redirectUri,
      { username: 'octocat', password: 'hunter2' },
    );
    const code = callback.searchParams.get('code');
    expect(code, callback.href).toBeTruthy();
    const tokens = await token(
      { url: issuer },
      {
        grant_type: 'authorization_code',
        code: code!,
        redirect_uri: redirectUri,
        code_verifier: verifier,
        client_id: clientId,
        resource: RESOURCE,
      },
    );
    expect(tokens.status).toBe(200);
    const claims = decodeJwt(tokens.body['access_token']!);
    const [user] = await setup.identity.accounts.list();
    expect(claims['sub']).toBe(user!.subject);
    expect(user!.identities[0]).toMatchObject({ upstream: 'github', upstreamSubject: '31337', username: 'octocat' });

    // The upstream token is in the vault, and nowhere in what the MCP client received.
    const upstreamToken = await setup.identity.getUpstreamAccessToken(user!.subject, 'github');
    expect(gh.liveAccessTokens()).toContain(upstreamToken.access_token);
    const received = JSON.stringify(tokens.body) + callback.href;
    for (const live of gh.liveAccessTokens()) expect(received).not.toContain(live);
    expect(setup.logs.text()).not.toContain(upstreamToken.access_token);
  });

  it('answers the MCP client with access_denied when the user declines at the upstream', async () => {
    const redirectUri = 'http://127.0.0.1:4711/callback';
    const reg = await register({ url: issuer }, { redirect_uris: [redirectUri] });
    const { challenge } = pkce();
    const callback = await headlessAuthorize(
      authorizationUrl({ url: issuer }, { clientId: String(reg.body['client_id']), redirectUri, challenge }),
      redirectUri,
      { username: 'denier', password: 'pw' },
    );
    expect(callback.searchParams.get('error')).toBe('access_denied');
    expect(callback.searchParams.get('error_description')).toContain('GitHub answered access_denied');
    expect(callback.searchParams.get('iss')).toBe(issuer);
    expect(callback.searchParams.get('code')).toBeNull();
  });

  it('refuses a forged callback at the fixed redirect URI', async () => {
    const response = await fetch(`${issuer}/upstream/callback?code=stolen&state=forged`, { redirect: 'manual' });
    expect(response.status).toBe(400);
    expect(await response.text()).toContain('expired or was already used');
  });
});

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { githubUpstream, UpstreamError, type UpstreamIdentity } from '../../src/authorization-server/upstream/index.js';
import { OAuthProtocolError } from '../../src/oauth/errors.js';
import { TokenExchangeClient } from '../../src/server/grant.js';
import { type GithubDouble, startGithubDouble } from './github-double.js';
import { clock, engine, ISSUER, upstreamLogin } from './helpers.js';

/**
 * The contract with the resource server's `grant()`: a token endpoint that answers a token exchange for an
 * upstream-mapped resource with `exchangeForUpstreamResource()` (as the authorization server's grant will) gives
 * `TokenExchangeClient` a usable token, and every upstream failure becomes a resource error in the AccessContext.
 * The stand-in endpoint trusts `subject_token` as the subject; the real grant takes `sub` from the verified token.
 */
async function stubTokenEndpoint(identity: UpstreamIdentity): Promise<{ url: string; server: Server }> {
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
    const body = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
    let response: Response;
    try {
      const answer = await identity.exchangeForUpstreamResource({
        subject: body.get('subject_token') ?? '',
        resource: body.get('resource') ?? '',
        scopes: body.get('scope')?.split(' ').filter(Boolean) ?? [],
      });
      response = Response.json(answer, { headers: { 'cache-control': 'no-store' } });
    } catch (error) {
      response =
        error instanceof UpstreamError ? error.toResponse() : new OAuthProtocolError('server_error').toResponse();
    }
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.end(await response.text());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`, server };
}

describe('grant() contract: delegated upstream tokens through token exchange', () => {
  const time = clock();
  let gh: GithubDouble;
  let setup: ReturnType<typeof engine>;
  let endpoint: { url: string; server: Server };

  beforeAll(async () => {
    gh = await startGithubDouble({
      clientId: 'gh',
      clientSecret: 'gh-secret',
      users: [{ id: 9, login: 'octocat', password: 'hunter2' }],
      accessTokenTtl: 3600,
      now: time.now,
    });
    setup = engine({
      providers: [
        githubUpstream({ clientId: 'gh', clientSecret: 'gh-secret', baseUrl: gh.url, apiBaseUrl: gh.apiUrl }),
      ],
      resources: [{ resource: gh.apiUrl, upstream: 'github' }],
      now: time.now,
    });
    endpoint = await stubTokenEndpoint(setup.identity);
  });
  afterAll(async () => {
    endpoint.server.closeAllConnections();
    endpoint.server.close();
    await gh.close();
  });

  it('gives grant() the upstream token, refreshed when expired, and a resource error with the link when revoked', async () => {
    const { identity } = setup;
    const { subject } = await identity.completeUpstreamLogin({
      callbackUrl: await upstreamLogin(identity, 'github', 'g-1'),
      interactionUid: 'g-1',
    });
    const client = () =>
      new TokenExchangeClient({ tokenEndpoint: endpoint.url, credentials: { clientId: 'mcp', clientSecret: 's' } });

    const ok = await client().exchangeAll(subject, [gh.apiUrl]);
    expect(ok.getStatus()).toBe('success');
    const user = await fetch(`${gh.apiUrl}/user`, {
      headers: { authorization: `Bearer ${ok.access(gh.apiUrl).accessToken}` },
    });
    expect(((await user.json()) as { login: string }).login).toBe('octocat');

    time.advance(3600);
    const refreshed = await client().exchangeAll(subject, [gh.apiUrl]);
    expect(refreshed.access(gh.apiUrl).accessToken).not.toBe(ok.access(gh.apiUrl).accessToken);

    gh.revokeAll('octocat');
    time.advance(3600);
    const revoked = await client().exchangeAll(subject, [gh.apiUrl]);
    expect(revoked.getStatus()).toBe('error');
    expect(revoked.getResourceError(gh.apiUrl)).toMatchObject({ error: 'invalid_grant', status: 400 });
    expect(revoked.getResourceError(gh.apiUrl)?.message).toContain(`${ISSUER}/upstream/github/link`);

    const stranger = await client().exchangeAll('u_not_linked', [gh.apiUrl]);
    expect(stranger.getResourceError(gh.apiUrl)?.message).toContain('has not linked GitHub');
  });
});

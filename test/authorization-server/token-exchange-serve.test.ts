import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOKEN_EXCHANGE_GRANT_TYPE } from '../../src/oauth/token-exchange.js';
import { createGrant } from '../../src/server/grant.js';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { protect } from '../../src/server/protect.js';
import { type ServeProcess, startServeProcess } from '../helpers/serve-process.js';
import {
  introspectAs,
  RESOURCE_SERVER_CLIENT,
  revokeAs,
  type Slot,
  startSlot,
  userTokens,
} from '../helpers/serve-stack.js';
import { callTool, whoamiMcp } from '../server/helpers.js';

const API = 'http://127.0.0.1:1/api';
const REPORTS = 'http://127.0.0.1:1/reports';

// Token exchange as an MCP server does it (grant() in a tool) against `gatehouse serve --config`.
describe('token exchange checks (gatehouse serve)', () => {
  let as: ServeProcess;
  let mcp: Slot;

  beforeAll(async () => {
    mcp = await startSlot();
    as = await startServeProcess(
      [
        '--resource',
        `${mcp.mcpUrl}=mcp:tools,api:read`,
        '--resource',
        `${API}=api:read,api:write`,
        '--resource',
        `${REPORTS}=reports:read,format=opaque`,
      ],
      {
        clients: [{ ...RESOURCE_SERVER_CLIENT, grant_types: [TOKEN_EXCHANGE_GRANT_TYPE] }],
        tokenExchange: [
          {
            clientId: RESOURCE_SERVER_CLIENT.client_id,
            from: [mcp.mcpUrl],
            to: [
              { resource: API, scopes: ['api:read', 'api:write'] },
              { resource: REPORTS, scopes: ['reports:read'], beyondConsent: true },
            ],
          },
        ],
      },
    );
    const grant = createGrant({
      issuer: as.url,
      credentials: { clientId: RESOURCE_SERVER_CLIENT.client_id, clientSecret: RESOURCE_SERVER_CLIENT.client_secret },
    });
    // Each tool answers with the exchanged token, or the recorded error.
    const answer =
      (resource: string) => async (_ctx: unknown, access: import('../../src/server/index.js').AccessContext) => {
        const text = access.hasResourceError(resource)
          ? JSON.stringify({
              ...access.getResourceError(resource),
              line: `${access.getResourceError(resource)}`,
              summary: `${access}`,
              plural: access.getResourceErrors(),
            })
          : access.access(resource).accessToken;
        return { content: [{ type: 'text' as const, text }] };
      };
    mcp.set(
      protect(
        whoamiMcp((server) => {
          server.registerTool('api_read', {}, grant(API, { scopes: ['api:read'] })(answer(API)));
          server.registerTool('api_write', {}, grant(API, { scopes: ['api:write'] })(answer(API)));
          server.registerTool('reports', {}, grant(REPORTS)(answer(REPORTS)));
        }),
        {
          resource: mcp.mcpUrl,
          authorizationServers: [as.url],
          verifier: jwtVerifier({ issuer: as.url }),
          requiredScopes: ['mcp:tools'],
        },
      ),
    );
  }, 60_000);

  afterAll(async () => {
    await as?.close();
    await mcp?.close();
  });

  const toolText = async (token: string, tool: string) =>
    (await callTool(mcp.mcpUrl, token, tool)).content[0]?.text ?? '';

  it('exchanges toward scopes the user consented to, naming the MCP server as actor', async () => {
    const user = await userTokens(as.url, mcp.mcpUrl, 'mcp:tools api:read offline_access');
    const exchanged = await toolText(user.body['access_token']!, 'api_read');
    expect(await introspectAs(as.url, exchanged)).toMatchObject({
      active: true,
      sub: 'admin',
      aud: API,
      scope: 'api:read',
      client_id: RESOURCE_SERVER_CLIENT.client_id,
      act: { sub: RESOURCE_SERVER_CLIENT.client_id },
    });
  });

  it('refuses a scope the policy allows but the user did not consent to', async () => {
    const user = await userTokens(as.url, mcp.mcpUrl, 'mcp:tools api:read offline_access');
    const error = JSON.parse(await toolText(user.body['access_token']!, 'api_write'));
    expect(error).toMatchObject({ error: 'invalid_scope', message: expect.stringMatching(/consent/) });
    // AccessContext errors read well in a template string, and the seed's plural accessor exists.
    expect(error.line).toMatch(/^invalid_scope: .*consent/);
    expect(error.summary).toMatch(new RegExp(`^error: ${API}: invalid_scope: `));
    expect(error.plural[API]).toMatchObject({ error: 'invalid_scope' });
  });

  it('grants beyond consent only where the policy says so (beyondConsent), in the target resource’s format', async () => {
    const user = await userTokens(as.url, mcp.mcpUrl, 'mcp:tools offline_access');
    const exchanged = await toolText(user.body['access_token']!, 'reports');
    expect(exchanged).not.toContain('.'); // reports issues opaque tokens
    expect(await introspectAs(as.url, exchanged)).toMatchObject({ active: true, aud: REPORTS, scope: 'reports:read' });
  });

  it('refuses a subject token whose grant was revoked, even though the JWT itself still verifies', async () => {
    const user = await userTokens(as.url, mcp.mcpUrl, 'mcp:tools api:read offline_access');
    // Another token of the same user is exchanged (and cached by grant()) first.
    const other = await userTokens(as.url, mcp.mcpUrl, 'mcp:tools api:read offline_access');
    expect(await toolText(other.body['access_token']!, 'api_read')).toContain('.');
    expect(await revokeAs(as.url, user.clientId, user.body['refresh_token']!)).toBe(200);
    const error = JSON.parse(await toolText(user.body['access_token']!, 'api_read'));
    expect(error).toMatchObject({
      error: 'invalid_grant',
      message: 'invalid_grant: subject_token is invalid, expired or revoked',
    });
  });
});

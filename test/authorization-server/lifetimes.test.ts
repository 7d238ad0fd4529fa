import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOKEN_EXCHANGE_GRANT_TYPE, TOKEN_TYPE } from '../../src/oauth/token-exchange.js';
import { type ServeProcess, startServeProcess } from '../helpers/serve-process.js';
import { introspectAs, RESOURCE_SERVER_CLIENT, userTokens } from '../helpers/serve-stack.js';
import { decodeJwt, token } from './helpers.js';

const MCP = 'http://127.0.0.1:1/mcp';
const API = 'http://127.0.0.1:1/api';
const basic = { id: RESOURCE_SERVER_CLIENT.client_id, secret: RESOURCE_SERVER_CLIENT.client_secret };

/** `expires_in` as answered, and the lifetime the token itself carries (JWT `exp - iat`, or introspection's). */
async function lifetimes(issuer: string, body: Record<string, string>): Promise<[number, number]> {
  const value = body['access_token']!;
  const claims = value.includes('.') ? decodeJwt(value) : await introspectAs(issuer, value);
  return [Number(body['expires_in']), Number(claims['exp']) - Number(claims['iat'])];
}

// `resources[].accessTokenTtl` from `gatehouse serve --config`, for every grant.
describe('access-token lifetimes per resource (gatehouse serve --config)', () => {
  let as: ServeProcess;
  beforeAll(async () => {
    as = await startServeProcess([], {
      resources: [
        { resource: MCP, scopes: ['mcp:tools'], accessTokenTtl: 321 },
        { resource: API, scopes: ['api:read'], accessTokenTtl: 123, accessTokenFormat: 'opaque' },
      ],
      clients: [{ ...RESOURCE_SERVER_CLIENT, grant_types: ['client_credentials', TOKEN_EXCHANGE_GRANT_TYPE] }],
      tokenExchange: [
        {
          clientId: RESOURCE_SERVER_CLIENT.client_id,
          from: [MCP],
          to: [{ resource: API, scopes: ['api:read'], beyondConsent: true }],
        },
      ],
    });
  }, 60_000);
  afterAll(() => as?.close());

  it('authorization code and refresh grants', async () => {
    const user = await userTokens(as.url, MCP);
    expect(await lifetimes(as.url, user.body)).toEqual([321, 321]);
    const refreshed = await token(
      { url: as.url },
      {
        grant_type: 'refresh_token',
        refresh_token: user.body['refresh_token']!,
        client_id: user.clientId,
        resource: MCP,
      },
    );
    expect(refreshed.status).toBe(200);
    expect(await lifetimes(as.url, refreshed.body)).toEqual([321, 321]);
  });

  it('client credentials grant', async () => {
    const result = await token(
      { url: as.url },
      { grant_type: 'client_credentials', resource: API, scope: 'api:read' },
      basic,
    );
    expect(result.status).toBe(200);
    expect(await lifetimes(as.url, result.body)).toEqual([123, 123]);
  });

  it('token exchange (capped by the subject token, which lives longer here)', async () => {
    const user = await userTokens(as.url, MCP);
    const result = await token(
      { url: as.url },
      {
        grant_type: TOKEN_EXCHANGE_GRANT_TYPE,
        subject_token: user.body['access_token']!,
        subject_token_type: TOKEN_TYPE.accessToken,
        resource: API,
      },
      basic,
    );
    expect(result.status).toBe(200);
    expect(await lifetimes(as.url, result.body)).toEqual([123, 123]);
  });
});

import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDemo } from '../../src/cli/demo-flow.js';
import { canonicalResourceUri } from '../../src/oauth/resource-uri.js';
import { findBearerChallenge } from '../../src/oauth/www-authenticate.js';
import { type DemoStack, startDemoStack } from '../../src/testing/demo-stack.js';

function mcpCall(url: string, token?: string): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
  });
}

describe('the demo flow over real loopback HTTP', () => {
  it('logs in from nothing but the server URL and calls whoami as the demo user', async () => {
    const lines: string[] = [];
    const result = await runDemo({ print: (line) => lines.push(line) });

    // No token → 401 whose challenge carries resource_metadata.
    const challenge = findBearerChallenge(result.challenge);
    expect(challenge?.params['resource_metadata']).toBe(
      `${new URL(result.mcpUrl).origin}/.well-known/oauth-protected-resource/mcp`,
    );
    // The issued token is a JWT bound to the MCP server's URL.
    const claims = decodeJwt(result.accessToken);
    expect(canonicalResourceUri(String(claims.aud))).toBe(canonicalResourceUri(result.mcpUrl));
    expect(claims.iss).toBe(result.issuer);
    // The tool sees the demo user's subject and scopes.
    expect(result.whoami.subject).toBe('demo');
    expect(result.whoami.scopes).toContain('mcp:tools');
    // Every step was reported in plain words.
    const transcript = lines.join('\n');
    for (const step of [
      'HTTP 401',
      'protected-resource metadata',
      'registered dynamically',
      'login form',
      'PKCE',
      'whoami',
    ]) {
      expect(transcript).toContain(step);
    }
  });
});

describe('the resource server in the demo stack', () => {
  const otherResource = 'http://127.0.0.1:9/other';
  let stack: DemoStack;

  beforeAll(async () => {
    stack = await startDemoStack({
      extraResources: [otherResource],
      clients: [
        {
          client_id: 'service',
          client_secret: 'service-secret-that-is-long-enough',
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          token_endpoint_auth_method: 'client_secret_basic',
        },
      ],
    });
  });
  afterAll(() => stack.close());

  async function clientCredentialsToken(resource: string): Promise<string> {
    const response = await fetch(`${stack.issuer}/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from('service:service-secret-that-is-long-enough').toString('base64')}`,
      },
      body: new URLSearchParams({ grant_type: 'client_credentials', resource, scope: 'mcp:tools' }),
    });
    const body = (await response.json()) as { access_token?: string };
    expect(response.status, JSON.stringify(body)).toBe(200);
    return body.access_token!;
  }

  it('answers 401 with a resource_metadata challenge when there is no token', async () => {
    const response = await mcpCall(stack.mcpUrl);
    expect(response.status).toBe(401);
    const challenge = findBearerChallenge(response.headers.get('www-authenticate'));
    expect(challenge?.params['resource_metadata']).toContain('/.well-known/oauth-protected-resource/mcp');
    expect(challenge?.params['error']).toBeUndefined();
  });

  it('accepts a token minted for its own audience', async () => {
    const token = await clientCredentialsToken(stack.mcpUrl);
    const response = await mcpCall(stack.mcpUrl, token);
    expect(response.status).toBe(200);
  });

  it('rejects a token minted for another audience with 401 naming both audiences', async () => {
    const token = await clientCredentialsToken(otherResource);
    expect(decodeJwt(token).aud).toBe(otherResource);
    const response = await mcpCall(stack.mcpUrl, token);
    expect(response.status).toBe(401);
    const challenge = findBearerChallenge(response.headers.get('www-authenticate'));
    expect(challenge?.params['error']).toBe('invalid_token');
    expect(challenge?.params['error_description']).toContain(`expected ${canonicalResourceUri(stack.mcpUrl)}`);
    expect(challenge?.params['error_description']).toContain(`received ${otherResource}`);
  });

  it('rejects a tampered token', async () => {
    const token = await clientCredentialsToken(stack.mcpUrl);
    const [h, p, s] = token.split('.');
    const tampered = `${h}.${p}.${s!.slice(0, -4)}AAAA`;
    const response = await mcpCall(stack.mcpUrl, tampered);
    expect(response.status).toBe(401);
  });

  it('serves protected-resource metadata at the path form and the root, with CORS', async () => {
    const origin = new URL(stack.mcpUrl).origin;
    for (const path of ['/.well-known/oauth-protected-resource/mcp', '/.well-known/oauth-protected-resource']) {
      const response = await fetch(`${origin}${path}`);
      expect(response.status).toBe(200);
      expect(response.headers.get('access-control-allow-origin')).toBe('*');
      const metadata = (await response.json()) as { resource: string; authorization_servers: string[] };
      expect(metadata.resource).toBe(canonicalResourceUri(stack.mcpUrl));
      expect(metadata.authorization_servers).toEqual([stack.issuer]);
    }
  });
});

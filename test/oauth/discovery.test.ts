import { describe, expect, it } from 'vitest';
import { authorizationServerMetadataUrls, protectedResourceMetadataUrls } from '../../src/oauth/discovery.js';
import { OAuthProtocolError } from '../../src/oauth/errors.js';
import { InvalidMetadataError, parseAuthorizationServerMetadata } from '../../src/oauth/metadata.js';

describe('discovery URLs in spec order', () => {
  it('tries the path-inserted protected-resource metadata, then the root', () => {
    expect(protectedResourceMetadataUrls('https://api.example.com/v1/mcp/')).toEqual([
      'https://api.example.com/.well-known/oauth-protected-resource/v1/mcp',
      'https://api.example.com/.well-known/oauth-protected-resource',
    ]);
    expect(protectedResourceMetadataUrls('https://api.example.com')).toEqual([
      'https://api.example.com/.well-known/oauth-protected-resource',
    ]);
  });

  it('tries RFC 8414 then OIDC variants for an issuer with and without a path', () => {
    expect(authorizationServerMetadataUrls('https://auth.example.com')).toEqual([
      'https://auth.example.com/.well-known/oauth-authorization-server',
      'https://auth.example.com/.well-known/openid-configuration',
    ]);
    expect(authorizationServerMetadataUrls('https://auth.example.com/tenant1')).toEqual([
      'https://auth.example.com/.well-known/oauth-authorization-server/tenant1',
      'https://auth.example.com/.well-known/openid-configuration/tenant1',
      'https://auth.example.com/tenant1/.well-known/openid-configuration',
    ]);
  });
});

describe('metadata validation', () => {
  it('keeps unknown members and rejects a document without issuer', () => {
    const doc = parseAuthorizationServerMetadata(
      { issuer: 'https://a.example', token_endpoint: 'https://a.example/token', x_custom: 1 },
      'https://a.example/.well-known/oauth-authorization-server',
    );
    expect(doc['x_custom']).toBe(1);
    expect(() => parseAuthorizationServerMetadata({ token_endpoint: 'https://a/token' }, 'u')).toThrow(
      InvalidMetadataError,
    );
  });
});

describe('OAuthProtocolError', () => {
  it('becomes a no-store JSON response with the right status', async () => {
    const response = new OAuthProtocolError('invalid_client', 'unknown client').toResponse();
    expect(response.status).toBe(401);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(await response.json()).toEqual({ error: 'invalid_client', error_description: 'unknown client' });
  });

  it('reads OAuth errors and non-OAuth bodies from responses without losing them', async () => {
    const fromJson = await OAuthProtocolError.fromResponse(
      new Response('{"error":"invalid_grant","error_description":"used"}', { status: 400 }),
    );
    expect([fromJson.error, fromJson.description, fromJson.status]).toEqual(['invalid_grant', 'used', 400]);
    const fromHtml = await OAuthProtocolError.fromResponse(new Response('Not Found', { status: 404 }));
    expect(fromHtml.error).toBe('server_error');
    expect(fromHtml.description).toContain('HTTP 404: Not Found');
  });
});

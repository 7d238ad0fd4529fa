import { describe, expect, it } from 'vitest';
import { findBearerChallenge, formatWwwAuthenticate, parseWwwAuthenticate } from '../../src/oauth/www-authenticate.js';

describe('parseWwwAuthenticate', () => {
  it('reads a Bearer challenge with quoted and token params', () => {
    const [c] = parseWwwAuthenticate(
      'Bearer realm="mcp", error=invalid_token, resource_metadata="https://a.example/.well-known/oauth-protected-resource/mcp"',
    );
    expect(c?.scheme).toBe('Bearer');
    expect(c?.params).toEqual({
      realm: 'mcp',
      error: 'invalid_token',
      resource_metadata: 'https://a.example/.well-known/oauth-protected-resource/mcp',
    });
  });

  it('unescapes quoted-pairs and keeps commas inside quotes', () => {
    const [c] = parseWwwAuthenticate('Bearer error_description="a \\"quoted\\", value", scope="read write"');
    expect(c?.params['error_description']).toBe('a "quoted", value');
    expect(c?.params['scope']).toBe('read write');
  });

  it('splits several challenges and finds Bearer among them', () => {
    const header = 'Basic realm="x", DPoP algs="ES256 RS256", Bearer scope="a b", error="insufficient_scope"';
    const all = parseWwwAuthenticate(header);
    expect(all.map((c) => c.scheme)).toEqual(['Basic', 'DPoP', 'Bearer']);
    expect(findBearerChallenge(header)?.params).toEqual({ scope: 'a b', error: 'insufficient_scope' });
  });

  it('handles a bare scheme, token68 and parameter names case-insensitively', () => {
    expect(parseWwwAuthenticate('Bearer')).toEqual([{ scheme: 'Bearer', params: {} }]);
    expect(parseWwwAuthenticate('Negotiate abc123==')[0]?.token68).toBe('abc123==');
    expect(parseWwwAuthenticate('bearer Resource_Metadata="u"')[0]?.params['resource_metadata']).toBe('u');
  });

  it('returns nothing for empty or garbage input without throwing', () => {
    expect(parseWwwAuthenticate(undefined)).toEqual([]);
    expect(parseWwwAuthenticate('')).toEqual([]);
    expect(() => parseWwwAuthenticate('=== "unterminated')).not.toThrow();
  });

  it('round-trips what formatWwwAuthenticate writes', () => {
    const header = formatWwwAuthenticate('Bearer', {
      error: 'invalid_token',
      error_description: 'say "no", please \\ now',
      scope: undefined,
      resource_metadata: 'https://a.example/x',
    });
    expect(header).not.toContain('scope=');
    expect(findBearerChallenge(header)?.params).toEqual({
      error: 'invalid_token',
      error_description: 'say "no", please \\ now',
      resource_metadata: 'https://a.example/x',
    });
  });
});

import { describe, expect, it } from 'vitest';
import {
  assertSecureUrl,
  canonicalResourceUri,
  InvalidResourceUriError,
  isLoopbackUrl,
  sameResource,
} from '../../src/oauth/resource-uri.js';

describe('canonicalResourceUri', () => {
  it.each([
    ['HTTPS://MCP.Example.COM/mcp', 'https://mcp.example.com/mcp'],
    ['https://mcp.example.com:443/mcp/', 'https://mcp.example.com/mcp'],
    ['https://mcp.example.com/', 'https://mcp.example.com'],
    ['https://mcp.example.com', 'https://mcp.example.com'],
    ['http://127.0.0.1:8000/mcp#frag', 'http://127.0.0.1:8000/mcp'],
    ['http://localhost:80/a/b//', 'http://localhost/a/b'],
    ['https://api.example.com/mcp?tenant=1', 'https://api.example.com/mcp?tenant=1'],
    ['http://[::1]:3000/mcp', 'http://[::1]:3000/mcp'],
  ])('%s → %s', (input, expected) => {
    expect(canonicalResourceUri(input)).toBe(expected);
  });

  it('refuses what cannot be a resource indicator', () => {
    expect(() => canonicalResourceUri('not a url')).toThrow(InvalidResourceUriError);
    expect(() => canonicalResourceUri('ftp://example.com/')).toThrow(/scheme/);
    expect(() => canonicalResourceUri('https://user:pw@example.com/')).toThrow(/credentials/);
  });

  it('compares resources after canonicalisation', () => {
    expect(sameResource('https://a.example/mcp/', 'https://A.example:443/mcp')).toBe(true);
    expect(sameResource('https://a.example/mcp', 'https://a.example/mcp2')).toBe(false);
    expect(sameResource('https://a.example/mcp', 'garbage')).toBe(false);
  });
});

describe('secure URL rule', () => {
  it('allows https anywhere and http only on loopback', () => {
    expect(isLoopbackUrl('http://127.0.0.1:1/')).toBe(true);
    expect(isLoopbackUrl('http://[::1]:1/')).toBe(true);
    expect(isLoopbackUrl('http://localhost/')).toBe(true);
    expect(isLoopbackUrl('http://127.0.0.1.evil.com/')).toBe(false);
    expect(assertSecureUrl('https://example.com/x', 'issuer').href).toBe('https://example.com/x');
    expect(() => assertSecureUrl('http://example.com/x', 'issuer')).toThrow(/issuer must use https/);
    expect(() => assertSecureUrl('javascript:alert(1)', 'redirect')).toThrow(TypeError);
  });
});

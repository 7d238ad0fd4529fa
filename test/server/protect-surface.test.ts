// docs/server.md: the resource URL is normalised once (lower-case host, no default port, no trailing slash), and the
// handler protect() returns exposes resource, resourceMetadataUrl, metadata and handles(pathname).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { protect } from '../../src/server/protect.js';
import { type Slot, startSlot } from '../helpers/serve-stack.js';
import { whoamiMcp } from './helpers.js';

describe('the handler protect() returns', () => {
  let slot: Slot;
  beforeAll(async () => {
    slot = await startSlot();
  });
  afterAll(() => slot?.close());

  const make = (resource: string) =>
    protect(whoamiMcp(), {
      resource,
      authorizationServers: ['https://auth.example.com'],
      verifier: jwtVerifier({ issuer: 'https://auth.example.com' }),
      requiredScopes: ['mcp:tools'],
    });

  it('normalises the resource: lower-case host, no default port, no trailing slash', () => {
    const handler = make('https://MCP.Example.COM:443/mcp/');
    expect(handler.resource).toBe('https://mcp.example.com/mcp');
    expect(handler.resourceMetadataUrl).toBe('https://mcp.example.com/.well-known/oauth-protected-resource/mcp');
    expect(handler.metadata.resource).toBe('https://mcp.example.com/mcp');
  });

  it('serves the normalised resource in its metadata and owns only its own paths', async () => {
    const port = new URL(slot.url).port;
    const handler = make(`http://LocalHost:${port}/mcp/`);
    slot.set(handler);
    const served = await (await fetch(`${slot.url}/.well-known/oauth-protected-resource/mcp`)).json();
    expect(served).toEqual(handler.metadata);
    expect(served.resource).toBe(`http://localhost:${port}/mcp`);
    expect(handler.handles('/mcp')).toBe(true);
    expect(handler.handles('/.well-known/oauth-protected-resource/mcp')).toBe(true);
    expect(handler.handles('/.well-known/oauth-protected-resource')).toBe(true);
    expect(handler.handles('/favicon.ico')).toBe(false);
    expect(handler.handles('/mcpx')).toBe(false);
  });
});

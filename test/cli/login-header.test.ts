import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type OAuthTestStack, startOAuthTestStack, temporaryDirectory } from '../client/oauth-helpers.js';
import { cli } from './helpers.js';

// An MCP server behind a gateway that wants an API key on every request, metadata included (as mcp-remote's
// --header serves): `gatehouse login --header` sends it to the MCP server, and never to the authorization server.
let stack: OAuthTestStack;
const seenByAs: string[] = [];
const home = await temporaryDirectory('login-header');
beforeAll(async () => {
  stack = await startOAuthTestStack({
    front: {
      mcp: (req, res) => {
        if (req.headers['x-api-key'] === 'k-123') return false;
        res.writeHead(403, { 'content-type': 'text/plain' }).end('API key required');
        return true;
      },
      as: (req) => {
        if (req.headers['x-api-key'] !== undefined) seenByAs.push(`${req.method} ${req.url}`);
        return false;
      },
    },
  });
});
afterAll(async () => {
  await stack?.close();
  await home.remove();
});

describe('gatehouse login --header', () => {
  it('sends the header (its variable expanded) to the MCP server, not to the authorization server', {
    timeout: 60_000,
  }, async () => {
    const env = { GATEHOUSE_STORE: home.path, GATEHOUSE_KEYCHAIN: '0', API_KEY: 'k-123' };
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${VAR} is what the CLI expands
    const header = 'X-Api-Key: ${API_KEY}';
    const without = await cli(['login', stack.mcpUrl, '--login', 'demo:demo'], env);
    expect(without.status).toBe(1);
    const login = await cli(['login', stack.mcpUrl, '--login', 'demo:demo', '--header', header], env);
    expect(login.status, login.stderr).toBe(0);
    expect(login.stdout).toContain(`Logged in to ${stack.mcpUrl}`);
    expect(seenByAs).toEqual([]);
    const tools = await cli(['tools', stack.mcpUrl, '--header', header], env);
    expect(tools.status, tools.stderr).toBe(0);
    expect(tools.stdout).toContain('whoami');
  });
});

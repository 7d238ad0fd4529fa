import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { OAuth } from '../client/oauth.js';
import { findBearerChallenge } from '../oauth/www-authenticate.js';
import { memoryStore } from '../storage/memory.js';
import { startDemoStack } from '../testing/demo-stack.js';

/** What the demo found; the e2e test asserts on it. */
export interface DemoResult {
  mcpUrl: string;
  issuer: string;
  /** The `WWW-Authenticate` header of the first, unauthenticated request. */
  challenge: string | null;
  accessToken: string;
  whoami: { subject: string | null; scopes: string[]; clientId: string | null };
}

function describe(method: string, url: URL, status: number, seenLogin: boolean): string {
  const path = url.pathname;
  if (path.startsWith('/.well-known/oauth-protected-resource')) return `read protected-resource metadata (${status})`;
  if (path.startsWith('/.well-known/oauth-authorization-server'))
    return `read authorization-server metadata (${status})`;
  if (path.startsWith('/.well-known/openid-configuration')) return `read OpenID configuration (${status})`;
  if (path === '/reg') return `registered dynamically (${status})`;
  if (path === '/auth') return `opened the authorization endpoint (${status})`;
  if (path.startsWith('/interaction/') && method === 'POST')
    return `submitted ${path.endsWith('/login') ? 'the login form' : 'consent'} (${status})`;
  if (path.startsWith('/interaction/')) return `loaded the ${seenLogin ? 'consent' : 'login'} page (${status})`;
  if (path.startsWith('/auth/')) return `resumed the authorization (${status})`;
  if (path === '/token') return `exchanged the code for tokens with the PKCE verifier (${status})`;
  return `${method} ${path} (${status})`;
}

/** What to try next, on the user's own server; printed last. */
export const NEXT_STEPS = [
  '',
  'Next, with your own MCP server (replace the URL):',
  '  npx gatehouse doctor https://mcp.example.com/mcp   # check its OAuth discovery and say what to fix',
  '  npx gatehouse login https://mcp.example.com/mcp    # log in once (opens your browser)',
  '  npx gatehouse tools https://mcp.example.com/mcp    # list its tools with the stored token',
  '  npx gatehouse serve --superuser admin --resource https://mcp.example.com/mcp=mcp:tools',
  '                                                     # your own authorization server for it',
  'In code: the README, "Protect an MCP server" and "Call it as a client" (also in node_modules/gatehouse).',
];

/**
 * Runs the demo: starts an authorization server and a protected MCP server on loopback, then a client that
 * starts from nothing but the MCP URL, logs in headlessly and calls `whoami`. Prints each step with `print`.
 */
export async function runDemo(options: { port?: number; print?: (line: string) => void } = {}): Promise<DemoResult> {
  const print = options.print ?? ((line: string) => console.log(line));
  const stack = await startDemoStack({ port: options.port });
  try {
    print(`1. Authorization server (oidc-provider) on ${stack.issuer}, demo user "${stack.username}"`);
    print(`2. MCP server with the tool "whoami" on ${stack.mcpUrl}, accepting only JWTs for that URL`);
    print(`3. Client, knowing only ${stack.mcpUrl}:`);

    const probe = await fetch(stack.mcpUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'ping' }),
    });
    await probe.body?.cancel();
    const challenge = probe.headers.get('www-authenticate');
    const resourceMetadata = findBearerChallenge(challenge)?.params['resource_metadata'];
    print(`   - called the server without a token: HTTP ${probe.status}`);
    if (probe.status !== 401 || !resourceMetadata) {
      throw new Error(
        `expected a 401 pointing at resource metadata, got HTTP ${probe.status} (${challenge ?? 'no challenge'})`,
      );
    }
    print(`   - the challenge points at ${resourceMetadata}`);

    let seenLogin = false;
    print('   - generates a PKCE S256 verifier and a state, and will log in without a browser');
    const oauth = new OAuth({
      mcpUrl: stack.mcpUrl,
      clientName: 'Gatehouse demo client',
      // The demo's servers live only as long as this process: memory is the right store, chosen on purpose.
      tokenStorage: memoryStore(),
      login: { username: stack.username, password: stack.password },
      onEvent: (event) => {
        if (event.type !== 'http') return;
        const url = new URL(event.url);
        print(`   - ${describe(event.method, url, event.status, seenLogin)}`);
        if (event.method === 'POST' && url.pathname.endsWith('/login')) seenLogin = true;
      },
    });
    await oauth.authorize({ resourceMetadataUrl: new URL(resourceMetadata) });
    const tokens = await oauth.tokens();
    if (!tokens) throw new Error('the login finished without tokens');
    print(`   - received a ${tokens.token_type} access token${tokens.refresh_token ? ' and a refresh token' : ''}`);

    const client = new Client({ name: 'gatehouse-demo', version: '0.1.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(stack.mcpUrl), { authProvider: oauth }));
    try {
      const result = await client.callTool({ name: 'whoami', arguments: {} });
      const whoami = result.structuredContent as DemoResult['whoami'];
      print(`   - called whoami: subject "${whoami.subject}", scopes [${whoami.scopes.join(', ')}]`);
      print('Done: discovery, dynamic registration, PKCE login, audience-bound JWT, protected tool call.');
      for (const line of NEXT_STEPS) print(line);
      return { mcpUrl: stack.mcpUrl, issuer: stack.issuer, challenge, accessToken: tokens.access_token, whoami };
    } finally {
      await client.close();
    }
  } finally {
    await stack.close();
  }
}

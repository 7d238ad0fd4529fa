import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, OAuth, type OAuthEvent } from '../../src/client/index.js';
import { type FrontHandler, type OAuthTestStack, startOAuthTestStack, temporaryDirectory } from './oauth-helpers.js';

// One real stack; each test makes the MCP server (or the authorization server) misbehave in one respect.
let stack: OAuthTestStack;
let mcpFront: FrontHandler | undefined;
let asFront: FrontHandler | undefined;
const locks = await temporaryDirectory('discovery-locks');
beforeAll(async () => {
  stack = await startOAuthTestStack({
    front: { mcp: (req, res) => mcpFront?.(req, res) ?? false, as: (req, res) => asFront?.(req, res) ?? false },
  });
});
afterAll(async () => {
  await stack.close();
  await locks.remove();
});

const origin = () => new URL(stack.mcpUrl).origin;
const PATH_FORM = '/.well-known/oauth-protected-resource/mcp';
const ROOT = '/.well-known/oauth-protected-resource';

function notFound(res: ServerResponse): true {
  res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
  return true;
}

/** An MCP server whose challenge carries `challenge` and which does not serve the metadata paths in `missing`. */
function server(challenge: string, missing: string[], alias?: string): FrontHandler {
  return (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === '/mcp' && !req.headers.authorization) {
      res.writeHead(401, { 'www-authenticate': challenge, 'content-type': 'application/json' }).end('{}');
      return true;
    }
    if (missing.includes(path)) return notFound(res);
    if (alias && path === alias) req.url = PATH_FORM; // the metadata served at a custom place
    return false;
  };
}

/** Logs in through a Client and returns the metadata requests of the login, in order (repeats folded). */
async function discover(): Promise<string[]> {
  const events: OAuthEvent[] = [];
  const oauth = new OAuth({
    login: { username: 'demo', password: 'demo' },
    tokenStorage: new Map(),
    lockDirectory: locks.path,
    onEvent: (event) => events.push(event),
  });
  await using client = new Client(stack.mcpUrl, { auth: oauth });
  expect((await client.callTool<{ subject: string }>('whoami')).data.subject).toBe('demo');
  const seen = events
    .filter((e): e is Extract<OAuthEvent, { type: 'http' }> => e.type === 'http' && e.method === 'GET')
    .filter((e) => /well-known|\/meta\//.test(e.url))
    .map((e) => `${new URL(e.url).pathname} ${e.status}`);
  return seen.filter((entry, i) => entry !== seen[i - 1]);
}

describe('discovery in the documented order (docs/login.md)', () => {
  it("1. the challenge's resource_metadata URL, when it answers, is the only protected-resource metadata read", async () => {
    mcpFront = server(`Bearer resource_metadata="${origin()}/meta/prm"`, [], '/meta/prm');
    const seen = await discover();
    expect(seen.filter((e) => e.includes('protected-resource') || e.includes('/meta/'))).toEqual(['/meta/prm 200']);
  });

  it('2. when the resource_metadata URL answers 404: the path form', async () => {
    mcpFront = server(`Bearer resource_metadata="${origin()}/meta/prm"`, ['/meta/prm']);
    const seen = await discover();
    expect(seen.slice(0, 2)).toEqual(['/meta/prm 404', `${PATH_FORM} 200`]);
    expect(seen).not.toContain(`${ROOT} 200`);
  });

  it('3. when the resource_metadata URL and the path form answer 404: the root', async () => {
    mcpFront = server(`Bearer resource_metadata="${origin()}/meta/prm"`, ['/meta/prm', PATH_FORM]);
    const seen = await discover();
    expect(seen.slice(0, 3)).toEqual(['/meta/prm 404', `${PATH_FORM} 404`, `${ROOT} 200`]);
  });

  it('4. a challenge without resource_metadata: the path form, then the root', async () => {
    mcpFront = server('Bearer realm="mcp"', [PATH_FORM]);
    const seen = await discover();
    expect(seen.slice(0, 2)).toEqual([`${PATH_FORM} 404`, `${ROOT} 200`]);
  });

  it('5. authorization-server metadata: RFC 8414 first, then OpenID Connect discovery', async () => {
    mcpFront = undefined;
    asFront = (req, res) =>
      new URL(req.url ?? '/', 'http://x').pathname === '/.well-known/oauth-authorization-server' && notFound(res);
    try {
      const seen = await discover();
      const asMetadata = seen.filter((e) => !e.includes('protected-resource'));
      expect(asMetadata).toEqual([
        '/.well-known/oauth-authorization-server 404',
        '/.well-known/openid-configuration 200',
      ]);
      expect(seen[0]).toBe(`${PATH_FORM} 200`);
    } finally {
      asFront = undefined;
    }
  });
});

import { randomUUID } from 'node:crypto';
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, OAuth, type OAuthEvent } from '../../src/client/index.js';
import { findBearerChallenge } from '../../src/oauth/www-authenticate.js';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { type ProtectOptions, protect } from '../../src/server/protect.js';
import { cli, tempStore } from '../cli/helpers.js';
import { SERVE_USER, type ServeProcess, startServeProcess } from '../helpers/serve-process.js';
import { type Slot, startSlot } from '../helpers/serve-stack.js';
import { rpc, whoamiMcp, whoamiServer } from './helpers.js';

/** The JSON-RPC messages of a response, JSON or SSE. */
async function messages(response: Response): Promise<Array<Record<string, unknown>>> {
  const text = await response.text();
  if ((response.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    return text
      .split(/\n\n/)
      .flatMap((event) => event.split('\n').filter((line) => line.startsWith('data:')))
      .map((line) => JSON.parse(line.slice(5)) as Record<string, unknown>);
  }
  const body = JSON.parse(text) as unknown;
  return (Array.isArray(body) ? body : [body]) as Array<Record<string, unknown>>;
}

async function listedTools(response: Response): Promise<string[]> {
  expect(response.status).toBe(200);
  const [answer] = await messages(response);
  return ((answer!['result'] as { tools: Array<{ name: string }> }).tools ?? []).map((t) => t.name).sort();
}

function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: JSON.stringify(body),
  });
}

const INITIALIZE = {
  jsonrpc: '2.0',
  id: 0,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};

// `gatehouse serve` as the AS; protect() around real SDK servers with `echo` public and the rest protected.
describe('public tools before sign-in', () => {
  let as: ServeProcess;
  let stateless: Slot; // createMcpHandler: one server instance per request
  let sessionful: Slot; // the SDK's sessionful streamable-HTTP transport, one per session
  let tokens: (scope: string, slot?: Slot) => Promise<string>;

  const options = (slot: Slot): ProtectOptions => ({
    resource: slot.mcpUrl,
    authorizationServers: [as.url],
    verifier: jwtVerifier({ issuer: as.url }),
    requiredScopes: ['mcp:tools'],
    toolScopes: { admin_task: ['admin'] },
    publicTools: ['echo'],
  });

  beforeAll(async () => {
    [stateless, sessionful] = await Promise.all([startSlot(), startSlot()]);
    as = await startServeProcess([
      '--resource',
      `${stateless.mcpUrl}=mcp:tools,admin`,
      '--resource',
      `${sessionful.mcpUrl}=mcp:tools,admin`,
    ]);
    stateless.set(protect(whoamiMcp(), options(stateless)));
    const sessions = new Map<string, WebStandardStreamableHTTPServerTransport>();
    sessionful.set(
      protect(async (request, init) => {
        const id = request.headers.get('mcp-session-id');
        let transport = id ? sessions.get(id) : undefined;
        if (!transport) {
          if (id)
            return Response.json(
              { jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' } },
              { status: 404 },
            );
          transport = new WebStandardStreamableHTTPServerTransport({
            sessionIdGenerator: randomUUID,
            onsessioninitialized: (sid) => void sessions.set(sid, transport!),
          });
          await whoamiServer().connect(transport);
        }
        return transport.handleRequest(request, init);
      }, options(sessionful)),
    );
    tokens = async (scope, slot = stateless) => {
      const oauth = new OAuth({ mcpUrl: slot.mcpUrl, login: SERVE_USER, scopes: scope, tokenStorage: 'memory' });
      await oauth.authorize();
      return (await oauth.tokens())!.access_token;
    };
  }, 60_000);

  afterAll(async () => {
    await as?.close();
    await Promise.all([stateless, sessionful].map((s) => s?.close()));
  });

  it('without a token: the handshake, tools/list (public tools only) and public calls work; the rest is challenged', async () => {
    const url = stateless.mcpUrl;
    expect((await post(url, INITIALIZE)).status).toBe(200);
    expect((await post(url, { jsonrpc: '2.0', method: 'notifications/initialized' })).status).toBe(202);
    expect(await listedTools(await rpc(url, 'tools/list', {}))).toEqual(['echo']);
    const [echoed] = await messages(await rpc(url, 'tools/call', { name: 'echo', arguments: { text: 'hi' } }));
    expect(echoed!['result']).toMatchObject({ content: [{ type: 'text', text: 'hi' }] });

    for (const [method, params] of [
      ['tools/call', { name: 'whoami', arguments: {} }],
      ['tools/call', { name: 'no_such_tool', arguments: {} }],
      ['prompts/list', {}],
      ['resources/list', {}],
    ] as const) {
      const response = await rpc(url, method, params);
      expect(response.status, `${method} ${JSON.stringify(params)}`).toBe(401);
      const challenge = findBearerChallenge(response.headers.get('www-authenticate'));
      expect(challenge?.params['resource_metadata']).toBe(`${stateless.url}/.well-known/oauth-protected-resource/mcp`);
      expect(challenge?.params['scope']).toBe('mcp:tools');
      expect(challenge?.params['error']).toBeUndefined();
    }
    // A batch is public only if every message in it is.
    const batch = await post(url, [
      { jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} },
      { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'whoami', arguments: {} } },
    ]);
    expect(batch.status).toBe(401);
    // Not JSON at all: nothing to call anonymously.
    const garbage = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' });
    expect(garbage.status).toBe(401);
  });

  it('never downgrades an invalid or expired token to anonymous', async () => {
    for (const token of ['not-a-jwt', `${(await tokens('mcp:tools')).slice(0, -4)}AAAA`]) {
      for (const [method, params] of [
        ['tools/list', {}],
        ['tools/call', { name: 'echo', arguments: { text: 'hi' } }],
      ] as const) {
        const response = await rpc(stateless.mcpUrl, method, params, token);
        expect(response.status).toBe(401);
        expect(findBearerChallenge(response.headers.get('www-authenticate'))?.params['error']).toBe('invalid_token');
      }
    }
  });

  it('with a token, tools/list shows the public tools plus what its scopes allow', async () => {
    const basic = await tokens('mcp:tools');
    expect(await listedTools(await rpc(stateless.mcpUrl, 'tools/list', {}, basic))).toEqual(['echo', 'whoami']);
    const admin = await tokens('mcp:tools admin');
    expect(await listedTools(await rpc(stateless.mcpUrl, 'tools/list', {}, admin))).toEqual([
      'admin_task',
      'echo',
      'whoami',
    ]);
    // The public tool runs for a token without the server-wide scope, and sees who called.
    const other = await rpc(stateless.mcpUrl, 'tools/call', { name: 'whoami', arguments: {} }, admin);
    expect(other.status).toBe(200);
    const [answer] = await messages(other);
    expect((answer!['result'] as { structuredContent: { subject: string } }).structuredContent.subject).toBe('admin');
  });

  it('a session started anonymously goes on with a token once the caller signs in (sessionful transport)', async () => {
    const url = sessionful.mcpUrl;
    const init = await post(url, INITIALIZE);
    expect(init.status).toBe(200);
    const sessionId = init.headers.get('mcp-session-id')!;
    expect(sessionId).toBeTruthy();
    await init.body?.cancel();
    const headers = { 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' };
    expect((await post(url, { jsonrpc: '2.0', method: 'notifications/initialized' }, headers)).status).toBe(202);
    const call = (name: string, extra: Record<string, string> = {}) =>
      post(
        url,
        { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name, arguments: {} } },
        { ...headers, ...extra },
      );
    expect((await call('whoami')).status).toBe(401);
    const token = await tokens('mcp:tools', sessionful);
    const signedIn = await call('whoami', { authorization: `Bearer ${token}` });
    expect(signedIn.status).toBe(200);
    const [answer] = await messages(signedIn);
    expect((answer!['result'] as { structuredContent: { subject: string } }).structuredContent.subject).toBe('admin');
    // From then on the session is the user's: the same id without the token is an unknown session.
    const anonymousAgain = await post(url, { jsonrpc: '2.0', id: 8, method: 'tools/list', params: {} }, headers);
    expect(anonymousAgain.status).toBe(404);
  });

  it("a session belongs to whoever opened it: another client's token, or none, gets 404 with its id", async () => {
    const url = sessionful.mcpUrl;
    const owner = await tokens('mcp:tools', sessionful);
    const other = await tokens('mcp:tools', sessionful); // the same user through another client
    const opened = await post(url, INITIALIZE, { authorization: `Bearer ${owner}` });
    expect(opened.status).toBe(200);
    const session = opened.headers.get('mcp-session-id')!;
    expect(session).toBeTruthy();
    const list = { jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} };
    const call = { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { text: 'x' } } };
    const inSession = { 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' };
    expect((await post(url, list, { ...inSession, authorization: `Bearer ${other}` })).status).toBe(404);
    expect((await post(url, call, inSession)).status).toBe(404);
    const stream = await fetch(url, { headers: { ...inSession, accept: 'text/event-stream' } });
    expect(stream.status).toBe(404);
    await stream.body?.cancel();
    expect(await listedTools(await post(url, list, { ...inSession, authorization: `Bearer ${owner}` }))).toContain(
      'whoami',
    );
  });

  it('Client lists and calls public tools without logging in, and logs in for a protected tool', async () => {
    const events: OAuthEvent['type'][] = [];
    const oauth = new OAuth({
      mcpUrl: stateless.mcpUrl,
      login: SERVE_USER,
      tokenStorage: 'memory',
      onEvent: (e) => events.push(e.type),
    });
    await using client = new Client(stateless.mcpUrl, { auth: oauth });
    expect((await client.listTools()).map((t) => t.name)).toEqual(['echo']);
    expect((await client.callTool('echo', { text: 'hello' })).data).toBe('hello');
    expect(events).not.toContain('authorization-redirect');
    const { data } = await client.callTool<{ subject: string }>('whoami');
    expect(data.subject).toBe('admin');
    expect(events.filter((e) => e === 'authorization-redirect')).toHaveLength(1);
    expect((await client.listTools()).map((t) => t.name).sort()).toEqual(['echo', 'whoami']);
  });

  it('the same with the 2025 handshake (initialize, SSE answers)', async () => {
    const events: OAuthEvent['type'][] = [];
    const oauth = new OAuth({
      mcpUrl: stateless.mcpUrl,
      login: SERVE_USER,
      tokenStorage: 'memory',
      onEvent: (e) => events.push(e.type),
    });
    await using client = new Client(stateless.mcpUrl, { auth: oauth, protocolVersion: 'legacy' });
    expect((await client.listTools()).map((t) => t.name)).toEqual(['echo']);
    expect(client.protocolVersion()).toMatch(/^2025-/);
    expect(events).not.toContain('authorization-redirect');
    expect((await client.callTool<{ subject: string }>('whoami')).data.subject).toBe('admin');
    expect(events.filter((e) => e === 'authorization-redirect')).toHaveLength(1);
  });

  it('gatehouse tools lists without a login; gatehouse call of a protected tool logs in', async () => {
    const store = await tempStore();
    try {
      const tools = await cli(['tools', stateless.mcpUrl, '--store', store.dir, '--json']);
      expect(tools.status, tools.stderr).toBe(0);
      expect((JSON.parse(tools.stdout) as Array<{ name: string }>).map((t) => t.name)).toEqual(['echo']);
      const echo = await cli(['call', stateless.mcpUrl, 'echo', 'text=hi', '--store', store.dir]);
      expect(echo.status, echo.stderr).toBe(0);
      expect(echo.stdout.trim()).toBe('hi');
      // No terminal and no --login: a protected tool needs a login, and says so.
      const refused = await cli(['call', stateless.mcpUrl, 'whoami', '--store', store.dir]);
      expect(refused.status).toBe(3);
      expect(refused.stderr).toMatch(/gatehouse login/);
      const login = `${SERVE_USER.username}:${SERVE_USER.password}`;
      const called = await cli(['call', stateless.mcpUrl, 'whoami', '--store', store.dir, '--json'], {
        GATEHOUSE_LOGIN: login,
      });
      expect(called.status, called.stderr).toBe(0);
      expect(JSON.parse(called.stdout)).toMatchObject({ structuredContent: { subject: 'admin' } });
    } finally {
      await store.cleanup();
    }
  }, 120_000);
});

describe('protect() public-tool configuration', () => {
  const base = {
    resource: 'http://127.0.0.1:9/mcp',
    authorizationServers: ['http://127.0.0.1:9'],
    verifier: jwtVerifier({ issuer: 'http://127.0.0.1:9' }),
  };
  it('refuses a tool that is public and also needs scopes or a recent login', () => {
    expect(() => protect(whoamiMcp(), { ...base, publicTools: ['echo'], toolScopes: { echo: ['x'] } })).toThrow(
      /echo is public/,
    );
    expect(() =>
      protect(whoamiMcp(), { ...base, publicTools: ['echo'], toolAuthentication: { echo: { maxAge: 60 } } }),
    ).toThrow(/echo is public/);
    expect(() => protect(whoamiMcp(), { ...base, toolAuthentication: { whoami: {} } })).toThrow(/maxAge or acrValues/);
    expect(() => protect(whoamiMcp(), { ...base, toolAuthentication: { whoami: { maxAge: -1 } } })).toThrow(
      /whole number/,
    );
  });
});

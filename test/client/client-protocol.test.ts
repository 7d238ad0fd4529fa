// What a server may ask of and tell the Client, at each protocol version the SDK speaks: the 2025 handshake
// ('legacy') and the newest one both sides support ('auto' negotiates 2026-07-28 with an SDK v2 server).
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  createMcpHandler,
  inputRequired,
  McpServer,
  WebStandardStreamableHTTPServerTransport,
} from '@modelcontextprotocol/server';
import { memorySkillFiles, SkillsExtension } from '@modelcontextprotocol/server/ext/skills';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Client, ConnectionError, type ProtocolVersionChoice, SkillVerificationError } from '../../src/client/index.js';
import { listen, type RunningServer, toNodeListener } from '../../src/server/node.js';

const PROFILE_SCHEMA = {
  type: 'object' as const,
  properties: {
    name: { type: 'string' as const, default: 'John Doe' },
    age: { type: 'integer' as const, default: 30 },
    status: { type: 'string' as const, enum: ['active', 'inactive'], default: 'active' },
    verified: { type: 'boolean' as const, default: true },
  },
};

const text = (value: unknown) => ({ content: [{ type: 'text' as const, text: JSON.stringify(value) }] });

/**
 * A 2026-07-28 server: it asks for input by answering `input_required` (multi round-trip requests); the client
 * answers through the same handlers and retries the call.
 */
function createModernServer(): McpServer {
  const server = new McpServer({ name: 'protocol-test', version: '1.0.0' });
  server.registerTool('profile', {}, async (ctx) => {
    const answer = ctx.mcpReq.inputResponses?.['profile'];
    if (answer) return text(answer);
    const profile = inputRequired.elicit({ message: 'Your profile?', requestedSchema: PROFILE_SCHEMA } as never);
    return inputRequired({ inputRequests: { profile } });
  });
  server.registerTool('authorize', {}, async (ctx) => {
    const answer = ctx.mcpReq.inputResponses?.['connect'];
    if (answer) return text(answer);
    const connect = inputRequired.elicitUrl({ message: 'Connect your account', url: 'https://example.com/connect' });
    return inputRequired({ inputRequests: { connect } });
  });
  server.registerTool('roots', {}, async (ctx) => {
    const answer = ctx.mcpReq.inputResponses?.['roots'] as { roots: Array<{ uri: string }> } | undefined;
    if (answer) return text(answer.roots.map((root) => root.uri));
    return inputRequired({ inputRequests: { roots: inputRequired.listRoots() } });
  });
  return server;
}

/**
 * A 2025 server that elicits (form and URL mode), lists roots, and announces changes; `subscribed` holds its
 * subscriptions.
 */
function createServer(subscribed = new Set<string>()): McpServer {
  const server = new McpServer(
    { name: 'protocol-test', version: '1.0.0' },
    { capabilities: { resources: { subscribe: true, listChanged: true }, tools: { listChanged: true } } },
  );
  server.registerTool('profile', {}, async (ctx) => {
    return text(await ctx.mcpReq.elicitInput({ message: 'Your profile?', requestedSchema: PROFILE_SCHEMA }));
  });
  server.registerTool('authorize', {}, async (ctx) => {
    const result = await ctx.mcpReq.elicitInput({
      mode: 'url',
      message: 'Connect your account',
      url: 'https://example.com/connect',
      elicitationId: 'e-1',
    });
    return text(result);
  });
  server.registerTool('roots', {}, async (ctx) => {
    const result = await ctx.mcpReq.send({ method: 'roots/list' });
    return text(result.roots.map((root) => root.uri));
  });
  server.registerTool('touch', { inputSchema: z.object({ uri: z.string() }) }, async ({ uri }) => {
    await server.server.sendResourceUpdated({ uri });
    server.sendToolListChanged();
    return { content: [{ type: 'text', text: 'ok' }] };
  });
  server.registerResource('config', 'config://app', {}, async (uri) => ({
    contents: [{ uri: uri.href, text: 'v1' }],
  }));
  server.server.setRequestHandler('resources/subscribe', async (request) => {
    subscribed.add(request.params.uri);
    return {};
  });
  server.server.setRequestHandler('resources/unsubscribe', async (request) => {
    subscribed.delete(request.params.uri);
    return {};
  });
  return server;
}

// Over streamable HTTP, an SDK v2 server speaks 2026-07-28 (and 2025-11-25 statelessly).
let http: RunningServer;
let mcpUrl: string;
beforeAll(async () => {
  const handler = createMcpHandler(() => createModernServer());
  http = await listen(toNodeListener((request) => handler.fetch(request)));
  mcpUrl = `${http.url}/mcp`;
});
afterAll(() => http.close());

it('negotiates the newest version both sides speak, or the one asked for; ping() works at each', async () => {
  for (const [choice, negotiated] of [
    ['auto', '2026-07-28'],
    ['legacy', '2025-11-25'],
    ['2026-07-28', '2026-07-28'],
  ] satisfies Array<[ProtocolVersionChoice, string]>) {
    await using client = new Client(mcpUrl, { protocolVersion: choice });
    await client.connect();
    expect(client.protocolVersion()).toBe(negotiated);
    await client.ping();
  }
  // An in-process SDK server speaks only the 2025 handshake: 'auto' falls back to it.
  await using local = new Client(createServer());
  await local.connect();
  expect(local.protocolVersion()).toBe('2025-11-25');
});

describe('Client with a server that speaks only 2025-06-18', () => {
  /** The `protocolVersion` of every `initialize` the server received. */
  const offered: string[] = [];
  let oldServer: RunningServer;
  let oldUrl: string;
  beforeAll(async () => {
    const sessions = new Map<string, WebStandardStreamableHTTPServerTransport>();
    oldServer = await listen(
      toNodeListener(async (request) => {
        const body = request.method === 'POST' ? await request.clone().json() : undefined;
        if (body?.method === 'initialize') offered.push(body.params.protocolVersion);
        const id = request.headers.get('mcp-session-id');
        let transport = id ? sessions.get(id) : undefined;
        if (!transport) {
          transport = new WebStandardStreamableHTTPServerTransport({
            sessionIdGenerator: randomUUID,
            onsessioninitialized: (sid) => void sessions.set(sid, transport!),
          });
          const server = new McpServer(
            { name: 'only-2025-06-18', version: '1.0.0' },
            {
              supportedProtocolVersions: ['2025-06-18'],
            },
          );
          server.registerTool('hello', {}, async () => ({ content: [{ type: 'text', text: 'hi' }] }));
          await server.connect(transport);
        }
        return transport.handleRequest(request);
      }),
    );
    oldUrl = `${oldServer.url}/mcp`;
  });
  afterAll(() => oldServer.close());

  it('speaks 2025-06-18 when asked for it, offering only that version', async () => {
    offered.length = 0;
    await using client = new Client(oldUrl, { protocolVersion: '2025-06-18' });
    expect((await client.callTool('hello')).content).toEqual([{ type: 'text', text: 'hi' }]);
    expect(client.protocolVersion()).toBe('2025-06-18');
    expect(offered).toEqual(['2025-06-18']);
  });

  it("agrees on 2025-06-18 with 'auto' and 'legacy' too: the server answers the version it speaks", async () => {
    for (const choice of ['auto', 'legacy'] satisfies ProtocolVersionChoice[]) {
      await using client = new Client(oldUrl, { protocolVersion: choice });
      await client.callTool('hello');
      expect(client.protocolVersion()).toBe('2025-06-18');
    }
  });

  it('refuses the server when it answers another version than the one insisted on', async () => {
    await using client = new Client(oldUrl, { protocolVersion: '2025-03-26' });
    const error = await client.connect().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).message).toMatch(
      /answered protocol version 2025-06-18, which this client does not speak \(protocolVersion: '2025-03-26'\)/,
    );
  });
});

const eras: Array<[string, () => string | McpServer]> = [
  ['2025-11-25 (server requests)', () => createServer()],
  ['2026-07-28 (input_required results)', () => mcpUrl],
];

describe.each(eras)('Client at %s', (_era, source) => {
  it('fills the fields an accepted form left out with the schema defaults', async () => {
    const answers = [{ name: 'Ada' }, undefined];
    await using client = new Client(source(), {
      elicitationHandler: async (params) => {
        expect(params).toMatchObject({ message: 'Your profile?' });
        const content = answers.shift();
        return content ? { action: 'accept', content } : { action: 'accept' };
      },
    });
    expect((await client.callTool('profile')).data).toEqual({
      action: 'accept',
      content: { name: 'Ada', age: 30, status: 'active', verified: true },
    });
    expect((await client.callTool('profile')).data).toEqual({
      action: 'accept',
      content: { name: 'John Doe', age: 30, status: 'active', verified: true },
    });
  });

  it('hands URL-mode elicitations to the handler with their URL', async () => {
    const seen: unknown[] = [];
    await using client = new Client(source(), {
      elicitationHandler: async (params) => {
        seen.push(params);
        return { action: params.mode === 'url' ? 'accept' : 'decline' };
      },
    });
    expect((await client.callTool('authorize')).data).toEqual({ action: 'accept' });
    expect(seen).toEqual([expect.objectContaining({ mode: 'url', url: 'https://example.com/connect' })]);
  });

  it('serves the roots set by setRoots()', async () => {
    await using client = new Client(source(), { roots: ['/srv/one'] });
    expect((await client.callTool('roots')).data).toEqual(['file:///srv/one']);
    await client.setRoots(['/srv/two', 'file:///srv/three']);
    expect((await client.callTool('roots')).data).toEqual(['file:///srv/two', 'file:///srv/three']);
  });
});

describe('Client notifications (2025 handshake)', () => {
  it('sends notifications/roots/list_changed when the roots change', async () => {
    const server = createServer();
    let changes = 0;
    server.server.setNotificationHandler('notifications/roots/list_changed', async () => {
      changes++;
    });
    await using client = new Client(server, { protocolVersion: 'legacy', roots: ['/srv/one'] });
    await client.connect();
    await client.setRoots(['/srv/two']);
    await expect.poll(() => changes).toBe(1);
  });

  it('delivers list changes and updates of subscribed resources to the message handler', async () => {
    const events: string[] = [];
    const subscribed = new Set<string>();
    const server = createServer(subscribed);
    await using client = new Client(server, {
      protocolVersion: 'legacy',
      messageHandler: {
        onToolListChanged: () => events.push('tools changed'),
        onResourceUpdated: (uri) => events.push(`updated ${uri}`),
        onNotification: (notification) => events.push(notification.method),
      },
    });
    await client.subscribeResource('config://app');
    expect([...subscribed]).toEqual(['config://app']);
    await client.callTool('touch', { uri: 'config://app' });
    await expect
      .poll(() => events)
      .toEqual([
        'updated config://app',
        'notifications/resources/updated',
        'tools changed',
        'notifications/tools/list_changed',
      ]);
    await client.unsubscribeResource('config://app');
    expect([...subscribed]).toEqual([]);
  });
});

describe('Client over stdio', () => {
  const fixture = fileURLToPath(new URL('./fixtures/stdio-counted-server.mjs', import.meta.url));

  /** Connects with the default 'auto' negotiation; returns the version agreed and how many processes started. */
  async function connectCounting(mode: 'sdk' | 'strict-2025'): Promise<{ version?: string; starts: number }> {
    const dir = await mkdtemp(join(tmpdir(), 'gatehouse-stdio-'));
    try {
      const starts = join(dir, 'starts');
      await using client = new Client(
        { command: process.execPath, args: [fixture, mode] },
        {
          env: { GATEHOUSE_STARTS: starts },
        },
      );
      expect((await client.listTools()).map((tool) => tool.name)).toEqual(['hello']);
      const version = client.protocolVersion();
      return { version, starts: (await readFile(starts, 'utf8')).trim().split('\n').length };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  it('negotiates on the server process itself: one process per connect', async () => {
    expect(await connectCounting('sdk')).toEqual({ version: '2025-11-25', starts: 1 });
  }, 60_000);

  it('starts a server that exits on the probe once more, for the 2025 handshake', async () => {
    expect(await connectCounting('strict-2025')).toEqual({ version: '2025-11-25', starts: 2 });
  }, 60_000);
});

describe('Client skills (SEP-2640)', () => {
  const SKILL =
    '---\nname: pdf-processing\ndescription: Extract, fill, and assemble PDF documents\n---\n\nUse FORMS.md.\n';

  async function skillsServer(): Promise<McpServer> {
    const server = new McpServer({ name: 'skills', version: '1.0.0' });
    const catalog = await SkillsExtension.load(
      memorySkillFiles({ 'pdf-processing/SKILL.md': SKILL, 'pdf-processing/references/FORMS.md': 'Form fields.\n' }),
    );
    catalog.attach(server);
    return server;
  }

  it('lists the skills without reading them, and reads a file once it matches its entry', async () => {
    await using client = new Client(await skillsServer());
    const [skill, ...others] = await client.listSkills();
    expect(others).toEqual([]);
    expect(skill?.frontmatter).toMatchObject({ name: 'pdf-processing' });
    const manifest = await client.readSkill(skill!);
    expect(manifest).toMatchObject({ verified: true, body: '\nUse FORMS.md.\n' });
    expect((await client.readSkill(skill!, 'references/FORMS.md')).text).toBe('Form fields.\n');
    // An entry that no longer matches what the server serves is refused, with the reason.
    const tampered = { ...skill!, frontmatter: { ...skill!.frontmatter, description: 'Something else' } };
    const refused = await client.readSkill(tampered).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(SkillVerificationError);
    expect(refused).toMatchObject({ reason: 'frontmatter', code: 'ERR_SKILL_VERIFICATION' });
  });

  it('lists no skills on a server without the extension', async () => {
    await using client = new Client(createServer());
    expect(await client.listSkills()).toEqual([]);
  });
});

import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AuthenticationError,
  Client,
  ConnectionError,
  McpError,
  TimeoutError,
  ToolError,
} from '../../src/client/index.js';
import { createServer } from '../fixtures/servers/everything.mjs';
import { startSseOnlyServer, startStreamableServer, type TestHttpServer } from '../fixtures/servers/http.js';

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/servers/${name}`, import.meta.url));
const everything = fixture('everything.mjs');

/** The same checks for every transport: tools, structured data, tool errors, resources, prompts, completion. */
async function exercise(client: Client) {
  const tools = await client.listTools();
  expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['add', 'echo', 'stats', 'fail']));

  const sum = await client.callTool('add', { a: 2, b: 3 });
  expect(sum).toMatchObject({ data: 5, isError: false, content: [{ type: 'text', text: '5' }] });
  expect((await client.callTool('echo', { text: 'hi there' })).data).toBe('hi there');
  const stats = await client.callTool<{ sum: number; count: number }>('stats', { values: [1, 2, 3] });
  expect(stats.data).toEqual({ sum: 6, count: 3 });
  expect(stats.structuredContent).toEqual({ sum: 6, count: 3 });

  await expect(client.callTool('fail', { reason: 'no good' })).rejects.toThrow(ToolError);
  await expect(client.callTool('fail', { reason: 'no good' })).rejects.toThrow(/no good/);
  const failed = await client.callTool('fail', {}, { raiseOnError: false });
  expect(failed).toMatchObject({ isError: true, data: 'boom' });

  await expect(client.callTool('missing-tool')).rejects.toBeInstanceOf(McpError);

  expect((await client.listResources()).map((r) => r.uri)).toContain('greeting://hello');
  expect((await client.listResourceTemplates()).map((t) => t.uriTemplate)).toContain('users://{id}/profile');
  const [greeting] = await client.readResource('greeting://hello');
  expect(greeting).toMatchObject({ uri: 'greeting://hello', text: expect.stringMatching(/^Hello from/) });
  const [profile] = await client.readResource('users://alice/profile');
  expect(profile && 'text' in profile && JSON.parse(profile.text)).toEqual({ id: 'alice' });

  expect((await client.listPrompts()).map((p) => p.name)).toContain('greet');
  const prompt = await client.getPrompt('greet', { who: 'Ada' });
  expect(prompt.messages[0]?.content).toMatchObject({ type: 'text', text: 'Say hello to Ada' });

  const completion = await client.complete(
    { type: 'ref/resource', uri: 'users://{id}/profile' },
    { name: 'id', value: 'b' },
  );
  expect(completion.values).toEqual(['bob']);
  await client.ping();
}

describe('Client over stdio', () => {
  it('infers node for a .mjs path and runs the whole API against the child process', async () => {
    await using client = new Client(everything);
    await client.connect();
    expect(client.isConnected()).toBe(true);
    expect(client.transport).toBe('stdio');
    await exercise(client);
  });

  it('runs { command, args, env, cwd } and passes env and cwd to the process', async () => {
    const cwd = fixture('.');
    await using client = new Client(
      { command: process.execPath, args: [everything], env: { GATEHOUSE_FIXTURE: 'from-config' } },
      { cwd },
    );
    const { data } = await client.callTool<{ value: string; cwd: string }>('env', { name: 'GATEHOUSE_FIXTURE' });
    expect(data.value).toBe('from-config');
    expect(resolve(data.cwd)).toBe(resolve(cwd));
  });

  it('adds the env option to a script source', async () => {
    await using client = new Client(everything, { env: { GATEHOUSE_FIXTURE: 'from-option' } });
    const { data } = await client.callTool<{ value: string }>('env', { name: 'GATEHOUSE_FIXTURE' });
    expect(data.value).toBe('from-option');
  });

  it('infers python for a .py path', async () => {
    await using client = new Client(fixture('echo.py'));
    expect((await client.listTools()).map((t) => t.name)).toEqual(['shout']);
    expect((await client.callTool('shout', { text: 'quiet' })).data).toBe('QUIET');
  });

  it('reports a command that cannot start as a ConnectionError', async () => {
    const client = new Client({ command: 'gatehouse-no-such-command-xyz' });
    const error = await client.connect().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).message).toContain('gatehouse-no-such-command-xyz');
    expect(client.isConnected()).toBe(false);
  });

  it('says when the process exits during the handshake, or does not answer in time', async () => {
    const exited = await new Client({ command: process.execPath, args: ['-e', 'process.exit(2)'] })
      .connect()
      .catch((e: unknown) => e);
    expect(exited).toBeInstanceOf(ConnectionError);
    expect((exited as ConnectionError).message).toMatch(/closed during the handshake \(did the process exit\?\)/);
    const silent = new Client(
      { command: process.execPath, args: ['-e', 'setTimeout(() => {}, 30_000)'] },
      { connectTimeout: 300 },
    );
    const timedOut = await silent.connect().catch((e: unknown) => e);
    expect(timedOut).toBeInstanceOf(TimeoutError);
    expect((timedOut as TimeoutError).hint).toMatch(/connectTimeout/);
    await silent.close();
  });

  it('close() and asyncDispose disconnect; a later request reconnects', async () => {
    const client = new Client(everything);
    await client.connect();
    await client.close();
    expect(client.isConnected()).toBe(false);
    await client.close(); // twice is fine
    expect((await client.callTool('add', { a: 1, b: 1 })).data).toBe(2);
    expect(client.isConnected()).toBe(true);
    await client[Symbol.asyncDispose]();
    expect(client.isConnected()).toBe(false);
  });
});

describe('Client over streamable HTTP', () => {
  let server: TestHttpServer;
  let secured: TestHttpServer;
  beforeAll(async () => {
    server = await startStreamableServer();
    secured = await startStreamableServer({ token: 's3cret' });
  });
  afterAll(async () => {
    await server?.close();
    await secured?.close();
  });

  it('connects to an http URL with streamable HTTP', async () => {
    await using client = new Client(`${server.url}/mcp`);
    await client.connect();
    expect(client.transport).toBe('streamable-http');
    await exercise(client);
  });

  it('sends a bearer token given as a string', async () => {
    await using client = new Client(`${secured.url}/mcp`, { auth: 's3cret' });
    expect((await client.callTool('add', { a: 40, b: 2 })).data).toBe(42);
  });

  it('accepts { url, headers }', async () => {
    await using client = new Client({ url: `${secured.url}/mcp`, headers: { authorization: 'Bearer s3cret' } });
    expect((await client.callTool('add', { a: 1, b: 2 })).data).toBe(3);
  });

  it('turns a refused token into an AuthenticationError', async () => {
    const client = new Client(`${secured.url}/mcp`, { auth: 'wrong' });
    await expect(client.connect()).rejects.toBeInstanceOf(AuthenticationError);
  });

  it('turns an unreachable server into a ConnectionError', async () => {
    const client = new Client('http://127.0.0.1:1/mcp');
    const error = await client.connect().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).message).toContain('http://127.0.0.1:1/mcp');
    expect((error as ConnectionError).hint).toBeTruthy();
  });
});

describe('Client over SSE', () => {
  let server: TestHttpServer;
  beforeAll(async () => {
    server = await startSseOnlyServer();
  });
  afterAll(async () => {
    await server?.close();
  });

  it('goes straight to SSE for an /sse URL', async () => {
    await using client = new Client(`${server.url}/sse`);
    await client.connect();
    expect(client.transport).toBe('sse');
    await exercise(client);
  });

  it('falls back to SSE when the server refuses streamable HTTP', async () => {
    await using client = new Client(`${server.url}/mcp`);
    await client.connect();
    expect(client.transport).toBe('sse');
    expect((await client.callTool('add', { a: 5, b: 5 })).data).toBe(10);
  });
});

describe('Client in memory', () => {
  it('connects to an McpServer instance in the same process', async () => {
    const server = createServer('memory');
    await using client = new Client(server);
    await client.connect();
    expect(client.transport).toBe('memory');
    await exercise(client);
    await client.close();
    // The server can be connected again after the client closed.
    await client.connect();
    expect((await client.callTool('add', { a: 1, b: 2 })).data).toBe(3);
    // A server object serves one client at a time, and the error says what to do.
    const second = await new Client(server).connect().catch((e: unknown) => e);
    expect(second).toBeInstanceOf(ConnectionError);
    expect((second as ConnectionError).hint).toMatch(/one client at a time/);
  });

  it('makes a server per connection from a factory', async () => {
    await using one = new Client(() => createServer('factory'));
    await using two = new Client(() => createServer('factory'));
    const [a, b] = await Promise.all([one.callTool('add', { a: 1, b: 1 }), two.callTool('add', { a: 2, b: 2 })]);
    expect([a.data, b.data]).toEqual([2, 4]);
  });
});

import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Client, ConnectionError, McpError } from '../../src/client/index.js';
import { startStreamableServer, type TestHttpServer } from '../fixtures/servers/http.js';

const everything = fileURLToPath(new URL('../fixtures/servers/everything.mjs', import.meta.url));
const stdio = (name: string) => ({ command: process.execPath, args: [everything, name] });

describe('multi-server Client', () => {
  let client: Client;
  beforeAll(async () => {
    client = new Client({
      mcpServers: {
        alpha: stdio('alpha'),
        beta: stdio('beta'),
        dead: { url: 'http://127.0.0.1:1/mcp' },
      },
    });
    await client.connect();
  });
  afterAll(async () => {
    await client?.close();
  });

  it('connects the live servers and reports the dead one in failures', () => {
    expect(client.isConnected()).toBe(true);
    expect(client.servers.sort()).toEqual(['alpha', 'beta']);
    expect(client.failures.map((f) => f.server)).toEqual(['dead']);
    const [failure] = client.failures;
    expect(failure?.error).toBeInstanceOf(ConnectionError);
    expect(failure?.error.message).toContain('http://127.0.0.1:1/mcp');
  });

  it('prefixes tool and prompt names with the server name', async () => {
    const names = (await client.listTools()).map((t) => t.name);
    expect(names).toEqual(expect.arrayContaining(['alpha_add', 'beta_add', 'alpha_identify', 'beta_identify']));
    expect(names.some((name) => name.startsWith('dead_'))).toBe(false);
    expect((await client.listPrompts()).map((p) => p.name).sort()).toEqual(['alpha_greet', 'beta_greet']);
  });

  it('routes parallel calls by prefix to two distinct processes', async () => {
    const [a, b, sumA, sumB] = await Promise.all([
      client.callTool<{ name: string; pid: number }>('alpha_identify'),
      client.callTool<{ name: string; pid: number }>('beta_identify'),
      client.callTool('alpha_add', { a: 1, b: 2 }),
      client.callTool('beta_add', { a: 10, b: 20 }),
    ]);
    expect(a.data.name).toBe('alpha');
    expect(b.data.name).toBe('beta');
    expect(a.data.pid).not.toBe(b.data.pid);
    expect([sumA.data, sumB.data]).toEqual([3, 30]);
  });

  it('prefixes resource URIs as scheme://server/path and routes reads', async () => {
    const uris = (await client.listResources()).map((r) => r.uri).sort();
    expect(uris).toEqual(['greeting://alpha/hello', 'greeting://beta/hello']);
    const [content] = await client.readResource('greeting://beta/hello');
    expect(content).toMatchObject({ uri: 'greeting://beta/hello', text: 'Hello from beta' });
    const templates = (await client.listResourceTemplates()).map((t) => t.uriTemplate).sort();
    expect(templates).toEqual(['users://alpha/{id}/profile', 'users://beta/{id}/profile']);
    const [profile] = await client.readResource('users://alpha/bob/profile');
    expect(profile).toMatchObject({ uri: 'users://alpha/bob/profile' });
    const completion = await client.complete(
      { type: 'ref/resource', uri: 'users://alpha/{id}/profile' },
      { name: 'id', value: 'c' },
    );
    expect(completion.values).toEqual(['carol']);
    const prompt = await client.getPrompt('beta_greet', { who: 'Lin' });
    expect(prompt.messages[0]?.content).toMatchObject({ text: 'Say hello to Lin' });
  });

  it('says why a dead server’s tools are unavailable, and rejects unknown prefixes', async () => {
    const dead = await client.callTool('dead_add', { a: 1, b: 2 }).catch((e: unknown) => e);
    expect(dead).toBeInstanceOf(ConnectionError);
    expect((dead as ConnectionError).message).toMatch(/Server dead is not connected/);
    const unknown = await client.callTool('gamma_add').catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(McpError);
    expect((unknown as McpError).message).toMatch(/alpha, beta, dead|beta, alpha, dead|alpha.*beta/);
    await client.ping();
  });
});

describe('multi-server Client edge cases', () => {
  let http: TestHttpServer;
  beforeAll(async () => {
    http = await startStreamableServer({ name: 'web' });
  });
  afterAll(async () => {
    await http?.close();
  });

  it('mixes stdio and HTTP servers', async () => {
    await using client = new Client({
      mcpServers: { local: stdio('local'), web: { url: `${http.url}/mcp` } },
    });
    const results = await Promise.all([
      client.callTool<{ name: string }>('local_identify'),
      client.callTool<{ name: string }>('web_identify'),
    ]);
    expect(results.map((r) => r.data.name)).toEqual(['local', 'web']);
    expect(client.failures).toEqual([]);
  });

  it('sets aside a server whose process exits, and connect() brings it back', async () => {
    await using client = new Client({ mcpServers: { alpha: stdio('alpha'), beta: stdio('beta') } });
    await client.connect();
    await client.callTool('alpha_crash');
    await vi.waitFor(() => expect(client.servers).toEqual(['beta']), { timeout: 10_000 });
    expect(client.failures.map((f) => f.server)).toEqual(['alpha']);
    expect((await client.listTools()).every((t) => t.name.startsWith('beta_'))).toBe(true);
    await expect(client.callTool('alpha_add', { a: 1, b: 1 })).rejects.toThrow(/Server alpha is not connected/);
    await client.connect();
    expect(client.failures).toEqual([]);
    expect((await client.callTool('alpha_add', { a: 1, b: 1 })).data).toBe(2);
  });

  it('does not prefix a single configured server', async () => {
    await using client = new Client({ mcpServers: { only: stdio('only') } });
    expect((await client.callTool('add', { a: 2, b: 2 })).data).toBe(4);
  });

  it('throws a ConnectionError naming every server when none connects', async () => {
    const client = new Client({
      mcpServers: { one: { url: 'http://127.0.0.1:1/mcp' }, two: { command: 'gatehouse-no-such-command-xyz' } },
    });
    const error = await client.connect().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as Error).message).toMatch(/one:.*\n.*two:/s);
  });
});

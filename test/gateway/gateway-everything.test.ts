import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Client as SdkClient, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { OAuth } from '../../src/client/oauth.js';
import { answerServerRequests, CAPABILITIES, callEveryToolAnsweringRequests } from './everything-tools.js';
import {
  cleanup,
  EVERYTHING,
  everythingOverHttp,
  freePort,
  type GatewayProcess,
  headlessOAuth,
  startGatewayProcess,
  tempDir,
  waitFor,
} from './helpers.js';

/** The SDK client with every client capability server-everything asks for, recording what the server sends. */
async function capableClient(mcpUrl: string, oauth: OAuth) {
  const client = new SdkClient({ name: 'everything-round-trips', version: '1.0.0' }, CAPABILITIES);
  const { requests, notifications } = answerServerRequests(client);
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { fetch: oauth.wrapFetch() });
  await client.connect(transport);
  return { client, transport, requests, notifications };
}

const text = (result: unknown) => JSON.stringify(result);

describe('gatehouse gateway: every server-everything round trip, stdio and streamable HTTP', () => {
  let gateway: GatewayProcess;
  let httpUpstream: Awaited<ReturnType<typeof everythingOverHttp>>;
  let httpPort: number;
  afterAll(cleanup);

  beforeAll(async () => {
    httpPort = await freePort();
    httpUpstream = await everythingOverHttp(httpPort);
    const dir = await tempDir();
    await writeFile(
      join(dir, 'gateway.json'),
      JSON.stringify({
        mcpServers: {
          stdio: { command: process.execPath, args: [EVERYTHING] },
          http: { url: `http://127.0.0.1:${httpPort}/mcp` },
        },
      }),
    );
    gateway = await startGatewayProcess(['--config', join(dir, 'gateway.json'), '--store', 'memory'], {
      dataDir: dir,
    });
  }, 120_000);

  describe.each(['stdio', 'http'])('through the %s upstream', (upstream) => {
    let session: Awaited<ReturnType<typeof capableClient>>;
    beforeAll(async () => {
      const mcpUrl = gateway.mcp[upstream]!;
      session = await capableClient(mcpUrl, headlessOAuth(mcpUrl, 'admin', gateway.password!));
    }, 60_000);
    afterAll(async () => {
      await session?.client.close();
    });

    it('calls every tool it lists, server-to-client requests answered by the caller', async () => {
      const { client, requests } = session;
      await callEveryToolAnsweringRequests(client, requests);
    }, 120_000);

    it('runs a task tool: tools/call with a task, tasks/get until done, tasks/result', async () => {
      const { client } = session;
      const created = await client.request(
        {
          method: 'tools/call',
          params: { name: 'simulate-research-query', arguments: { topic: 'gateways' }, task: { ttl: 60_000 } },
        },
        z.object({ task: z.object({ taskId: z.string(), status: z.string() }) }),
      );
      const taskId = created.task.taskId;
      const status = z.object({ status: z.string() }).passthrough();
      for (let i = 0; ; i++) {
        const task = await client.request({ method: 'tasks/get', params: { taskId } }, status);
        if (task.status === 'completed') break;
        expect(['working', 'submitted'], `task status ${task.status}`).toContain(task.status);
        expect(i).toBeLessThan(60);
        await new Promise((r) => setTimeout(r, 500));
      }
      const result = await client.request(
        { method: 'tasks/result', params: { taskId } },
        z.object({ content: z.array(z.object({ type: z.string(), text: z.string().optional() })) }).passthrough(),
      );
      expect(text(result.content)).toContain('gateways');
    }, 90_000);

    it('streams progress notifications of a long-running tool', async () => {
      const progress: number[] = [];
      const result = await session.client.callTool(
        { name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 4 } },
        { onprogress: (p) => progress.push(p.progress) },
      );
      expect(text(result.content)).toContain('completed');
      expect(progress).toEqual([1, 2, 3, 4]);
    }, 30_000);

    it('lists, reads, templates, completes and subscribes to resources; logging notifications arrive', async () => {
      const { client, notifications } = session;
      const { resources } = await client.listResources();
      expect(resources.length).toBeGreaterThan(0);
      const first = await client.readResource({ uri: resources[0]!.uri });
      expect(first.contents[0]!.uri).toBe(resources[0]!.uri);
      const { resourceTemplates } = await client.listResourceTemplates();
      expect(resourceTemplates.map((t) => t.uriTemplate)).toContain('demo://resource/dynamic/text/{resourceId}');
      const dynamic = await client.readResource({ uri: 'demo://resource/dynamic/text/7' });
      expect(text(dynamic.contents)).toContain('7');
      const completion = await client.complete({
        ref: { type: 'ref/resource', uri: 'demo://resource/dynamic/text/{resourceId}' },
        argument: { name: 'resourceId', value: '1' },
      });
      expect(completion.completion.values.length).toBeGreaterThan(0);

      await client.setLoggingLevel('debug');
      await client.subscribeResource({ uri: resources[0]!.uri });
      await client.callTool({ name: 'toggle-subscriber-updates', arguments: {} });
      await client.callTool({ name: 'toggle-simulated-logging', arguments: {} });
      await waitFor(
        () => notifications.map((n) => n.method).join(' '),
        /notifications\/resources\/updated[\s\S]*|notifications\/message/,
        30_000,
      );
      await waitFor(() => text(notifications), /notifications\/resources\/updated/, 30_000);
      await waitFor(() => text(notifications), /notifications\/message/, 30_000);
      await client.callTool({ name: 'toggle-subscriber-updates', arguments: {} });
      await client.callTool({ name: 'toggle-simulated-logging', arguments: {} });
      await client.unsubscribeResource({ uri: resources[0]!.uri });
    }, 60_000);

    it('lists and gets every prompt, and completes a prompt argument', async () => {
      const { client } = session;
      const { prompts } = await client.listPrompts();
      expect(prompts.map((p) => p.name).sort()).toEqual(
        ['args-prompt', 'completable-prompt', 'resource-prompt', 'simple-prompt'].sort(),
      );
      const args: Record<string, Record<string, string>> = {
        'args-prompt': { city: 'Paris' },
        'completable-prompt': { department: 'Engineering', name: 'Alice' },
        'resource-prompt': { resourceType: 'Text', resourceId: '1' },
        'simple-prompt': {},
      };
      for (const prompt of prompts) {
        const got = await client.getPrompt({ name: prompt.name, arguments: args[prompt.name] ?? {} });
        expect(got.messages.length, prompt.name).toBeGreaterThan(0);
      }
      expect(text(await client.getPrompt({ name: 'args-prompt', arguments: { city: 'Paris' } }))).toContain('Paris');
      const completion = await client.complete({
        ref: { type: 'ref/prompt', name: 'completable-prompt' },
        argument: { name: 'department', value: 'Eng' },
      });
      expect(completion.completion.values).toContain('Engineering');
      await client.ping();
    }, 30_000);
  });

  it("maps session ids: the caller's Mcp-Session-Id is not the upstream's, and two callers never share one", async () => {
    const mcpUrl = gateway.mcp['http']!;
    const before = httpUpstream.sessions().length;
    const a = await capableClient(mcpUrl, headlessOAuth(mcpUrl, 'admin', gateway.password!));
    const b = await capableClient(mcpUrl, headlessOAuth(mcpUrl, 'admin', gateway.password!));
    try {
      const created = httpUpstream.sessions().slice(before);
      expect(created).toHaveLength(2);
      expect(new Set(created).size).toBe(2);
      for (const caller of [a.transport.sessionId!, b.transport.sessionId!]) {
        expect(caller).toMatch(/^[0-9a-f-]{36}$/);
        expect(created).not.toContain(caller);
      }
      expect(a.transport.sessionId).not.toBe(b.transport.sessionId);
      // Each caller's session-scoped state stays in its own upstream session.
      await a.client.callTool({
        name: 'gzip-file-as-resource',
        arguments: { name: 'only-a.gz', data: 'data:text/plain;base64,YQ==', outputType: 'resourceLink' },
      });
      const seenByA = text(await a.client.listResources());
      const seenByB = text(await b.client.listResources());
      expect(seenByA).toContain('only-a.gz');
      expect(seenByB).not.toContain('only-a.gz');
    } finally {
      await a.client.close();
      await b.client.close();
    }
  }, 60_000);

  it('re-initialises an HTTP upstream that lost the session (restarted), the caller keeping its own', async () => {
    const mcpUrl = gateway.mcp['http']!;
    const { client, transport } = await capableClient(mcpUrl, headlessOAuth(mcpUrl, 'admin', gateway.password!));
    try {
      const callerSession = transport.sessionId;
      expect(text(await client.callTool({ name: 'echo', arguments: { message: 'before' } }))).toContain('before');
      httpUpstream.child.kill('SIGKILL');
      await new Promise<void>((resolve) => httpUpstream.child.once('exit', () => resolve()));
      httpUpstream = await everythingOverHttp(httpPort);
      const after = await client.callTool({ name: 'echo', arguments: { message: 'after the restart' } });
      expect(text(after)).toContain('Echo: after the restart');
      expect(transport.sessionId).toBe(callerSession);
      expect(httpUpstream.sessions()).toHaveLength(1);
    } finally {
      await client.close();
    }
  }, 90_000);
});

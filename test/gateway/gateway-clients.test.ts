// Clients we did not write (mcp-remote from npm) and our own Gatehouse Client, against servers we did not write
// (server-everything over stdio and in its streamable-HTTP mode, server-filesystem), all through one gateway.
// The SDK client against the same servers: gateway-everything.test.ts and gateway-filesystem.test.ts; MCP
// Inspector's CLI: gateway-inspector.test.ts.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Client as SdkClient } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/client.js';
import type { LogMessage } from '../../src/client/handlers.js';
import {
  answerServerRequests,
  CAPABILITIES,
  callEveryTool,
  callEveryToolAnsweringRequests,
  ELICITED_NAME,
  ROOT_URI,
  SAMPLED_ANSWER,
} from './everything-tools.js';
import {
  cleanup,
  connectThroughMcpRemote,
  type GatewayProcess,
  gatewayForClientMatrix,
  headlessOAuth,
  waitFor,
} from './helpers.js';

const text = (result: unknown) => JSON.stringify(result);

describe('gatehouse gateway × clients: Gatehouse Client and mcp-remote against server-everything and server-filesystem', () => {
  let gateway: GatewayProcess;
  let files: string;
  afterAll(cleanup);

  beforeAll(async () => {
    ({ gateway, files } = await gatewayForClientMatrix());
  }, 120_000);

  describe.each(['stdio', 'http'])('the Gatehouse Client → %s server-everything', (upstream) => {
    let client: Client;
    const logs: LogMessage[] = [];
    const updated: string[] = [];
    const asked: string[] = [];
    beforeAll(async () => {
      const mcpUrl = gateway.mcp[upstream]!;
      client = await new Client(mcpUrl, {
        auth: headlessOAuth(mcpUrl, 'admin', gateway.password!),
        samplingHandler: async () => {
          asked.push('sampling');
          return { role: 'assistant', model: 'test-model', content: { type: 'text', text: SAMPLED_ANSWER } };
        },
        elicitationHandler: async (params) => {
          asked.push(`elicitation:${params.mode ?? 'form'}`);
          return params.mode === 'url' ? { action: 'accept' } : { action: 'accept', content: { name: ELICITED_NAME } };
        },
        roots: [ROOT_URI],
        logHandler: (message) => logs.push(message),
        messageHandler: { onResourceUpdated: (uri) => updated.push(uri) },
      }).connect();
    }, 60_000);
    afterAll(async () => {
      await client?.close();
    });

    it('calls every tool, answering sampling, elicitation and roots requests through the gateway', async () => {
      await callEveryTool(await client.listTools(), (name, args) =>
        client.callTool(name, args, { raiseOnError: false }),
      );
      expect(asked.sort()).toEqual(['elicitation:form', 'elicitation:url', 'sampling']);
      // Toggled on by the loop; off again.
      await client.callTool('toggle-simulated-logging', {});
      await client.callTool('toggle-subscriber-updates', {});
    }, 120_000);

    it('gets progress of a long-running tool', async () => {
      const progress: number[] = [];
      const result = await client.callTool(
        'trigger-long-running-operation',
        { duration: 1, steps: 3 },
        { onProgress: (p) => progress.push(p.progress) },
      );
      expect(text(result.content)).toContain('completed');
      expect(progress).toEqual([1, 2, 3]);
    }, 30_000);

    it('lists and reads resources and templates, completes, subscribes; log messages arrive', async () => {
      const resources = await client.listResources();
      expect(resources.length).toBeGreaterThan(0);
      const contents = await client.readResource(resources[0]!.uri);
      expect(text(contents)).toContain(resources[0]!.uri);
      const templates = await client.listResourceTemplates();
      expect(templates.map((t) => t.uriTemplate)).toContain('demo://resource/dynamic/text/{resourceId}');
      expect(text(await client.readResource('demo://resource/dynamic/text/3'))).toContain('3');
      const completion = await client.complete(
        { type: 'ref/resource', uri: 'demo://resource/dynamic/text/{resourceId}' },
        { name: 'resourceId', value: '1' },
      );
      expect(completion.values.length).toBeGreaterThan(0);

      await client.setLoggingLevel('debug');
      await client.subscribeResource(resources[0]!.uri);
      await client.callTool('toggle-subscriber-updates', {});
      await client.callTool('toggle-simulated-logging', {});
      await waitFor(() => updated.join(' '), /\S/, 30_000);
      await waitFor(() => text(logs), /level/, 30_000);
      expect(updated).toContain(resources[0]!.uri);
      await client.callTool('toggle-subscriber-updates', {});
      await client.callTool('toggle-simulated-logging', {});
      await client.unsubscribeResource(resources[0]!.uri);
    }, 60_000);

    it('lists and gets every prompt, completes a prompt argument, pings', async () => {
      const prompts = await client.listPrompts();
      expect(prompts.map((p) => p.name)).toEqual(
        expect.arrayContaining(['args-prompt', 'completable-prompt', 'resource-prompt', 'simple-prompt']),
      );
      const args: Record<string, Record<string, string>> = {
        'args-prompt': { city: 'Paris' },
        'completable-prompt': { department: 'Engineering', name: 'Alice' },
        'resource-prompt': { resourceType: 'Text', resourceId: '1' },
      };
      for (const prompt of prompts) {
        const got = await client.getPrompt(prompt.name, args[prompt.name] ?? {});
        expect(got.messages.length, prompt.name).toBeGreaterThan(0);
      }
      const completion = await client.complete(
        { type: 'ref/prompt', name: 'completable-prompt' },
        { name: 'department', value: 'Eng' },
      );
      expect(completion.values).toContain('Engineering');
      await client.ping();
    }, 30_000);
  });

  describe.each(['stdio', 'http'])('mcp-remote → %s server-everything', (upstream) => {
    let client: SdkClient;
    let seen: ReturnType<typeof answerServerRequests>;
    beforeAll(async () => {
      client = new SdkClient({ name: 'via-mcp-remote', version: '1.0.0' }, CAPABILITIES);
      seen = answerServerRequests(client);
      await connectThroughMcpRemote(client, gateway.mcp[upstream]!, 'admin', gateway.password!);
    }, 60_000);
    afterAll(async () => {
      await client?.close();
    });

    it('calls every tool, the server-to-client requests crossing mcp-remote and the gateway', async () => {
      await callEveryToolAnsweringRequests(client, seen.requests);
    }, 120_000);

    it('streams progress', async () => {
      const progress: number[] = [];
      await client.callTool(
        { name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 3 } },
        { onprogress: (p) => progress.push(p.progress) },
      );
      // mcp-remote receives all three before the result, in order (its --debug log says so), and writes them so;
      // the SDK client runs notification handlers a microtask later but responses at once, so a last progress that
      // arrives in one stdio read with the result finds its handler gone.
      expect(progress.length).toBeGreaterThanOrEqual(2);
      expect(progress).toEqual([1, 2, 3].slice(0, progress.length));
    }, 30_000);

    it('reads resources and templates, subscribes, gets prompts; notifications arrive', async () => {
      const { resources } = await client.listResources();
      const read = await client.readResource({ uri: resources[0]!.uri });
      expect(read.contents[0]!.uri).toBe(resources[0]!.uri);
      const { resourceTemplates } = await client.listResourceTemplates();
      expect(resourceTemplates.length).toBeGreaterThan(0);
      const { prompts } = await client.listPrompts();
      expect(prompts.length).toBeGreaterThanOrEqual(4);
      expect(text(await client.getPrompt({ name: 'args-prompt', arguments: { city: 'Oslo' } }))).toContain('Oslo');

      await client.setLoggingLevel('debug');
      await client.subscribeResource({ uri: resources[0]!.uri });
      await client.callTool({ name: 'toggle-subscriber-updates', arguments: {} });
      await client.callTool({ name: 'toggle-simulated-logging', arguments: {} });
      await waitFor(() => text(seen.notifications), /notifications\/resources\/updated/, 30_000);
      await waitFor(() => text(seen.notifications), /notifications\/message/, 30_000);
      await client.callTool({ name: 'toggle-subscriber-updates', arguments: {} });
      await client.callTool({ name: 'toggle-simulated-logging', arguments: {} });
    }, 60_000);
  });

  describe('server-filesystem', () => {
    it('serves the Gatehouse Client: read, write, list', async () => {
      const mcpUrl = gateway.mcp['files']!;
      await using client = await new Client(mcpUrl, {
        auth: headlessOAuth(mcpUrl, 'admin', gateway.password!),
      }).connect();
      const read = await client.callTool('read_text_file', { path: join(files, 'hello.txt') });
      expect(text(read.content)).toContain('hello from the filesystem server');
      await client.callTool('write_file', { path: join(files, 'by-client.txt'), content: 'from the Client' });
      expect(await readFile(join(files, 'by-client.txt'), 'utf8')).toBe('from the Client');
      const list = await client.callTool('list_directory', { path: files });
      expect(text(list.content)).toContain('by-client.txt');
    }, 60_000);

    it('serves mcp-remote: read, write, list', async () => {
      const client = new SdkClient({ name: 'via-mcp-remote', version: '1.0.0' });
      await connectThroughMcpRemote(client, gateway.mcp['files']!, 'admin', gateway.password!);
      try {
        const read = await client.callTool({ name: 'read_text_file', arguments: { path: join(files, 'hello.txt') } });
        expect(text(read.content)).toContain('hello from the filesystem server');
        await client.callTool({
          name: 'write_file',
          arguments: { path: join(files, 'by-mcp-remote.txt'), content: 'from mcp-remote' },
        });
        expect(await readFile(join(files, 'by-mcp-remote.txt'), 'utf8')).toBe('from mcp-remote');
        const list = await client.callTool({ name: 'list_directory', arguments: { path: files } });
        expect(text(list.content)).toContain('by-mcp-remote.txt');
      } finally {
        await client.close();
      }
    }, 60_000);
  });
});

import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Client, type LogMessage, TimeoutError } from '../../src/client/index.js';
import { createServer } from '../fixtures/servers/everything.mjs';

const everything = fileURLToPath(new URL('../fixtures/servers/everything.mjs', import.meta.url));

describe('Client notifications and timeouts (stdio server)', () => {
  it('delivers progress to the per-call onProgress, else to progressHandler', async () => {
    const fromOption: number[] = [];
    await using client = new Client(everything, { progressHandler: (p) => fromOption.push(p.progress) });
    const perCall: Array<{ progress: number; total?: number; message?: string }> = [];
    const result = await client.callTool('progress', { steps: 3 }, { onProgress: (p) => perCall.push(p) });
    expect(result.data).toBe('done 3');
    expect(perCall).toEqual([
      { progress: 1, total: 3, message: 'step 1' },
      { progress: 2, total: 3, message: 'step 2' },
      { progress: 3, total: 3, message: 'step 3' },
    ]);
    expect(fromOption).toEqual([]);
    await client.callTool('progress', { steps: 2 });
    expect(fromOption).toEqual([1, 2]);
  });

  it('delivers log messages to logHandler, filtered by setLoggingLevel', async () => {
    const logs: LogMessage[] = [];
    await using client = new Client(everything, { logHandler: (message) => logs.push(message) });
    await client.setLoggingLevel('debug');
    await client.callTool('log', { message: 'hello', level: 'info' });
    await client.setLoggingLevel('error');
    await client.callTool('log', { message: 'dropped', level: 'info' });
    await client.callTool('log', { message: 'bad', level: 'error' });
    // Notifications travel ahead of the result on the same pipe, so they have arrived by now.
    expect(logs).toEqual([
      { level: 'info', logger: 'fixture', data: 'hello' },
      { level: 'error', logger: 'fixture', data: 'bad' },
    ]);
  });

  it('raises TimeoutError for a slow tool, and keeps working afterwards', async () => {
    await using client = new Client(everything, { timeout: 10_000 });
    const error = await client.callTool('slow', { ms: 20_000 }, { timeout: 200 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error).toMatchObject({ method: 'tools/call', timeoutMs: 200, code: 'ERR_TIMEOUT' });
    expect((error as TimeoutError).hint).toMatch(/timeout/);
    expect((await client.callTool('add', { a: 1, b: 2 })).data).toBe(3);
  });

  it('applies the client-wide timeout', async () => {
    await using client = new Client(everything, { timeout: 200 });
    await client.connect();
    await expect(client.callTool('slow', { ms: 20_000 })).rejects.toBeInstanceOf(TimeoutError);
  });
});

describe('Client answers server requests', () => {
  it('answers sampling, elicitation and roots with the configured handlers', async () => {
    await using client = new Client(createServer('handlers'), {
      samplingHandler: async (params) => {
        const first = params.messages[0]?.content;
        const text = first && 'text' in first ? String(first.text) : '';
        return {
          role: 'assistant',
          model: 'test-model',
          content: { type: 'text', text: `summary of ${text.length} chars` },
        };
      },
      elicitationHandler: async (params) => {
        expect(params.message).toBe('What is your name?');
        return { action: 'accept', content: { name: 'Ada' } };
      },
      roots: ['/tmp/project', { uri: 'file:///srv/data', name: 'data' }],
    });
    expect((await client.callTool('summarize', { text: 'abc' })).data).toBe('summary of 14 chars');
    expect((await client.callTool('ask')).data).toEqual({ action: 'accept', content: { name: 'Ada' } });
    expect((await client.callTool('roots')).data).toEqual([
      { uri: 'file:///tmp/project' },
      { uri: 'file:///srv/data', name: 'data' },
    ]);
  });
});

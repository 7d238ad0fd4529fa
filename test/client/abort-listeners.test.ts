// A long-running client sends thousands of requests with one long-lived AbortSignal (the MCP transport's): each
// request must stop listening to it once it is over, or the listeners pile up (and Node warns of a leak past 1500).
import { getEventListeners } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientFetch, OAuth } from '../../src/client/index.js';
import { type OAuthTestStack, startOAuthTestStack, temporaryDirectory } from './oauth-helpers.js';

const CALLS = 2000;
let stack: OAuthTestStack;
const locks = await temporaryDirectory('abort-listeners-locks');
const warnings: Error[] = [];
const onWarning = (warning: Error) => warnings.push(warning);

beforeAll(async () => {
  stack = await startOAuthTestStack();
  process.on('warning', onWarning);
}, 120_000);
afterAll(async () => {
  process.off('warning', onWarning);
  await stack.close();
  await locks.remove();
});

const abortListeners = (signal: AbortSignal) => getEventListeners(signal, 'abort').length;
const leakWarnings = () => warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning');

describe('abort listeners on a long-lived signal', () => {
  it(`${CALLS} tool calls through OAuth.wrapFetch() leave the transport's signal with a bounded listener count`, async () => {
    const oauth = new OAuth({ mcpUrl: stack.mcpUrl, login: stack, tokenStorage: new Map(), lockDirectory: locks.path });
    const wrapped = oauth.wrapFetch();
    // The transport's own signal, as it hands it to fetch with every request.
    const signals = new Set<AbortSignal>();
    const fetchSeeingSignals: typeof wrapped = (input, init) => {
      if (init?.signal) signals.add(init.signal);
      return wrapped(input, init);
    };
    const client = new Client({ name: 'abort-listeners-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(stack.mcpUrl), { fetch: fetchSeeingSignals }));
    let most = 0;
    try {
      for (let i = 0; i < CALLS; i++) {
        const result = await client.callTool({ name: 'whoami', arguments: {} });
        expect((result.structuredContent as { subject: string }).subject).toBe('demo');
        for (const signal of signals) most = Math.max(most, abortListeners(signal));
      }
    } finally {
      await client.close();
    }
    expect(signals.size).toBeGreaterThan(0);
    // One listener per request in flight (here one call at a time, plus the standalone event stream), not per call.
    expect(most).toBeLessThanOrEqual(4);
    expect(leakWarnings()).toEqual([]);
  }, 300_000);

  describe('clientFetch with one AbortController for every request', () => {
    let server: Server;
    let base: string;
    let refusing: string;
    beforeAll(async () => {
      const closed = createServer();
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
      refusing = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/`;
      await new Promise((resolve) => closed.close(resolve));
      server = createServer((req, res) => {
        if (req.url === '/slow') {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write('first chunk');
          return; // never ends: the client aborts it
        }
        if (req.url === '/empty') return void res.writeHead(204).end();
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });

    it(`${CALLS} requests read, cancelled, empty or failed leave no listener behind`, async () => {
      const controller = new AbortController();
      const { signal } = controller;
      let most = 0;
      for (let i = 0; i < CALLS; i++) {
        const kind = i % 4;
        if (kind === 3) {
          await expect(clientFetch(refusing, { signal })).rejects.toThrow(/Connection refused/);
        } else {
          const response = await clientFetch(`${base}/${kind === 2 ? 'empty' : 'json'}`, { signal });
          if (kind === 0) expect(await response.json()).toEqual({ ok: true });
          else await response.body?.cancel();
        }
        most = Math.max(most, abortListeners(signal));
      }
      expect(most).toBeLessThanOrEqual(1);
      expect(abortListeners(signal)).toBe(0);
      expect(leakWarnings()).toEqual([]);
    }, 120_000);

    it('aborting the caller signal still stops a response body being read, with the abort reason', async () => {
      const controller = new AbortController();
      const response = await clientFetch(`${base}/slow`, { signal: controller.signal });
      const reader = response.body!.getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).toBe('first chunk');
      expect(abortListeners(controller.signal)).toBe(1); // still following the caller while the body streams
      const reason = new Error('closed by the caller');
      const next = reader.read();
      controller.abort(reason);
      await expect(next).rejects.toBe(reason);
      expect(abortListeners(controller.signal)).toBe(0);
    });

    it('an already aborted signal rejects with its reason and adds no listener', async () => {
      const controller = new AbortController();
      const reason = new Error('aborted before sending');
      controller.abort(reason);
      await expect(clientFetch(`${base}/json`, { signal: controller.signal })).rejects.toBe(reason);
      expect(abortListeners(controller.signal)).toBe(0);
    });
  });
});

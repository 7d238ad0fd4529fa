import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import type { Client as SdkClient, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/authorization-server/users.js';
import { ASKED_LIMIT } from '../../src/gateway/session.js';
import { type Cluster, startProxy } from '../deployment/cluster.js';
import { ELICITED_NAME, SAMPLED_ANSWER } from './everything-tools.js';
import {
  cleanup,
  documentedGateway,
  EVERYTHING,
  everythingOverHttp,
  type FreshStore,
  freePort,
  freshStore,
  type GatewayProcess,
  headlessOAuth,
  RAW_INITIALIZE as INITIALIZE,
  rawMcp as mcp,
  sdkClient,
  startGatewayProcess,
  stopProxy,
  tempDir,
} from './helpers.js';

const PASSWORD = 'a long password for the gateway cluster';
const MALLORY = 'another long password for mallory';

/**
 * A TCP relay in front of the shared Redis or PostgreSQL: the gateways reach the store only through it, so the test
 * can take the store away from them (and give it back) without touching the store other tests use.
 */
async function storeRelay(targetPort: number) {
  const sockets = new Set<Socket>();
  const port = await freePort();
  let server: Server | undefined;
  const listen = () =>
    new Promise<void>((resolve) => {
      server = createServer((client) => {
        const upstream = tcpConnect(targetPort, '127.0.0.1');
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('close', () => sockets.delete(s));
          s.on('error', () => s.destroy());
        }
        client.pipe(upstream).pipe(client);
      });
      server.listen(port, '127.0.0.1', () => resolve());
    });
  await listen();
  return {
    port,
    /** The store goes away: connections drop, new ones are refused. */
    async cut() {
      const closed = new Promise((resolve) => server?.close(resolve));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
    restore: listen,
  };
}

const LIST = { jsonrpc: '2.0', id: 2, method: 'tools/list' };
const POST_HEADERS = {
  accept: 'application/json, text/event-stream',
  'content-type': 'application/json',
  'mcp-protocol-version': '2025-06-18',
};

const text = (content: unknown) => (content as Array<{ text?: string }>).map((c) => c.text ?? '').join('');

describe.each(['redis', 'postgres'] as const)(
  'two gatehouse gateway instances on %s behind a round-robin proxy',
  (backend) => {
    const suffix = randomBytes(5).toString('hex');
    const database = `gh_gw_${suffix}`;
    let shared: FreshStore;
    let relay: Awaited<ReturnType<typeof storeRelay>>;
    let proxy: Awaited<ReturnType<typeof startProxy>>;
    const log: Cluster['log'] = [];
    const instances: Array<GatewayProcess & { direct: string }> = [];
    const tokens: Record<string, string> = {};

    /** An instance's own MCP URL for an upstream (not through the proxy). */
    const direct = (n: number, upstream: string) => `${instances[n]!.direct}/${upstream}/mcp`;
    const viaProxy = (upstream: string) => `${proxy.url}/${upstream}/mcp`;

    beforeAll(async () => {
      relay = await storeRelay(backend === 'redis' ? 6379 : 5432);
      shared = await freshStore(backend, database, relay.port);
      const store = shared.url;
      const httpPort = await freePort();
      await everythingOverHttp(httpPort);
      proxy = await startProxy(() => instances.map((i) => i.direct), log);
      const dir = await tempDir();
      const users = join(dir, 'users.json');
      await writeFile(
        users,
        JSON.stringify({ users: [{ username: 'mallory', passwordHash: await hashPassword(MALLORY) }] }),
      );
      const config = join(dir, 'gateway.json');
      await writeFile(
        config,
        JSON.stringify({
          users,
          mcpServers: {
            stdio: { command: process.execPath, args: [EVERYTHING] },
            http: { url: `http://127.0.0.1:${httpPort}/mcp` },
          },
        }),
      );
      const storeKey = randomBytes(32).toString('base64url');
      // One instance first (it creates the signing keys in the store), then the other, as the doc says.
      for (const n of [0, 1]) {
        const port = await freePort();
        // The command of docs/gateway.md, "Several instances", with local values for the addresses.
        const { args, exported } = await documentedGateway('### Several instances', {
          '--config': config,
          '--public-url': proxy.url,
          '--store': store,
          '--port': String(port),
        });
        expect(exported).toEqual(expect.arrayContaining(['GATEHOUSE_SUPERUSER_PASSWORD', 'GATEHOUSE_STORE_KEY']));
        const started = await startGatewayProcess(args, {
          dataDir: join(dir, `instance-${n}`),
          env: { GATEHOUSE_SUPERUSER_PASSWORD: PASSWORD, GATEHOUSE_STORE_KEY: storeKey },
        });
        instances.push({ ...started, direct: `http://127.0.0.1:${port}` });
      }
    }, 120_000);

    afterAll(async () => {
      await cleanup();
      await stopProxy(proxy);
      await shared?.drop();
    });

    /** Logs `username` in through the proxy (each step on the other instance) with an SDK client on `upstream`. */
    async function connect(upstream: string, username = 'admin', password = PASSWORD) {
      const oauth = headlessOAuth(viaProxy(upstream), username, password);
      const client = await sdkClient(viaProxy(upstream), oauth);
      tokens[`${username}:${upstream}`] = (await oauth.tokens())!.access_token;
      return client;
    }

    const sessionOf = (client: SdkClient) => (client.transport as StreamableHTTPClientTransport).sessionId!;

    /** A raw `tools/call` of `trigger-sampling-request` in session `session` on instance 0 (http): its response. */
    const samplingCall = (token: string, session: string, id: number, prompt: string) =>
      fetch(direct(0, 'http'), {
        method: 'POST',
        headers: { ...POST_HEADERS, authorization: `Bearer ${token}`, 'mcp-session-id': session },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id,
          method: 'tools/call',
          params: { name: 'trigger-sampling-request', arguments: { prompt } },
        }),
      });

    /**
     * An SDK client of admin's through the proxy, declaring `capabilities`, once it opened its `GET` stream (after
     * connecting): from then on the proxy alternates only its calls and its answers to the upstream's requests.
     */
    async function answeringClient(upstream: string, capabilities: Record<string, unknown>) {
      const connecting = log.length;
      const client = await sdkClient(viaProxy(upstream), headlessOAuth(viaProxy(upstream), 'admin', PASSWORD), {
        capabilities,
      });
      const opened = () => log.slice(connecting).some((e) => e.method === 'GET' && e.path === `/${upstream}/mcp`);
      for (let waited = 0; waited < 5000 && !opened(); waited += 20) await new Promise((r) => setTimeout(r, 20));
      expect(opened()).toBe(true);
      return client;
    }

    /** The log lines of `among` that `match`, once there are `atLeast` (a line may reach stdout after the answer). */
    async function logLines(match: (line: Record<string, unknown>) => boolean, atLeast = 1, among = instances) {
      const deadline = Date.now() + 5000;
      for (;;) {
        const lines = among.flatMap((i) => i.logs().filter(match));
        if (lines.length >= atLeast || Date.now() > deadline) return lines;
        await new Promise((r) => setTimeout(r, 50));
      }
    }

    for (const upstream of ['stdio', 'http']) {
      it(`serves one ${upstream} session with every request on the other instance: tools, resources, progress`, async () => {
        const client = await connect(upstream);
        const session = sessionOf(client);
        const first = log.length;
        for (let i = 0; i < 12; i++) {
          const echoed = await client.callTool({ name: 'echo', arguments: { message: `hello ${i}` } });
          expect(text(echoed.content)).toContain(`hello ${i}`);
        }
        const { tools } = await client.listTools();
        expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['echo', 'get-sum']));
        const sum = await client.callTool({ name: 'get-sum', arguments: { a: 2, b: 3 } });
        expect(text(sum.content)).toContain('5');
        const { resources } = await client.listResources();
        expect(resources.length).toBeGreaterThan(0);
        const read = await client.readResource({ uri: resources[0]!.uri });
        expect(read.contents[0]!.uri).toBe(resources[0]!.uri);
        const progress: number[] = [];
        await client.callTool(
          { name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 4 } },
          { onprogress: (p) => progress.push(p.progress) },
        );
        expect(progress).toEqual([1, 2, 3, 4]);

        // The proxy alternated: this session's POSTs reached both instances.
        const posts = log.slice(first).filter((entry) => entry.method === 'POST' && entry.path === `/${upstream}/mcp`);
        expect(posts.length).toBeGreaterThanOrEqual(16);
        expect(new Set(posts.map((p) => p.instance))).toEqual(new Set([0, 1]));
        // Both instances answered requests of the one session, and the one that did not open it took it over.
        for (const instance of instances) {
          const lines = instance.logs().filter((l) => l['msg'] === 'mcp request' && l['session'] === session);
          expect(lines.some((l) => l['tool'] === 'echo' && l['outcome'] === 'ok')).toBe(true);
        }
        const takeovers = instances.flatMap((i) =>
          i.logs().filter((l) => l['msg'] === 'mcp session taken over' && l['session'] === session),
        );
        expect(takeovers).toHaveLength(1);
        await client.close();
      }, 60_000);
    }

    for (const upstream of ['stdio', 'http']) {
      it(`completes ${upstream} tool calls whose sampling and elicitation answers land on the other instance`, async () => {
        const client = await answeringClient(upstream, { sampling: {}, elicitation: { form: {} } });
        // A large answer too: beyond PostgreSQL's NOTIFY payload limit (8000 bytes), it goes through the store.
        const large = 'L'.repeat(12_000);
        client.setRequestHandler('sampling/createMessage', async (request) => {
          const prompt = JSON.stringify(request.params.messages);
          const answer = prompt.includes('large') ? large : `${SAMPLED_ANSWER} to ${/prompt-\d+/.exec(prompt)?.[0]}`;
          return { model: 'test-model', role: 'assistant', content: { type: 'text', text: answer } };
        });
        client.setRequestHandler('elicitation/create', async () => ({
          action: 'accept',
          content: { name: ELICITED_NAME, check: true },
        }));
        const session = sessionOf(client);
        const first = log.length;
        // Bounded: a lost answer would otherwise leave the call waiting for the upstream's own timeout.
        const call = (name: string, args: Record<string, unknown>) =>
          client.callTool({ name, arguments: args }, { timeout: 15_000 });
        for (let i = 0; i < 3; i++) {
          const sampled = await call('trigger-sampling-request', { prompt: `prompt-${i}` });
          expect(text(sampled.content)).toContain(`${SAMPLED_ANSWER} to prompt-${i}`);
          const elicited = await call('trigger-elicitation-request', {});
          expect(JSON.stringify(elicited)).toContain(ELICITED_NAME);
        }
        const sampledLarge = await call('trigger-sampling-request', { prompt: 'large' });
        expect(text(sampledLarge.content)).toContain(large);

        // The proxy alternated: the calls and their answers reached both instances.
        const posts = log.slice(first).filter((entry) => entry.method === 'POST' && entry.path === `/${upstream}/mcp`);
        expect(new Set(posts.map((p) => p.instance))).toEqual(new Set([0, 1]));
        // The instance that asked heard every answer relayed through the store: each answer POST, sent while its call
        // was open, reached the instance after the call's.
        const relayed = await logLines((l) => l['msg'] === 'mcp answer relayed' && l['session'] === session, 7);
        const asked = ['sampling/createMessage', 'elicitation/create'];
        expect(relayed.map((l) => l['method'])).toEqual([...asked, ...asked, ...asked, asked[0]]);
        await client.close();
      }, 90_000);
    }

    it("relays the upstream's messages outside a call to the GET stream open at the other instance", async () => {
      const client = await answeringClient('http', {});
      const logged: string[] = [];
      client.setNotificationHandler('notifications/message', (n) => {
        logged.push(JSON.stringify(n.params));
      });
      // The GET stream is open at one instance; the call that starts the upstream's logging reaches the other, whose
      // upstream session then logs every 5 s outside any call (the first message comes on the call's own stream).
      await client.callTool({ name: 'toggle-simulated-logging', arguments: {} }, { timeout: 15_000 });
      const getAt = log.filter((e) => e.method === 'GET' && e.path === '/http/mcp').at(-1)!.instance;
      const callAt = log.filter((e) => e.method === 'POST' && e.path === '/http/mcp').at(-1)!.instance;
      expect(callAt).not.toBe(getAt);
      const deadline = Date.now() + 15_000;
      while (logged.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(logged.length).toBeGreaterThanOrEqual(2);
      await client.callTool({ name: 'toggle-simulated-logging', arguments: {} }, { timeout: 15_000 });
      await client.close();
    }, 60_000);

    it('relays answers sealed: nothing of them crosses the store in clear, a large one stored sealed', async () => {
      // Listening on the store directly (not through the cut-able relay), as anyone with access to it could.
      const heard: string[] = [];
      let stop: () => Promise<unknown>;
      if (backend === 'redis') {
        const { createClient } = await import('@redis/client');
        const subscriber = createClient({ url: 'redis://127.0.0.1:6379' });
        await subscriber.connect();
        await subscriber.subscribe(`${database}:v2:broadcast:mcp_answers`, (message) => heard.push(message));
        stop = () => subscriber.close();
      } else {
        const pg = await import('pg');
        const listener = new pg.default.Client({ connectionString: `postgres://postgres@127.0.0.1:5432/${database}` });
        await listener.connect();
        listener.on('notification', (n) => heard.push(n.payload ?? ''));
        await listener.query('LISTEN gatehouse_oidc_broadcast_mcp_answers');
        stop = () => listener.end();
      }
      try {
        const client = await answeringClient('http', { sampling: {} });
        const secret = `secret-${randomBytes(8).toString('hex')}`;
        client.setRequestHandler('sampling/createMessage', async (request) => {
          const large = JSON.stringify(request.params.messages).includes('large');
          const answer = large ? `${secret} ${'L'.repeat(12_000)}` : secret;
          return { model: 'test-model', role: 'assistant', content: { type: 'text', text: answer } };
        });
        for (const prompt of ['small', 'large']) {
          const sampled = await client.callTool(
            { name: 'trigger-sampling-request', arguments: { prompt } },
            { timeout: 15_000 },
          );
          expect(text(sampled.content)).toContain(secret);
        }
        // Each answer and each confirmation crossed the store, as JWE compact values that name neither.
        const deadline = Date.now() + 5000;
        while (heard.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        expect(heard.length).toBeGreaterThanOrEqual(4);
        for (const value of heard) {
          expect(value.split('.')).toHaveLength(5);
          expect(value).not.toContain(secret);
          expect(value).not.toContain(sessionOf(client));
        }
        if (backend === 'postgres') {
          // Beyond NOTIFY's 8000 bytes: the answer waits in the store, sealed, and the notification names its key.
          expect(Math.max(...heard.map((v) => v.length))).toBeLessThan(8000);
          const dump = await shared.dump();
          expect(dump).toContain('GatehouseBroadcast');
          expect(dump).not.toContain(secret);
        }
        await client.close();
      } finally {
        await stop();
      }
    }, 60_000);

    it('relays an answer only for the session owner, answers 202 once taken, and 400 for a request nobody sent', async () => {
      await connect('http');
      await connect('http', 'mallory', MALLORY);
      const admin = tokens['admin:http']!;
      const mallory = tokens['mallory:http']!;
      const initialize = {
        ...INITIALIZE,
        params: { ...INITIALIZE.params, capabilities: { sampling: {} } },
      };
      const id = (await mcp(direct(0, 'http'), admin, initialize)).sessionId!;
      await mcp(direct(0, 'http'), admin, { jsonrpc: '2.0', method: 'notifications/initialized' }, id);
      // The call on instance 0: its stream carries the upstream's sampling request, then (once answered) the result.
      const call = await samplingCall(admin, id, 7, 'raw');
      const reader = call.body!.pipeThrough(new TextDecoderStream()).getReader();
      let stream = '';
      const next = async (pattern: RegExp) => {
        while (!pattern.test(stream)) {
          const { done, value } = await reader.read();
          if (done) throw new Error(`the stream ended without ${pattern}:\n${stream}`);
          stream += value;
        }
        return stream
          .split('\n')
          .filter((l) => l.startsWith('data:') && pattern.test(l))
          .map((l) => JSON.parse(l.slice(5)));
      };
      const [asked] = await next(/sampling\/createMessage/);
      const answer = {
        jsonrpc: '2.0',
        id: asked.id,
        result: { model: 'raw-model', role: 'assistant', content: { type: 'text', text: 'answered on instance 1' } },
      };
      // Another user's token: the same 404 as takeover gives, and the pending request is not touched.
      const stolen = await mcp(direct(1, 'http'), mallory, answer, id);
      expect(stolen.status).toBe(404);
      // An id nobody asked: a clear error within the bounded wait, never a hang.
      const started = Date.now();
      const unknown = await mcp(direct(1, 'http'), admin, { ...answer, id: 'nobody-asked' }, id);
      expect(unknown.status).toBe(400);
      expect((unknown.messages[0]!['error'] as { message: string }).message).toContain(
        'no gateway instance awaits the answer to request "nobody-asked"',
      );
      expect(Date.now() - started).toBeLessThan(5000);
      const notTaken = await logLines(
        (l) => l['msg'] === 'mcp answer not taken by any instance' && l['session'] === id,
        1,
        [instances[1]!],
      );
      expect(notTaken.map((l) => l['ids'])).toEqual([['nobody-asked']]);
      // Read whole before relaying, a body is still held to the transport's bound.
      const huge = { ...answer, result: { ...answer.result, padding: 'p'.repeat(5 * 1024 * 1024) } };
      expect((await mcp(direct(1, 'http'), admin, huge, id)).status).toBe(413);
      // The owner's answer on instance 1: 202 once instance 0 took it, and the call there completes with it.
      const relayed = await mcp(direct(1, 'http'), admin, answer, id);
      expect(relayed.status).toBe(202);
      const [result] = await next(/"id":7/);
      expect(JSON.stringify(result)).toContain('answered on instance 1');
      // Answered, the request is forgotten where it was asked: the same answer again is for nobody.
      const again = await mcp(direct(1, 'http'), admin, answer, id);
      expect(again.status).toBe(400);
      expect(JSON.stringify(again.messages)).toContain(`no gateway instance awaits the answer to request ${asked.id}`);
      // Instance 1 only relayed: it opened no upstream session of its own for an answer.
      expect(instances[1]!.logs().some((l) => l['msg'] === 'mcp session taken over' && l['session'] === id)).toBe(
        false,
      );
      await reader.cancel();
    }, 60_000);

    it(`remembers at most ${ASKED_LIMIT} unanswered requests of one session: past that, the oldest is forgotten`, async () => {
      await connect('http');
      const admin = tokens['admin:http']!;
      const initialize = { ...INITIALIZE, params: { ...INITIALIZE.params, capabilities: { sampling: {} } } };
      const id = (await mcp(direct(0, 'http'), admin, initialize)).sessionId!;
      await mcp(direct(0, 'http'), admin, { jsonrpc: '2.0', method: 'notifications/initialized' }, id);
      // One more call than the bound on instance 0, each waiting on its sampling request, none answered. Every
      // stream is read; anything but a sampling request (an error answering a call) is kept to say why one is missing.
      const asked: Array<string | number> = [];
      const other: string[] = [];
      const readers: Array<ReadableStreamDefaultReader<string>> = [];
      const reading: Array<Promise<void>> = [];
      const read = async (reader: ReadableStreamDefaultReader<string>) => {
        let buffered = '';
        for (;;) {
          const { done, value } = await reader.read().catch(() => ({ done: true, value: undefined }));
          if (done) return;
          buffered += value;
          const lines = buffered.split('\n');
          buffered = lines.pop()!;
          for (const line of lines.filter((l) => l.startsWith('data:'))) {
            if (line.includes('sampling/createMessage')) asked.push(JSON.parse(line.slice(5)).id);
            else other.push(line.slice(0, 300));
          }
        }
      };
      const call = (i: number) => samplingCall(admin, id, 100 + i, `bound-${i}`);
      // One call at a time, each asked before the next: the gateway puts the upstream's requests on the stream of the
      // session's latest call, so each lands on its own. All within the upstream's 60 s request timeout, which would
      // cancel (and so forget) the first ones.
      const deadline = Date.now() + 30_000;
      for (let sent = 1; sent <= ASKED_LIMIT + 1; sent++) {
        const reader = (await call(sent - 1)).body!.pipeThrough(new TextDecoderStream()).getReader();
        readers.push(reader);
        reading.push(read(reader));
        while (asked.length < sent && other.length === 0 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 5));
        }
        expect(other, `asked ${asked.length} of ${sent}`).toEqual([]);
      }
      expect(asked).toHaveLength(ASKED_LIMIT + 1);
      // The upstream numbers its requests in order (streams may interleave them): the lowest is the one forgotten.
      asked.sort((a, b) => Number(a) - Number(b));
      const [oldest, newest] = [asked[0]!, asked.at(-1)!];
      const answer = (requestId: string | number) => ({
        jsonrpc: '2.0',
        id: requestId,
        result: { model: 'raw-model', role: 'assistant', content: { type: 'text', text: 'bounded' } },
      });
      const forgotten = await mcp(direct(1, 'http'), admin, answer(oldest), id);
      expect(forgotten.status).toBe(400);
      expect(JSON.stringify(forgotten.messages)).toContain(
        `no gateway instance awaits the answer to request ${oldest}`,
      );
      expect((await mcp(direct(1, 'http'), admin, answer(newest), id)).status).toBe(202);
      expect((await mcp(direct(1, 'http'), admin, answer(asked[1]!), id)).status).toBe(202);
      // Ending the session ends its calls still waiting upstream.
      expect((await mcp(direct(0, 'http'), admin, undefined, id, 'DELETE')).status).toBe(200);
      for (const reader of readers) await reader.cancel().catch(() => {});
      await Promise.all(reading);
    }, 90_000);

    it('ends a session deleted through one instance on the other too', async () => {
      await connect('http');
      const token = tokens['admin:http']!;
      const opened = await mcp(direct(0, 'http'), token, INITIALIZE);
      expect(opened.status).toBe(200);
      const id = opened.sessionId!;
      expect(
        (await mcp(direct(0, 'http'), token, { jsonrpc: '2.0', method: 'notifications/initialized' }, id)).status,
      ).toBe(202);
      // Instance 1 takes it over; both hold it now.
      for (const n of [1, 0]) {
        const listed = await mcp(direct(n, 'http'), token, LIST, id);
        expect(listed.status).toBe(200);
        expect(listed.messages.find((m) => m['id'] === 2)?.['result'], JSON.stringify(listed.messages)).toBeTruthy();
      }
      expect((await mcp(direct(1, 'http'), token, undefined, id, 'DELETE')).status).toBe(200);
      for (const n of [0, 1]) expect((await mcp(direct(n, 'http'), token, LIST, id)).status).toBe(404);
    }, 60_000);

    it('keeps session records sealed at rest: neither the session id nor what the client sent is in the store', async () => {
      await connect('http');
      const token = tokens['admin:http']!;
      const opened = await mcp(direct(0, 'http'), token, INITIALIZE);
      const id = opened.sessionId!;
      expect((await mcp(direct(1, 'http'), token, LIST, id)).status).toBe(200);
      const dump = await shared.dump();
      expect(dump).toContain('GatewayMcpSession'); // the record is there, sealed
      expect(dump).not.toContain(id);
      expect(dump).not.toContain('cluster-raw-client');
      expect(dump).not.toContain(token.split('.')[2]!);
    }, 60_000);

    it('does not let another user take over a session, on either instance', async () => {
      await connect('stdio');
      await connect('stdio', 'mallory', MALLORY);
      const admin = tokens['admin:stdio']!;
      const mallory = tokens['mallory:stdio']!;
      const opened = await mcp(direct(0, 'stdio'), admin, INITIALIZE);
      const id = opened.sessionId!;
      expect(id).toBeTruthy();
      await mcp(direct(0, 'stdio'), admin, { jsonrpc: '2.0', method: 'notifications/initialized' }, id);
      for (const n of [1, 0]) {
        const stolen = await mcp(direct(n, 'stdio'), mallory, LIST, id);
        expect(stolen.status).toBe(404);
        expect(JSON.stringify(stolen.messages)).toContain('Session not found');
      }
      // The same request with the owner's token is answered on the instance that refused mallory's.
      const owner = await mcp(direct(1, 'stdio'), admin, LIST, id);
      expect(owner.status).toBe(200);
      expect(owner.messages.find((m) => m['id'] === 2)?.['result'], JSON.stringify(owner.messages)).toBeTruthy();
    }, 60_000);

    it('answers 503 with Retry-After at once while the store is down, and recovers', async () => {
      await connect('http');
      const token = tokens['admin:http']!;
      const opened = await mcp(direct(0, 'http'), token, INITIALIZE);
      const id = opened.sessionId!;
      await mcp(direct(0, 'http'), token, { jsonrpc: '2.0', method: 'notifications/initialized' }, id);
      await relay.cut();
      try {
        for (const n of [0, 1]) {
          const started = Date.now();
          const answer = await mcp(direct(n, 'http'), token, LIST, id);
          expect(answer.status).toBe(503);
          expect(Number(answer.headers.get('retry-after'))).toBeGreaterThan(0);
          expect(JSON.stringify(answer.messages)).toContain('session store');
          expect(Date.now() - started).toBeLessThan(3000);
        }
        const fresh = await mcp(direct(1, 'http'), token, INITIALIZE);
        expect(fresh.status).toBe(503);
      } finally {
        await relay.restore();
      }
      // Back: the session goes on, on the instance that did not open it too.
      const deadline = Date.now() + 20_000;
      let status = 0;
      while (Date.now() < deadline && status !== 200) {
        status = (await mcp(direct(1, 'http'), token, LIST, id)).status;
        if (status !== 200) await new Promise((r) => setTimeout(r, 250));
      }
      expect(status).toBe(200);
    }, 60_000);

    it('relays answers again once the store is back after an outage', async () => {
      // The test before cut the store and gave it back: the subscriptions (a Redis connection of their own, a
      // PostgreSQL LISTEN connection) were lost with it and must have been opened again.
      const client = await answeringClient('http', { sampling: {} });
      client.setRequestHandler('sampling/createMessage', async () => ({
        model: 'test-model',
        role: 'assistant',
        content: { type: 'text', text: `${SAMPLED_ANSWER} after the outage` },
      }));
      const sampled = await client.callTool(
        { name: 'trigger-sampling-request', arguments: { prompt: 'again' } },
        { timeout: 15_000 },
      );
      expect(text(sampled.content)).toContain(`${SAMPLED_ANSWER} after the outage`);
      const relayed = await logLines((l) => l['msg'] === 'mcp answer relayed' && l['session'] === sessionOf(client));
      expect(relayed).toHaveLength(1);
      await client.close();
    }, 60_000);

    it('goes on with a session on the other instance when the one that opened it stops', async () => {
      await connect('stdio');
      const token = tokens['admin:stdio']!;
      const id = (await mcp(direct(0, 'stdio'), token, INITIALIZE)).sessionId!;
      await mcp(direct(0, 'stdio'), token, { jsonrpc: '2.0', method: 'notifications/initialized' }, id);
      expect((await mcp(direct(0, 'stdio'), token, LIST, id)).status).toBe(200);
      await instances[0]!.stop();
      const call = {
        jsonrpc: '2.0',
        id: 3,
        method: 'tools/call',
        params: { name: 'echo', arguments: { message: 'still here' } },
      };
      const answer = await mcp(direct(1, 'stdio'), token, call, id);
      expect(answer.status).toBe(200);
      expect(JSON.stringify(answer.messages.find((m) => m['id'] === 3))).toContain('still here');
    }, 60_000);
  },
);

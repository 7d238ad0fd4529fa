import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Cluster, startProxy } from '../deployment/cluster.js';
import {
  cleanup,
  documentedGateway,
  EVERYTHING,
  EXTERNAL_AS_PASSWORD,
  externalAuthorizationServer,
  type FreshStore,
  freePort,
  freshStore,
  type GatewayProcess,
  headlessOAuth,
  RAW_INITIALIZE,
  RAW_INITIALIZED,
  rawMcp,
  sdkClient,
  startGatewayProcess,
  stopProxy,
  tempDir,
} from './helpers.js';

const HEADING = '#### With an external authorization server';
const UNREADABLE = 'mcp session record sealed with an unknown at-rest key';

const key = () => randomBytes(32).toString('base64url');
const call = (id: number, message: string) => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name: 'echo', arguments: { message } },
});
/** The log lines of `instance` about session `id` with message `msg`, once there are at least `count` (they come through a pipe). */
async function linesOf(instance: GatewayProcess, msg: string, id: string, count = 1) {
  const find = () => instance.logs().filter((l) => l['msg'] === msg && l['session'] === id);
  for (const deadline = Date.now() + 5000; find().length < count && Date.now() < deadline; ) {
    await new Promise((r) => setTimeout(r, 25));
  }
  return find();
}
const resultOf = (messages: Array<Record<string, unknown>>, id: number) =>
  JSON.stringify(messages.find((m) => m['id'] === id)?.['result'] ?? null);

describe.each(['redis', 'postgres'] as const)('gatehouse gateway --issuer: two instances on %s', (backend) => {
  const name = `gh_gwi_${randomBytes(5).toString('hex')}`;
  let store: FreshStore | undefined;
  let proxy: Awaited<ReturnType<typeof startProxy>>;
  const log: Cluster['log'] = [];
  /** 0 and 1 behind the proxy with the key K; 2 (not behind it) with `NEW,K`: a rotation that reached it only. */
  const instances: Array<GatewayProcess & { direct: string }> = [];
  let token: string;
  const direct = (n: number) => `${instances[n]!.direct}/everything/mcp`;

  beforeAll(async () => {
    store = await freshStore(backend, name);
    proxy = await startProxy(() => instances.slice(0, 2).map((i) => i.direct), log);
    const publicMcp = `${proxy.url}/everything/mcp`;
    const { issuer } = await externalAuthorizationServer(publicMcp);
    const dir = await tempDir();
    const config = join(dir, 'gateway.json');
    await writeFile(
      config,
      JSON.stringify({ mcpServers: { everything: { command: process.execPath, args: [EVERYTHING] } } }),
    );
    const storeKey = key();
    const keys = [storeKey, storeKey, `${key()},${storeKey}`];
    for (const n of [0, 1, 2]) {
      const port = await freePort();
      // The command of docs/gateway.md for --issuer, with local values for the addresses.
      const { args, exported } = await documentedGateway(HEADING, {
        '--config': config,
        '--public-url': proxy.url,
        '--issuer': issuer,
        '--store': store.url,
        '--port': String(port),
      });
      expect(exported).toEqual(['GATEHOUSE_STORE_KEY']);
      const started = await startGatewayProcess(args, {
        dataDir: join(dir, `instance-${n}`),
        env: { GATEHOUSE_STORE_KEY: keys[n]! },
      });
      expect(started.stderr()).toContain(`authorization server: ${issuer}`);
      expect(started.stderr()).not.toContain('(embedded)');
      instances.push({ ...started, direct: `http://127.0.0.1:${port}` });
    }
    const oauth = headlessOAuth(publicMcp, 'admin', EXTERNAL_AS_PASSWORD);
    const client = await sdkClient(publicMcp, oauth);
    await client.close();
    token = (await oauth.tokens())!.access_token;
  }, 120_000);

  afterAll(async () => {
    await cleanup();
    await stopProxy(proxy);
    await store?.drop();
  });

  it('answers tools/call on one instance in a session initialized on the other', async () => {
    for (const instance of instances) {
      const listening = instance.logs().find((l) => l['msg'] === 'gateway listening');
      expect(listening?.['sharedSessions']).toBe(true);
    }
    const opened = await rawMcp(direct(0), token, RAW_INITIALIZE);
    expect(opened.status).toBe(200);
    const id = opened.sessionId!;
    expect(id).toBeTruthy();
    expect((await rawMcp(direct(0), token, RAW_INITIALIZED, id)).status).toBe(202);

    const answer = await rawMcp(direct(1), token, call(3, 'from the other instance'), id);
    expect(answer.status).toBe(200);
    expect(answer.headers.get('mcp-session-id')).toBe(id);
    expect(resultOf(answer.messages, 3)).toContain('Echo: from the other instance');
    expect(await linesOf(instances[1]!, 'mcp session taken over', id)).toHaveLength(1);
    // The record is in the gateways' store, sealed: neither the session id nor what the client sent is in clear.
    const dump = await store!.dump();
    expect(dump).toContain('GatewayMcpSession');
    expect(dump).not.toContain(id);
    expect(dump).not.toContain('cluster-raw-client');
    expect(dump).not.toContain(token.split('.')[2]!);
    // And back: the instance that opened it still answers, in the same session.
    const back = await rawMcp(direct(0), token, call(4, 'and back'), id);
    expect(resultOf(back.messages, 4)).toContain('Echo: and back');
    // An instance with a newer key first still opens records sealed with the key it keeps second.
    const rotated = await rawMcp(direct(2), token, call(5, 'rotated'), id);
    expect(resultOf(rotated.messages, 5)).toContain('Echo: rotated');
  }, 60_000);

  it('serves the SDK client with its requests alternating between the instances', async () => {
    const publicMcp = `${proxy.url}/everything/mcp`;
    const client = await sdkClient(publicMcp, headlessOAuth(publicMcp, 'admin', EXTERNAL_AS_PASSWORD));
    const session = (client.transport as StreamableHTTPClientTransport).sessionId!;
    const first = log.length;
    for (let i = 0; i < 6; i++) {
      const echoed = await client.callTool({ name: 'echo', arguments: { message: `hello ${i}` } });
      expect(JSON.stringify(echoed.content)).toContain(`Echo: hello ${i}`);
    }
    const posts = log.slice(first).filter((entry) => entry.method === 'POST');
    expect(new Set(posts.map((p) => p.instance))).toEqual(new Set([0, 1]));
    for (const instance of instances.slice(0, 2)) {
      const calls = instance.logs().filter((l) => l['session'] === session && l['tool'] === 'echo');
      expect(calls.length).toBeGreaterThan(0);
    }
    await client.close();
  }, 60_000);

  it('answers 500 naming the cause, and logs one line, for a record sealed with a key the instance lacks', async () => {
    // Instance 2 seals with its newer key, which instance 1 does not have.
    const opened = await rawMcp(direct(2), token, RAW_INITIALIZE);
    expect(opened.status).toBe(200);
    const id = opened.sessionId!;
    expect((await rawMcp(direct(2), token, RAW_INITIALIZED, id)).status).toBe(202);

    for (const attempt of [1, 2]) {
      const refused = await rawMcp(direct(1), token, call(6, 'never runs'), id);
      expect(refused.status).toBe(500);
      const error = refused.messages[0]?.['error'] as { code: number; message: string };
      expect(error.code).toBe(-32000);
      expect(error.message).toContain('sealed with an at-rest key this instance does not have');
      expect(error.message).toContain('GATEHOUSE_STORE_KEY');
      // No new session in its place, and one log line per such request, naming the session.
      expect(refused.headers.get('mcp-session-id')).toBeNull();
      const lines = await linesOf(instances[1]!, UNREADABLE, id, attempt);
      expect(lines).toHaveLength(attempt);
      expect(lines.at(-1)!['level']).toBe(50);
      expect(lines.at(-1)!['err']).toMatch(/could not be decrypted with any configured key \(it names key \S+\)/);
    }

    // The instance stays up and serves everything else; the session goes on where its record opens.
    expect(instances[1]!.child.exitCode).toBeNull();
    const fresh = await rawMcp(direct(1), token, RAW_INITIALIZE);
    expect(fresh.status).toBe(200);
    const still = await rawMcp(direct(2), token, call(7, 'still here'), id);
    expect(resultOf(still.messages, 7)).toContain('Echo: still here');
    // By now every line of the refused requests is in: two, and nothing else about the session on that instance.
    expect(instances[1]!.logs().filter((l) => l['session'] === id && l['msg'] !== UNREADABLE)).toEqual([]);
    expect(await linesOf(instances[1]!, UNREADABLE, id)).toHaveLength(2);
  }, 60_000);
});

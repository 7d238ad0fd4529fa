// Benchmark: what sessions shared across gateway instances cost. Two `gatehouse gateway` processes on one Redis
// store (session records on) and one on the default SQLite store (no records), each in front of the stdio
// server-everything (one process per user) and of server-everything in its streamable-HTTP mode. Per upstream:
//
//   single        a `tools/call` in an open session, one instance, no records (the baseline)
//   cluster       the same on a cluster instance that holds the session (one record lookup per request)
//   takeover      the first `tools/call` of a session on the instance that did not open it: record lookup, a new
//                 upstream session by replaying `initialize` + `notifications/initialized`, then the call
//                 (stdio: the user's process on that instance is already running)
//
// Subjects rotate round by round; median and spread (p10–p90) of the latency, the answering gateway's CPU per request.
//
//   npm run build && node bench/gateway-cluster.mjs        (needs Redis on 127.0.0.1:6379)
//
// Bounded: ROUNDS × CALLS requests per normal subject, ROUNDS × TAKEOVERS per takeover subject, on 127.0.0.1.
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { children, cpuSeconds, freePort, start, waitFor } from './processes.mjs';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CALLS = Number(process.env.BENCH_CALLS ?? 50);
const TAKEOVERS = Number(process.env.BENCH_TAKEOVERS ?? 10);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const EVERYTHING = join(ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');
const PASSWORD = 'a long password for the cluster bench';

async function startGateway(config, port, dataDir, env) {
  await mkdir(dataDir, { recursive: true });
  const path = join(dataDir, 'gateway.json');
  await writeFile(path, JSON.stringify(config));
  const gateway = start(
    [join(ROOT, 'bin/gatehouse.js'), 'gateway', '--config', path, '--port', String(port), '--log-level', 'warn'],
    { GATEHOUSE_DATA_DIR: join(dataDir, 'data'), GATEHOUSE_SUPERUSER_PASSWORD: PASSWORD, ...env },
    { withoutGatehouseEnv: true, stdin: 'ignore' },
  );
  await waitFor(gateway.output, /log in: gatehouse login/);
  return { pid: gateway.child.pid, url: `http://127.0.0.1:${port}` };
}

/** One MCP request; resolves to the JSON-RPC messages and the session id. */
async function mcp(url, token, body, sessionId) {
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      accept: 'application/json, text/event-stream',
      'content-type': 'application/json',
      'mcp-protocol-version': '2025-06-18',
      ...(sessionId && { 'mcp-session-id': sessionId }),
    },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (response.status >= 300) throw new Error(`${url}: HTTP ${response.status} ${text.slice(0, 200)}`);
  return { sessionId: response.headers.get('mcp-session-id'), text };
}

const INITIALIZE = {
  jsonrpc: '2.0',
  id: 0,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'bench', version: '1' } },
};
let nextId = 1;
const call = () => ({
  jsonrpc: '2.0',
  id: nextId++,
  method: 'tools/call',
  params: { name: 'echo', arguments: { message: 'bench' } },
});

async function openSession(url, token) {
  const { sessionId } = await mcp(url, token, INITIALIZE);
  await mcp(url, token, { jsonrpc: '2.0', method: 'notifications/initialized' }, sessionId);
  return sessionId;
}

async function closeSession(url, token, sessionId) {
  await fetch(url, { method: 'DELETE', headers: { authorization: `Bearer ${token}`, 'mcp-session-id': sessionId } });
}

async function timedCall(url, token, sessionId) {
  const t0 = performance.now();
  const { text } = await mcp(url, token, call(), sessionId);
  const ms = performance.now() - t0;
  if (!text.includes('Echo: bench')) throw new Error(`unexpected answer: ${text.slice(0, 200)}`);
  return ms;
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

async function main() {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-bench-cluster-'));
  const prefix = `gh-bench-cluster-${randomBytes(4).toString('hex')}:`;
  const httpPort = await freePort();
  const everything = start(
    [EVERYTHING, 'streamableHttp'],
    { PORT: String(httpPort) },
    { withoutGatehouseEnv: true, stdin: 'ignore' },
  );
  await waitFor(everything.output, /listening on port/i);
  const [portA, portB, portS] = [await freePort(), await freePort(), await freePort()];
  const mcpServers = {
    stdio: { command: process.execPath, args: [EVERYTHING] },
    http: { url: `http://127.0.0.1:${httpPort}/mcp` },
  };
  const storeKey = randomBytes(32).toString('base64url');
  const publicUrl = `http://127.0.0.1:${portA}`;
  const clusterConfig = { publicUrl, superuser: 'admin', store: `redis://127.0.0.1:6379?prefix=${prefix}`, mcpServers };
  const a = await startGateway(clusterConfig, portA, join(dir, 'a'), { GATEHOUSE_STORE_KEY: storeKey });
  const b = await startGateway(clusterConfig, portB, join(dir, 'b'), { GATEHOUSE_STORE_KEY: storeKey });
  const single = await startGateway({ superuser: 'admin', mcpServers }, portS, join(dir, 's'), {});

  const { OAuth } = await import('../dist/client/index.js');
  const tokenFor = async (mcpUrl) => {
    const oauth = new OAuth({ tokenStorage: 'memory', mcpUrl, login: { username: 'admin', password: PASSWORD } });
    await oauth.wrapFetch()(mcpUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    return (await oauth.tokens()).access_token;
  };

  const subjects = [];
  for (const upstream of ['stdio', 'http']) {
    const path = `/${upstream}/mcp`;
    // Tokens are for the public (instance A) resource URL; instance B serves the same resource.
    const clusterToken = await tokenFor(`${publicUrl}${path}`);
    const singleToken = await tokenFor(`${single.url}${path}`);
    const singleSession = await openSession(`${single.url}${path}`, singleToken);
    const clusterSession = await openSession(`${a.url}${path}`, clusterToken);
    // Warm up: the user's stdio process on every instance, connections, JIT.
    const warm = await openSession(`${a.url}${path}`, clusterToken);
    await timedCall(`${b.url}${path}`, clusterToken, warm);
    for (let i = 0; i < 20; i++) {
      await timedCall(`${single.url}${path}`, singleToken, singleSession);
      await timedCall(`${a.url}${path}`, clusterToken, clusterSession);
    }
    subjects.push(
      {
        name: `${upstream}: single, no records`,
        pid: single.pid,
        requests: CALLS,
        sample: () => timedCall(`${single.url}${path}`, singleToken, singleSession),
      },
      {
        name: `${upstream}: cluster, same instance`,
        pid: a.pid,
        requests: CALLS,
        sample: () => timedCall(`${a.url}${path}`, clusterToken, clusterSession),
      },
      {
        name: `${upstream}: cluster, takeover`,
        pid: b.pid,
        requests: TAKEOVERS,
        prepare: () => openSession(`${a.url}${path}`, clusterToken),
        sample: (session) => timedCall(`${b.url}${path}`, clusterToken, session),
        finish: (session) => closeSession(`${a.url}${path}`, clusterToken, session),
      },
    );
  }

  const results = new Map(subjects.map((s) => [s.name, { ms: [], cpu: 0, n: 0 }]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = subjects.map((_, i) => subjects[(i + round) % subjects.length]);
    for (const subject of order) {
      const result = results.get(subject.name);
      for (let i = 0; i < subject.requests; i++) {
        const prepared = subject.prepare ? await subject.prepare() : undefined;
        const cpu0 = cpuSeconds(subject.pid);
        result.ms.push(await subject.sample(prepared));
        result.cpu += cpuSeconds(subject.pid) - cpu0;
        result.n++;
        if (subject.finish) await subject.finish(prepared);
      }
    }
  }

  console.log(
    `gateway cluster bench: ${ROUNDS} rounds × ${CALLS} calls (${TAKEOVERS} takeovers), load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  console.log('| Subject | p50 ms | p10–p90 ms | gateway CPU ms/request |');
  console.log('| --- | --- | --- | --- |');
  for (const [name, r] of results) {
    const sorted = [...r.ms].sort((x, y) => x - y);
    console.log(
      `| ${name} | ${quantile(sorted, 0.5).toFixed(2)} | ${quantile(sorted, 0.1).toFixed(2)}–${quantile(sorted, 0.9).toFixed(2)} | ${((r.cpu / r.n) * 1000).toFixed(2)} |`,
    );
  }

  for (const child of children) child.kill('SIGTERM');
  const { createClient } = await import('@redis/client');
  const redis = createClient({ url: 'redis://127.0.0.1:6379' });
  await redis.connect();
  for await (const keys of redis.scanIterator({ MATCH: `${prefix}*`, COUNT: 500 }))
    if (keys.length) await redis.del(keys);
  await redis.close();
  await rm(dir, { recursive: true, force: true });
}

main().catch((error) => {
  console.error(error);
  for (const child of children) child.kill('SIGKILL');
  process.exit(1);
});

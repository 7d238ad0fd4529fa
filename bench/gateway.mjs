// Benchmark: added latency per `tools/call` of `gatehouse gateway` (authentication on) in front of the stdio
// server-everything, against calling it directly over stdio, a bare stdio-to-HTTP forwarder written here (the
// floor), supergateway and mcp-proxy from npm — every subject driven by the SDK v2 client, subjects interleaved
// round by round, the bridge process's CPU per call beside the latency. Then 200 concurrent sessions through the
// gateway (errors counted) and the memory of idle stdio sessions (one process per session).
//
//   npm run build && node bench/gateway.mjs
//
// Bounded: ROUNDS × CALLS calls per subject, on 127.0.0.1.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 8);
const CALLS = Number(process.env.BENCH_CALLS ?? 100);
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 200);
const IDLE_SESSIONS = Number(process.env.BENCH_IDLE_SESSIONS ?? 5);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const EVERYTHING = join(ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');
const BIN = (name, file) => join(ROOT, 'node_modules', name, file);
const children = [];

/** Resolves once something accepts connections on the port. */
async function portOpen(port, ms = 60_000) {
  const { connect } = await import('node:net');
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.end();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function freePort() {
  const server = createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

function start(args, env = {}) {
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  child.stdout.on('data', (d) => {
    output += d;
  });
  child.stderr.on('data', (d) => {
    output += d;
  });
  return { child, output: () => output };
}

async function waitFor(read, pattern, ms = 60_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const m = pattern.exec(read());
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}:\n${read().slice(-1500)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** CPU seconds (user + system) of a process, from /proc. */
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function rssMiB(pid) {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return line ? Number(line[1]) / 1024 : 0;
}

function childPids(pid) {
  const found = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const ppid = Number(readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
      if (ppid === pid) found.push(Number(entry), ...childPids(Number(entry)));
    } catch {}
  }
  return found;
}

/** The floor: one stdio process behind a plain HTTP endpoint that writes each message and answers with the reply. */
const FORWARDER = `
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';
const child = spawn(process.execPath, [process.env.EVERYTHING], { stdio: ['pipe', 'pipe', 'inherit'] });
const waiting = new Map();
createInterface({ input: child.stdout }).on('line', (line) => {
  const message = JSON.parse(line);
  const done = waiting.get(message.id);
  if (done) { waiting.delete(message.id); done(line); }
});
createServer((req, res) => {
  if (req.method === 'DELETE' || req.method === 'GET') { res.writeHead(405).end(); return; }
  let body = '';
  req.on('data', (d) => { body += d; });
  req.on('end', () => {
    const message = JSON.parse(body);
    if (message.id === undefined) { child.stdin.write(body + '\\n'); res.writeHead(202).end(); return; }
    waiting.set(message.id, (line) => res.writeHead(200, { 'content-type': 'application/json' }).end(line));
    child.stdin.write(body + '\\n');
  });
}).listen(Number(process.env.PORT), '127.0.0.1', () => console.log('forwarder listening'));
`;

/** `gatehouse gateway` in front of server-everything, logged in once (headlessly) as the generated admin. */
async function startGatewayProcess(extraArgs) {
  const dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-bench-gateway-'));
  const args = ['gateway', '--port', '0', '--store', 'memory', '--log-level', 'warn', ...extraArgs];
  const gateway = start([join(ROOT, 'bin/gatehouse.js'), ...args, '--', process.execPath, EVERYTHING], {
    GATEHOUSE_DATA_DIR: dataDir,
  });
  const [, url] = await waitFor(gateway.output, /MCP server mcp \(stdio\): (\S+)/);
  const [, password] = await waitFor(gateway.output, /with the password (\S+)/);
  const { OAuth } = await import('../dist/client/index.js');
  const fetchWithToken = new OAuth({ mcpUrl: url, login: { username: 'admin', password } }).wrapFetch();
  return { child: gateway.child, url, fetchWithToken };
}

async function connectHttp(url, fetchImpl) {
  const client = new Client({ name: 'bench', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), fetchImpl ? { fetch: fetchImpl } : {}));
  return client;
}

async function subjects() {
  const list = [];
  // Direct stdio.
  const direct = new Client({ name: 'bench', version: '1.0.0' });
  const stdio = new StdioClientTransport({ command: process.execPath, args: [EVERYTHING], stderr: 'ignore' });
  await direct.connect(stdio);
  list.push({ name: 'direct stdio', client: direct, pid: undefined });

  // The bare forwarder.
  const fport = await freePort();
  const forwarder = start(['--input-type=module', '-e', FORWARDER], { PORT: String(fport), EVERYTHING });
  await waitFor(forwarder.output, /forwarder listening/);
  list.push({
    name: 'bare forwarder',
    client: await connectHttp(`http://127.0.0.1:${fport}/mcp`),
    pid: forwarder.child.pid,
  });

  // supergateway and mcp-proxy from npm.
  const sport = await freePort();
  const supergateway = start([
    BIN('supergateway', 'dist/index.js'),
    '--stdio',
    `${process.execPath} ${EVERYTHING}`,
    '--outputTransport',
    'streamableHttp',
    '--stateful',
    '--port',
    String(sport),
    '--logLevel',
    'none',
  ]);
  await portOpen(sport);
  list.push({
    name: 'supergateway',
    client: await retry(() => connectHttp(`http://127.0.0.1:${sport}/mcp`)),
    pid: supergateway.child.pid,
  });
  const pport = await freePort();
  const proxy = start([
    BIN('mcp-proxy', 'dist/bin/mcp-proxy.mjs'),
    '--port',
    String(pport),
    '--host',
    '127.0.0.1',
    '--',
    process.execPath,
    EVERYTHING,
  ]);
  await portOpen(pport);
  list.push({
    name: 'mcp-proxy',
    client: await retry(() => connectHttp(`http://127.0.0.1:${pport}/mcp`)),
    pid: proxy.child.pid,
  });

  // The gateway, authentication on.
  const gateway = await startGatewayProcess([]);
  list.push({
    name: 'gatehouse gateway (auth on)',
    client: await connectHttp(gateway.url, gateway.fetchWithToken),
    pid: gateway.child.pid,
  });
  return { list, gateway };
}

/** Bounds one step, so that a bridge that stops answering fails the run instead of hanging it. */
function within(ms, promise, what) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms)),
  ]);
}

async function retry(fn, times = 40) {
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (error) {
      if (i >= times) throw error;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function latency() {
  const { list, gateway } = await subjects();
  for (const s of list) {
    for (let i = 0; i < 30; i++)
      await within(30_000, s.client.callTool({ name: 'echo', arguments: { message: 'warm' } }), s.name);
  }
  const perRound = new Map(list.map((s) => [s.name, { medians: [], cpu: [] }]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const s of list) {
      const times = [];
      const cpuBefore = s.pid ? cpuSeconds(s.pid) : 0;
      for (let i = 0; i < CALLS; i++) {
        const t0 = performance.now();
        await s.client.callTool({ name: 'echo', arguments: { message: `call ${i}` } });
        times.push(performance.now() - t0);
      }
      const entry = perRound.get(s.name);
      entry.medians.push(median(times));
      if (s.pid) entry.cpu.push(((cpuSeconds(s.pid) - cpuBefore) * 1000) / CALLS);
    }
  }
  const direct = median(perRound.get('direct stdio').medians);
  console.log(
    `\ntools/call echo, SDK v2 client, ${ROUNDS} rounds × ${CALLS} calls, subjects interleaved round by round`,
  );
  console.log('subject                        p50 ms  added ms  (min–max of round medians)  bridge CPU ms/call');
  for (const [name, { medians, cpu }] of perRound) {
    const m = median(medians);
    const added = name === 'direct stdio' ? '' : (m - direct).toFixed(2);
    const spread = `${Math.min(...medians).toFixed(2)}–${Math.max(...medians).toFixed(2)}`;
    const cpuText = cpu.length ? median(cpu).toFixed(3) : '—';
    console.log(
      `${name.padEnd(30)} ${m.toFixed(2).padStart(6)} ${added.padStart(9)}  ${spread.padStart(26)}  ${cpuText.padStart(18)}`,
    );
  }
  for (const s of list) await s.client.close().catch(() => {});
  return gateway;
}

async function concurrentSessions(gateway) {
  let errors = 0;
  const t0 = performance.now();
  const results = await Promise.allSettled(
    Array.from({ length: SESSIONS }, async (_, i) => {
      const client = await connectHttp(gateway.url, gateway.fetchWithToken);
      try {
        const result = await client.callTool({ name: 'echo', arguments: { message: `session ${i}` } });
        if (!JSON.stringify(result.content).includes(`session ${i}`)) throw new Error('wrong answer');
      } finally {
        await client.close();
      }
    }),
  );
  for (const r of results) if (r.status === 'rejected') errors++;
  const first = results.find((r) => r.status === 'rejected');
  console.log(
    `\n${SESSIONS} concurrent sessions through the gateway (one user, one shared process): ${errors} errors, ${(performance.now() - t0).toFixed(0)} ms${first ? ` (first: ${first.reason?.message})` : ''}`,
  );
}

async function idleMemory() {
  const gateway = await startGatewayProcess(['--isolation', 'session', '--max-processes', String(IDLE_SESSIONS + 1)]);
  const { url, fetchWithToken } = gateway;
  const warm = await connectHttp(url, fetchWithToken);
  await warm.callTool({ name: 'echo', arguments: { message: 'warm' } });
  await new Promise((r) => setTimeout(r, 1000));
  const gatewayBefore = rssMiB(gateway.child.pid);
  const childrenBefore = childPids(gateway.child.pid).reduce((sum, pid) => sum + rssMiB(pid), 0);
  const clients = [];
  for (let i = 0; i < IDLE_SESSIONS; i++) {
    const client = await connectHttp(url, fetchWithToken);
    await client.callTool({ name: 'echo', arguments: { message: 'x' } });
    clients.push(client);
  }
  await new Promise((r) => setTimeout(r, 2000));
  const gatewayAfter = rssMiB(gateway.child.pid);
  const childrenAfter = childPids(gateway.child.pid).reduce((sum, pid) => sum + rssMiB(pid), 0);
  const perSession = (gatewayAfter - gatewayBefore + childrenAfter - childrenBefore) / IDLE_SESSIONS;
  console.log(
    `\nidle stdio session (--isolation session, ${IDLE_SESSIONS} sessions): ${perSession.toFixed(1)} MiB each ` +
      `(server processes ${((childrenAfter - childrenBefore) / IDLE_SESSIONS).toFixed(1)} MiB, gateway ${((gatewayAfter - gatewayBefore) / IDLE_SESSIONS).toFixed(2)} MiB)`,
  );
  for (const client of clients) await client.close().catch(() => {});
  await warm.close().catch(() => {});
}

console.log(
  `node ${process.version}, ${availableParallelism()} CPUs, load ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`,
);
try {
  const gateway = await latency();
  await concurrentSessions(gateway);
  await idleMemory();
} finally {
  for (const child of children) child.kill('SIGKILL');
}
process.exit(0);

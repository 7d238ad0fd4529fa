// Benchmark: added latency per `tools/call` of `gatehouse gateway` (authentication on) in front of the stdio
// server-everything, against calling it directly over stdio, a bare stdio-to-HTTP forwarder written here (the
// floor), supergateway and mcp-proxy from npm; and in front of server-everything in its streamable-HTTP mode,
// against calling that directly. Every subject is driven by the SDK v2 client, subjects interleaved round by round
// (the order rotated by one each round), the bridge process's CPU per call beside the latency. Then 200 concurrent
// sessions through the gateway (errors counted) and the memory of idle stdio sessions (one process per session).
//
//   npm run build && node bench/gateway.mjs
//
// Bounded: ROUNDS × CALLS calls per subject, on 127.0.0.1. BENCH_SUBJECTS=stdio|http runs one group only.
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { children, cpuSeconds, freePort, start, waitFor } from './processes.mjs';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 8);
const CALLS = Number(process.env.BENCH_CALLS ?? 100);
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 200);
const IDLE_SESSIONS = Number(process.env.BENCH_IDLE_SESSIONS ?? 5);
const GROUPS = (process.env.BENCH_SUBJECTS ?? 'stdio,http').split(',');
/** The gateways' log level: `warn` leaves the audit trail out; `info` writes one audit line per call. */
const LOG_LEVEL = process.env.BENCH_LOG_LEVEL ?? 'warn';
const STDIO_GATEWAY = 'gatehouse gateway (auth on)';
const HTTP_DIRECT = 'direct HTTP (streamable)';
const HTTP_GATEWAY = 'gateway → HTTP upstream (auth on)';
const HTTP_FORWARDER_NAME = 'bare HTTP forwarder → HTTP upstream';
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const EVERYTHING = join(ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');
const BIN = (name, file) => join(ROOT, 'node_modules', name, file);
/** BENCH_PROFILE=DIR: the gateway processes write a --cpu-prof profile there (they are stopped with SIGTERM). */
const PROFILE_DIR = process.env.BENCH_PROFILE;
/**
 * BENCH_CLIENT_AUTH: how the bench's client presents its token to a gateway. `wrapFetch` (default): Gatehouse's
 * `OAuth.wrapFetch()`, what a Gatehouse client does (its token read per request counts in the latency, in this
 * process). `header`: the token obtained once and sent as a fixed `Authorization` header by the same fetch the other
 * subjects use, so the client side is the same for every subject and the difference is the gateway's alone. The
 * gateway verifies every call either way.
 */
const CLIENT_AUTH = process.env.BENCH_CLIENT_AUTH ?? 'wrapFetch';
if (!['wrapFetch', 'header'].includes(CLIENT_AUTH)) throw new Error('BENCH_CLIENT_AUTH is wrapFetch or header');
/** BENCH_BASE=DIR: another built checkout (e.g. the commit before a change); its gateway runs beside this one's. */
const BASE_DIR = process.env.BENCH_BASE;
const AT_BASE = ' @base';
const gatewayChildren = [];

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

/**
 * The floor of the HTTP group: a plain HTTP-to-HTTP forwarder (one `node:http` server, a keep-alive agent, the MCP
 * headers copied, the answer streamed back as it comes; no checks). What one more loopback hop costs by itself.
 */
const HTTP_FORWARDER = `
import { Agent, createServer, request } from 'node:http';
const upstream = new URL(process.env.UPSTREAM);
const agent = new Agent({ keepAlive: true });
const FORWARDED = ['accept', 'content-type', 'content-length', 'mcp-session-id', 'mcp-protocol-version', 'last-event-id'];
createServer((req, res) => {
  const headers = {};
  for (const name of FORWARDED) if (req.headers[name] !== undefined) headers[name] = req.headers[name];
  const out = request(upstream, { method: req.method, headers, agent }, (answer) => {
    res.writeHead(answer.statusCode, answer.headers);
    answer.pipe(res);
  });
  out.on('error', () => res.destroy());
  req.pipe(out);
}).listen(Number(process.env.PORT), '127.0.0.1', () => console.log('http forwarder listening'));
`;

/** `gatehouse gateway` in front of server-everything (or `upstreamArgs`), logged in once (headlessly) as the generated admin. */
async function startGatewayProcess(extraArgs, upstreamArgs = ['--', process.execPath, EVERYTHING], root = ROOT) {
  const dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-bench-gateway-'));
  const args = ['gateway', '--port', '0', '--store', 'memory', '--log-level', LOG_LEVEL, ...extraArgs];
  const profile = PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : [];
  const gateway = start([...profile, join(root, 'bin/gatehouse.js'), ...args, ...upstreamArgs], {
    GATEHOUSE_DATA_DIR: dataDir,
  });
  gatewayChildren.push(gateway.child);
  const [, url] = await waitFor(gateway.output, /MCP server mcp \((?:stdio|http)\): (\S+)/);
  const [, password] = await waitFor(gateway.output, /with the password (\S+)/);
  const { OAuth } = await import('../dist/client/index.js');
  const oauth = new OAuth({ mcpUrl: url, login: { username: 'admin', password } });
  let fetchWithToken = oauth.wrapFetch();
  if (CLIENT_AUTH === 'header') {
    await oauth.authorize();
    const authorization = `Bearer ${(await oauth.tokens()).access_token}`;
    fetchWithToken = (input, init) => {
      const headers = new Headers(init?.headers);
      headers.set('authorization', authorization);
      return fetch(input, { ...init, headers });
    };
  }
  return { child: gateway.child, url, fetchWithToken };
}

async function connectHttp(url, fetchImpl) {
  const client = new Client({ name: 'bench', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), fetchImpl ? { fetch: fetchImpl } : {}));
  return client;
}

async function subjects() {
  const list = [];
  const gateways = {};
  if (GROUPS.includes('http')) {
    // server-everything in its streamable-HTTP mode: called directly, and through the gateway.
    const hport = await freePort();
    const everything = start([EVERYTHING, 'streamableHttp'], { PORT: String(hport) });
    await waitFor(everything.output, /listening on port/i);
    const upstream = `http://127.0.0.1:${hport}/mcp`;
    list.push({ name: HTTP_DIRECT, client: await connectHttp(upstream), pid: undefined });
    const fport = await freePort();
    const forwarder = start(['--input-type=module', '-e', HTTP_FORWARDER], { PORT: String(fport), UPSTREAM: upstream });
    await waitFor(forwarder.output, /http forwarder listening/);
    list.push({
      name: HTTP_FORWARDER_NAME,
      client: await connectHttp(`http://127.0.0.1:${fport}/mcp`),
      pid: forwarder.child.pid,
    });
    const gateway = await startGatewayProcess([], ['--upstream', upstream]);
    gateways.http = gateway;
    list.push({
      name: HTTP_GATEWAY,
      client: await connectHttp(gateway.url, gateway.fetchWithToken),
      pid: gateway.child.pid,
    });
    if (BASE_DIR) {
      const base = await startGatewayProcess([], ['--upstream', upstream], BASE_DIR);
      list.push({
        name: HTTP_GATEWAY + AT_BASE,
        client: await connectHttp(base.url, base.fetchWithToken),
        pid: base.child.pid,
      });
    }
  }
  if (!GROUPS.includes('stdio')) return { list, gateways };
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
  gateways.stdio = gateway;
  list.push({
    name: STDIO_GATEWAY,
    client: await connectHttp(gateway.url, gateway.fetchWithToken),
    pid: gateway.child.pid,
  });
  if (BASE_DIR) {
    const base = await startGatewayProcess([], undefined, BASE_DIR);
    list.push({
      name: STDIO_GATEWAY + AT_BASE,
      client: await connectHttp(base.url, base.fetchWithToken),
      pid: base.child.pid,
    });
  }
  return { list, gateways };
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
  const { list, gateways } = await subjects();
  for (const s of list) {
    for (let i = 0; i < 30; i++)
      await within(30_000, s.client.callTool({ name: 'echo', arguments: { message: 'warm' } }), s.name);
  }
  const perRound = new Map(list.map((s) => [s.name, { medians: [], cpu: [] }]));
  for (let round = 0; round < ROUNDS; round++) {
    // The order rotates by one subject each round: none always runs first or right after another.
    const order = list.map((_, i) => list[(i + round) % list.length]);
    for (const s of order) {
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
  // Added latency is taken per round (subject minus its baseline in the same round), then its median.
  const baselineOf = (name) =>
    name.startsWith(HTTP_GATEWAY) || name === HTTP_FORWARDER_NAME
      ? HTTP_DIRECT
      : name === HTTP_DIRECT || name === 'direct stdio'
        ? undefined
        : 'direct stdio';
  const added = new Map();
  for (const [name, { medians }] of perRound) {
    const base = baselineOf(name);
    if (base && perRound.has(base))
      added.set(
        name,
        medians.map((m, i) => m - perRound.get(base).medians[i]),
      );
  }
  console.log(
    `\ntools/call echo, SDK v2 client, ${ROUNDS} rounds × ${CALLS} calls, subjects interleaved round by round (order rotated)`,
  );
  console.log(
    'subject                                     p50 ms  (min–max)      added ms  (min–max)      over   bridge CPU ms/call (min–max)',
  );
  const range = (xs, digits = 2) => `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;
  for (const [name, { medians, cpu }] of perRound) {
    const a = added.get(name);
    const cols = [
      name.padEnd(43),
      median(medians).toFixed(2).padStart(6),
      `(${range(medians)})`.padEnd(14),
      (a ? `+${median(a).toFixed(2)}` : '').padStart(8),
      (a ? `(${range(a)})` : '').padEnd(14),
      (a ? (baselineOf(name) === HTTP_DIRECT ? 'HTTP' : 'stdio') : '').padEnd(6),
      cpu.length ? `${median(cpu).toFixed(3)} (${range(cpu, 3)})` : '—',
    ];
    console.log(cols.join(' '));
  }
  // The goals, each a difference taken per round.
  const diff = (a, b) => {
    const xs = added.get(a);
    const ys = added.get(b);
    if (!xs || !ys) return undefined;
    const d = xs.map((x, i) => x - ys[i]);
    return `${median(d) >= 0 ? '+' : ''}${median(d).toFixed(2)} ms (${range(d)})`;
  };
  console.log('');
  const lines = [
    ['gateway added − bare forwarder added (goal ≤ +0.5)', diff(STDIO_GATEWAY, 'bare forwarder')],
    ['gateway added − supergateway added (goal ≤ 0)', diff(STDIO_GATEWAY, 'supergateway')],
    ['gateway added − mcp-proxy added (goal ≤ 0)', diff(STDIO_GATEWAY, 'mcp-proxy')],
    [
      'gateway → HTTP upstream − direct HTTP (goal ≤ +0.5)',
      added.has(HTTP_GATEWAY)
        ? `+${median(added.get(HTTP_GATEWAY)).toFixed(2)} ms (${range(added.get(HTTP_GATEWAY))})`
        : undefined,
    ],
  ];
  lines.push(['gateway → HTTP added − bare HTTP forwarder added', diff(HTTP_GATEWAY, HTTP_FORWARDER_NAME)]);
  if (BASE_DIR) {
    lines.push(
      ['gateway added − gateway @base added (this change)', diff(STDIO_GATEWAY, STDIO_GATEWAY + AT_BASE)],
      ['gateway → HTTP − gateway @base → HTTP (this change)', diff(HTTP_GATEWAY, HTTP_GATEWAY + AT_BASE)],
    );
  }
  for (const [what, value] of lines) if (value) console.log(`${what.padEnd(54)} ${value}`);
  for (const s of list) await s.client.close().catch(() => {});
  return gateways;
}

async function concurrentSessions(gateway, what) {
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
    `\n${SESSIONS} concurrent sessions through the gateway (${what}): ${errors} errors, ${(performance.now() - t0).toFixed(0)} ms${first ? ` (first: ${first.reason?.message})` : ''}`,
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
  `node ${process.version}, ${availableParallelism()} CPUs, gateway log level ${LOG_LEVEL}, client auth ${CLIENT_AUTH}, load ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`,
);
try {
  const gateways = await latency();
  if (gateways.stdio) await concurrentSessions(gateways.stdio, 'stdio upstream, one user, one shared process');
  if (gateways.http) await concurrentSessions(gateways.http, 'HTTP upstream');
  if (gateways.stdio) await idleMemory();
} finally {
  // Gateways stop gracefully (their profiles are written on exit); everything else is killed.
  await Promise.all(
    gatewayChildren.map(
      (child) =>
        new Promise((resolve) => {
          if (child.exitCode !== null) return resolve();
          const timer = setTimeout(resolve, 10_000);
          child.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          child.kill('SIGTERM');
        }),
    ),
  );
  for (const child of children) child.kill('SIGKILL');
}
process.exit(0);

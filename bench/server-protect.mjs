// Benchmark: `tools/call` throughput of an MCP server behind protect() (JWT, warm JWKS) against the same server
// unprotected, side by side in one run, with the server process's CPU time per request.
//
//   npm run bench:server            (builds dist/ first)
//   node bench/server-protect.mjs   (after npm run build)
//
// The servers run in a child process so that process.cpuUsage() there counts server work only; the load
// generator runs here. Rounds alternate between the two servers so drift (thermal, other tenants of the
// machine) hits both alike. Everything is bounded: ROUNDS × REQUESTS requests per server, on 127.0.0.1.
import { fork } from 'node:child_process';
import { availableParallelism, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 1500);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const WARMUP = 300;

if (process.argv[2] === '--server') {
  await serve();
} else {
  await main();
}

async function serve() {
  const { createMcpHandler, McpServer } = await import('@modelcontextprotocol/server');
  const { z } = await import('zod');
  const { jwtVerifier, listen, protect, toNodeListener } = await import('../dist/server/index.js');
  const { startTestAuthorizationServer } = await import('../dist/testing/test-authorization-server.js');

  const as = await startTestAuthorizationServer();
  const mcp = createMcpHandler(() => {
    const server = new McpServer({ name: 'bench', version: '1.0.0' });
    server.registerTool(
      'add',
      { description: 'Adds', inputSchema: z.object({ a: z.number(), b: z.number() }) },
      async ({ a, b }) => ({
        content: [{ type: 'text', text: String(a + b) }],
      }),
    );
    return server;
  });
  let protectedTarget = () => {};
  const unprotected = await listen(toNodeListener((request) => mcp.fetch(request)));
  const guarded = await listen((req, res) => protectedTarget(req, res));
  const resource = `${guarded.url}/mcp`;
  protectedTarget = toNodeListener(
    protect(mcp, {
      resource,
      authorizationServers: [as.issuer],
      verifier: jwtVerifier({ issuer: as.issuer, jwksUri: as.jwksUri }),
      requiredScopes: ['mcp:tools'],
    }),
  );
  const token = await as.mintToken({ subject: 'bench', scopes: ['mcp:tools'], audience: resource, expiresIn: 3600 });
  process.on('disconnect', () => process.exit(0)); // the parent is gone: never linger
  process.on('message', (message) => {
    if (message === 'cpu') process.send({ cpu: process.cpuUsage() });
    if (message === 'exit') Promise.all([unprotected.close(), guarded.close(), as.close()]).then(() => process.exit(0));
  });
  process.send({ unprotected: `${unprotected.url}/mcp`, protected: resource, token });
}

function ask(child, message, predicate) {
  return new Promise((resolve) => {
    const onMessage = (reply) => {
      if (predicate(reply)) {
        child.off('message', onMessage);
        resolve(reply);
      }
    };
    child.on('message', onMessage);
    if (message) child.send(message);
  });
}

async function load(url, token, count) {
  const body = JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'tools/call',
    params: { name: 'add', arguments: { a: 2, b: 3 } },
  });
  const headers = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    ...(token ? { authorization: `Bearer ${token}` } : {}),
  };
  let next = 0;
  let failures = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      const response = await fetch(url, { method: 'POST', headers, body });
      const text = await response.text();
      if (response.status !== 200 || !text.includes('"5"')) failures++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  if (failures) throw new Error(`${failures} of ${count} requests to ${url} failed`);
}

async function main() {
  const child = fork(fileURLToPath(import.meta.url), ['--server'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const info = await ask(child, undefined, (m) => 'token' in m);
  const cpu = async () => (await ask(child, 'cpu', (m) => 'cpu' in m)).cpu;
  const targets = [
    { name: 'unprotected', url: info.unprotected, token: undefined, ms: 0, cpuUs: 0, n: 0 },
    { name: 'protect() + JWT', url: info.protected, token: info.token, ms: 0, cpuUs: 0, n: 0 },
  ];
  for (const t of targets) await load(t.url, t.token, WARMUP); // warm JIT, keep-alive pool and the JWKS cache

  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? targets : [...targets].reverse();
    for (const t of order) {
      const before = await cpu();
      const start = performance.now();
      await load(t.url, t.token, REQUESTS);
      t.ms += performance.now() - start;
      const after = await cpu();
      t.cpuUs += after.user - before.user + (after.system - before.system);
      t.n += REQUESTS;
    }
  }
  child.send('exit');

  const rows = targets.map((t) => ({
    server: t.name,
    requests: t.n,
    'req/s': Math.round((t.n / t.ms) * 1000),
    'server CPU µs/req': Math.round(t.cpuUs / t.n),
  }));
  const [base, guarded] = rows;
  console.log(
    `tools/call over loopback, ${ROUNDS} alternating rounds × ${REQUESTS} requests, concurrency ${CONCURRENCY}`,
  );
  console.table(rows);
  const ratio = guarded['req/s'] / base['req/s'];
  console.log(`throughput ratio protected/unprotected: ${ratio.toFixed(3)}× (target ≥ 0.95×)`);
  console.log(`extra server CPU per request: ${guarded['server CPU µs/req'] - base['server CPU µs/req']} µs`);
  const [loadAverage] = loadavg();
  if (loadAverage > availableParallelism()) {
    console.log(
      `(load average ${loadAverage.toFixed(1)} on ${availableParallelism()} CPUs: the loopback figures are noisy)`,
    );
  }
  const added = await inProcess();
  const estimate = base['server CPU µs/req'] / (base['server CPU µs/req'] + added);
  console.log(
    `CPU-bound estimate of the ratio: ${base['server CPU µs/req']} / (${base['server CPU µs/req']} + ${added.toFixed(1)}) = ${estimate.toFixed(3)}×`,
  );
}

// The cost of protect() alone, without HTTP or the SDK: a trivial inner handler called directly and through
// protect(), in process. Bounded: ITERATIONS calls each, alternating, after a warm-up.
async function inProcess() {
  const { jwtVerifier, protect } = await import('../dist/server/index.js');
  const { startTestAuthorizationServer } = await import('../dist/testing/test-authorization-server.js');
  const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 10000);
  const as = await startTestAuthorizationServer();
  try {
    const resource = 'http://127.0.0.1:1/mcp';
    const inner = async () => new Response('{}');
    const guarded = protect(inner, {
      resource,
      authorizationServers: [as.issuer],
      verifier: jwtVerifier({ issuer: as.issuer, jwksUri: as.jwksUri }),
      requiredScopes: ['mcp:tools'],
    });
    const uncached = protect(inner, {
      resource,
      authorizationServers: [as.issuer],
      verifier: jwtVerifier({ issuer: as.issuer, jwksUri: as.jwksUri, cacheTtl: 0 }),
      requiredScopes: ['mcp:tools'],
    });
    const token = await as.mintToken({ scopes: ['mcp:tools'], audience: resource, expiresIn: 3600 });
    const request = () =>
      new Request(resource, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: '{}' });
    const time = async (fn) => {
      const cpu = process.cpuUsage();
      for (let i = 0; i < ITERATIONS; i++) await fn(request());
      const used = process.cpuUsage(cpu);
      return (used.user + used.system) / ITERATIONS;
    };
    await time(inner);
    await time(guarded);
    await time(uncached);
    let direct = 0;
    let viaProtect = 0;
    let viaUncached = 0;
    for (let round = 0; round < 3; round++) {
      direct += await time(inner);
      viaProtect += await time(guarded);
      viaUncached += await time(uncached);
    }
    console.log(`\nprotect() alone, in process (${3 * ITERATIONS} calls each):`);
    console.table([
      { handler: 'inner only', 'CPU µs/call': +(direct / 3).toFixed(1) },
      { handler: 'protect(inner), JWT', 'CPU µs/call': +(viaProtect / 3).toFixed(1) },
      { handler: 'protect(inner), JWT, cacheTtl: 0', 'CPU µs/call': +(viaUncached / 3).toFixed(1) },
    ]);
    console.log(
      `protect() adds ${((viaProtect - direct) / 3).toFixed(1)} µs of CPU per request (verified-token cache warm)`,
    );
    return Math.max(0, (viaProtect - direct) / 3);
  } finally {
    await as.close();
  }
}

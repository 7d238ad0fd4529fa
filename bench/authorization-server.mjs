// Benchmark: the Gatehouse authorization server (`gatehouse serve`, as users run it) next to plain oidc-provider on
// its memory adapter (bench/oidc-provider-server.mjs), in one run:
//
//   refresh  the refresh-token grant: CONCURRENCY chains, each request rotates its token and uses the new one next
//   flow     the complete authorization: GET /auth, login page, POST login, consent page, POST consent, the code
//            on the redirect, POST /token with the PKCE verifier (8 HTTP round trips on both servers; checked)
//
//   npm run bench:as                        (builds dist/ first)
//   node bench/authorization-server.mjs     (after npm run build)
//
// Subjects are separate server processes on loopback: oidc-provider (memory), gatehouse serve on SQLite, on Redis
// and (for information) on PostgreSQL; `memory` in BENCH_SUBJECTS adds gatehouse serve on its in-process store
// (Gatehouse's cost around oidc-provider without a store, for diagnosis). Each round runs every subject for
// DURATION ms at fixed concurrency, the order rotated by one each round so drift and neighbours hit all alike. Per round: req/s, and the server
// process's CPU time per request read from /proc/<pid>/stat (utime + stime) before and after. The ratio to
// oidc-provider is computed per round (same round, same machine state), then its median is taken. The table shows
// medians and min–max over rounds.
//
// Settings (environment): BENCH_ROUNDS (6), BENCH_DURATION_MS (4000), BENCH_CONCURRENCY (8),
// BENCH_WORKLOADS (refresh,flow), BENCH_SUBJECTS (oidc-provider,sqlite,redis,postgres), BENCH_WARMUP_MS (1500),
// BENCH_REDIS_URL, BENCH_POSTGRES_URL, BENCH_PROFILE=DIR (every server process writes a --cpu-prof profile there),
// BENCH_BASE=DIR (another built checkout, e.g. the commit before a change: subjects named `sqlite@base`,
// `redis@base`, `postgres@base` in BENCH_SUBJECTS run its `gatehouse serve`, so before and after share one run).
import { execFileSync, spawn } from 'node:child_process';

import { createHash, randomBytes, scryptSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { parseForms } from '../dist/client/headless-login.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 4000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
const WORKLOADS = (process.env.BENCH_WORKLOADS ?? 'refresh,flow').split(',');
const SUBJECTS = (process.env.BENCH_SUBJECTS ?? 'oidc-provider,sqlite,redis,postgres').split(',');
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const PROFILE_DIR = process.env.BENCH_PROFILE;
const BASE_DIR = process.env.BENCH_BASE;
// Each subject's warm-up before the rounds. V8 is still optimising the hot paths well after 1.5 s (a CPU profile
// shows TurboFan compiling during the first rounds, longer for the subject with more code and fewer requests per
// second); a longer warm-up measures the steady state.
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 1500);
const FLOW_ROUND_TRIPS = 8;

const BIN = fileURLToPath(new URL('../bin/gatehouse.js', import.meta.url));
const COMPARISON = fileURLToPath(new URL('./oidc-provider-server.mjs', import.meta.url));
const RESOURCE = 'http://127.0.0.1:8000/mcp';
const REDIRECT_URI = 'http://127.0.0.1/callback';
const CLIENT = {
  client_id: 'bench-client',
  application_type: 'native',
  token_endpoint_auth_method: 'none',
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: [REDIRECT_URI],
};
const PASSWORD = 'correct horse battery staple';
const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
const work = mkdtempSync(join(tmpdir(), 'gatehouse-bench-'));
const suffix = randomBytes(4).toString('hex');
const cleanups = [];

// ---------------------------------------------------------------------------------------------------- subjects

/** Enough distinct users that no flow meets a consent remembered from an earlier one: every flow asks for consent. */
function writeUsers(count) {
  const salt = randomBytes(16);
  // Node's default scrypt cost, as `gatehouse admin users hash` makes; every user shares it (one hash to compute).
  const hash = `scrypt$${salt.toString('base64url')}$${scryptSync(PASSWORD, salt, 32).toString('base64url')}`;
  const users = Array.from({ length: count }, (_, i) => ({ username: `user${i}`, passwordHash: hash }));
  const path = join(work, 'users.json');
  writeFileSync(path, JSON.stringify({ users }));
  return { path, count };
}

function cleanEnv(extra) {
  const env = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('GATEHOUSE_')) env[key] = value;
  return { ...env, ...extra };
}

/** Starts a server process and resolves with its URL once it prints `listening on URL`. */
function startProcess(name, args, env) {
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start:\n${stderr}`)), 60_000);
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
      const match = /listening on (http:\/\/\S+)/.exec(stderr);
      if (match && timer) {
        clearTimeout(timer);
        resolve({ name, child, url: match[1], stderr: () => stderr });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code}:\n${stderr}`));
    });
  });
}

async function startSubject(subjectKind, users) {
  const profile = PROFILE_DIR
    ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`, `--cpu-prof-name=${subjectKind}.cpuprofile`]
    : [];
  const [kind, build] = subjectKind.split('@');
  if (build && (build !== 'base' || !BASE_DIR)) throw new Error(`${subjectKind}: set BENCH_BASE to a built checkout`);
  const bin = build ? join(BASE_DIR, 'bin/gatehouse.js') : BIN;
  const label = build ? `${kind}, ${build}` : kind;
  if (kind === 'oidc-provider') {
    return startProcess(
      'oidc-provider (memory)',
      [...profile, COMPARISON, users.path, JSON.stringify([CLIENT]), RESOURCE],
      cleanEnv({}),
    );
  }
  const dataDir = join(work, subjectKind);
  const stores = {
    sqlite: async () => `sqlite:${join(dataDir, 'as.db')}`,
    memory: async () => 'memory',
    postgres: postgresDatabase,
  };
  if (!stores[kind] && kind !== 'redis') throw new Error(`unknown subject ${kind}`);
  const prefix = `gatehouse-bench-${suffix}${build ? `-${build}` : ''}:`;
  const store = kind === 'redis' ? `${REDIS_URL}/?prefix=${prefix}` : await stores[kind](build);
  if (kind === 'redis') cleanups.push(() => dropRedisPrefix(prefix));
  const storePid = kind === 'redis' ? await redisPid() : undefined;
  const config = join(work, `${subjectKind}.json`);
  writeFileSync(config, JSON.stringify({ clients: [CLIENT] }));
  const started = await startProcess(
    `gatehouse serve (${label})`,
    [
      ...profile,
      bin,
      'serve',
      '--port',
      '0',
      '--store',
      store,
      '--users',
      users.path,
      '--resource',
      `${RESOURCE}=mcp:tools`,
      '--config',
      config,
      '--log-level',
      'warn',
    ],
    cleanEnv({ GATEHOUSE_DATA_DIR: dataDir }),
  );
  return Object.assign(started, { storePid });
}

/**
 * The pid of the Redis at BENCH_REDIS_URL when it runs on this machine (its CPU per request is reported beside the
 * server's: it shares the cores). It counts every client of that Redis: use a private redis-server for a clean number.
 */
async function redisPid() {
  const { createClient } = await import('@redis/client');
  const client = createClient({ url: REDIS_URL });
  await client.connect();
  const pid = Number(/process_id:(\d+)/.exec(await client.info('server'))?.[1]);
  await client.close();
  try {
    cpuSeconds(pid);
    return pid;
  } catch {
    return undefined;
  }
}

/** A fresh PostgreSQL database for this run, dropped at the end. */
async function postgresDatabase(build) {
  const { default: pg } = await import('pg');
  const name = `gatehouse_bench_${suffix}${build ? `_${build}` : ''}`;
  const admin = new pg.Client({ connectionString: POSTGRES_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  cleanups.push(async () => {
    const client = new pg.Client({ connectionString: POSTGRES_URL });
    await client.connect();
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await client.end();
  });
  const url = new URL(POSTGRES_URL);
  url.pathname = `/${name}`;
  return url.href;
}

async function dropRedisPrefix(prefix) {
  const { createClient } = await import('@redis/client');
  const client = createClient({ url: REDIS_URL });
  await client.connect();
  let cursor = '0';
  do {
    const page = await client.scan(cursor, { MATCH: `${prefix}*`, COUNT: 1000 });
    cursor = String(page.cursor);
    if (page.keys.length) await client.del(page.keys);
  } while (cursor !== '0');
  await client.close();
}

async function stopSubject(subject) {
  await subject.pool.close();
  if (subject.child.exitCode !== null) return;
  const exited = new Promise((resolve) => subject.child.once('exit', resolve));
  subject.child.kill('SIGTERM');
  await exited;
}

/** CPU seconds the process has used so far (user + system), from /proc. */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start at field 3; utime and stime are 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

// ---------------------------------------------------------------------------------------------------- clients

async function call(subject, method, path, { form, cookies } = {}) {
  const headers = {};
  if (form) headers['content-type'] = 'application/x-www-form-urlencoded';
  if (cookies?.size) headers.cookie = [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  const response = await subject.pool.request({
    method,
    path,
    headers,
    body: form ? new URLSearchParams(form).toString() : undefined,
  });
  if (cookies) {
    for (const line of [response.headers['set-cookie'] ?? []].flat()) {
      const [pair] = line.split(';');
      const eq = pair.indexOf('=');
      const value = pair.slice(eq + 1);
      if (value === '' || /expires=Thu, 01 Jan 1970/i.test(line)) cookies.delete(pair.slice(0, eq));
      else cookies.set(pair.slice(0, eq), value);
    }
  }
  const text = await response.body.text();
  return { status: response.statusCode, location: response.headers.location, text };
}

function pathOf(location, subject) {
  const url = new URL(location, subject.url);
  return url.origin === new URL(subject.url).origin ? `${url.pathname}${url.search}` : undefined;
}

/**
 * One complete authorization as a browser and a native client do it, as a fresh user (so consent is asked):
 * returns the token response. Counts round trips, so both servers are seen to do the same steps.
 */
async function authorize(subject, username) {
  const cookies = new Map();
  const verifier = randomBytes(32).toString('base64url');
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: CLIENT.client_id,
    redirect_uri: REDIRECT_URI,
    state: randomBytes(8).toString('hex'),
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    scope: 'offline_access mcp:tools',
    resource: RESOURCE,
  });
  let request = { method: 'GET', path: `/auth?${query}` };
  let code;
  let trips = 0;
  while (!code) {
    if (trips > 10) throw new Error(`${subject.name}: the authorization did not finish`);
    const response = await call(subject, request.method, request.path, { form: request.form, cookies });
    trips++;
    if (response.status >= 300 && response.status < 400 && response.location) {
      const next = new URL(response.location, subject.url);
      if (next.href.startsWith(REDIRECT_URI)) {
        code = next.searchParams.get('code');
        if (!code) throw new Error(`${subject.name}: no code in ${next.href}`);
      } else request = { method: 'GET', path: pathOf(next.href, subject) };
      continue;
    }
    const form = parseForms(response.text).find((f) => f.method === 'post');
    if (response.status !== 200 || !form) {
      throw new Error(
        `${subject.name}: ${request.method} ${request.path} -> ${response.status} ${response.text.slice(0, 200)}`,
      );
    }
    const fields = Object.fromEntries(form.fields.filter((f) => f.type === 'hidden').map((f) => [f.name, f.value]));
    const isLogin = response.text.includes('type="password"');
    request = {
      method: 'POST',
      path: pathOf(form.action, subject),
      form: isLogin ? { ...fields, username, password: PASSWORD } : { ...fields, decision: 'approve' },
    };
  }
  const tokens = await call(subject, 'POST', '/token', {
    form: {
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT_URI,
      code_verifier: verifier,
      client_id: CLIENT.client_id,
      resource: RESOURCE,
    },
  });
  trips++;
  if (tokens.status !== 200) throw new Error(`${subject.name}: code redemption ${tokens.status} ${tokens.text}`);
  if (trips !== FLOW_ROUND_TRIPS) {
    throw new Error(`${subject.name}: the flow took ${trips} round trips, expected ${FLOW_ROUND_TRIPS}`);
  }
  return JSON.parse(tokens.text);
}

async function refresh(subject, chain) {
  const response = await call(subject, 'POST', '/token', {
    form: {
      grant_type: 'refresh_token',
      refresh_token: subject.chains[chain],
      client_id: CLIENT.client_id,
      resource: RESOURCE,
    },
  });
  if (response.status !== 200) throw new Error(`${subject.name}: refresh ${response.status} ${response.text}`);
  subject.chains[chain] = JSON.parse(response.text).refresh_token;
}

const OPERATIONS = {
  refresh: (subject, worker) => refresh(subject, worker),
  flow: async (subject) => {
    const user = subject.nextUser++;
    if (user >= subject.users.count) throw new Error('out of users: raise the users count in the bench');
    await authorize(subject, `user${user}`);
  },
};

/** Runs `operation` on `concurrency` workers until `durationMs` has passed; counts what finished. */
async function drive(subject, workload, durationMs) {
  const operation = OPERATIONS[workload];
  let done = 0;
  const cpuBefore = cpuSeconds(subject.child.pid);
  const storeBefore = subject.storePid ? cpuSeconds(subject.storePid) : 0;
  const started = performance.now();
  const end = started + durationMs;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, worker) => {
      while (performance.now() < end) {
        await operation(subject, worker);
        done++;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const cpu = cpuSeconds(subject.child.pid) - cpuBefore;
  const store = subject.storePid ? ((cpuSeconds(subject.storePid) - storeBefore) * 1000) / done : undefined;
  return { rate: done / seconds, cpuMs: (cpu * 1000) / done, storeCpuMs: store, count: done };
}

// ---------------------------------------------------------------------------------------------------- report

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const spread = (values, digits) =>
  `${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}`.padStart(digits ? 11 : 9);

function report(workload, subjects, results) {
  const unit = workload === 'refresh' ? 'req' : 'flow';
  const storeColumn = subjects.some((subject) => subject.storePid);
  console.log(
    `\n${workload === 'refresh' ? 'refresh_token grant' : 'complete code + PKCE + login + consent flow (8 round trips)'}: ${CONCURRENCY} concurrent, ${ROUNDS} rounds × ${DURATION_MS} ms per subject, order rotated`,
  );
  console.log(
    `${'subject'.padEnd(34)} ${`${unit}/s median`.padStart(14)} ${'(min–max)'.padStart(11)}   ${'× oidc-provider'.padStart(15)} ${'(min–max)'.padStart(11)}   ${`CPU ms/${unit}`.padStart(12)} ${'(min–max)'.padStart(11)}${storeColumn ? `   ${`Redis ms/${unit}`.padStart(14)} ${'(min–max)'.padStart(11)}` : ''}`,
  );
  const base = results.get(subjects[0].kind);
  for (const subject of subjects) {
    const rounds = results.get(subject.kind);
    const rates = rounds.map((r) => r.rate);
    const ratios = rounds.map((r, i) => r.rate / base[i].rate);
    const cpu = rounds.map((r) => r.cpuMs);
    const store = rounds.map((r) => r.storeCpuMs).filter((ms) => ms !== undefined);
    const storeText = store.length ? `   ${median(store).toFixed(2).padStart(14)} ${spread(store, 2)}` : '';
    console.log(
      `${subject.name.padEnd(34)} ${median(rates).toFixed(0).padStart(14)} ${spread(rates, 0).padStart(11)}   ${median(ratios).toFixed(2).padStart(15)} ${spread(ratios, 2)}   ${median(cpu).toFixed(2).padStart(12)} ${spread(cpu, 2)}${storeText}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------- main

async function main() {
  if (SUBJECTS[0] !== 'oidc-provider') throw new Error('BENCH_SUBJECTS must start with oidc-provider (the baseline)');
  const flowsPerSubject = WORKLOADS.includes('flow') ? 200 * ((ROUNDS * DURATION_MS + WARMUP_MS) / 1000) : 0;
  const users = writeUsers(Math.ceil(flowsPerSubject) + CONCURRENCY + 100);
  const subjects = [];
  try {
    for (const kind of SUBJECTS) {
      const subject = await startSubject(kind, users);
      Object.assign(subject, {
        kind,
        users,
        nextUser: 0,
        pool: new Pool(subject.url, { connections: CONCURRENCY }),
      });
      subjects.push(subject);
    }
    console.log(
      `node ${process.version}, ${SUBJECTS.length} server processes, load average at start ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
    for (const workload of WORKLOADS) {
      for (const subject of subjects) {
        if (workload === 'refresh') {
          subject.chains = [];
          for (let chain = 0; chain < CONCURRENCY; chain++) {
            subject.chains.push((await authorize(subject, `user${subject.nextUser++}`)).refresh_token);
          }
        }
        await drive(subject, workload, WARMUP_MS);
      }
      const results = new Map(subjects.map((s) => [s.kind, []]));
      for (let round = 0; round < ROUNDS; round++) {
        const order = subjects.map((_, i) => subjects[(i + round) % subjects.length]);
        for (const subject of order) results.get(subject.kind)[round] = await drive(subject, workload, DURATION_MS);
        process.stderr.write(`${workload} round ${round + 1}/${ROUNDS} done\n`);
      }
      report(workload, subjects, results);
    }
    console.log(
      `\nload average at end ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
  } finally {
    for (const subject of subjects) await stopSubject(subject).catch(() => {});
    for (const cleanup of cleanups) await cleanup().catch((error) => console.error('cleanup failed:', error.message));
    rmSync(work, { recursive: true, force: true });
  }
}

await main();

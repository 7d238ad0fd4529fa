// Private Redis and PostgreSQL servers on random ports, and `gatehouse serve` processes, for the store tier: the
// tests stop and restart these stores mid-traffic, which the shared ones on this machine must never see.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chownSync, mkdtempSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type SpawnedServe, spawnServe } from '../helpers/serve-process.js';

const run = promisify(execFile);
export const BIN = fileURLToPath(new URL('../../bin/gatehouse.js', import.meta.url));
export const RESOURCE = 'http://127.0.0.1:8000/mcp';
export const DOWNSTREAM = 'http://127.0.0.1:8001/api';
export const PASSWORD = 'correct horse battery staple';

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (await check().catch(() => false)) return;
    await sleep(50);
  }
  throw new Error(`${what} did not happen within ${timeoutMs} ms`);
}

export interface PrivateStore {
  url: string;
  /** Stops the server (data already acknowledged stays on disk). */
  stop(): Promise<void>;
  /** Starts it again on the same port and data; resolves once it accepts queries. */
  start(): Promise<void>;
  /** Removes everything. */
  destroy(): Promise<void>;
}

/** A private Redis with an fsync-always append-only file, so a restart keeps what it acknowledged. */
export async function startPrivateRedis(): Promise<PrivateStore & { pause(): void; resume(): void }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-redis-'));
  let child: ChildProcess | undefined;
  const ping = async () => (await run('redis-cli', ['-p', String(port), 'ping'])).stdout.trim() === 'PONG';
  const start = async () => {
    child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'always'],
      { cwd: dir, stdio: 'ignore' },
    );
    await until('redis start', ping);
  };
  const stop = async () => {
    const exited = new Promise((resolve) => child?.once('exit', resolve));
    child?.kill('SIGTERM');
    await exited;
    child = undefined;
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    start,
    stop,
    pause: () => child?.kill('SIGSTOP'),
    resume: () => child?.kill('SIGCONT'),
    destroy: async () => {
      if (child) {
        child.kill('SIGCONT');
        await stop();
      }
      await run('rm', ['-rf', dir]);
    },
  };
}

function postgresBin(name: string): string {
  const versions = readdirSync('/usr/lib/postgresql').sort();
  return join('/usr/lib/postgresql', versions[versions.length - 1]!, 'bin', name);
}

/** Runs a PostgreSQL binary, as the postgres user when we are root (PostgreSQL refuses to run as root). */
function pgRun(name: string, args: string[]) {
  const asRoot = process.getuid?.() === 0;
  return asRoot ? run('runuser', ['-u', 'postgres', '--', postgresBin(name), ...args]) : run(postgresBin(name), args);
}

/** A private PostgreSQL cluster (initdb in a temporary directory) on a random port. */
export async function startPrivatePostgres(): Promise<PrivateStore> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-pg-'));
  if (process.getuid?.() === 0) {
    const uid = Number((await run('id', ['-u', 'postgres'])).stdout);
    const gid = Number((await run('id', ['-g', 'postgres'])).stdout);
    chownSync(dir, uid, gid);
  }
  const data = join(dir, 'data');
  await pgRun('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  const options = `-p ${port} -c listen_addresses=127.0.0.1 -k ${dir} -c fsync=off`;
  const start = async () => {
    await pgRun('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'log'), '-w', 'start']);
  };
  const stop = async () => {
    await pgRun('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
  };
  await start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    start,
    stop,
    destroy: async () => {
      await stop().catch(() => {});
      await run('rm', ['-rf', dir]);
    },
  };
}

/** A running `gatehouse serve` process. */
export type ServeProcess = SpawnedServe;

/**
 * Starts `gatehouse serve` exactly as the docs show, with a superuser and one resource, on a free port; `bin` runs
 * another build (the previous release, for rolling upgrades).
 */
export function startServe(
  args: string[],
  env: Record<string, string>,
  timeoutMs = 20_000,
  bin?: string,
): Promise<ServeProcess> {
  const resource = args.includes('--resource') ? [] : ['--resource', `${RESOURCE}=mcp:tools`];
  return spawnServe(
    ['--port', '0', '--superuser', 'admin', ...resource, '--log-level', 'warn', ...args],
    { GATEHOUSE_SUPERUSER_PASSWORD: PASSWORD, ...env },
    timeoutMs,
    bin,
  );
}

/** Runs `gatehouse serve` expecting it to fail: its exit code, stderr and how long it took. */
export async function serveFailure(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stderr: string; ms: number }> {
  const started = Date.now();
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('GATEHOUSE_')));
  const child = spawn(
    process.execPath,
    [BIN, 'serve', '--port', '0', '--superuser', 'admin', '--resource', RESOURCE, ...args],
    { env: { ...base, GATEHOUSE_SUPERUSER_PASSWORD: PASSWORD, ...env }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (chunk) => {
    stderr += chunk;
  });
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  clearTimeout(killer);
  return { code, stderr, ms: Date.now() - started };
}

/** Deletes every key under `prefix` (a test's own) from the Redis at `url`. */
export async function removeRedisPrefix(url: string, prefix: string): Promise<void> {
  const { createClient } = await import('@redis/client');
  const client = createClient({ url });
  await client.connect();
  for await (const keys of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 500 })) {
    if (keys.length) await client.del(keys);
  }
  await client.close();
}

/** Drops a test's own table from the PostgreSQL database at `url`. */
export async function dropPostgresTable(url: string, table: string): Promise<void> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query(`DROP TABLE IF EXISTS ${table}`);
  await client.end();
}

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ServeConfig } from '../../src/authorization-server/serve.js';

const BIN = fileURLToPath(new URL('../../bin/gatehouse.js', import.meta.url));

/** A `gatehouse serve` child process started by {@link spawnServe}, listening. */
export interface SpawnedServe {
  /** Where it listens, e.g. `http://127.0.0.1:40123`. */
  url: string;
  /** Its issuer (with `--json`, as it printed it; otherwise its URL). */
  issuer: string;
  child: ChildProcess;
  /** What it wrote to stderr so far. */
  stderr(): string;
  /** What it wrote to stdout and stderr so far, in order. */
  output(): string;
  /** SIGTERM, then resolves once it has exited. */
  stop(): Promise<void>;
}

/**
 * The one way tests start `gatehouse serve`: the built CLI as a child process, `args` after `serve`, the test
 * runner's environment without its `GATEHOUSE_*` variables plus `env` (an undefined value removes one). Resolves
 * once it says where it listens (the text line on stderr, or the JSON `listening` line on stdout with `--json`);
 * rejects with what it printed if it exits first or does not listen within `timeoutMs` (then it is killed).
 */
export function spawnServe(
  args: string[],
  env: Record<string, string | undefined> = {},
  timeoutMs = 30_000,
  bin = BIN,
): Promise<SpawnedServe> {
  const merged: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('GATEHOUSE_')) merged[key] = value;
  Object.assign(merged, env);
  const childEnv = Object.fromEntries(
    Object.entries(merged).filter((entry): entry is [string, string] => entry[1] !== undefined),
  );
  const child = spawn(process.execPath, [bin, 'serve', ...args], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let stderr = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  return new Promise((resolve, reject) => {
    let listening = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`gatehouse serve did not listen within ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    const check = () => {
      if (listening) return;
      const text = /listening on (http:\/\/\S+)/.exec(stderr);
      const json = output.split('\n').find((line) => line.includes('"msg":"listening"'));
      const found = text
        ? { url: text[1]!, issuer: text[1]! }
        : json
          ? (JSON.parse(json) as { url: string; issuer: string })
          : undefined;
      if (!found) return;
      listening = true;
      clearTimeout(timer);
      resolve({ url: found.url, issuer: found.issuer, child, stderr: () => stderr, output: () => output, stop });
    };
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
      check();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      output += text;
      stderr += text;
      check();
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (!listening) reject(new Error(`gatehouse serve exited with ${code}:\n${output}`));
    });
  });
}

/** The superuser every {@link startServeProcess} server has. */
export const SERVE_USER = { username: 'admin', password: 'correct horse battery staple' };

/** A `gatehouse serve` child process. */
export interface ServeProcess {
  /** Its issuer and base URL, e.g. `http://127.0.0.1:40123`. */
  url: string;
  /** What it wrote to stderr so far. */
  stderr(): string;
  close(): Promise<void>;
}

/**
 * Starts `gatehouse serve` (the built CLI) as users do: `--port 0 --store memory --superuser admin`, the given
 * flags, and `--config FILE` when `config` is given; `env` adds to its environment. Resolves once it prints where
 * it listens.
 */
export async function startServeProcess(
  args: string[],
  config?: ServeConfig,
  env: Record<string, string> = {},
): Promise<ServeProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-serve-process-'));
  const flags = ['--port', '0', '--store', 'memory', '--superuser', SERVE_USER.username, '--log-level', 'warn'];
  if (config) {
    await writeFile(join(dir, 'gatehouse.json'), JSON.stringify(config));
    flags.push('--config', join(dir, 'gatehouse.json'));
  }
  const server = await spawnServe(flags.concat(args), {
    ...env,
    GATEHOUSE_SUPERUSER_PASSWORD: SERVE_USER.password,
    GATEHOUSE_DATA_DIR: dir,
  });
  return {
    url: server.url,
    stderr: server.stderr,
    close: async () => {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

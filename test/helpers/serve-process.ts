import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ServeConfig } from '../../src/authorization-server/serve.js';

const BIN = fileURLToPath(new URL('../../bin/gatehouse.js', import.meta.url));

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
  const flags = [
    'serve',
    '--port',
    '0',
    '--store',
    'memory',
    '--superuser',
    SERVE_USER.username,
    '--log-level',
    'warn',
  ];
  if (config) {
    await writeFile(join(dir, 'gatehouse.json'), JSON.stringify(config));
    flags.push('--config', join(dir, 'gatehouse.json'));
  }
  const inherited: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith('GATEHOUSE_')) inherited[key] = value;
  }
  const child: ChildProcess = spawn(process.execPath, [BIN, ...flags, ...args], {
    env: { ...inherited, ...env, GATEHOUSE_SUPERUSER_PASSWORD: SERVE_USER.password, GATEHOUSE_DATA_DIR: dir },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gatehouse serve did not start:\n${stderr}`)), 30_000);
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
      const match = /listening on (http:\/\/\S+)/.exec(stderr);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`gatehouse serve exited with ${code}:\n${stderr}`));
    });
  });
  return {
    url,
    stderr: () => stderr,
    close: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

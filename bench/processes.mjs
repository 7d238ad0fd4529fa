// The child processes of a benchmark: started, watched, measured and stopped the same way by every bench script.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Every process a bench started, for {@link stopAll}. */
export const children = [];

/** A free loopback port, for servers that cannot report the one they picked. */
export async function freePort() {
  const server = createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

/**
 * Starts `node ARGS` with `env` added, keeping its stdout and stderr. `withoutGatehouseEnv` drops the caller's
 * GATEHOUSE_* variables (a gateway under test gets only what the bench gives it); `stdin` as for spawn.
 */
export function start(args, env = {}, { withoutGatehouseEnv = false, stdin = 'pipe' } = {}) {
  const base = withoutGatehouseEnv
    ? Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GATEHOUSE_')))
    : process.env;
  const child = spawn(process.execPath, args, { env: { ...base, ...env }, stdio: [stdin, 'pipe', 'pipe'] });
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

/** Waits until `read()` matches `pattern`. */
export async function waitFor(read, pattern, ms = 60_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const m = pattern.exec(read());
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}:\n${read().slice(-1500)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** CPU seconds (user + system) of a process, from /proc. */
export function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { BIN, withOpenServer } from './helpers.js';

// docs/cli.md, "proxy": it exits with code 0 when the client closes stdin, and on SIGINT/SIGTERM — a desktop client
// that quits or restarts its servers never leaves a proxy behind, nor sees a failure.

const INITIALIZE = `${JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'exit-test', version: '1.0.0' } },
})}\n`;

const withoutGatehouseVariables = () =>
  Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('GATEHOUSE_')));

describe('gatehouse proxy ends cleanly', () => {
  const servers = withOpenServer();

  /** Starts a proxy, initializes through it, then ends it with `end`; resolves to its exit code and stderr. */
  function run(end: 'stdin' | NodeJS.Signals): Promise<{ code: number | null; stderr: string; answered: boolean }> {
    const child = spawn(process.execPath, [BIN, 'proxy', servers.open.mcpUrl, '--no-auth'], {
      env: { ...withoutGatehouseVariables(), GATEHOUSE_STORE: servers.store.dir, NO_COLOR: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let answered = false;
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
      if (!answered && stdout.includes('"id":1')) {
        answered = true;
        if (end === 'stdin') child.stdin.end();
        else child.kill(end);
      }
    });
    child.stdin.write(INITIALIZE);
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    return new Promise((resolve) =>
      child.on('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, stderr, answered });
      }),
    );
  }

  it('exits 0 when stdin closes, and on SIGTERM and SIGINT', { timeout: 60_000 }, async () => {
    const results = await Promise.all([run('stdin'), run('SIGTERM'), run('SIGINT')]);
    for (const result of results) {
      expect(result.answered, result.stderr).toBe(true);
      expect(result.code, result.stderr).toBe(0);
    }
  });
});

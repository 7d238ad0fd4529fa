import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../../bin/gatehouse.js', import.meta.url));

describe('gatehouse demo (the built CLI)', () => {
  it('exits 0 and prints every step', () => {
    const result = spawnSync(process.execPath, [bin, 'demo'], { encoding: 'utf8', timeout: 60_000 });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toContain('called whoami: subject "demo"');
    expect(result.stdout).toContain('Done:');
  });

  it('reads each discovery document once (the narration is one line per real request)', () => {
    const result = spawnSync(process.execPath, [bin, 'demo'], { encoding: 'utf8', timeout: 60_000 });
    expect(result.status, result.stderr).toBe(0);
    const requests = result.stdout.split('\n').filter((line) => line.startsWith('   - read '));
    expect(requests).toEqual([
      '   - read protected-resource metadata (200)',
      '   - read authorization-server metadata (200)',
    ]);
  });

  it('rejects a bad --port with exit code 2 and a fix', () => {
    const result = spawnSync(process.execPath, [bin, 'demo', '--port', 'abc'], { encoding: 'utf8' });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('--port must be an integer');
  });

  it('names an unknown command', () => {
    const result = spawnSync(process.execPath, [bin, 'frobnicate'], { encoding: 'utf8' });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('unknown command "frobnicate"');
  });

  it('accepts global options before the command name', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-store-'));
    const result = spawnSync(process.execPath, [bin, '--store', dir, '--json', 'status'], { encoding: 'utf8' });
    expect(result.status, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual([]);
  });

  it('lists every documented exit code in its help', () => {
    const result = spawnSync(process.execPath, [bin, 'help'], { encoding: 'utf8' });
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('3 a login is needed');
    for (const name of [
      'demo',
      'doctor',
      'login',
      'status',
      'token',
      'logout',
      'tools',
      'call',
      'proxy',
      'serve',
      'admin',
    ]) {
      expect(result.stdout).toMatch(new RegExp(`^  ${name}\\s`, 'm'));
    }
  });
});

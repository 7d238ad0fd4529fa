import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

// The MCP conformance suite's authorization scenarios against a fresh `gatehouse serve`, browser step by
// auto-login. Needs dist/ (`npm test` builds first; alone: `npm run conformance-authorization`).
describe('MCP conformance: authorization server', () => {
  it('passes every check of @modelcontextprotocol/conformance authorization', { timeout: 180_000 }, async () => {
    expect(existsSync('dist/authorization-server/serve.js'), 'run `npm run build` first').toBe(true);
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn(process.execPath, ['test/conformance/authorization-run.mjs'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (d) => {
        output += d;
      });
      child.stderr.on('data', (d) => {
        output += d;
      });
      child.on('close', (c) => resolve({ code: c, output }));
    });
    const summary = output.slice(output.indexOf('=== SUMMARY ==='));
    expect(summary, output).toMatch(/Total: \d+ passed, 0 failed/);
    expect(summary).toContain('✓ authorization-server-metadata-endpoint');
    expect(summary).toContain('✓ authorization-code-grant');
    expect(code, output).toBe(0);
  });
});

import { expect, it, vi } from 'vitest';

it('examples/server-fetch.ts runs: 401 without a token, the tool with one', async () => {
  const lines: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => {
    lines.push(args.join(' '));
  });
  try {
    await import('../../examples/server-fetch.js');
  } finally {
    log.mockRestore();
  }
  expect(lines[0]).toMatch(/^401 Bearer scope="mcp:tools", resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known/);
  expect(lines[1]).toContain('Hello, alice');
});

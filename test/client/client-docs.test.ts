import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';

const root = new URL('../../', import.meta.url);
const doc = readFileSync(new URL('docs/client.md', root), 'utf8');

describe('docs/client.md', () => {
  const embeds = [...doc.matchAll(/<!-- example: (\S+) -->\n```ts\n([\s\S]*?)```\n/g)];

  it('embeds each examples/client file verbatim (the files are type-checked by tsc)', () => {
    expect(embeds.length).toBeGreaterThan(0);
    for (const [, path, code] of embeds) expect(code, path).toBe(readFileSync(new URL(path!, root), 'utf8'));
  });

  it('embeds every example', () => {
    const files = readdirSync(new URL('examples/client/', root)).filter((name) => name.endsWith('.ts'));
    expect(embeds.map(([, path]) => path).sort()).toEqual(files.map((name) => `examples/client/${name}`).sort());
  });

  it('runs the self-contained in-memory example against the built package', async () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    try {
      await import('../../examples/client/in-memory.js');
      expect(log).toHaveBeenCalledWith(true);
    } finally {
      log.mockRestore();
    }
  });
});

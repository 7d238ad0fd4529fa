import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const root = new URL('../../', import.meta.url);
const doc = readFileSync(new URL('docs/gateway.md', root), 'utf8');

describe('docs/gateway.md', () => {
  it('embeds every examples/gateway file verbatim (the files are type-checked by tsc)', () => {
    const embeds = [...doc.matchAll(/<!-- example: (\S+) -->\n```ts\n([\s\S]*?)```\n/g)];
    for (const [, path, code] of embeds) expect(code, path).toBe(readFileSync(new URL(path!, root), 'utf8'));
    const files = readdirSync(new URL('examples/gateway/', root)).filter((name) => name.endsWith('.ts'));
    expect(embeds.map(([, path]) => path).sort()).toEqual(files.map((name) => `examples/gateway/${name}`).sort());
    expect(doc.match(/```ts\n/g)).toHaveLength(embeds.length);
  });
});

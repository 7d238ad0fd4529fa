import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

interface Block {
  doc: string;
  /** 1-based line of the block's first code line in the doc. */
  line: number;
  lang: string;
  code: string;
}

/** Every fenced block of README.md and docs/*.md; a block whose info string says `fragment` is left out. */
function blocks(): Block[] {
  const docs = [
    'README.md',
    ...readdirSync(join(root, 'docs'))
      .filter((name) => name.endsWith('.md'))
      .map((name) => `docs/${name}`),
  ];
  const found: Block[] = [];
  for (const doc of docs) {
    const lines = readFileSync(join(root, doc), 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const open = /^```(\w+)(.*)$/.exec(lines[i]!);
      if (!open) continue;
      const end = lines.indexOf('```', i + 1);
      if (!open[2]!.split(/\s+/).includes('fragment')) {
        found.push({ doc, line: i + 2, lang: open[1]!, code: `${lines.slice(i + 1, end).join('\n')}\n` });
      }
      i = end;
    }
  }
  return found;
}

const all = blocks();
const name = (block: Block) => `${block.doc.replace(/[/.]/g, '_')}_L${block.line}`;
// Under the repository, so `gatehouse/*` resolves to the package's own exports (built types in dist/).
const dir = mkdtempSync(join(root, '.docs-check-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('docs: every code block runs as written', () => {
  it('type-checks every ts block of README.md and docs/*.md under strict tsc', async () => {
    const ts = all.filter((block) => block.lang === 'ts');
    expect(ts.length).toBeGreaterThan(20);
    const byFile = new Map<string, Block>();
    for (const block of ts) {
      const file = `${name(block)}.ts`;
      byFile.set(file, block);
      // `export {}` keeps a block without imports a module, so top-level await and names stay per block.
      writeFileSync(join(dir, file), `${block.code}export {};\n`);
    }
    const config = {
      extends: relative(dir, join(root, 'tsconfig.json')),
      compilerOptions: { noEmit: true, rootDir: '.', noUnusedLocals: false },
      include: ['*.ts'],
    };
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(config));
    const output = await run(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json'), '--pretty', 'false'], {
      cwd: root,
    }).then(
      () => '',
      (error: { stdout: string }) => error.stdout,
    );
    // Each error names the doc and the doc's line, not the temp file's.
    const failures = output
      .split('\n')
      .filter(Boolean)
      .map((message) => {
        const at = /([^/\\]+\.ts)\((\d+),(\d+)\): (.*)$/.exec(message);
        const block = at && byFile.get(at[1]!);
        if (!at || !block) return message;
        return `${block.doc}:${block.line + Number(at[2]) - 1}:${at[3]} (block at line ${block.line}) ${at[4]}`;
      });
    expect(failures).toEqual([]);
  }, 120_000);

  it('parses every JavaScript block with node --check (Node 20: no `await using`)', async () => {
    const syntaxError = async (block: Block) => {
      const file = join(dir, `${name(block)}.mjs`);
      writeFileSync(file, block.code);
      return run(process.execPath, ['--check', file]).then(
        () => undefined,
        (error: { stderr: string }) => error.stderr.split('\n').find((line) => /Error/.test(line)),
      );
    };
    // The check is the runtime's own parser: on Node 20 it refuses what the issue saw in the README.
    const awaitUsing = { doc: 'self-check', line: 1, lang: 'js', code: "await using client = await connect('x');\n" };
    if (Number(process.versions.node.split('.')[0]) < 24) expect(await syntaxError(awaitUsing)).toMatch(/SyntaxError/);
    const failures: string[] = [];
    for (const block of all.filter((candidate) => ['js', 'javascript', 'mjs'].includes(candidate.lang))) {
      const error = await syntaxError(block);
      if (error) failures.push(`${block.doc}:${block.line} ${error}`);
    }
    expect(failures).toEqual([]);
  });
});

// Runs a TypeScript example on Node 20 without a TypeScript runtime: `npm run example -- examples/server-fetch.ts`.
// The example is transpiled (types stripped, nothing checked: `npm run typecheck` does that) to a temporary .mjs
// next to it, so its `gatehouse/*` imports resolve to this package's build (run `npm run build` first).
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import ts from 'typescript';

const source = process.argv[2];
if (!source?.endsWith('.ts')) {
  console.error('usage: npm run example -- examples/<name>.ts');
  process.exit(2);
}
const file = resolve(source);
const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
  compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
});
const out = join(dirname(file), `.run-${basename(file, '.ts')}.mjs`);
writeFileSync(out, outputText);
const child = spawn(process.execPath, [out, ...process.argv.slice(3)], { stdio: 'inherit' });
const cleanUp = () => rmSync(out, { force: true });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => {
  cleanUp();
  process.exitCode = code ?? (signal ? 1 : 0);
});

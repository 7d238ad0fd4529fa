#!/usr/bin/env node
// The built CLI lives in dist/; `npm install` builds it through the `prepare` script.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  console.error('gatehouse: the package is not built yet. Run `npm run build` (or `npm install`) first.');
  process.exit(1);
}
// oidc-provider warns on Node 20 ("Unsupported runtime") when it loads; it runs there and our tests cover it, so in
// the CLI exactly that line is dropped: it would otherwise be the first thing `gatehouse demo` prints.
const warn = console.warn;
console.warn = (...args) => {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the line may be wrapped in ANSI colour codes.
  if (args.length === 1 && /^(\x1b\[[\d;]*m)?oidc-provider WARNING: Unsupported runtime\./.test(String(args[0])))
    return;
  warn(...args);
};
const { run } = await import(entry.href);
await run(process.argv.slice(2));

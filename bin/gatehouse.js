#!/usr/bin/env node
// The built CLI lives in dist/; `npm install` builds it through the `prepare` script.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  console.error('gatehouse: the package is not built yet. Run `npm run build` (or `npm install`) first.');
  process.exit(1);
}
const { run } = await import(entry.href);
await run(process.argv.slice(2));

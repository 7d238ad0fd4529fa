import { execFileSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';
import { buildStorageForChildren } from './helpers.js';

const HEAVY = [
  'pg',
  '@redis/client',
  'better-sqlite3',
  'oidc-provider',
  '@napi-rs/keyring',
  '@aws-sdk/client-dynamodb',
  'keyv',
];
const root = fileURLToPath(new URL('../../src/storage/', import.meta.url));

it('no module of gatehouse/storage imports a driver or oidc-provider at load time (only `import type`)', async () => {
  const files = (await readdir(root, { recursive: true })).filter((f) => f.endsWith('.ts'));
  expect(files.length).toBeGreaterThan(10);
  for (const file of files) {
    const source = await readFile(join(root, file), 'utf8');
    for (const match of source.matchAll(/^import\s+(?!type\b)[^;]*?from\s+'([^']+)'/gms)) {
      expect(HEAVY, `${file} imports ${match[1]}`).not.toContain(match[1]);
    }
  }
});

it('importing gatehouse/storage loads no driver (checked in a fresh process)', async () => {
  const modulePath = await buildStorageForChildren();
  // A resolve hook records every bare specifier the module graph asks for.
  const script = `
    import { register } from 'node:module';
    const seen = [];
    const { port1, port2 } = new MessageChannel();
    port1.on('message', (s) => seen.push(s));
    port1.unref();
    register('data:text/javascript,' + encodeURIComponent(\`
      let port;
      export function initialize(data) { port = data.port; }
      export async function resolve(specifier, context, next) {
        if (!specifier.startsWith('.') && !specifier.startsWith('node:') && !specifier.startsWith('file:')) port.postMessage(specifier);
        return next(specifier, context);
      }\`), { data: { port: port2 }, transferList: [port2] });
    const storage = await import(${JSON.stringify(pathToFileURL(modulePath).href)});
    await new Promise((r) => setTimeout(r, 100));
    console.log(JSON.stringify({ seen, exports: Object.keys(storage).length }));`;
  const output = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  const { seen, exports } = JSON.parse(output.trim().split('\n').pop()!) as { seen: string[]; exports: number };
  expect(exports).toBeGreaterThan(20);
  // Sealing is node:crypto; not even jose is needed to load the module.
  expect(seen).toEqual([]);
});

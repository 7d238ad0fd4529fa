#!/usr/bin/env node
// Runs `@modelcontextprotocol/conformance authorization` against a fresh `gatehouse serve` (from dist/, so run
// `npm run build` first), completing the suite's browser step by auto-login (posting the login and consent forms).
// Exit code: the suite's. Results: test-artifacts/conformance-authorization/.
//
//   npm run conformance-authorization
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { node22 as node22Path } from '../helpers/node22.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const dist = join(root, 'dist');
if (!existsSync(join(dist, 'authorization-server', 'serve.js'))) {
  console.error('conformance-authorization: dist/ is missing\nfix: run `npm run build` first');
  process.exit(1);
}
const suite = join(root, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');
if (!existsSync(suite)) {
  console.error('conformance-authorization: the conformance suite is not installed\nfix: run `npm install`');
  process.exit(1);
}
// The suite's runner needs Node 22; npm fetches it on first use.
const node22 = node22Path();

const { serve } = await import(join(dist, 'authorization-server', 'serve.js'));
const { headlessAuthorize } = await import(join(dist, 'client', 'headless-login.js'));

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const credentials = { username: 'conformance', password: `pw-${Math.random().toString(36).slice(2)}-long` };
const callbackPort = await freePort();
const redirectUri = `http://127.0.0.1:${callbackPort}/callback`;
const resource = 'http://127.0.0.1:8931/mcp';
const running = await serve(
  {
    port: 0,
    store: 'memory',
    superuser: credentials.username,
    resources: [{ resource, scopes: ['mcp:tools'] }],
    clients: [
      {
        client_id: 'gatehouse-conformance',
        client_name: 'MCP conformance suite',
        application_type: 'native',
        redirect_uris: [redirectUri],
        token_endpoint_auth_method: 'none',
      },
    ],
  },
  { env: { GATEHOUSE_SUPERUSER_PASSWORD: credentials.password } },
);

const outputDir = join(root, 'test-artifacts', 'conformance-authorization');
const child = spawn(
  node22,
  [
    suite,
    'authorization',
    '--url',
    running.issuer,
    '--client-id',
    'gatehouse-conformance',
    '--resource',
    resource,
    '--port',
    String(callbackPort),
    '--output-dir',
    outputDir,
  ],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);

let buffered = '';
let drove = false;
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  buffered += chunk.toString();
  const lines = buffered.split('\n');
  buffered = lines.pop() ?? '';
  for (const line of lines) {
    const trimmed = line.trim();
    if (!drove && trimmed.startsWith(`${running.issuer}/auth?`)) {
      drove = true;
      // The browser step: log in and approve by posting the forms, then deliver the redirect to the suite.
      headlessAuthorize(new URL(trimmed), redirectUri, credentials)
        .then((callback) => fetch(callback))
        .then((response) => response.body?.cancel())
        .catch((error) => {
          console.error(`conformance-authorization: auto-login failed: ${error.message}`);
          child.kill('SIGTERM');
        });
    }
  }
});

const code = await new Promise((resolve) => child.on('close', (c) => resolve(c ?? 1)));
await running.close();
console.log(`\nconformance-authorization: suite exited ${code}${drove ? '' : ' (the browser step never started)'}`);
process.exit(code);

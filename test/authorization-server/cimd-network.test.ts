// The network promises of client ID metadata documents (docs/authorization-server.md), through `gatehouse serve`:
// SSRF refusal of private targets (also by DNS rebinding), redirects not followed, the time and size limits, a
// failure answered once, and caching within the configured bounds. Names resolve through a lookup table loaded
// into the server process (test/fixtures/dns/hosts-hook.mjs); documents are served on loopback over https.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authorizationUrl, Browser, pkce, type ServedAs, selfSignedIdentity, startServedAs } from './helpers.js';

const HOOK = fileURLToPath(new URL('../fixtures/dns/hosts-hook.mjs', import.meta.url));
const REDIRECT = 'http://127.0.0.1/callback';

/** An https host on loopback whose routes the tests set; it counts connections and requests per path. */
async function startHost() {
  const routes = new Map<string, (res: import('node:http').ServerResponse, base: string) => void>();
  const requests = new Map<string, number>();
  let connections = 0;
  const server: Server = createServer(selfSignedIdentity(), (req, res) => {
    const path = req.url ?? '/';
    requests.set(path, (requests.get(path) ?? 0) + 1);
    const route = routes.get(path);
    if (route) route(res, base);
    else res.writeHead(404).end();
  });
  server.on('connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const base = `https://127.0.0.1:${port}`;
  /** Serves a valid document at `path` (its client ID is `${base}${path}`) with these headers. */
  const serveDocument = (path: string, headers: Record<string, string> = {}, extra: Record<string, unknown> = {}) =>
    routes.set(path, (res, origin) => {
      res.writeHead(200, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify({ client_id: `${origin}${path}`, redirect_uris: [REDIRECT], ...extra }));
    });
  return {
    base,
    port,
    routes,
    serveDocument,
    requests: (path: string) => requests.get(path) ?? 0,
    connections: () => connections,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** One authorization request for a CIMD client, as a browser sends it; how long the server took to answer. */
async function authorize(as: ServedAs, clientId: string) {
  const started = performance.now();
  const response = await new Browser().request(
    authorizationUrl(as, { clientId, redirectUri: 'http://127.0.0.1:5555/callback', challenge: pkce().challenge }),
  );
  const body = await response.text();
  const at = performance.now();
  return { status: response.status, location: response.headers.get('location'), body, ms: at - started, at };
}

/** The document was accepted: the browser goes on to the login page. */
function accepted(result: Awaited<ReturnType<typeof authorize>>) {
  return result.status >= 300 && result.status < 400 && /\/interaction\//.test(result.location ?? '');
}

/** Refused with an OAuth error page, and no redirect to the client. */
function expectRefused(result: Awaited<ReturnType<typeof authorize>>) {
  expect(result.status, result.body.slice(0, 200)).toBe(400);
  expect(result.location).toBeNull();
  expect(result.body).toContain('invalid_client');
}

/** One name per family of special-use addresses that is not the public internet, and the address it resolves to. */
const SPECIAL_USE = {
  'test-net-1.test': '192.0.2.10', // IPv4 documentation ranges
  'test-net-2.test': '198.51.100.10',
  'test-net-3.test': '203.0.113.10',
  'cgnat.test': '100.64.1.1', // shared address space
  'benchmarking.test': '198.18.0.1',
  'reserved.test': '240.0.0.1',
  'documentation-v6.test': '2001:db8::1',
  'nat64-private.test': '64:ff9b::a00:1', // NAT64 of 10.0.0.1
  'mapped.test': '::ffff:127.0.0.1', // IPv4-mapped loopback
  '6to4-private.test': '2002:c0a8:101::1', // 6to4 of 192.168.1.1
};

describe('client ID metadata documents on private networks (default: refused)', () => {
  let host: Awaited<ReturnType<typeof startHost>>;
  let as: ServedAs;
  let dir: string;
  let dnsLog: string;

  beforeAll(async () => {
    host = await startHost();
    host.serveDocument('/doc.json');
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-cimd-dns-'));
    dnsLog = join(dir, 'lookups.log');
    as = await startServedAs({}, [], {
      NODE_OPTIONS: `--import ${HOOK}`,
      // Trusting the self-signed host matters only if the server connects at all, which it must not.
      NODE_TLS_REJECT_UNAUTHORIZED: '0',
      TEST_DNS_HOSTS: JSON.stringify({
        'private.test': ['10.1.2.3', '127.0.0.1'],
        'loopback.test': ['127.0.0.1'],
        // DNS rebinding: public (example.com's address, never connected to) to the first lookup, then loopback
        // (where the document host listens).
        'rebind.test': ['93.184.215.14', '127.0.0.1'],
        // NAT64 of a public address is public (IPv6-only networks reach every IPv4 host so): checked, not refused.
        'nat64-public.test': ['64:ff9b::808:808', '127.0.0.1'],
        ...Object.fromEntries(Object.entries(SPECIAL_USE).map(([name, address]) => [name, [address]])),
      }),
      TEST_DNS_LOG: dnsLog,
    });
  });
  afterAll(async () => {
    await as?.close();
    host?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('refuses loopback and private targets, by address or by name, without connecting', async () => {
    for (const target of ['127.0.0.1', 'localhost', '[::1]', 'loopback.test', 'private.test']) {
      expectRefused(await authorize(as, `https://${target}:${host.port}/doc.json`));
    }
    expect(host.connections()).toBe(0);
  });

  it('refuses documentation and special-use ranges, and IPv6 forms of private IPv4 addresses, before connecting', async () => {
    const literals = [
      '[2001:db8::1]',
      '[::ffff:127.0.0.1]',
      '[::ffff:a00:1]',
      '[64:ff9b::10.0.0.1]',
      '[2002:7f00:1::]',
      '[::127.0.0.1]',
    ];
    for (const target of [...Object.keys(SPECIAL_USE), ...literals]) {
      expectRefused(await authorize(as, `https://${target}:${host.port}/doc.json`));
    }
    // Refused by the check: only the check looked the names up (`promises`), never a connection (`callback`).
    const lookups = readFileSync(dnsLog, 'utf8').split('\n');
    for (const [name, address] of Object.entries(SPECIAL_USE)) {
      const own = lookups.filter((line) => line.startsWith(`${name} `));
      expect(own.length, name).toBeGreaterThan(0);
      for (const line of own) expect(line).toBe(`${name} ${address} promises`);
    }
    expect(host.connections()).toBe(0);
  });

  it('lets NAT64 of a public IPv4 address through the check; the connection then goes to the address checked', async () => {
    expectRefused(await authorize(as, `https://nat64-public.test:${host.port}/doc.json`));
    const lookups = readFileSync(dnsLog, 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('nat64-public.test '));
    // Public to the check; the connection's own lookup answered loopback and was refused.
    expect(lookups.slice(0, 2)).toEqual([
      'nat64-public.test 64:ff9b::808:808 promises',
      'nat64-public.test 127.0.0.1 callback',
    ]);
    expect(host.connections()).toBe(0);
  });

  it('does not reach a private address by DNS rebinding: the address checked is the address connected to', async () => {
    const result = await authorize(as, `https://rebind.test:${host.port}/doc.json`);
    expectRefused(result);
    // The name was looked up again after answering public, and answered loopback: no connection was made.
    const lookups = readFileSync(dnsLog, 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('rebind.test '));
    expect(lookups[0]).toBe('rebind.test 93.184.215.14 promises');
    expect(lookups[1]).toBe('rebind.test 127.0.0.1 callback');
    expect(host.connections()).toBe(0);
  });
});

describe('client ID metadata documents: limits, redirects, failures, caching', () => {
  let host: Awaited<ReturnType<typeof startHost>>;
  let as: ServedAs;
  const hung: Array<import('node:http').ServerResponse> = [];

  beforeAll(async () => {
    host = await startHost();
    // Loopback documents are allowed here only because the config says so (a documented option).
    as = await startServedAs(
      {
        clientIdMetadataDocument: {
          allowPrivateNetworks: true,
          timeoutMs: 1000,
          maxBytes: 2048,
          cacheSeconds: { min: 2, max: 3 },
        },
      },
      [],
      { NODE_TLS_REJECT_UNAUTHORIZED: '0' },
    );
  });
  afterAll(async () => {
    await as?.close();
    for (const res of hung) res.destroy();
    host?.close();
  });

  it('accepts a loopback document when allowPrivateNetworks is set', async () => {
    host.serveDocument('/allowed.json', { 'cache-control': 'no-store' });
    expect(accepted(await authorize(as, `${host.base}/allowed.json`))).toBe(true);
  });

  it('does not follow redirects', async () => {
    host.routes.set('/moved.json', (res) => res.writeHead(302, { location: '/target.json' }).end());
    // The target would be a valid document for the client ID that redirected.
    host.routes.set('/target.json', (res, origin) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ client_id: `${origin}/moved.json`, redirect_uris: [REDIRECT] }));
    });
    expectRefused(await authorize(as, `${host.base}/moved.json`));
    expectRefused(await authorize(as, `${host.base}/moved.json`));
    // Once per request and then remembered for a while, like any failure.
    expect(host.requests('/moved.json')).toBe(1);
    expect(host.requests('/target.json')).toBe(0);
  });

  it('keeps to maxBytes', async () => {
    host.serveDocument('/small.json', {}, { client_name: 'x'.repeat(1500) });
    host.serveDocument('/large.json', {}, { client_name: 'x'.repeat(2100) });
    expect(accepted(await authorize(as, `${host.base}/small.json`))).toBe(true);
    expectRefused(await authorize(as, `${host.base}/large.json`));
  });

  it('answers an unreachable document once, after one time limit, and remembers the failure briefly', async () => {
    host.routes.set('/hang.json', (res) => hung.push(res));
    const first = await authorize(as, `${host.base}/hang.json`);
    expectRefused(first);
    // One fetch of 1 s, not one per lookup of the client in the request.
    expect(first.ms).toBeGreaterThanOrEqual(1000);
    expect(first.ms).toBeLessThan(1800);
    expect(host.requests('/hang.json')).toBe(1);
    // A retry within the next seconds answers at once, without fetching again.
    const second = await authorize(as, `${host.base}/hang.json`);
    expectRefused(second);
    expect(second.ms).toBeLessThan(500);
    expect(host.requests('/hang.json')).toBe(1);
    // Briefly: once the failure is forgotten (10 s), a fixed document is fetched again and accepted.
    host.serveDocument('/hang.json');
    await new Promise((resolve) => setTimeout(resolve, first.at + 10_000 - performance.now()));
    let retried = await authorize(as, `${host.base}/hang.json`);
    for (let i = 0; i < 10 && !accepted(retried); i++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      retried = await authorize(as, `${host.base}/hang.json`);
    }
    expect(accepted(retried)).toBe(true);
    expect(host.requests('/hang.json')).toBe(2);
  }, 30_000);

  it("caches within cacheSeconds: the document's Cache-Control, raised to min and lowered to max", async () => {
    host.serveDocument('/no-cache.json', { 'cache-control': 'max-age=0' });
    host.serveDocument('/long-cache.json', { 'cache-control': 'max-age=600' });
    for (const path of ['/no-cache.json', '/long-cache.json']) {
      expect(accepted(await authorize(as, `${host.base}${path}`))).toBe(true);
      expect(accepted(await authorize(as, `${host.base}${path}`))).toBe(true);
      // max-age=0 is held for the minimum (2 s).
      expect(host.requests(path), path).toBe(1);
    }
    // max-age=600 is held for the maximum (3 s) only.
    await new Promise((resolve) => setTimeout(resolve, 3200));
    expect(accepted(await authorize(as, `${host.base}/long-cache.json`))).toBe(true);
    expect(host.requests('/long-cache.json')).toBe(2);
  });
});

// Proxies and extra CAs: a user's program (a child process, so HTTPS_PROXY, NO_PROXY and NODE_EXTRA_CA_CERTS are
// real environment variables, read the way Node and the client read them) logs in, refreshes, calls a tool and
// runs diagnose() against an https MCP server and authorization server whose certificate a private CA signed.
// A CONNECT proxy written here counts the tunnels it opens and where to; the servers record the socket each
// request came on, so "every request went through the proxy" is checked request by request.
import { execFile, execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildClientForChildren,
  type OAuthTestStack,
  startOAuthTestStack,
  temporaryDirectory,
} from './oauth-helpers.js';

const child = fileURLToPath(new URL('./fixtures/proxy-child.mjs', import.meta.url));

/** A CA and a certificate it signed for 127.0.0.1, made with the openssl command line. */
async function makeCertificates(dir: string): Promise<{ caFile: string; key: string; cert: string }> {
  const file = (name: string) => join(dir, name);
  const run = (args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run([
    'req',
    '-x509',
    ...ec,
    '-keyout',
    file('ca.key'),
    '-out',
    file('ca.pem'),
    '-days',
    '2',
    '-subj',
    '/CN=Gatehouse test CA',
  ]);
  run(['req', ...ec, '-keyout', file('server.key'), '-out', file('server.csr'), '-subj', '/CN=127.0.0.1']);
  await writeFile(file('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  run([
    'x509',
    '-req',
    '-in',
    file('server.csr'),
    '-CA',
    file('ca.pem'),
    '-CAkey',
    file('ca.key'),
    '-CAcreateserial',
    '-out',
    file('server.pem'),
    '-days',
    '2',
    '-extfile',
    file('ext.cnf'),
  ]);
  return {
    caFile: file('ca.pem'),
    key: await readFile(file('server.key'), 'utf8'),
    cert: await readFile(file('server.pem'), 'utf8'),
  };
}

interface Tunnel {
  target: string;
  /** The proxy's end of the connection to the target: the port the target sees the requests come from. */
  upstreamPort: number;
}

/** An HTTP CONNECT proxy (loopback targets only) that records each tunnel it opens. */
async function startConnectProxy(): Promise<{ url: string; tunnels: Tunnel[]; close(): Promise<void> }> {
  const tunnels: Tunnel[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((_req, res) => {
    res.writeHead(405).end('this proxy only tunnels (CONNECT)');
  });
  server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    const match = /^127\.0\.0\.1:(\d+)$/.exec(req.url ?? '');
    if (!match) {
      client.end('HTTP/1.1 403 Forbidden\r\n\r\n');
      return;
    }
    const upstream = connect(Number(match[1]), '127.0.0.1', () => {
      tunnels.push({ target: req.url!, upstreamPort: upstream.localPort! });
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
      socket.on('close', () => sockets.delete(socket));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    tunnels,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** The environment without any proxy or CA variable the test machine may have. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of ['HTTPS_PROXY', 'HTTP_PROXY', 'NO_PROXY', 'ALL_PROXY', 'NODE_EXTRA_CA_CERTS']) {
    delete env[name];
    delete env[name.toLowerCase()];
  }
  return { ...env, ...extra };
}

type ChildOutcome = { subjects: unknown[]; failed: string[] } | { error: string[] };

function runChild(src: string, mcpUrl: string, env: Record<string, string>): Promise<ChildOutcome> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [child, src, mcpUrl],
      { env: cleanEnv(env), timeout: 60_000 },
      (error, stdout, stderr) => {
        const line = stdout.trim().split('\n').at(-1);
        if (!line) reject(new Error(`the child printed nothing (${error?.message ?? ''}): ${stderr}`));
        else resolve(JSON.parse(line) as ChildOutcome);
      },
    );
  });
}

describe('proxies and extra CAs, for every request the client makes', () => {
  let src: string;
  let dir: Awaited<ReturnType<typeof temporaryDirectory>>;
  let caFile: string;
  let stack: OAuthTestStack;
  let proxy: Awaited<ReturnType<typeof startConnectProxy>>;
  /** Every request the servers received, by the port of the peer that sent it. */
  const seen: Array<{ server: 'as' | 'mcp'; peerPort: number; request: string }> = [];
  let asHost: string;
  let mcpHost: string;
  const record = (server: 'as' | 'mcp') => (req: IncomingMessage) => {
    seen.push({ server, peerPort: req.socket.remotePort ?? 0, request: `${req.method} ${req.url}` });
    return false;
  };

  beforeAll(async () => {
    src = await buildClientForChildren();
    dir = await temporaryDirectory('network');
    const certificates = await makeCertificates(dir.path);
    caFile = certificates.caFile;
    stack = await startOAuthTestStack({
      tls: certificates,
      front: { as: record('as'), mcp: record('mcp') },
    });
    asHost = new URL(stack.issuer).host;
    mcpHost = new URL(stack.mcpUrl).host;
    proxy = await startConnectProxy();
  }, 60_000);

  afterAll(async () => {
    await proxy?.close();
    await stack?.close();
    await dir?.remove();
  });

  const reset = () => {
    seen.length = 0;
    proxy.tunnels.length = 0;
    for (const key of Object.keys(stack.grants)) delete stack.grants[key];
  };

  it('HTTPS_PROXY: login, refresh, tool calls and diagnose() all go through CONNECT tunnels, trusting NODE_EXTRA_CA_CERTS', async () => {
    reset();
    const outcome = await runChild(src, stack.mcpUrl, { HTTPS_PROXY: proxy.url, NODE_EXTRA_CA_CERTS: caFile });
    expect(outcome).toEqual({ subjects: ['demo', 'demo'], failed: [] });
    expect(stack.grants['authorization_code']).toBe(1);
    expect(stack.grants['refresh_token']).toBeGreaterThanOrEqual(1);

    const targets = new Set(proxy.tunnels.map((t) => t.target));
    expect(targets).toEqual(new Set([asHost, mcpHost]));
    // Every request either server received came through one of the proxy's tunnels.
    const tunnelPorts = new Set(proxy.tunnels.map((t) => t.upstreamPort));
    const direct = seen.filter((s) => !tunnelPorts.has(s.peerPort));
    expect(direct).toEqual([]);
    // The whole flow was there: discovery, registration, login, token, MCP.
    const requests = seen.map((s) => `${s.server} ${s.request}`);
    expect(requests).toEqual(
      expect.arrayContaining([
        'mcp GET /.well-known/oauth-protected-resource/mcp',
        'as GET /.well-known/oauth-authorization-server',
        'as POST /reg',
        'as POST /token',
        'mcp POST /mcp',
      ]),
    );
  }, 90_000);

  it('https_proxy (lower case) without the extra CA: the tunnel opens, and TLS refuses the unknown certificate', async () => {
    reset();
    const outcome = await runChild(src, stack.mcpUrl, { https_proxy: proxy.url });
    expect('error' in outcome && outcome.error.join(' ')).toMatch(/certificate/i);
    expect(proxy.tunnels.map((t) => t.target)).toContain(mcpHost);
    expect(seen).toEqual([]); // no request got through the TLS handshake
  }, 90_000);

  it('NO_PROXY / no_proxy: loopback servers are reached directly, no tunnel opened', async () => {
    const variants: Array<Record<string, string>> = [{ NO_PROXY: '127.0.0.1' }, { no_proxy: 'localhost,127.0.0.1' }];
    for (const noProxy of variants) {
      reset();
      const outcome = await runChild(src, stack.mcpUrl, {
        HTTPS_PROXY: proxy.url,
        NODE_EXTRA_CA_CERTS: caFile,
        ...noProxy,
      });
      expect(outcome).toEqual({ subjects: ['demo', 'demo'], failed: [] });
      expect(proxy.tunnels).toEqual([]);
      expect(seen.length).toBeGreaterThan(5);
    }
  }, 120_000);
});

// Network pieces for tests of proxies and private CAs: certificates made with openssl, and a CONNECT proxy on
// loopback that records every tunnel it opens.
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { type OAuthTestStack, startOAuthTestStack, temporaryDirectory } from '../client/oauth-helpers.js';

/** A CA and a certificate it signed for 127.0.0.1, made with the openssl command line. */
export async function makeCertificates(dir: string): Promise<{ caFile: string; key: string; cert: string }> {
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

export interface Tunnel {
  target: string;
  /** The proxy's end of the connection to the target: the port the target sees the requests come from. */
  upstreamPort: number;
}

/** An HTTP CONNECT proxy (loopback targets only) that records each tunnel it opens. */
export async function startConnectProxy(): Promise<{ url: string; tunnels: Tunnel[]; close(): Promise<void> }> {
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
export function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of ['HTTPS_PROXY', 'HTTP_PROXY', 'NO_PROXY', 'ALL_PROXY', 'NODE_EXTRA_CA_CERTS']) {
    delete env[name];
    delete env[name.toLowerCase()];
  }
  return { ...env, ...extra };
}

/**
 * An https test stack (MCP server and authorization server, certificates from a private CA) and a CONNECT proxy,
 * in a fresh directory; `front` sees every request first, as in {@link startOAuthTestStack}.
 */
export async function startProxiedTlsStack(
  name: string,
  front: NonNullable<Parameters<typeof startOAuthTestStack>[0]>['front'],
): Promise<{
  dir: string;
  caFile: string;
  stack: OAuthTestStack;
  proxy: Awaited<ReturnType<typeof startConnectProxy>>;
  close(): Promise<void>;
}> {
  const dir = await temporaryDirectory(name);
  const certificates = await makeCertificates(dir.path);
  const stack = await startOAuthTestStack({ tls: certificates, front });
  const proxy = await startConnectProxy();
  return {
    dir: dir.path,
    caFile: certificates.caFile,
    stack,
    proxy,
    close: async () => {
      await proxy.close();
      await stack.close();
      await dir.remove();
    },
  };
}

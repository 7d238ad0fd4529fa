import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import type { FetchHandler } from './protect.js';

/**
 * Adapts a web-standard fetch handler to a `node:http` request listener.
 *
 * @example
 * ```ts
 * import { createServer } from 'node:http';
 * import { toNodeListener } from 'gatehouse/server';
 *
 * createServer(toNodeListener(async () => new Response('ok'))).listen(3000, '127.0.0.1');
 * ```
 */
export function toNodeListener(handler: FetchHandler): (req: IncomingMessage, res: ServerResponse) => void {
  const listener = getRequestListener(handler);
  return (req, res) => {
    void listener(req, res);
  };
}

/** A running loopback HTTP server. */
export interface RunningServer {
  /** Base URL, e.g. `http://127.0.0.1:43121`. */
  url: string;
  port: number;
  server: Server;
  close(): Promise<void>;
}

/**
 * Serves a listener on `host:port` (port 0 picks a free one) and resolves once it listens. The host defaults
 * to 127.0.0.1. With `tls` (a PEM `key` and `cert`) it serves https.
 *
 * @example
 * ```ts
 * import { listen, toNodeListener } from 'gatehouse/server';
 *
 * const server = await listen(toNodeListener(handler));
 * console.log(server.url); // http://127.0.0.1:43121
 * await server.close();
 * ```
 */
export async function listen(
  listener: (req: IncomingMessage, res: ServerResponse) => void,
  options: { port?: number; host?: string; tls?: { key: string; cert: string } } = {},
): Promise<RunningServer> {
  const host = options.host ?? '127.0.0.1';
  const server = options.tls ? createHttpsServer(options.tls, listener) : createServer(listener);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const hostPart = host.includes(':') ? `[${host}]` : host;
  return {
    url: `${options.tls ? 'https' : 'http'}://${hostPart}:${port}`,
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { FetchHandler } from './protect.js';

/** The parts of an Express request the adapter reads (structural, so Express stays an optional peer). */
export interface ExpressLikeRequest extends IncomingMessage {
  originalUrl?: string;
  body?: unknown;
}

/** An Express-style middleware. */
export type ExpressMiddleware = (req: ExpressLikeRequest, res: ServerResponse, next: (error?: unknown) => void) => void;

function toRequest(req: ExpressLikeRequest): Request {
  const host = req.headers.host ?? 'localhost';
  const protocol = (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
  const url = new URL(req.originalUrl ?? req.url ?? '/', `${protocol}://${host}`);
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    else headers.set(name, value);
  }
  const method = req.method ?? 'GET';
  if (method === 'GET' || method === 'HEAD') return new Request(url, { method, headers });
  // A body parser (express.json()) may already have read the stream: hand its result on as JSON.
  if (req.body !== undefined && (req.readableEnded || req.complete)) {
    const body = Buffer.isBuffer(req.body)
      ? new Uint8Array(req.body)
      : typeof req.body === 'string'
        ? req.body
        : JSON.stringify(req.body);
    headers.delete('content-length');
    return new Request(url, { method, headers, body });
  }
  return new Request(url, {
    method,
    headers,
    body: Readable.toWeb(req) as ReadableStream<Uint8Array>,
    duplex: 'half',
  } as RequestInit);
}

async function send(res: ServerResponse, response: Response): Promise<void> {
  res.statusCode = response.status;
  response.headers.forEach((value, name) => {
    if (name !== 'set-cookie') res.setHeader(name, value);
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length) res.setHeader('set-cookie', cookies);
  if (!response.body) {
    res.end();
    return;
  }
  res.flushHeaders();
  const reader = response.body.getReader();
  res.once('close', () => void reader.cancel().catch(() => {}));
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (!res.write(value)) await new Promise((resolve) => res.once('drain', resolve));
  }
  res.end();
}

/**
 * Mounts a {@link protect}ed handler in Express (4 or 5). Requests for the resource path and the well-known
 * metadata paths go to it; everything else goes on to the next route. Works before or after `express.json()`.
 *
 * @example
 * ```ts
 * import express from 'express';
 * import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
 * import { expressHandler, jwtVerifier, protect } from 'gatehouse/server';
 *
 * const app = express();
 * const mcp = createMcpHandler(() => new McpServer({ name: 'example', version: '1.0.0' }));
 * app.use(
 *   expressHandler(
 *     protect(mcp, {
 *       resource: 'https://mcp.example.com/mcp',
 *       authorizationServers: ['https://auth.example.com'],
 *       verifier: jwtVerifier({ issuer: 'https://auth.example.com' }),
 *     }),
 *   ),
 * );
 * app.listen(3000);
 * ```
 */
export function expressHandler(handler: FetchHandler & { handles?: (pathname: string) => boolean }): ExpressMiddleware {
  return (req, res, next) => {
    const pathname = (req.originalUrl ?? req.url ?? '/').split('?')[0]!;
    if (handler.handles && !handler.handles(pathname)) {
      next();
      return;
    }
    handler(toRequest(req))
      .then((response) => send(res, response))
      .catch(next);
  };
}

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ProtectedHandler } from '../server/protect.js';
import { acceptsJsonAndEvents, isJsonContentType } from './client-transport.js';
import { type GatewaySession, subjectOf } from './session.js';

/** The transport's bound on a request body (the SDK's). */
const MAX_BODY_BYTES = 4 * 1024 * 1024;
const BEARER = /^Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)[ ]*$/i;

/** One upstream's route, as the hot path needs it. */
export interface SessionPostRoute {
  upstream: string;
  handler: ProtectedHandler;
  sessions: Map<string, GatewaySession>;
}

/** The full handler: protect() and the session's transport behind @hono/node-server's adapter. */
type Listener = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * The gateway's hot path: a `POST` on an established session with a `Bearer` token — nearly every request of a
 * session — read straight off `node:http`: the token verified through protect()'s own checks (a cached result for
 * a token seen before), the body parsed once, the answer written with one `end()` and a Content-Length. No web
 * `Request`, `Headers` or `Response` objects, no stream. Returns false when the request is not such a one; the
 * full handler then takes it. Anything the hot path does not answer itself as a success (a refused token, a call
 * beyond the token's scopes, a body that is not JSON) goes to `fallback` too — the body, if read, kept for it in
 * `rawBody`, which @hono/node-server reads instead of the socket — so every refusal is the one protect() gives.
 */
export function takeSessionPost(
  route: SessionPostRoute,
  req: IncomingMessage,
  res: ServerResponse,
  fallback: Listener,
): boolean {
  const { headers } = req;
  const sessionId = headers['mcp-session-id'];
  const authorization = headers.authorization;
  const length = headers['content-length'];
  if (req.method !== 'POST' || typeof sessionId !== 'string' || !authorization || length === undefined) return false;
  if (!(Number(length) <= MAX_BODY_BYTES)) return false;
  if (!acceptsJsonAndEvents(headers.accept) || !isJsonContentType(headers['content-type'])) return false;
  const token = BEARER.exec(authorization)?.[1];
  const session = route.sessions.get(sessionId);
  if (!token || !session || session.options.upstream !== route.upstream) return false;
  serve(route, session, token, sessionId, req, res, fallback).catch(() => {
    if (!res.headersSent) res.writeHead(500).end();
    else res.destroy();
  });
  return true;
}

async function serve(
  route: SessionPostRoute,
  session: GatewaySession,
  token: string,
  sessionId: string,
  req: IncomingMessage,
  res: ServerResponse,
  fallback: Listener,
): Promise<void> {
  const { handler } = route;
  const authInfo = await handler.authorizeBearer(token);
  if (!authInfo || session.subject !== subjectOf(authInfo) || !handler.ownsSession(sessionId, authInfo)) {
    return fallback(req, res);
  }
  const raw = await readAll(req);
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch {
    body = undefined;
  }
  if (body === undefined || !handler.permits(authInfo, body)) {
    (req as IncomingMessage & { rawBody?: Buffer }).rawBody = raw;
    return fallback(req, res);
  }
  const version = req.headers['mcp-protocol-version'];
  const reply = await session.post(body, authInfo, sessionId, typeof version === 'string' ? version : undefined);
  if (reply instanceof Response) return writeResponse(res, reply);
  res.writeHead(200, [
    'content-type',
    'application/json',
    'mcp-session-id',
    sessionId,
    'content-length',
    String(Buffer.byteLength(reply.json)),
  ]);
  res.end(reply.json);
}

/** The request body, whole (its declared length, which node:http holds it to, is within the bound). */
function readAll(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    req.once('error', reject);
    req.once('close', () => {
      if (!req.readableEnded) reject(new Error('the client left before sending the whole body'));
    });
  });
}

/** A transport's Response (an SSE stream, an error, 202) onto node:http; a stream ends when the client leaves. */
async function writeResponse(res: ServerResponse, response: Response): Promise<void> {
  const head: string[] = [];
  response.headers.forEach((value, name) => {
    head.push(name, value);
  });
  const stream = response.headers.get('content-type')?.startsWith('text/event-stream') ? response.body : null;
  if (!stream) {
    const text = response.status === 202 ? '' : await response.text();
    res.writeHead(response.status, [...head, 'content-length', String(Buffer.byteLength(text))]).end(text);
    return;
  }
  res.writeHead(response.status, head);
  res.flushHeaders();
  const reader = stream.getReader();
  res.once('close', () => void reader.cancel().catch(() => {}));
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      res.write(value);
    }
  } finally {
    res.end();
  }
}

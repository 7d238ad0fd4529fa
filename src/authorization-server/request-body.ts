import { IncomingMessage, type ServerResponse } from 'node:http';

/** oidc-provider's own limit on request bodies. */
const MAX_BODY_BYTES = 56 * 1024;

/** The body of `req`, or `undefined` when it exceeds the limit. */
export async function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** A copy of `req` whose body is `body`, for oidc-provider to read as if it had arrived so. */
export function replay(req: IncomingMessage, body: Buffer): IncomingMessage {
  const copy = new IncomingMessage(req.socket);
  copy.method = req.method;
  copy.url = req.url;
  copy.httpVersionMajor = req.httpVersionMajor;
  copy.httpVersionMinor = req.httpVersionMinor;
  copy.httpVersion = req.httpVersion;
  copy.headers = { ...req.headers, 'content-length': String(body.length) };
  delete copy.headers['transfer-encoding'];
  copy.rawHeaders = Object.entries(copy.headers).flatMap(([k, v]) => [k, String(v)]);
  copy.push(body);
  copy.push(null);
  // The whole message is here: without this, Node takes the copy for an aborted request and closes the socket.
  copy.complete = true;
  return copy;
}

/**
 * Passes `req` on to `next` with its body rewritten by `rewrite` (which returns undefined to leave it as it came).
 * A body over the limit is answered with `413 invalid_request`.
 */
function withBody(
  req: IncomingMessage,
  res: ServerResponse,
  next: (req: IncomingMessage, res: ServerResponse) => void,
  rewrite: (body: Buffer) => Buffer | undefined,
): void {
  readBody(req).then(
    (body) => {
      if (!body) {
        res.writeHead(413, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'invalid_request', error_description: 'the request body is too large' }));
        return;
      }
      next(replay(req, rewrite(body) ?? body), res);
    },
    () => res.destroy(),
  );
}

/**
 * Passes `req` on to `next` with its JSON object body changed by `change` (a body that is not a JSON object goes on
 * unchanged, for `next` to refuse).
 */
export function withJsonBody(
  req: IncomingMessage,
  res: ServerResponse,
  next: (req: IncomingMessage, res: ServerResponse) => void,
  change: (body: Record<string, unknown>) => void,
): void {
  withBody(req, res, next, (body) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      return undefined;
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return undefined;
    change(parsed as Record<string, unknown>);
    return Buffer.from(JSON.stringify(parsed));
  });
}

/** Passes `req` on to `next` with its form-encoded body changed by `change`. */
export function withFormBody(
  req: IncomingMessage,
  res: ServerResponse,
  next: (req: IncomingMessage, res: ServerResponse) => void,
  change: (body: URLSearchParams) => void,
): void {
  withBody(req, res, next, (body) => {
    const params = new URLSearchParams(body.toString('utf8'));
    change(params);
    return Buffer.from(params.toString());
  });
}

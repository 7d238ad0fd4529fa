import type { JSONRPCMessage, RequestId, Transport } from '@modelcontextprotocol/client';
import { Agent, type Dispatcher, request } from 'undici';

/**
 * How the gateway reaches HTTP upstreams. A server closes a connection it has kept idle (5 s for Node's) without
 * reading what arrives on it; a request written onto it just then fails (ECONNRESET, other side closed) though the
 * upstream never saw it. Under load — the gateway's event loop lagging by seconds — connections reused late fail a
 * tenth of 200 concurrent sessions. So: connections are reused only within 2 s of idling, and a request that fails
 * that way before any response is sent once more on a new connection — when repeating it is harmless. The same
 * error also comes from an upstream that read the request and then died, and a `tools/call` that ran must not run
 * twice.
 */
const UPSTREAM_KEEP_ALIVE_MS = 2000;
let pooled: Agent | undefined;
let fresh: Agent | undefined;
const STALE_CONNECTION = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);

/** JSON-RPC methods that read, or set state to the same value again: sending one twice changes nothing. */
const REPEATABLE_METHODS = new Set([
  'initialize',
  'ping',
  'tools/list',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'resources/subscribe',
  'resources/unsubscribe',
  'prompts/list',
  'prompts/get',
  'completion/complete',
  'logging/setLevel',
]);

/**
 * The method of the first request in a POST body that is not harmless to send twice; undefined when every
 * message is (reads, notifications, answers to the upstream's own requests, a GET stream, a DELETE).
 */
function unrepeatableRequest(body: unknown): string | undefined {
  if (typeof body !== 'string') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return 'a request the gateway could not read';
  }
  for (const message of Array.isArray(parsed) ? parsed : [parsed]) {
    const { id, method } = (message ?? {}) as { id?: unknown; method?: unknown };
    if (id === undefined || typeof method !== 'string') continue; // a notification or an answer
    if (!REPEATABLE_METHODS.has(method)) return method;
  }
  return undefined;
}

/** An upstream dropped the connection after a request that may have taken effect; it was not sent again. */
export class UnrepeatableRequestError extends Error {
  constructor(method: string, cause: unknown) {
    super(`closed the connection before answering ${method}; it may have run, so the gateway did not send it again`, {
      cause,
    });
    this.name = 'UnrepeatableRequestError';
  }
}

/**
 * Runs `send` on the gateway's keep-alive pool, and once more on a new connection when it failed on a stale one
 * and `body` is harmless to send twice. Shared by {@link upstreamRequest} and the fetch of the SSE (2024-11-05)
 * upstreams.
 */
export async function onUpstreamPool<T>(
  send: (dispatcher: Agent) => Promise<T>,
  signal?: AbortSignal | null,
  body?: unknown,
): Promise<T> {
  pooled ??= new Agent({ keepAliveTimeout: UPSTREAM_KEEP_ALIVE_MS, keepAliveMaxTimeout: UPSTREAM_KEEP_ALIVE_MS });
  try {
    return await send(pooled);
  } catch (error) {
    // undici's request() names the code on the error, fetch on its cause.
    const { code, cause } = error as { code?: string; cause?: { code?: string } };
    if (!STALE_CONNECTION.has(code ?? cause?.code ?? '') || signal?.aborted) throw error;
    const method = unrepeatableRequest(body);
    if (method) throw new UnrepeatableRequestError(method, error);
    fresh ??= new Agent({ pipelining: 0 }); // pipelining 0: a new connection, closed after the response
    return send(fresh);
  }
}

/** undici's `request()` on the gateway's keep-alive pool: no fetch, no web streams, one write per small body. */
export function upstreamRequest(
  url: URL,
  options: { method: 'GET' | 'POST' | 'DELETE'; headers: Record<string, string>; body?: string; signal?: AbortSignal },
): Promise<Dispatcher.ResponseData> {
  return onUpstreamPool((dispatcher) => request(url, { ...options, dispatcher }), options.signal, options.body);
}

/** An upstream's answer that is not a success: its status, and its body in the message. */
export class UpstreamHttpError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'UpstreamHttpError';
  }
}

type Message = JSONRPCMessage & { id?: RequestId; method?: string; result?: { protocolVersion?: unknown } };

const ACCEPT = 'application/json, text/event-stream';
const RECONNECT_MS = 1000;
const MAX_RECONNECTS = 2;

const mediaType = (header: string | string[] | undefined): string =>
  (Array.isArray(header) ? header[0] : header)?.split(';')[0]?.trim().toLowerCase() ?? '';
const headerValue = (header: string | string[] | undefined): string | undefined =>
  Array.isArray(header) ? header[0] : header;

/**
 * Reads a `text/event-stream` body: each `message` event's data to `onmessage`, the last event id and the server's
 * `retry` kept for resuming. Resolves when the body ends, rejects when it fails.
 */
function readEvents(
  body: Dispatcher.ResponseData['body'],
  onmessage: (data: string) => void,
  cursor: { lastEventId?: string; retryMs?: number },
): Promise<void> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    let data: string | undefined;
    let event = '';
    body.setEncoding('utf8');
    body.on('data', (chunk: string) => {
      buffer += chunk;
      let start = 0;
      for (let end = buffer.indexOf('\n'); end !== -1; end = buffer.indexOf('\n', start)) {
        let line = buffer.slice(start, end);
        start = end + 1;
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (data !== undefined && (event === '' || event === 'message')) onmessage(data);
          data = undefined;
          event = '';
          continue;
        }
        const colon = line.indexOf(':');
        if (colon === 0) continue; // a comment (keep-alive)
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'data') data = data === undefined ? value : `${data}\n${value}`;
        else if (field === 'event') event = value;
        else if (field === 'id' && !value.includes('\0')) cursor.lastEventId = value;
        else if (field === 'retry' && /^\d+$/.test(value)) cursor.retryMs = Number(value);
      }
      buffer = buffer.slice(start);
    });
    body.once('end', () => resolve());
    body.once('error', reject);
  });
}

/**
 * The gateway's client for a streamable-HTTP upstream (MCP 2025-03-26 and later), in the shape of the SDK's
 * `Transport`: a POST per message on undici's keep-alive pool, the answer read as JSON or as a minimal SSE stream
 * (resumed with `Last-Event-ID` when the upstream closes it before answering), the upstream's session id and
 * negotiated protocol version sent with every later request, one `GET` stream for what the upstream sends outside a
 * request, and `DELETE` to end the session. Headers come from `headers()` alone — never from the caller.
 */
export class StreamableHttpClient implements Transport {
  onmessage?: (message: JSONRPCMessage) => void;
  onclose?: () => void;
  onerror?: (error: Error) => void;
  sessionId: string | undefined;
  #protocolVersion: string | undefined;
  #initializeId: RequestId | undefined;
  #aborter = new AbortController();
  #closed = false;
  #listening = false;

  constructor(
    readonly url: URL,
    readonly headers: () => Promise<Record<string, string>> | Record<string, string>,
  ) {}

  async start(): Promise<void> {}

  async #requestHeaders(accept: string): Promise<Record<string, string>> {
    const given = this.headers();
    const headers: Record<string, string> = { ...(given instanceof Promise ? await given : given), accept };
    if (this.sessionId !== undefined) headers['mcp-session-id'] = this.sessionId;
    if (this.#protocolVersion !== undefined) headers['mcp-protocol-version'] = this.#protocolVersion;
    return headers;
  }

  async send(message: JSONRPCMessage): Promise<void> {
    const messages = (Array.isArray(message) ? message : [message]) as Message[];
    const initialize = messages.find((m) => m.method === 'initialize' && m.id !== undefined);
    const headers = await this.#requestHeaders(ACCEPT);
    headers['content-type'] = 'application/json';
    if (initialize) {
      // A new upstream session: no id (nor version) of an earlier one.
      delete headers['mcp-session-id'];
      delete headers['mcp-protocol-version'];
      this.#initializeId = initialize.id;
    }
    const response = await upstreamRequest(this.url, {
      method: 'POST',
      headers,
      body: JSON.stringify(message),
      signal: this.#aborter.signal,
    });
    const { statusCode, body } = response;
    if (statusCode >= 300) {
      const text = await body.text().catch(() => '');
      throw new UpstreamHttpError(`Error POSTing to endpoint (HTTP ${statusCode}): ${text}`, statusCode);
    }
    if (initialize) this.sessionId = headerValue(response.headers['mcp-session-id']);
    const ids = new Set<RequestId>();
    for (const m of messages) if (m.method !== undefined && m.id !== undefined) ids.add(m.id);
    if (statusCode === 202 || ids.size === 0) {
      await body.dump();
      if (messages.some((m) => m.method === 'notifications/initialized')) this.#listen();
      return;
    }
    const type = mediaType(response.headers['content-type']);
    if (type === 'application/json') {
      const data = (await body.json()) as Message | Message[];
      for (const m of Array.isArray(data) ? data : [data]) this.#deliver(m);
    } else if (type === 'text/event-stream') {
      void this.#answers(body, ids);
    } else {
      await body.dump();
      throw new UpstreamHttpError(`Unexpected content type: ${type || '(none)'}`, statusCode);
    }
  }

  #deliver(message: Message, pending?: Set<RequestId>): void {
    if (message.method === undefined && message.id !== undefined) {
      pending?.delete(message.id);
      if (message.id === this.#initializeId) {
        this.#initializeId = undefined;
        const version = message.result?.protocolVersion;
        if (typeof version === 'string') this.#protocolVersion = version;
      }
    }
    this.onmessage?.(message);
  }

  #parse(data: string, pending?: Set<RequestId>): void {
    let message: Message;
    try {
      message = JSON.parse(data) as Message;
    } catch (error) {
      this.onerror?.(new Error(`the upstream sent an event that is not JSON: ${(error as Error).message}`));
      return;
    }
    this.#deliver(message, pending);
  }

  /**
   * A POST's SSE answer: read to its end; resumed from the last event id while answers are missing (the upstream
   * may close a stream to have the client poll); requests left unanswered get a JSON-RPC error.
   */
  async #answers(body: Dispatcher.ResponseData['body'], pending: Set<RequestId>): Promise<void> {
    const cursor: { lastEventId?: string; retryMs?: number } = {};
    let failure = 'the upstream closed the stream before answering';
    try {
      await readEvents(body, (data) => this.#parse(data, pending), cursor);
      for (let attempt = 0; pending.size > 0 && cursor.lastEventId !== undefined && !this.#closed; attempt++) {
        if (attempt >= MAX_RECONNECTS) break;
        await new Promise((r) => setTimeout(r, cursor.retryMs ?? RECONNECT_MS));
        const resumed = await this.#get(cursor.lastEventId);
        if (!resumed) break;
        const seen = cursor.lastEventId;
        await readEvents(resumed, (data) => this.#parse(data, pending), cursor);
        if (cursor.lastEventId !== seen) attempt = -1; // progress: the count starts again
      }
    } catch (error) {
      failure = `the stream from the upstream failed: ${(error as Error).message}`;
    }
    if (this.#closed) return;
    for (const id of pending) {
      this.onmessage?.({ jsonrpc: '2.0', id, error: { code: -32603, message: failure } } as JSONRPCMessage);
    }
  }

  /** A GET stream (resuming after `lastEventId`), or undefined when the upstream offers none. */
  async #get(lastEventId?: string): Promise<Dispatcher.ResponseData['body'] | undefined> {
    const headers = await this.#requestHeaders('text/event-stream');
    if (lastEventId !== undefined) headers['last-event-id'] = lastEventId;
    const response = await upstreamRequest(this.url, { method: 'GET', headers, signal: this.#aborter.signal });
    if (response.statusCode !== 200 || mediaType(response.headers['content-type']) !== 'text/event-stream') {
      await response.body.dump().catch(() => {});
      return undefined;
    }
    return response.body;
  }

  /** The upstream's messages outside any request, on a GET stream kept open (405: the upstream has none). */
  #listen(): void {
    if (this.#listening) return;
    this.#listening = true;
    void (async () => {
      const cursor: { lastEventId?: string; retryMs?: number } = {};
      for (let failures = 0; !this.#closed && failures <= MAX_RECONNECTS; ) {
        try {
          const body = await this.#get(cursor.lastEventId);
          if (!body) break;
          failures = 0;
          await readEvents(body, (data) => this.#parse(data), cursor);
        } catch (error) {
          if (this.#closed) break;
          failures++;
          this.onerror?.(error as Error);
        }
        if (!this.#closed) await new Promise((r) => setTimeout(r, cursor.retryMs ?? RECONNECT_MS));
      }
      this.#listening = false;
    })();
  }

  /** Ends the upstream session (`DELETE`; an upstream that answers 405 keeps it until it expires). */
  async terminateSession(): Promise<void> {
    if (this.sessionId === undefined) return;
    const response = await upstreamRequest(this.url, {
      method: 'DELETE',
      headers: await this.#requestHeaders(ACCEPT),
    });
    await response.body.dump();
    if (response.statusCode >= 300 && response.statusCode !== 405) {
      throw new UpstreamHttpError(`Failed to terminate session (HTTP ${response.statusCode})`, response.statusCode);
    }
    this.sessionId = undefined;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#aborter.abort();
    this.onclose?.();
  }
}

import { randomUUID } from 'node:crypto';
import { type JSONRPCMessage, type RequestId, SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/client';
import { readBody } from '../server/protect.js';
import type { AuthInfo } from '../server/verifier.js';

/** A JSON-RPC message as the gateway handles it: read by member, passed on unchanged. */
export type Message = JSONRPCMessage & { id?: RequestId; method?: string; params?: Record<string, unknown> };

/**
 * The JSON text an upstream's message was parsed from, written to the client as it came instead of serialised
 * again; a changed message (a filtered `tools/list`) is a new object and has none. Never used towards the upstream:
 * what it gets is serialised from what the gateway checked.
 */
const texts = new WeakMap<object, string>();

/** Keeps `text` as the JSON text `message` was parsed from (see {@link messageText}). */
export function keepMessageText(message: object, text: string): void {
  texts.set(message, text);
}

/** The JSON text `message` was parsed from, when it was kept. */
export function messageText(message: unknown): string | undefined {
  return typeof message === 'object' && message !== null ? texts.get(message) : undefined;
}

/** Options of {@link ClientTransport}. */
export interface ClientTransportOptions {
  /** The id of the session an `initialize` opens. Default: a random UUID. */
  sessionIdGenerator?: () => string;
  /** An `initialize` opened the session: its id is set. */
  onsessioninitialized?: (sessionId: string) => void;
  /** The client ended the session (`DELETE`). */
  onsessionclosed?: () => void;
  /** A message from the client, with the token of the request that carried it. */
  onmessage: (message: Message, authInfo: AuthInfo | undefined) => void;
  /** Milliseconds an answer may take before the response turns into an SSE stream (kept alive). Default 5000. */
  streamAfterMs?: number;
  /** Milliseconds between SSE keep-alive comments. Default 15000. */
  keepAliveMs?: number;
}

/** The SDK's own bounds: a request body and a batch. */
const MAX_BODY_BYTES = 4 * 1024 * 1024;
const MAX_BATCH_SIZE = 100;
const JSON_HEADERS = { 'content-type': 'application/json' };
const SSE_HEADERS = {
  'content-type': 'text/event-stream',
  'cache-control': 'no-cache, no-transform',
  connection: 'keep-alive',
  'x-accel-buffering': 'no',
};
const encoder = new TextEncoder();

/** The error answers of the SDK's transport, with its statuses, codes and messages. */
function rpcError(status: number, code: number, message: string, headers?: Record<string, string>): Response {
  return new Response(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }), {
    status,
    headers: headers ? { ...JSON_HEADERS, ...headers } : JSON_HEADERS,
  });
}
const sessionNotFound = () => rpcError(404, -32001, 'Session not found');

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
const isId = (value: unknown): value is RequestId =>
  typeof value === 'string' || (typeof value === 'number' && Number.isInteger(value));
const hasOnly = (value: Record<string, unknown>, allowed: Set<string>): boolean => {
  for (const key in value) if (!allowed.has(key)) return false;
  return true;
};
const REQUEST_KEYS = new Set(['jsonrpc', 'id', 'method', 'params']);
const RESULT_KEYS = new Set(['jsonrpc', 'id', 'result']);
const ERROR_KEYS = new Set(['jsonrpc', 'id', 'error']);

/**
 * Whether a value is a JSON-RPC message in the MCP schema's shape (a request, notification, result or error,
 * with no other members), checked by hand: the schema's validator was a large part of the gateway's time per call.
 */
function isMessage(value: unknown): value is Message {
  if (!isObject(value) || value['jsonrpc'] !== '2.0') return false;
  if (typeof value['method'] === 'string') {
    if ('id' in value && !isId(value['id'])) return false;
    const params = value['params'];
    if (params !== undefined && (!isObject(params) || (params['_meta'] !== undefined && !isObject(params['_meta']))))
      return false;
    return hasOnly(value, REQUEST_KEYS);
  }
  if ('result' in value) return isId(value['id']) && isObject(value['result']) && hasOnly(value, RESULT_KEYS);
  const error = value['error'];
  return (
    isObject(error) &&
    Number.isInteger(error['code']) &&
    typeof error['message'] === 'string' &&
    (value['id'] === undefined || isId(value['id'])) &&
    hasOnly(value, ERROR_KEYS)
  );
}

const isRequest = (message: Message): boolean => message.method !== undefined && message.id !== undefined;
const isResponse = (message: Message): boolean => message.method === undefined && message.id !== undefined;

/** An `initialize` request as the schema has it (what the SDK's transport opens a session for). */
function isInitialize(message: Message): boolean {
  if (message.method !== 'initialize' || message.id === undefined) return false;
  const params = message.params;
  return (
    isObject(params) &&
    typeof params['protocolVersion'] === 'string' &&
    isObject(params['capabilities']) &&
    isObject(params['clientInfo'])
  );
}

/** A POST's Content-Type is JSON's. */
export const isJsonContentType = (header: string | null | undefined): boolean =>
  header != null &&
  (header === 'application/json' || header.split(';')[0]!.trim().toLowerCase() === 'application/json');

/** A POST's Accept takes both answers the transport gives: JSON and an SSE stream. */
export const acceptsJsonAndEvents = (header: string | null | undefined): boolean =>
  header?.includes('application/json') === true && header.includes('text/event-stream');

/**
 * What a POST gets back: the JSON text of its answers (the common case, written by whoever serves the request with
 * its own headers), or a whole Response (an SSE stream, an error, 202).
 */
export type Reply = { json: string } | Response;

/** One SSE response being written: messages as `event: message`, comments to keep it alive. */
class EventStream {
  readonly readable: ReadableStream<Uint8Array>;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #keepAlive: NodeJS.Timeout;
  closed = false;

  constructor(keepAliveMs: number, oncancel: () => void) {
    this.readable = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      cancel: () => {
        this.#stop();
        oncancel();
      },
    });
    this.#keepAlive = setInterval(() => this.#enqueue(': keepalive\n\n'), keepAliveMs);
    this.#keepAlive.unref();
  }

  write(message: Message): void {
    const text = messageText(message);
    // A kept text on more than one line would end the event early.
    const data = text === undefined || /[\r\n]/.test(text) ? JSON.stringify(message) : text;
    this.#enqueue(`event: message\ndata: ${data}\n\n`);
  }

  close(): void {
    if (this.closed) return;
    this.#stop();
    try {
      this.#controller.close();
    } catch {}
  }

  #stop(): void {
    this.closed = true;
    clearInterval(this.#keepAlive);
  }

  #enqueue(text: string): void {
    if (this.closed) return;
    try {
      this.#controller.enqueue(encoder.encode(text));
    } catch {
      this.#stop();
    }
  }
}

/**
 * One POST's requests awaiting their answers. A single quick answer (every answer, for a batch) with nothing
 * before it goes back as plain JSON; a message for the client before the answers (progress, a server-to-client
 * request) or an answer slower than `streamAfterMs` turns the response into an SSE stream.
 */
class Exchange {
  #pending: number;
  #answers: Message[] = [];
  #stream: EventStream | undefined;
  #timer: NodeJS.Timeout | undefined;
  #respond: ((reply: Reply) => void) | undefined;
  readonly reply: Promise<Reply>;

  constructor(
    readonly transport: ClientTransport,
    readonly ids: RequestId[],
    readonly batch: boolean,
  ) {
    this.#pending = ids.length;
    this.reply = new Promise((resolve) => {
      this.#respond = resolve;
    });
    this.#timer = setTimeout(() => this.stream(), transport.streamAfterMs);
    this.#timer.unref();
  }

  /** An answer to one of this POST's requests. Returns true once every answer went out. */
  answer(message: Message): boolean {
    this.#pending--;
    if (this.#stream) {
      this.#stream.write(message);
      if (this.#pending === 0) this.#stream.close();
    } else {
      this.#answers.push(message);
      if (this.#pending === 0) {
        clearTimeout(this.#timer);
        const json = this.batch
          ? JSON.stringify(this.#answers)
          : (messageText(this.#answers[0]) ?? JSON.stringify(this.#answers[0]));
        this.#resolve({ json });
      }
    }
    return this.#pending === 0;
  }

  /** A message for the client that belongs to this POST's requests. */
  notify(message: Message): void {
    this.stream().write(message);
  }

  /** Turns the response into an SSE stream (once), with the answers that already arrived. */
  stream(): EventStream {
    if (this.#stream) return this.#stream;
    clearTimeout(this.#timer);
    const stream = new EventStream(this.transport.keepAliveMs, () => this.transport.forget(this));
    this.#stream = stream;
    for (const answer of this.#answers) stream.write(answer);
    this.#answers = [];
    this.#resolve(new Response(stream.readable, { status: 200, headers: this.transport.headers(SSE_HEADERS) }));
    return stream;
  }

  /** The session closed: a stream ends, a response still to come answers as a closed session does. */
  end(): void {
    clearTimeout(this.#timer);
    if (this.#stream) this.#stream.close();
    else this.#resolve(sessionNotFound());
  }

  #resolve(reply: Reply): void {
    const respond = this.#respond;
    this.#respond = undefined;
    respond?.(reply);
  }
}

/**
 * The client side of a gateway session: the MCP streamable HTTP transport (2025-03-26 and later) as clients use
 * it, built for a proxy's hot path. A POST's body is parsed once (or taken parsed from `protect()`), its messages go
 * to `onmessage`, and the answers come back through {@link send}: as plain `application/json` when they are all
 * there without anything before them, as `text/event-stream` when progress notifications or server-to-client
 * requests come first or the answer takes longer than `streamAfterMs`. Also: the Accept and Content-Type checks
 * (406, 415), the `Mcp-Session-Id` header (400 without it, 404 for another), the `MCP-Protocol-Version` header
 * (400 for an unsupported one), notifications and responses answered 202, JSON-RPC batches, one `GET` stream for
 * messages that belong to no request (409 for a second), and `DELETE` to end the session.
 */
export class ClientTransport {
  sessionId: string | undefined;
  readonly streamAfterMs: number;
  readonly keepAliveMs: number;
  #initialized = false;
  #closed = false;
  /** The POST awaiting each request's answer, by the request's id. */
  #exchanges = new Map<RequestId, Exchange>();
  #standalone: EventStream | undefined;

  constructor(readonly options: ClientTransportOptions) {
    this.streamAfterMs = options.streamAfterMs ?? 5000;
    this.keepAliveMs = options.keepAliveMs ?? 15_000;
  }

  /** The headers of a response of this session. */
  headers(base: Record<string, string>): Record<string, string> {
    return this.sessionId === undefined ? base : { ...base, 'mcp-session-id': this.sessionId };
  }

  /** Answers one HTTP request of the session: `POST`, `GET` or `DELETE`. */
  async handleRequest(
    request: Request,
    options: { authInfo?: AuthInfo; parsedBody?: unknown } = {},
  ): Promise<Response> {
    if (this.#closed) return sessionNotFound();
    switch (request.method) {
      case 'POST':
        return this.#post(request, options.authInfo, options.parsedBody);
      case 'GET':
        return this.#get(request);
      case 'DELETE': {
        const invalid = this.#checkSession(
          request.headers.get('mcp-session-id'),
          request.headers.get('mcp-protocol-version'),
        );
        if (invalid) return invalid;
        this.options.onsessionclosed?.();
        this.close();
        return new Response(null, { status: 200 });
      }
      default:
        return rpcError(405, -32000, 'Method not allowed.', { allow: 'GET, POST, DELETE' });
    }
  }

  async #post(request: Request, authInfo: AuthInfo | undefined, parsedBody: unknown): Promise<Response> {
    if (!acceptsJsonAndEvents(request.headers.get('accept'))) {
      return rpcError(406, -32000, 'Not Acceptable: Client must accept both application/json and text/event-stream');
    }
    if (!isJsonContentType(request.headers.get('content-type'))) {
      return rpcError(415, -32000, 'Unsupported Media Type: Content-Type must be application/json');
    }
    let body = parsedBody;
    if (body === undefined) {
      let text: string | undefined;
      try {
        text = await readBody(request, MAX_BODY_BYTES);
        if (text === undefined) {
          return rpcError(413, -32000, `Payload Too Large: Request body must not exceed ${MAX_BODY_BYTES} bytes`);
        }
        body = JSON.parse(text) as unknown;
      } catch {
        return rpcError(400, -32700, 'Parse error: Invalid JSON');
      }
    }
    const reply = await this.post(
      body,
      authInfo,
      request.headers.get('mcp-session-id'),
      request.headers.get('mcp-protocol-version'),
    );
    return reply instanceof Response
      ? reply
      : new Response(reply.json, { status: 200, headers: this.headers(JSON_HEADERS) });
  }

  /**
   * Takes a POST whose Accept and Content-Type were checked and whose body is parsed: the batch and message checks,
   * `initialize` or the session and version headers, then each message to `onmessage`. The reply comes once every
   * request in it is answered. The gateway's hot path calls this with the request's own header values.
   */
  post(
    body: unknown,
    authInfo: AuthInfo | undefined,
    sessionHeader: string | null | undefined,
    versionHeader: string | null | undefined,
  ): Response | Promise<Reply> {
    const batch = Array.isArray(body);
    const messages = batch ? (body as unknown[]) : [body];
    if (messages.length > MAX_BATCH_SIZE) {
      return rpcError(400, -32600, `Invalid Request: Batch must not exceed ${MAX_BATCH_SIZE} messages`);
    }
    if (!messages.every(isMessage)) return rpcError(400, -32700, 'Parse error: Invalid JSON-RPC message');
    if (this.#closed) return sessionNotFound();

    if (messages.some(isInitialize)) {
      if (this.#initialized && this.sessionId !== undefined) {
        return rpcError(400, -32600, 'Invalid Request: Server already initialized');
      }
      if (messages.length > 1)
        return rpcError(400, -32600, 'Invalid Request: Only one initialization request is allowed');
      this.sessionId = (this.options.sessionIdGenerator ?? randomUUID)();
      this.#initialized = true;
      this.options.onsessioninitialized?.(this.sessionId);
    } else {
      const invalid = this.#checkSession(sessionHeader, versionHeader);
      if (invalid) return invalid;
    }

    const ids = new Set<RequestId>();
    for (const message of messages) if (isRequest(message)) ids.add(message.id!);
    if (ids.size === 0) {
      for (const message of messages) this.options.onmessage(message, authInfo);
      return new Response(null, { status: 202 });
    }
    const exchange = new Exchange(this, [...ids], batch);
    for (const id of ids) this.#exchanges.set(id, exchange);
    for (const message of messages) this.options.onmessage(message, authInfo);
    return exchange.reply;
  }

  #get(request: Request): Response {
    if (!request.headers.get('accept')?.includes('text/event-stream')) {
      return rpcError(406, -32000, 'Not Acceptable: Client must accept text/event-stream');
    }
    const invalid = this.#checkSession(
      request.headers.get('mcp-session-id'),
      request.headers.get('mcp-protocol-version'),
    );
    if (invalid) return invalid;
    if (this.#standalone && !this.#standalone.closed) {
      return rpcError(409, -32000, 'Conflict: Only one SSE stream is allowed per session');
    }
    const stream = new EventStream(this.keepAliveMs, () => {
      if (this.#standalone === stream) this.#standalone = undefined;
    });
    this.#standalone = stream;
    return new Response(stream.readable, { status: 200, headers: this.headers(SSE_HEADERS) });
  }

  /** The session id and protocol version checks of every request but `initialize`. */
  #checkSession(id: string | null | undefined, version: string | null | undefined): Response | undefined {
    if (!this.#initialized) return rpcError(400, -32000, 'Bad Request: Server not initialized');
    if (!id) return rpcError(400, -32000, 'Bad Request: Mcp-Session-Id header is required');
    if (id !== this.sessionId) return sessionNotFound();
    if (version != null && !SUPPORTED_PROTOCOL_VERSIONS.includes(version)) {
      return rpcError(
        400,
        -32000,
        `Bad Request: Unsupported protocol version: ${version} (supported versions: ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')})`,
      );
    }
    return undefined;
  }

  /**
   * Sends a message to the client: an answer on the response of the POST that asked, another message on the
   * response of `relatedRequestId`'s POST (which becomes an SSE stream), or else on the `GET` stream. A message
   * with nowhere to go (the client left, or has no `GET` stream open) is dropped, as the SDK's transport drops it.
   * Returns whether the message went out.
   */
  send(message: Message, relatedRequestId?: RequestId): boolean {
    if (this.#closed) return false;
    if (isResponse(message)) {
      const exchange = this.#exchanges.get(message.id!);
      if (!exchange) return false;
      this.#exchanges.delete(message.id!);
      exchange.answer(message);
      return true;
    }
    const exchange = relatedRequestId === undefined ? undefined : this.#exchanges.get(relatedRequestId);
    if (exchange) {
      exchange.notify(message);
      return true;
    }
    if (!this.#standalone || this.#standalone.closed) return false;
    this.#standalone.write(message);
    return true;
  }

  /** An SSE response the client stopped reading: its answers have nowhere to go. */
  forget(exchange: Exchange): void {
    for (const id of exchange.ids) if (this.#exchanges.get(id) === exchange) this.#exchanges.delete(id);
  }

  /** Ends the session: open streams end, responses still to come answer 404. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const exchange of new Set(this.#exchanges.values())) exchange.end();
    this.#exchanges.clear();
    this.#standalone?.close();
    this.#standalone = undefined;
  }
}

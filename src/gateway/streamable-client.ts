import type { IncomingHttpHeaders } from 'node:http';
import type { JSONRPCMessage, RequestId, Transport } from '@modelcontextprotocol/client';
import { Agent, type Dispatcher } from 'undici';
import { keepMessageText } from './client-transport.js';

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

/** Where an SSE stream got to: the last event id and the server's `retry`, for resuming it. */
interface Cursor {
  lastEventId?: string;
  retryMs?: number;
}

/**
 * A `text/event-stream` body read as its chunks come: each `message` event's data to `onmessage`, the last event id
 * and the server's `retry` kept in `cursor`. Lines are cut at the byte `\n`, which is never part of a UTF-8
 * character, so a chunk may end anywhere.
 */
class EventReader {
  #rest: Buffer | undefined;
  #data: string | undefined;
  #event = '';

  constructor(
    readonly onmessage: (data: string) => void,
    readonly cursor: Cursor,
  ) {}

  push(chunk: Buffer): void {
    const buffer = this.#rest === undefined ? chunk : Buffer.concat([this.#rest, chunk]);
    let start = 0;
    for (let end = buffer.indexOf(10); end !== -1; end = buffer.indexOf(10, start)) {
      this.#line(buffer.toString('utf8', start, end > start && buffer[end - 1] === 13 ? end - 1 : end));
      start = end + 1;
    }
    this.#rest = start < buffer.length ? buffer.subarray(start) : undefined;
  }

  #line(line: string): void {
    if (line === '') {
      const data = this.#data;
      const event = this.#event;
      this.#data = undefined;
      this.#event = '';
      // An event without data is not dispatched (the SSE standard): upstreams of the 2025-11-25 protocol open
      // every stream with one, an id to resume from — parsed as JSON it threw, twice per call.
      if (data && (event === '' || event === 'message')) this.onmessage(data);
      return;
    }
    const colon = line.indexOf(':');
    if (colon === 0) return; // a comment (keep-alive)
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.#data = this.#data === undefined ? value : `${this.#data}\n${value}`;
    else if (field === 'event') this.#event = value;
    else if (field === 'id' && !value.includes('\0')) this.cursor.lastEventId = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.cursor.retryMs = Number(value);
  }
}

/** How one upstream response is read (see {@link Call}). */
interface Answer {
  /** The status and headers: the body's events go to a reader, or the body is collected (true) or dropped (false). */
  head(status: number, headers: IncomingHttpHeaders): EventReader | boolean;
  /** The body ended: what was collected, if it was. */
  end(body: Buffer | undefined): void;
  /**
   * The request failed: before any answer (`started` false: the pool may send it again), or while its body came
   * (then `error` no longer looks like a stale connection's, so nothing is sent twice).
   */
  fail(error: Error, started: boolean): void;
}

/**
 * The handler of one request dispatched on undici's pool: the response read off the callbacks (no Readable
 * stream, no promise per chunk), its controller kept in `active` while it runs so that closing the client aborts it.
 */
class Call implements Dispatcher.DispatchHandler {
  #reading: EventReader | boolean = false;
  #chunks: Buffer[] | undefined;
  #started = false;
  #controller: Dispatcher.DispatchController | undefined;

  constructor(
    readonly answer: Answer,
    readonly active: Set<Dispatcher.DispatchController>,
  ) {}

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    this.active.add(controller);
  }

  onResponseStart(_controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders): void {
    this.#started = true;
    this.#reading = this.answer.head(status, headers);
    if (this.#reading === true) this.#chunks = [];
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const reading = this.#reading;
    if (reading === true) this.#chunks!.push(chunk);
    else if (reading !== false) reading.push(chunk);
  }

  onResponseEnd(): void {
    if (this.#controller) this.active.delete(this.#controller);
    const chunks = this.#chunks;
    this.answer.end(chunks === undefined ? undefined : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.#controller) this.active.delete(this.#controller);
    this.answer.fail(this.#started ? new Error(error.message) : error, this.#started);
  }
}

/**
 * The gateway's client for a streamable-HTTP upstream (MCP 2025-03-26 and later), in the shape of the SDK's
 * `Transport`: a POST per message dispatched on undici's keep-alive pool, the answer read as JSON or as an SSE
 * stream straight off the dispatch handler (resumed with `Last-Event-ID` when the upstream closes it before
 * answering), the upstream's session id and negotiated protocol version sent with every later request, one `GET`
 * stream for what the upstream sends outside a request, and `DELETE` to end the session. Headers come from
 * `headers()` alone — never from the caller. The upstream's answers keep their JSON text for the client (see
 * `messageText`).
 */
export class StreamableHttpClient implements Transport {
  onmessage?: (message: JSONRPCMessage) => void;
  onclose?: () => void;
  onerror?: (error: Error) => void;
  sessionId: string | undefined;
  #protocolVersion: string | undefined;
  #initializeId: RequestId | undefined;
  #aborter = new AbortController();
  /** The requests under way, aborted on close. */
  readonly #active = new Set<Dispatcher.DispatchController>();
  #closed = false;
  #listening = false;
  readonly #origin: string;
  readonly #path: string;
  /** A POST's headers while the session id and version stay the same and `headers()` gives the same object. */
  #postHeaders:
    | { given: Record<string, string>; session?: string; version?: string; headers: Record<string, string> }
    | undefined;

  constructor(
    readonly url: URL,
    readonly headers: () => Promise<Record<string, string>> | Record<string, string>,
  ) {
    this.#origin = url.origin;
    this.#path = `${url.pathname}${url.search}`;
  }

  async start(): Promise<void> {}

  #withSession(given: Record<string, string>, accept: string): Record<string, string> {
    const headers: Record<string, string> = { ...given, accept };
    if (this.sessionId !== undefined) headers['mcp-session-id'] = this.sessionId;
    if (this.#protocolVersion !== undefined) headers['mcp-protocol-version'] = this.#protocolVersion;
    return headers;
  }

  async #requestHeaders(accept: string): Promise<Record<string, string>> {
    const given = this.headers();
    return this.#withSession(given instanceof Promise ? await given : given, accept);
  }

  /** A POST's headers: built once while nothing they hold changes (a credential source gives new ones each time). */
  #postHeadersFrom(given: Record<string, string>): Record<string, string> {
    const cached = this.#postHeaders;
    if (cached?.given === given && cached.session === this.sessionId && cached.version === this.#protocolVersion) {
      return cached.headers;
    }
    const headers = this.#withSession(given, ACCEPT);
    headers['content-type'] = 'application/json';
    this.#postHeaders = { given, session: this.sessionId, version: this.#protocolVersion, headers };
    return headers;
  }

  /** Sends one request on the pool, `answer` (made anew for each attempt) reading its response. */
  #dispatch<T>(
    method: 'GET' | 'POST' | 'DELETE',
    headers: Record<string, string>,
    body: string | undefined,
    answer: (resolve: (value: T) => void, reject: (error: Error) => void) => Answer,
  ): Promise<T> {
    const options = { origin: this.#origin, path: this.#path, method, headers, body };
    return onUpstreamPool(
      (dispatcher) =>
        new Promise<T>((resolve, reject) => {
          dispatcher.dispatch(options, new Call(answer(resolve, reject), this.#active));
        }),
      this.#aborter.signal,
      body,
    );
  }

  send(message: JSONRPCMessage): Promise<void> {
    const messages = (Array.isArray(message) ? message : [message]) as Message[];
    const ids = new Set<RequestId>();
    let initialize: Message | undefined;
    for (const m of messages) {
      if (m.method === undefined || m.id === undefined) continue;
      ids.add(m.id);
      if (m.method === 'initialize') initialize ??= m;
    }
    // Serialised again, never the client's own text: the upstream reads what the policy checked, whatever its JSON
    // parser does with duplicate keys.
    const body = JSON.stringify(message);
    const given = this.headers();
    if (!(given instanceof Promise) && !initialize)
      return this.#post(body, this.#postHeadersFrom(given), messages, ids);
    return (async () => {
      const headers = this.#withSession(given instanceof Promise ? await given : given, ACCEPT);
      headers['content-type'] = 'application/json';
      if (initialize) {
        // A new upstream session: no id (nor version) of an earlier one.
        delete headers['mcp-session-id'];
        delete headers['mcp-protocol-version'];
        this.#initializeId = initialize.id;
      }
      return this.#post(body, headers, messages, ids, initialize !== undefined);
    })();
  }

  /**
   * A POST of `messages` (requests `ids`). Resolves once an SSE answer begins (its events delivered as they come) or
   * a JSON answer or 202 has been read; rejects on an error status, with the upstream's text.
   */
  #post(
    body: string,
    headers: Record<string, string>,
    messages: Message[],
    ids: Set<RequestId>,
    initializing = false,
  ): Promise<void> {
    return this.#dispatch<void>('POST', headers, body, (resolve, reject) => {
      let status = 0;
      let failure: Error | undefined;
      let events: EventReader | undefined;
      return {
        head: (code, answerHeaders) => {
          status = code;
          if (code >= 300) return true;
          if (initializing) this.sessionId = headerValue(answerHeaders['mcp-session-id']);
          if (code === 202 || ids.size === 0) return false;
          const type = mediaType(answerHeaders['content-type']);
          if (type === 'application/json') return true;
          if (type === 'text/event-stream') {
            events = new EventReader((data) => this.#parse(data, ids), {});
            resolve();
            return events;
          }
          failure = new UpstreamHttpError(`Unexpected content type: ${type || '(none)'}`, code);
          return false;
        },
        end: (text) => {
          if (status >= 300) {
            reject(
              new UpstreamHttpError(`Error POSTing to endpoint (HTTP ${status}): ${text?.toString() ?? ''}`, status),
            );
          } else if (failure) {
            reject(failure);
          } else if (events) {
            if (ids.size > 0) void this.#resume(ids, events.cursor);
          } else if (text) {
            this.#json(text, reject);
            resolve();
          } else {
            if (messages.some((m) => m.method === 'notifications/initialized')) this.#listen();
            resolve();
          }
        },
        fail: (error, started) => {
          if (events) void this.#resume(ids, events.cursor, error);
          else reject(started ? new Error(`the upstream's answer broke off: ${error.message}`) : error);
        },
      };
    });
  }

  /** A JSON answer: each message delivered, a lone one with its own text. */
  #json(text: Buffer, reject: (error: Error) => void): void {
    const source = text.toString('utf8');
    let data: Message | Message[];
    try {
      data = JSON.parse(source) as Message | Message[];
    } catch (error) {
      reject(error as Error);
      return;
    }
    if (!Array.isArray(data)) {
      keepMessageText(data, source);
      this.#deliver(data);
    } else for (const m of data) this.#deliver(m);
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
    if (message !== null && typeof message === 'object' && !Array.isArray(message)) keepMessageText(message, data);
    this.#deliver(message, pending);
  }

  /**
   * A POST's SSE answer ended (or failed) with answers missing: resumed from the last event id (the upstream may
   * close a stream to have the client poll); requests left unanswered get a JSON-RPC error.
   */
  async #resume(pending: Set<RequestId>, cursor: Cursor, error?: Error): Promise<void> {
    let failure = error
      ? `the stream from the upstream failed: ${error.message}`
      : 'the upstream closed the stream before answering';
    if (!error) {
      try {
        for (let attempt = 0; pending.size > 0 && cursor.lastEventId !== undefined && !this.#closed; attempt++) {
          if (attempt >= MAX_RECONNECTS) break;
          await new Promise((r) => setTimeout(r, cursor.retryMs ?? RECONNECT_MS));
          const seen = cursor.lastEventId;
          if (!(await this.#stream(cursor, (data) => this.#parse(data, pending)))) break;
          if (cursor.lastEventId !== seen) attempt = -1; // progress: the count starts again
        }
      } catch (cause) {
        failure = `the stream from the upstream failed: ${(cause as Error).message}`;
      }
    }
    if (this.#closed) return;
    for (const id of pending) {
      this.onmessage?.({ jsonrpc: '2.0', id, error: { code: -32603, message: failure } } as JSONRPCMessage);
    }
  }

  /**
   * A GET stream (resuming after `cursor.lastEventId`) read to its end, its events to `onmessage` (`onopen` once it
   * began); resolves false at once when the upstream offers none.
   */
  async #stream(cursor: Cursor, onmessage: (data: string) => void, onopen?: () => void): Promise<boolean> {
    const headers = await this.#requestHeaders('text/event-stream');
    if (cursor.lastEventId !== undefined) headers['last-event-id'] = cursor.lastEventId;
    return this.#dispatch<boolean>('GET', headers, undefined, (resolve, reject) => {
      let offered = false;
      return {
        head: (status, answerHeaders) => {
          offered = status === 200 && mediaType(answerHeaders['content-type']) === 'text/event-stream';
          if (!offered) return false;
          onopen?.();
          return new EventReader(onmessage, cursor);
        },
        end: () => resolve(offered),
        fail: (error) => reject(error),
      };
    });
  }

  /** The upstream's messages outside any request, on a GET stream kept open (405: the upstream has none). */
  #listen(): void {
    if (this.#listening) return;
    this.#listening = true;
    void (async () => {
      const cursor: Cursor = {};
      for (let failures = 0; !this.#closed && failures <= MAX_RECONNECTS; ) {
        try {
          // A stream that opened starts the count of failures again, even if it breaks off later.
          const opened = () => {
            failures = 0;
          };
          if (!(await this.#stream(cursor, (data) => this.#parse(data), opened))) break;
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
    const headers = await this.#requestHeaders(ACCEPT);
    const status = await this.#dispatch<number>('DELETE', headers, undefined, (resolve, reject) => {
      let code = 0;
      return {
        head: (answered) => {
          code = answered;
          return false;
        },
        end: () => resolve(code),
        fail: (error) => reject(error),
      };
    });
    if (status >= 300 && status !== 405) {
      throw new UpstreamHttpError(`Failed to terminate session (HTTP ${status})`, status);
    }
    this.sessionId = undefined;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#aborter.abort();
    for (const controller of this.#active) controller.abort(this.#aborter.signal.reason);
    this.#active.clear();
    this.onclose?.();
  }
}

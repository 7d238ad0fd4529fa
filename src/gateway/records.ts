import type { RequestId } from '@modelcontextprotocol/client';
import type { Logger } from 'pino';
import { readBody } from '../server/protect.js';
import type { AuthInfo } from '../server/verifier.js';
import { DecryptionError, StoreUnavailableError } from '../storage/errors.js';
import type { Adapter, AdapterPayload } from '../storage/oidc/common.js';
import type { Message } from './client-transport.js';
import type { AnswerRelay } from './relay.js';
import { type GatewaySession, subjectOf } from './session.js';

/** The store model MCP session records live under (beside the authorization server's `Grant`, `Session`, …). */
export const SESSION_RECORD_MODEL = 'GatewayMcpSession';

/** What a client sent in its `initialize`, replayed to open a new upstream session on another instance. */
export interface RecordedInitialize {
  protocolVersion: string;
  capabilities: Record<string, unknown>;
  clientInfo: Record<string, unknown>;
}

/**
 * One MCP session as every gateway instance sharing the store sees it. Kept sealed at rest by the store (payload
 * encrypted with the at-rest key, row key a hash of the session id), for the idle timeout after its last use.
 */
export interface SessionRecord {
  sessionId: string;
  /** The token subject that opened the session: the only one that may use it, on any instance. */
  subject: string;
  clientId: string;
  upstream: string;
  initialize: RecordedInitialize;
  /** When an instance last extended the record's life (ms since the epoch). */
  touchedAt: number;
}

/** What {@link SessionRecords.handle} needs from the gateway route of one upstream. */
export interface ClusterRoute {
  upstream: string;
  /** The sessions this instance holds, by id. */
  sessions: Map<string, GatewaySession>;
  /** A new session of this upstream for the caller; with `sessionId`, one that takes that id on `initialize`. */
  open(authInfo: AuthInfo, sessionId?: string): GatewaySession;
}

/** Options of {@link SessionRecords}. */
export interface SessionRecordsOptions {
  /** Seconds a session with no request lives on (the gateway's session idle timeout). */
  idleSeconds: number;
  logger?: Logger;
}

const jsonRpcError = (status: number, message: string, headers?: Record<string, string>): Response =>
  Response.json(
    { jsonrpc: '2.0', id: null, error: { code: -32000, message } },
    { status, ...(headers && { headers }) },
  );

const notFound = () => jsonRpcError(404, 'Session not found');
/** The transport's bound on a request body (the SDK's). */
const MAX_BODY_BYTES = 4 * 1024 * 1024;

/** The answer while the store cannot be reached: 503 with Retry-After, at once rather than a hang. */
function unavailable(error: StoreUnavailableError): Response {
  return jsonRpcError(503, 'the gateway cannot reach its session store; retry shortly', {
    'retry-after': String(error.retryAfterSeconds),
  });
}

/**
 * The answer to a record this instance cannot open: sealed with an at-rest key it does not have (a key rotation that
 * reached some instances only, or instances started with different keys). A new session in its place would hide it.
 */
const unreadable = () =>
  jsonRpcError(
    500,
    "the gateway cannot open this session's record in its store: it was sealed with an at-rest key this instance does not have (every instance sharing the store needs the same GATEHOUSE_STORE_KEY)",
  );

/** The params of an `initialize` request in a POST body, or undefined when the body is something else. */
function initializeParams(body: unknown): RecordedInitialize | undefined {
  const message = body as { method?: unknown; id?: unknown; params?: Record<string, unknown> } | null;
  if (message?.method !== 'initialize' || message.id === undefined) return undefined;
  const params = message.params ?? {};
  if (typeof params['protocolVersion'] !== 'string') return undefined;
  return {
    protocolVersion: params['protocolVersion'],
    capabilities: (params['capabilities'] as Record<string, unknown> | undefined) ?? {},
    clientInfo: (params['clientInfo'] as Record<string, unknown> | undefined) ?? {},
  };
}

/**
 * A POST's body, parsed (once: the request passed on carries the text), or the transport's answer to a body too
 * large (its 4 MiB bound) or not JSON.
 */
async function readJson(
  request: Request,
  parsedBody: unknown,
): Promise<{ body: unknown; forward: Request } | Response> {
  if (parsedBody !== undefined) return { body: parsedBody, forward: request };
  const text = await readBody(request, MAX_BODY_BYTES);
  if (text === undefined) {
    return jsonRpcError(413, `Payload Too Large: Request body must not exceed ${MAX_BODY_BYTES} bytes`);
  }
  try {
    return { body: JSON.parse(text), forward: new Request(request, { body: text }) };
  } catch {
    return Response.json(
      { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error: Invalid JSON' } },
      { status: 400 },
    );
  }
}

const isId = (value: unknown): value is RequestId =>
  typeof value === 'string' || (typeof value === 'number' && Number.isInteger(value));

/** The messages of a POST body when every one is a JSON-RPC response (a result or an error with an id), else undefined. */
function answersIn(body: unknown): Message[] | undefined {
  const messages = Array.isArray(body) ? body : [body];
  if (messages.length === 0) return undefined;
  for (const message of messages) {
    const m = message as Record<string, unknown> | null;
    if (typeof m !== 'object' || m === null || m['jsonrpc'] !== '2.0' || 'method' in m || !isId(m['id'])) {
      return undefined;
    }
    if (!('result' in m) && !('error' in m)) return undefined;
  }
  return messages as Message[];
}

/** The JSON-RPC messages of a transport's answer, JSON or an SSE stream, read to its end. */
async function messagesOf(response: Response): Promise<Array<Record<string, unknown>>> {
  const text = await response.text();
  if ((response.headers.get('content-type') ?? '').includes('application/json')) {
    const parsed = JSON.parse(text) as unknown;
    return (Array.isArray(parsed) ? parsed : [parsed]) as Array<Record<string, unknown>>;
  }
  const messages: Array<Record<string, unknown>> = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('data:')) continue;
    const data = line.slice(5).trim();
    if (data) messages.push(JSON.parse(data) as Record<string, unknown>);
  }
  return messages;
}

/**
 * MCP sessions shared by several gateway instances through a store (Redis or PostgreSQL: the embedded authorization
 * server's, or with an external one the gateway's own), so that any instance behind a load balancer answers any session: a request with a session id this
 * instance does not hold is checked against the session's record and, from the same subject, taken over — a new
 * upstream session opened by replaying the recorded `initialize` (and `notifications/initialized`), under the
 * session id the client already has. `DELETE` removes the record, and an instance that still holds the session drops
 * it on its next request. A store that cannot be reached answers `503` with `Retry-After`.
 *
 * Every request of a session reads its record (one store lookup), so a session ended or expired anywhere is gone
 * everywhere; the record's life is extended at most every quarter of the idle timeout.
 *
 * Internal to `startGateway`, which builds one when its store (`store`, with or without an external `issuer`) is Redis
 * or PostgreSQL.
 */
export class SessionRecords {
  readonly #adapter: Adapter;
  readonly #idleMs: number;
  readonly #logger: Logger | undefined;
  /** Takeovers in progress, so that concurrent first requests on this instance open one upstream session. */
  readonly #taking = new Map<string, Promise<GatewaySession | Response>>();
  /** Where client answers to another instance's requests go (a store with a broadcast: Redis, PostgreSQL). */
  #relay: AnswerRelay | undefined;

  constructor(store: (model: string) => Adapter, options: SessionRecordsOptions) {
    this.#adapter = store(SESSION_RECORD_MODEL);
    this.#idleMs = options.idleSeconds * 1000;
    this.#logger = options.logger;
  }

  /**
   * Stored for a quarter of the idle timeout longer than the idle timeout: the record is extended at most every
   * quarter, so it outlives the last request by at least the idle timeout.
   */
  get #lifeSeconds(): number {
    return Math.ceil((this.#idleMs * 1.25) / 1000);
  }

  /** Relays client answers this instance did not ask for to the instance that did (see {@link AnswerRelay}). */
  relayAnswers(relay: AnswerRelay): void {
    this.#relay = relay;
  }

  async save(record: SessionRecord): Promise<void> {
    await this.#adapter.upsert(record.sessionId, record as unknown as AdapterPayload, this.#lifeSeconds);
  }

  async find(sessionId: string): Promise<SessionRecord | undefined> {
    const found = (await this.#adapter.find(sessionId)) as unknown as SessionRecord | undefined;
    return found?.sessionId === sessionId ? found : undefined;
  }

  async remove(sessionId: string): Promise<void> {
    await this.#adapter.destroy(sessionId);
  }

  /** Answers one MCP request of an upstream route, with the session it belongs to on whichever instance opened it. */
  async handle(request: Request, authInfo: AuthInfo, parsedBody: unknown, route: ClusterRoute): Promise<Response> {
    const sessionId = request.headers.get('mcp-session-id');
    try {
      if (!sessionId) return await this.#open(request, authInfo, parsedBody, route);
      const record = await this.find(sessionId);
      const local = route.sessions.get(sessionId);
      // Not the caller's, or not this upstream's: the same 404 as an unknown id, so existence does not leak.
      if (!record || record.upstream !== route.upstream || record.subject !== subjectOf(authInfo)) {
        // Ended (DELETE) or expired elsewhere: this instance lets its copy go too.
        if (!record && local) await local.close();
        return notFound();
      }
      if (request.method === 'DELETE') {
        await this.remove(sessionId);
        return local ? local.handle(request, authInfo, parsedBody) : new Response(null, { status: 200 });
      }
      if (Date.now() - record.touchedAt > this.#idleMs / 4) await this.save({ ...record, touchedAt: Date.now() });
      let forward = request;
      let body = parsedBody;
      if (this.#relay && request.method === 'POST') {
        const read = await readJson(request, parsedBody);
        if (read instanceof Response) return read;
        ({ body, forward } = read);
        // The client's answers to requests another instance sent it go there, not into a takeover here.
        const answers = answersIn(body);
        if (answers && !answers.every((answer) => local?.awaits(answer.id!))) {
          return await this.#relayAnswers(this.#relay, record, answers, local);
        }
      }
      // A takeover in progress registers the session before its upstream answered `initialize`: wait for it.
      const session =
        (await this.#taking.get(sessionId)) ?? local ?? (await this.#takeOver(record, forward, authInfo, route));
      if (session instanceof Response) return session;
      return session.handle(forward, authInfo, body);
    } catch (error) {
      if (error instanceof StoreUnavailableError) {
        this.#logger?.warn({ err: error.message }, 'session store unavailable');
        return unavailable(error);
      }
      if (error instanceof DecryptionError) {
        this.#logger?.error(
          { session: sessionId, upstream: route.upstream, err: error.message },
          'mcp session record sealed with an unknown at-rest key',
        );
        return unreadable();
      }
      throw error;
    }
  }

  /** A new session: opened here, and recorded before the client learns its id. */
  async #open(request: Request, authInfo: AuthInfo, parsedBody: unknown, route: ClusterRoute): Promise<Response> {
    if (request.method !== 'POST') return jsonRpcError(400, 'Bad Request: Mcp-Session-Id header is required');
    const read = await readJson(request, parsedBody);
    if (read instanceof Response) return read;
    const { body, forward } = read;
    const session = route.open(authInfo);
    const response = await session.handle(forward, authInfo, body);
    const initialize = initializeParams(body);
    const sessionId = session.sessionId;
    if (!initialize || !sessionId || !response.ok) return response;
    try {
      await this.save({
        sessionId,
        subject: session.subject,
        clientId: authInfo.clientId,
        upstream: route.upstream,
        initialize,
        touchedAt: Date.now(),
      });
    } catch (error) {
      await response.body?.cancel().catch(() => {});
      await session.close();
      throw error;
    }
    // The client's `notifications/initialized` may well reach another instance: this one's upstream hears it now,
    // once it answered `initialize` (a JSON answer; one slow enough to turn into a stream waits for the client's).
    if (response.headers.get('content-type')?.startsWith('application/json')) await session.initialized();
    return response;
  }

  /**
   * Answers of the client that this instance's copy of the session (if any) does not await: relayed through the
   * store to the instance that asked. `202` once each was taken there, as for any response; else `400` naming the
   * request ids nobody took within the wait (an unknown id, or the asking instance gone).
   */
  async #relayAnswers(
    relay: AnswerRelay,
    record: SessionRecord,
    answers: Message[],
    local: GatewaySession | undefined,
  ): Promise<Response> {
    const started = performance.now();
    const taken = await Promise.all(
      answers.map(
        (answer) =>
          local?.answer(answer) !== undefined || relay.relay(record.sessionId, record.upstream, record.subject, answer),
      ),
    );
    const lost = answers.filter((_, i) => !taken[i]).map((answer) => answer.id!);
    if (lost.length === 0) return new Response(null, { status: 202, headers: { 'mcp-session-id': record.sessionId } });
    this.#logger?.warn(
      {
        session: record.sessionId,
        upstream: record.upstream,
        subject: record.subject,
        ids: lost,
        latencyMs: Math.round(performance.now() - started),
      },
      'mcp answer not taken by any instance',
    );
    return jsonRpcError(
      400,
      `no gateway instance awaits the answer to request ${lost.map((id) => JSON.stringify(id)).join(', ')} of this session: unknown request id, or the instance that asked did not take it within ${relay.waitMs} ms`,
    );
  }

  #takeOver(
    record: SessionRecord,
    request: Request,
    authInfo: AuthInfo,
    route: ClusterRoute,
  ): Promise<GatewaySession | Response> {
    const pending = this.#taking.get(record.sessionId);
    if (pending) return pending;
    const started = performance.now();
    const taking = this.#replay(record, request, authInfo, route)
      .then((outcome) => {
        if (!(outcome instanceof Response)) {
          this.#logger?.info(
            {
              session: record.sessionId,
              upstream: record.upstream,
              subject: record.subject,
              latencyMs: Math.round((performance.now() - started) * 1000) / 1000,
            },
            'mcp session taken over',
          );
        }
        return outcome;
      })
      .finally(() => this.#taking.delete(record.sessionId));
    this.#taking.set(record.sessionId, taking);
    return taking;
  }

  /**
   * Opens the session on this instance under its recorded id: the client's `initialize` goes through the session
   * as if the client had sent it here, then the `notifications/initialized` the client sent to the other instance.
   */
  async #replay(
    record: SessionRecord,
    request: Request,
    authInfo: AuthInfo,
    route: ClusterRoute,
  ): Promise<GatewaySession | Response> {
    const session = route.open(authInfo, record.sessionId);
    const headers = { accept: 'application/json, text/event-stream', 'content-type': 'application/json' };
    const initialize = {
      jsonrpc: '2.0',
      id: `gatehouse-takeover-${record.sessionId}`,
      method: 'initialize',
      params: record.initialize,
    };
    const answer = await session.handle(
      new Request(request.url, { method: 'POST', headers, body: JSON.stringify(initialize) }),
      authInfo,
      initialize,
    );
    const result = answer.ok
      ? (await messagesOf(answer)).find((m) => m['id'] === initialize.id)
      : await answer.body?.cancel();
    const version = (result?.['result'] as { protocolVersion?: unknown } | undefined)?.protocolVersion;
    if (session.sessionId !== record.sessionId || typeof version !== 'string') {
      await session.close();
      const reason = (result?.['error'] as { message?: unknown } | undefined)?.message;
      return jsonRpcError(
        502,
        `upstream "${record.upstream}" could not resume the session${typeof reason === 'string' ? `: ${reason}` : ''}`,
      );
    }
    await session.initialized();
    return session;
  }
}

import { randomUUID } from 'node:crypto';
import type { RequestId } from '@modelcontextprotocol/client';
import type { Logger } from 'pino';
import { missingScopes, type ScopeHierarchy } from '../server/scopes.js';
import type { AuthInfo } from '../server/verifier.js';
import type { SessionIdentity, UpstreamChannel } from './channel.js';
import { ClientTransport, type Message, type Reply } from './client-transport.js';
import {
  acceptsUrlElicitation,
  credentialErrorAnswer,
  type LinkWaiter,
  type LinkWaiters,
  type RpcError,
  UpstreamCredentialError,
} from './upstream-credentials.js';

/**
 * Requests of the upstream to the client (sampling, elicitation, roots) a session remembers awaiting their answers,
 * at most: past it, the oldest is forgotten, so a session that lives long among clients that never answer stays
 * bounded. Without a shared store (one instance) a forgotten request's answer still goes upstream; with one, it is
 * answered `400` like an unknown id (records.ts).
 */
export const ASKED_LIMIT = 64;

/** What a session needs from its upstream and the gateway. */
export interface SessionOptions {
  upstream: string;
  /** Opens the channel to the upstream once the session has an id. */
  connect(identity: SessionIdentity): UpstreamChannel;
  requiredScopes: string[];
  toolScopes: Record<string, string[]>;
  /** Tools anyone may call: listed to every caller. */
  publicTools?: string[];
  scopeHierarchy?: ScopeHierarchy;
  /** The audit trail: one line per MCP request. */
  audit?: Logger;
  logArguments?: boolean;
  /** Where a session answered with a URL elicitation (link a provider) waits to hear that the user did. */
  linkWaiters?: LinkWaiters;
  /**
   * A message of the upstream outside any call that this instance has no `GET` stream for: another instance sharing
   * the session may have the client's (relay.ts). Without it such a message is dropped.
   */
  undelivered?: (session: GatewaySession, message: Message) => void;
  onclose?: (session: GatewaySession) => void;
}

interface InFlight {
  id: RequestId;
  method: string;
  tool?: string;
  arguments?: unknown;
  progressToken?: string | number;
  started: number;
  authInfo: AuthInfo;
}

/** The subject of a verified token: Gatehouse verifiers put it in `extra.subject`. */
export function subjectOf(authInfo: AuthInfo): string {
  const subject = authInfo.extra?.['subject'];
  return typeof subject === 'string' && subject ? subject : `client:${authInfo.clientId}`;
}

/**
 * One client's MCP session at the gateway: a {@link ClientTransport} (streamable HTTP) on the caller's side, an
 * {@link UpstreamChannel} on the upstream's, messages passed through unchanged except that `tools/list` shows only
 * what the caller's token may call, and that server-initiated messages are routed onto the stream of the request
 * they belong to.
 */
export class GatewaySession implements LinkWaiter {
  readonly transport: ClientTransport;
  readonly subject: string;
  #authInfo: AuthInfo;
  #channel: UpstreamChannel | undefined;
  #inflight = new Map<RequestId, InFlight>();
  /**
   * The upstream's requests to the client not answered yet: their methods, by id, oldest first. An entry goes when
   * the client answers, when the upstream cancels the request, or past {@link ASKED_LIMIT}.
   */
  readonly #asked = new Map<RequestId, string>();
  /** The gateway sent the upstream `notifications/initialized` itself (see {@link initialized}). */
  #initializedSent = false;
  lastUsed = Date.now();
  #closed = false;
  /** Whether the client declared URL-mode elicitation in its `initialize`. */
  #urlElicitation = false;
  /** The URL elicitation this session was answered with per provider, until the user links it. */
  readonly #elicitations = new Map<string, string>();

  constructor(
    readonly options: SessionOptions,
    authInfo: AuthInfo,
    register: (session: GatewaySession) => void,
    /** The id the session takes on `initialize`: a session another gateway instance opened (records.ts). */
    sessionId?: string,
  ) {
    this.#authInfo = authInfo;
    this.subject = subjectOf(authInfo);
    this.transport = new ClientTransport({
      ...(sessionId !== undefined && { sessionIdGenerator: () => sessionId }),
      onsessioninitialized: () => register(this),
      onsessionclosed: () => void this.close(),
      onmessage: (message, authInfo) => void this.#fromClient(message, authInfo),
    });
  }

  get sessionId(): string | undefined {
    return this.transport.sessionId;
  }

  /** Handles one HTTP request of this session, with the caller's verified token. */
  handle(request: Request, authInfo: AuthInfo, parsedBody?: unknown): Promise<Response> {
    this.#authInfo = authInfo;
    this.lastUsed = Date.now();
    return this.transport.handleRequest(request, { authInfo, parsedBody });
  }

  /** A POST of this session read by the gateway's hot path: its parsed body and session headers (see `ClientTransport.post`). */
  post(
    body: unknown,
    authInfo: AuthInfo,
    sessionHeader: string,
    versionHeader: string | undefined,
  ): Response | Promise<Reply> {
    this.#authInfo = authInfo;
    this.lastUsed = Date.now();
    return this.transport.post(body, authInfo, sessionHeader, versionHeader);
  }

  /** Whether this session sent the client the request `id` (sampling, elicitation, roots…) and awaits its answer. */
  awaits(id: RequestId): boolean {
    return this.#asked.has(id);
  }

  /**
   * An answer of the client to a request of this session that reached another instance (relay.ts): passed upstream
   * as if it came here. Returns the method of the request it answers, or undefined when this session awaits no such
   * answer (then nothing happens).
   */
  answer(message: Message): string | undefined {
    const method = message.id === undefined ? undefined : this.#asked.get(message.id);
    if (method === undefined || this.#closed) return undefined;
    this.lastUsed = Date.now();
    void this.#fromClient(message, undefined);
    return method;
  }

  /**
   * Sends the upstream `notifications/initialized` on the client's behalf, resolved once the upstream took it, and
   * drops the client's own when it comes. Sessions shared by instances need it: the client sends its one
   * notification to whichever instance the load balancer picks, and a server (server-everything) that adds tools on
   * it must have seen it, on every instance, before the client's next request.
   */
  initialized(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const sent = this.#fromClient({ jsonrpc: '2.0', method: 'notifications/initialized' } as Message, undefined);
    this.#initializedSent = true; // after: #fromClient checks it before its first await
    return sent;
  }

  #identity(first: Message): SessionIdentity {
    const session = this;
    const declared = first.method === 'initialize' ? first.params?.['capabilities'] : undefined;
    const clientCapabilities =
      declared && typeof declared === 'object' ? (declared as Record<string, unknown>) : undefined;
    return {
      subject: this.subject,
      get sessionId() {
        return session.sessionId ?? '';
      },
      ...(clientCapabilities && { clientCapabilities }),
      authInfo: () => session.#authInfo,
    };
  }

  async #fromClient(message: Message, authInfo: AuthInfo | undefined): Promise<void> {
    if (this.#initializedSent && message.method === 'notifications/initialized') return;
    const isRequest = message.method !== undefined && message.id !== undefined;
    if (message.method === undefined && message.id !== undefined) this.#asked.delete(message.id);
    if (isRequest) {
      const params = message.params ?? {};
      const entry: InFlight = {
        id: message.id!,
        method: message.method!,
        started: performance.now(),
        authInfo: authInfo ?? this.#authInfo,
      };
      if (message.method === 'tools/call') {
        entry.tool = typeof params['name'] === 'string' ? params['name'] : undefined;
        if (this.options.logArguments) entry.arguments = params['arguments'];
      }
      const token = (params['_meta'] as { progressToken?: string | number } | undefined)?.progressToken;
      if (token !== undefined) entry.progressToken = token;
      this.#inflight.set(message.id!, entry);
      if (message.method === 'initialize') {
        this.#urlElicitation = acceptsUrlElicitation(params['capabilities'] as Record<string, unknown> | undefined);
      }
    }
    try {
      this.#channel ??= this.#open(message);
      await this.#channel.send(message);
    } catch (error) {
      if (isRequest) this.#answerFailure(message.id!, error as Error);
    }
  }

  /**
   * Answers a request that could not reach the upstream. Missing credentials the user can fix at a link page become
   * a URL elicitation for a client that declared them (one per provider until the user links it), whose completion
   * the session announces; anything else is an internal error with the reason.
   */
  #answerFailure(id: RequestId, error: Error): void {
    if (!(error instanceof UpstreamCredentialError)) {
      this.#answerError(id, error.message);
      return;
    }
    let elicitationId: string | undefined;
    if (this.#urlElicitation && error.linkUrl && error.provider && this.options.linkWaiters) {
      elicitationId = this.#elicitations.get(error.provider) ?? randomUUID();
      this.#elicitations.set(error.provider, elicitationId);
      this.options.linkWaiters.wait(this.subject, error.provider, this);
    }
    this.#answerError(id, credentialErrorAnswer(error, elicitationId));
  }

  /** The user linked `provider`: the client hears that the elicitation it was given is complete. */
  linked(provider: string): void {
    const elicitationId = this.#elicitations.get(provider);
    if (elicitationId === undefined) return;
    this.#elicitations.delete(provider);
    this.transport.send({
      jsonrpc: '2.0',
      method: 'notifications/elicitation/complete',
      params: { elicitationId },
    } as Message);
  }

  #open(first: Message): UpstreamChannel {
    const channel = this.options.connect(this.#identity(first));
    channel.onmessage = (message) => this.#fromUpstream(message as Message);
    channel.onfailure = (reason) => {
      for (const id of [...this.#inflight.keys()]) this.#answerError(id, reason);
    };
    return channel;
  }

  #answerError(id: RequestId, reason: string | RpcError): void {
    const error = typeof reason === 'string' ? { code: -32603, message: reason } : reason;
    this.#fromUpstream({ jsonrpc: '2.0', id, error } as Message);
  }

  #fromUpstream(message: Message): void {
    if (this.#closed) return;
    if (message.method === undefined && message.id !== undefined) {
      const entry = this.#inflight.get(message.id);
      if (!entry) return;
      this.#inflight.delete(message.id);
      if (entry.method === 'tools/list' && 'result' in message) message = this.#filterTools(message, entry.authInfo);
      this.#audit(entry, message);
      this.transport.send(message);
      // A session whose `initialize` failed can serve nothing: the client starts another.
      if (entry.method === 'initialize' && 'error' in message) void this.close();
      return;
    }
    if (message.id !== undefined && message.method !== undefined) this.#ask(message.id, message.method);
    else if (message.method === 'notifications/cancelled') {
      // The upstream gave up on its request (its own timeout): an answer now would be for nobody.
      const id = message.params?.['requestId'];
      if (typeof id === 'string' || typeof id === 'number') this.#asked.delete(id);
    }
    let related: RequestId | undefined;
    if (message.method === 'notifications/progress') {
      const token = message.params?.['progressToken'];
      for (const entry of this.#inflight.values()) if (entry.progressToken === token) related = entry.id;
    } else {
      // Server-initiated requests and notifications during a call belong on that call's stream.
      for (const entry of this.#inflight.values()) related = entry.id;
    }
    if (!this.transport.send(message, related)) this.options.undelivered?.(this, message);
  }

  #ask(id: RequestId, method: string): void {
    this.#asked.delete(id); // an id used again counts from now
    if (this.#asked.size >= ASKED_LIMIT) this.#asked.delete(this.#asked.keys().next().value!);
    this.#asked.set(id, method);
  }

  /** A message another instance's copy of this session had no stream for: onto this one's `GET` stream, if open. */
  toStream(message: Message): boolean {
    return this.transport.send(message);
  }

  #allowed(tool: string, authInfo: AuthInfo): boolean {
    if (this.options.publicTools?.includes(tool)) return true;
    const needed = [...this.options.requiredScopes, ...(this.options.toolScopes[tool] ?? [])];
    return missingScopes(authInfo.scopes, needed, this.options.scopeHierarchy).length === 0;
  }

  #filterTools(message: Message, authInfo: AuthInfo): Message {
    const result = (message as { result?: { tools?: Array<{ name: string }> } }).result;
    if (!result || !Array.isArray(result.tools) || Object.keys(this.options.toolScopes).length === 0) return message;
    return {
      ...message,
      result: { ...result, tools: result.tools.filter((tool) => this.#allowed(tool.name, authInfo)) },
    } as Message;
  }

  #audit(entry: InFlight, response: Message): void {
    const audit = this.options.audit;
    if (!audit?.isLevelEnabled('info')) return; // the line is built only when it is written
    const error = (response as { error?: { code: number; message: string } }).error;
    const toolError = (response as { result?: { isError?: boolean } }).result?.isError === true;
    audit.info(
      {
        subject: this.subject,
        clientId: entry.authInfo.clientId,
        upstream: this.options.upstream,
        session: this.sessionId,
        method: entry.method,
        ...(entry.tool !== undefined && { tool: entry.tool }),
        ...(entry.arguments !== undefined && { arguments: entry.arguments }),
        outcome: error ? 'error' : toolError ? 'tool_error' : 'ok',
        ...(error && { error: { code: error.code, message: error.message } }),
        latencyMs: Math.round((performance.now() - entry.started) * 1000) / 1000,
      },
      'mcp request',
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.options.linkWaiters?.forget(this);
    this.options.onclose?.(this);
    this.transport.close();
    await this.#channel?.close();
  }
}

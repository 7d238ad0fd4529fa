import {
  type CompleteResult,
  type GetPromptResult,
  type Implementation,
  type LoggingLevel,
  type Prompt,
  type ReadResourceResult,
  type Resource,
  type ResourceTemplateType,
  Client as SdkClient,
  type ClientOptions as SdkClientOptions,
  SdkHttpError,
  SUPPORTED_PROTOCOL_VERSIONS,
  type Tool,
} from '@modelcontextprotocol/client';
import {
  SkillVerificationError as SdkSkillVerificationError,
  type Skill,
  type SkillFile,
  SkillsClient,
} from '@modelcontextprotocol/client/ext/skills';
import { explainLoginFailure } from './doctor.js';
import {
  AuthenticationError,
  ConnectionError,
  McpError,
  SkillVerificationError,
  TimeoutError,
  type UrlElicitation,
} from './errors.js';
import {
  capabilitiesFor,
  type ElicitationHandler,
  installHandlers,
  type LogMessage,
  type MessageHandler,
  type ProgressHandler,
  type RootsInput,
  type SamplingHandler,
  SessionSubscriptions,
} from './handlers.js';
import { type ToolResult, toClientError, toolErrorFor, toToolResult, urlElicitationsOf } from './results.js';
import {
  type ClientAuth,
  type ClientSource,
  type ResolvedSource,
  type ResolvedSources,
  resolveSource,
} from './source.js';
import { type OpenSession, openSession, type TransportKind } from './transports.js';

/**
 * Which protocol version to speak: `'auto'` (the default) asks the server (`server/discover`) and speaks the newest
 * version both sides support — 2026-07-28 with a server that offers it, else the 2025 handshake (`initialize`);
 * `'legacy'` goes straight to the 2025 handshake; a version string insists on that version and fails otherwise —
 * `'2026-07-28'` through `server/discover`, a 2025 one (`'2025-06-18'`) through the 2025 handshake.
 *
 * @example
 * ```ts
 * import { Client } from 'gatehouse/client';
 *
 * // A server that speaks only 2025-06-18.
 * await using client = new Client('https://old.example.com/mcp', { protocolVersion: '2025-06-18' });
 * await client.connect();
 * client.protocolVersion(); // '2025-06-18'
 * ```
 */
export type ProtocolVersionChoice = 'auto' | 'legacy' | (string & {});

/**
 * The SDK's settings for a {@link ProtocolVersionChoice}. The SDK pins only 2026-07-28 and later; a 2025 version is
 * spoken through the 2025 handshake offering that version alone, so a server answering another one is refused.
 */
function versionSettings(
  choice: ProtocolVersionChoice,
): Pick<SdkClientOptions, 'versionNegotiation' | 'supportedProtocolVersions'> {
  if (choice === 'auto') return { versionNegotiation: { mode: 'auto' } };
  if (choice === 'legacy') return { versionNegotiation: { mode: 'legacy' } };
  if (SUPPORTED_PROTOCOL_VERSIONS.includes(choice)) {
    return { versionNegotiation: { mode: 'legacy' }, supportedProtocolVersions: [choice] };
  }
  return { versionNegotiation: { mode: { pin: choice } } };
}

/** Options of {@link Client}. */
export interface ClientOptions {
  /** Authentication for HTTP servers: `'oauth'`, an `OAuth`, or a bearer token. Not allowed for stdio servers. */
  auth?: ClientAuth;
  /** Timeout of each request, in milliseconds. Default: the SDK's 60 s. */
  timeout?: number;
  /**
   * Timeout of connecting (starting the process and the MCP handshake), in milliseconds. Default 60 s. An OAuth
   * login during the handshake is not counted: it has its own timeout (`OAuth`'s `timeoutMs`, default 300 s).
   */
  connectTimeout?: number;
  /** Extra environment variables for a stdio server (added to `PATH`, `HOME` and the like). */
  env?: Record<string, string>;
  /** Working directory of a stdio server. */
  cwd?: string;
  /** Receives the server's log messages. Set the level with {@link Client.setLoggingLevel}. */
  logHandler?: (message: LogMessage) => void;
  /** Receives progress of every call, unless the call passes its own `onProgress`. */
  progressHandler?: ProgressHandler;
  /** Name and version this client announces. Default `{ name: 'gatehouse', version: '0.1.0' }`. */
  clientInfo?: Implementation;
  /**
   * Roots offered to servers: `file://` URIs or paths (turned into `file://` URIs), or a function listing them.
   * Change them with {@link Client.setRoots}, which tells the servers.
   */
  roots?: RootsInput | (() => RootsInput | Promise<RootsInput>);
  /** Answers sampling requests; declares the `sampling` capability. */
  samplingHandler?: SamplingHandler;
  /**
   * Answers elicitation requests, form and URL mode; declares the `elicitation` capability. Fields left out of an
   * accepted form get the defaults of the requested schema.
   */
  elicitationHandler?: ElicitationHandler;
  /** Receives the notifications servers send: list changes, resource updates, progress, logs, and the rest. */
  messageHandler?: MessageHandler;
  /** Which protocol version to speak; default `'auto'`: the newest one the server speaks too. */
  protocolVersion?: ProtocolVersionChoice;
  /**
   * How long, in milliseconds, the Client waits for the user to complete the pages a server asked them to open (a
   * URL-elicitation-required error, accepted by `elicitationHandler`) before it gives up with
   * `UrlElicitationRequiredError`. Default 300 000 (5 minutes).
   */
  urlElicitationTimeout?: number;
}

/** Options of {@link Client.connect}. */
export interface ConnectOptions {
  /** Timeout of the handshake in milliseconds; overrides the client's `connectTimeout`. A login is not counted. */
  timeout?: number;
}

/** Per-request options. */
export interface RequestOptions {
  /** Timeout of this request in milliseconds; overrides the client's `timeout`. */
  timeout?: number;
  /** Cancels the request. */
  signal?: AbortSignal;
}

/** Options of {@link Client.callTool}. */
export interface CallToolOptions extends RequestOptions {
  /** Receives this call's progress; overrides the client's `progressHandler`. */
  onProgress?: ProgressHandler;
  /** Throw {@link ToolError} when the tool reports an error. Default `true`; `false` returns the result. */
  raiseOnError?: boolean;
}

/** A server of a multi-server client that could not be connected (or whose connection broke). */
export interface ServerFailure {
  server: string;
  error: Error;
}

/** A reference for {@link Client.complete}: a prompt by name, or a resource template by URI template. */
export type CompletionRef = { type: 'ref/prompt'; name: string } | { type: 'ref/resource'; uri: string };

/**
 * A skill a server offers (skills extension, SEP-2640): its `SKILL.md` URI, frontmatter and files, as the server
 * listed them, with `server` naming the server on a multi-server client. Pass it to {@link Client.readSkill}.
 */
export type ServerSkill = Skill & { server?: string };

export type { SkillFile };

const DEFAULT_CONNECT_TIMEOUT = 60_000;
const DEFAULT_URL_ELICITATION_TIMEOUT = 300_000;
/** How often a connect the server refused until the user completes a page is tried again. */
const URL_ELICITATION_CONNECT_RETRY_MS = 2000;
/** The codes of the network failures `describeNetworkFailure` names. */
const NETWORK_CODES = new Set([
  'ERR_CONNECTION_REFUSED',
  'ERR_DNS',
  'ERR_TLS',
  'ERR_CONNECTION_TIMEOUT',
  'ERR_BLOCKED_PORT',
]);
/** What a failed connect is explained by: the URL is not an MCP server's (see `explainLoginFailure`). */
const NOT_MCP_CODES = new Set(['ERR_NOT_MCP_SERVER', 'ERR_AUTHORIZATION_SERVER_URL']);
const DEFAULT_CLIENT_INFO: Implementation = { name: 'gatehouse', version: '0.1.0' };
const URI_WITH_AUTHORITY = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/(.*)$/s;

/** `weather://forecast/today` served by `w` becomes `weather://w/forecast/today`. */
function prefixUri(uri: string, server: string): string {
  const match = URI_WITH_AUTHORITY.exec(uri);
  return match ? `${match[1]}://${server}/${match[2]}` : uri;
}

function describeSource(source: ResolvedSource): string {
  switch (source.kind) {
    case 'http':
      return source.url.href;
    case 'stdio':
      return [source.command, ...source.args].join(' ');
    case 'memory':
      return 'the in-memory server';
    case 'transport':
      return 'the given transport';
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/**
 * A client for any MCP server: give it a URL, a script, a command, an in-process server or an `mcpServers`
 * configuration, and call tools, read resources and get prompts. Built on the official SDK's `Client`; adds source
 * inference, OAuth, typed errors and multi-server routing.
 *
 * Requests connect on first use; call {@link Client.connect} to connect (and fail) early. `await using` closes it.
 *
 * @example
 * ```ts
 * import { Client } from 'gatehouse/client';
 *
 * await using client = new Client('https://mcp.example.com/mcp', { auth: 'oauth' });
 * const tools = await client.listTools();
 * const result = await client.callTool('add', { a: 1, b: 2 });
 * console.log(result.data); // 3
 * ```
 *
 * @example Several servers, Claude Desktop style
 * ```ts
 * import { Client } from 'gatehouse/client';
 *
 * await using client = new Client({
 *   mcpServers: {
 *     weather: { url: 'https://weather.example.com/mcp', auth: 'oauth' },
 *     files: { command: 'node', args: ['./files-server.mjs'] },
 *   },
 * });
 * await client.connect();
 * for (const { server, error } of client.failures) console.warn(`${server} is unavailable: ${error.message}`);
 * await client.callTool('weather_forecast', { city: 'Oslo' });
 * ```
 */
export class Client implements AsyncDisposable {
  readonly options: ClientOptions;
  readonly #subscriptions = new WeakMap<OpenSession, SessionSubscriptions>();
  /** Sessions being replaced after a 404, so that concurrent calls wait for one new session. */
  readonly #reopening = new WeakMap<OpenSession, Promise<void>>();
  readonly #skills = new WeakMap<SdkClient, SkillsClient>();
  #roots: ClientOptions['roots'];
  readonly #sources: ResolvedSources;
  readonly #sessions = new Map<string, OpenSession>();
  #failures: ServerFailure[] = [];
  #connecting: Promise<void> | undefined;
  readonly #progress = new Map<string | number, ProgressHandler>();
  #nextProgressToken = 0;
  #connected = false;
  /**
   * URL elicitations being offered or waited on, by id: whether the user accepted, and the server's completion
   * notice (`notifications/elicitation/complete`); `waiters` counts the requests that wait on it.
   */
  readonly #urlElicitations = new Map<
    string,
    { accepted: Promise<boolean>; done: Promise<void>; complete: () => void; waiters: number }
  >();

  /**
   * @param source What to connect to; see {@link ClientSource}. Invalid sources throw
   *   {@link InvalidSourceError} right away.
   */
  constructor(source: ClientSource, options: ClientOptions = {}) {
    this.options = options;
    this.#roots = options.roots;
    this.#sources = resolveSource(source, options);
  }

  /**
   * Servers of a multi-server client that could not be connected, or that broke later (the process exited, a list
   * call timed out); the others keep working. `connect()` again retries them. Empty for a single server.
   */
  get failures(): readonly ServerFailure[] {
    return this.#failures;
  }

  /** Names of the connected servers of a multi-server client; `[]` for a single server. */
  get servers(): string[] {
    return this.#sources.kind === 'multi' ? [...this.#sessions.keys()] : [];
  }

  /** How the (single) server is reached, once connected: `streamable-http`, `sse`, `stdio`, `memory`, `custom`. */
  get transport(): TransportKind | undefined {
    return this.#sources.kind === 'single' ? this.#sessions.get('')?.transport : undefined;
  }

  /**
   * The SDK client of the single server (or of `server` in a multi-server client), for what this API does not
   * cover. Throws {@link ConnectionError} when not connected.
   */
  sdk(server?: string): SdkClient {
    const session = this.#sessions.get(this.#sources.kind === 'multi' ? (server ?? '') : '');
    if (!session) {
      throw new ConnectionError(server ? `Server ${server} is not connected` : 'The client is not connected', {
        code: 'ERR_NOT_CONNECTED',
        hint: 'Call connect() first.',
      });
    }
    return session.sdk;
  }

  /** Whether at least one server is connected. */
  isConnected(): boolean {
    return this.#connected && this.#sessions.size > 0;
  }

  /**
   * Connects: spawns the process, opens the HTTP session (logging in if needed) or links the in-memory server.
   * A multi-server client connects all servers in parallel, records the ones that fail in {@link failures}, and
   * throws only when none connects. Calling it again while connected does nothing, except retry the servers in
   * {@link failures}.
   */
  async connect(options: ConnectOptions = {}): Promise<this> {
    const complete = this.#sources.kind === 'single' || this.#failures.length === 0;
    if (this.isConnected() && complete) return this;
    this.#connecting ??= this.#connectAll(options.timeout ?? this.options.connectTimeout).finally(() => {
      this.#connecting = undefined;
    });
    await this.#connecting;
    return this;
  }

  async #connectAll(timeout: number | undefined): Promise<void> {
    if (this.#sources.kind === 'single') {
      const source = this.#sources.source;
      try {
        this.#sessions.set('', await this.#openOnceAllowed(source, undefined, timeout));
      } catch (error) {
        throw await this.#connectError(error, source, undefined, timeout);
      }
    } else {
      // Connected servers stay as they are: connecting again retries only the missing ones.
      const entries = [...this.#sources.servers].filter(([name]) => !this.#sessions.has(name));
      const settled = await Promise.allSettled(
        entries.map(([name, source]) =>
          this.#openOnceAllowed(source, name, timeout).catch(async (error: unknown) => {
            throw await this.#connectError(error, source, name, timeout);
          }),
        ),
      );
      const failures: ServerFailure[] = [];
      settled.forEach((outcome, i) => {
        const [name] = entries[i]!;
        if (outcome.status === 'fulfilled') this.#sessions.set(name, outcome.value);
        else failures.push({ server: name, error: asError(outcome.reason) });
      });
      this.#failures = failures;
      if (this.#sessions.size === 0) {
        throw new ConnectionError(
          `None of the ${entries.length} servers could be connected:\n${failures
            .map((f) => `  ${f.server}: ${f.error.message}`)
            .join('\n')}`,
          { cause: new AggregateError(failures.map((f) => f.error)) },
        );
      }
    }
    this.#connected = true;
  }

  /** Takes a server of a multi-server client out of service, remembering why, so its calls say so. */
  #fail(server: string, error: Error): void {
    const session = this.#sessions.get(server);
    this.#sessions.delete(server);
    this.#failures = [...this.#failures.filter((f) => f.server !== server), { server, error }];
    void session?.sdk
      .close()
      .then(() => session.dispose?.())
      .catch(() => {});
  }

  async #connectError(
    error: unknown,
    source: ResolvedSource,
    server: string | undefined,
    timeout?: number,
  ): Promise<unknown> {
    const answered = /^Server's protocol version is not supported: (.+)$/.exec(asError(error).message)?.[1];
    if (answered) {
      // The 2025 handshake ended on a version outside the ones asked for (`protocolVersion: '2025-06-18'`).
      const choice = this.options.protocolVersion ?? 'auto';
      return new ConnectionError(
        `Could not connect to ${describeSource(source)}: the server answered protocol version ${answered}, which this client does not speak (protocolVersion: '${choice}')`,
        { cause: error, hint: "Pass protocolVersion: 'auto' to speak the newest version both sides support." },
      );
    }
    const typed = toClientError(error, { method: 'connect', timeout: timeout ?? DEFAULT_CONNECT_TIMEOUT, server });
    if (typed instanceof ConnectionError && NETWORK_CODES.has(typed.code)) {
      // Refused, unknown host, untrusted certificate: the cause and its fix are known already.
      return new ConnectionError(`Could not connect to ${describeSource(source)}: ${typed.message}`, {
        code: typed.code,
        hint: typed.hint,
        cause: error,
      });
    }
    if (
      source.kind === 'http' &&
      !(typed instanceof TimeoutError) &&
      !(typed instanceof AuthenticationError) &&
      !(typed instanceof McpError) // a JSON-RPC answer: an MCP server answered
    ) {
      // The URL answered, but not as an MCP server: a diagnosis says what it is (a web page, the authorization
      // server, …) and what to pass instead.
      const problem = await explainLoginFailure(source.url.href);
      if (problem && NOT_MCP_CODES.has(problem.code)) {
        const where = server ? `${server}: ` : '';
        return new ConnectionError(`${where}${problem.message}`, {
          code: problem.code,
          hint: problem.hint,
          cause: error,
        });
      }
    }
    if (typed instanceof ConnectionError) {
      const tsx = source.kind === 'stdio' && source.args.includes('tsx');
      const reason =
        typed.code === 'ERR_NOT_CONNECTED'
          ? `the connection closed during the handshake${source.kind === 'stdio' ? ' (did the process exit?)' : ''}`
          : typed.message;
      return new ConnectionError(`Could not connect to ${describeSource(source)}: ${reason}`, {
        cause: error,
        hint: tsx
          ? 'Running a .ts server needs Node 22.6 or later, or tsx installed (npm install -D tsx).'
          : source.kind === 'stdio'
            ? 'Check the command and its arguments, and run it by hand to see why it exits.'
            : source.kind === 'memory'
              ? 'A server object serves one client at a time: close the other client, or pass () => createServer().'
              : 'Check that the server is running and that the URL is right.',
      });
    }
    return typed;
  }

  async #open(source: ResolvedSource, server: string | undefined, timeout: number | undefined): Promise<OpenSession> {
    const session = await openSession(source, () => this.#makeSdkClient(server), timeout);
    const subscriptions = new SessionSubscriptions(session.sdk, this.options.messageHandler);
    this.#subscriptions.set(session, subscriptions);
    // On a 2026-07-28 connection, list changes arrive only on a subscription: open it for the handler's methods.
    await subscriptions.listen().catch(() => {});
    this.#watchClose(session, server);
    return session;
  }

  /**
   * Opens a session; a server that refuses the handshake until the user completes a page (URL elicitation, e.g.
   * linking GitHub behind the gateway) is offered to `elicitationHandler` and, once the user accepted, asked again
   * every {@link URL_ELICITATION_CONNECT_RETRY_MS} until it lets the client in or `urlElicitationTimeout` passes.
   * (There is no session yet to hear the server say the page is done.)
   */
  async #openOnceAllowed(
    source: ResolvedSource,
    server: string | undefined,
    timeout: number | undefined,
  ): Promise<OpenSession> {
    try {
      return await this.#open(source, server, timeout);
    } catch (error) {
      const elicitations = urlElicitationsOf(error) ?? [];
      const accepted = await this.#offerUrlElicitations(elicitations, server);
      this.#releaseUrlElicitations(elicitations);
      if (!accepted) throw error;
    }
    const deadline = Date.now() + this.#urlElicitationTimeout;
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, URL_ELICITATION_CONNECT_RETRY_MS));
      try {
        return await this.#open(source, server, timeout);
      } catch (error) {
        if (!urlElicitationsOf(error) || Date.now() >= deadline) throw error;
      }
    }
  }

  get #urlElicitationTimeout(): number {
    return this.options.urlElicitationTimeout ?? DEFAULT_URL_ELICITATION_TIMEOUT;
  }

  /**
   * Offers the pages of a URL-elicitation-required error to `elicitationHandler`, one after the other (MCP: the
   * user sees each URL and consents before it opens), each once however many requests wait on it. True when every
   * one was accepted; false without pages or a handler, or when the user declined one. Pair with
   * {@link #releaseUrlElicitations}.
   */
  async #offerUrlElicitations(elicitations: UrlElicitation[], server: string | undefined): Promise<boolean> {
    const handler = this.options.elicitationHandler;
    if (!elicitations.length || !handler) return false;
    for (const elicitation of elicitations) {
      let waiting = this.#urlElicitations.get(elicitation.elicitationId);
      if (!waiting) {
        let complete!: () => void;
        const done = new Promise<void>((resolve) => {
          complete = resolve;
        });
        // Listening before the handler runs: a quick user may finish before it returns.
        waiting = { accepted: Promise.resolve(false), done, complete, waiters: 0 };
        this.#urlElicitations.set(elicitation.elicitationId, waiting);
        waiting.accepted = Promise.resolve()
          .then(() => handler({ mode: 'url', ...elicitation }, server === undefined ? {} : { server }))
          .then((result) => result.action === 'accept');
      }
      waiting.waiters++;
      if (!(await waiting.accepted)) return false;
    }
    return true;
  }

  #releaseUrlElicitations(elicitations: UrlElicitation[]): void {
    for (const { elicitationId } of elicitations) {
      const waiting = this.#urlElicitations.get(elicitationId);
      if (waiting && --waiting.waiters <= 0) this.#urlElicitations.delete(elicitationId);
    }
  }

  /**
   * Offers the pages of a URL-elicitation-required error, and once accepted waits until the server says each is
   * complete (`notifications/elicitation/complete`), for at most `urlElicitationTimeout`. True when the request
   * can be sent again; false for any other error.
   */
  async #completeUrlElicitations(error: unknown, server: string | undefined): Promise<boolean> {
    const elicitations = urlElicitationsOf(error) ?? [];
    let timer: NodeJS.Timeout | undefined;
    try {
      if (!(await this.#offerUrlElicitations(elicitations, server))) return false;
      const done = elicitations.map((e) => this.#urlElicitations.get(e.elicitationId)!.done);
      const timeout = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), this.#urlElicitationTimeout);
      });
      return await Promise.race([Promise.all(done).then(() => true), timeout]);
    } finally {
      clearTimeout(timer);
      this.#releaseUrlElicitations(elicitations);
    }
  }

  /** A server that goes away (the process exits, the stream ends) is no longer connected. */
  #watchClose(session: OpenSession, server: string | undefined): void {
    session.sdk.onclose = () => {
      if (this.#sessions.get(server ?? '') !== session) return; // closed on purpose
      if (server === undefined) this.#sessions.delete('');
      else this.#fail(server, new ConnectionError(`Server ${server} closed the connection`));
    };
  }

  /**
   * Starts a new session in place of one the server no longer knows (HTTP 404 to a request carrying its session
   * id: the server restarted, expired it, or — behind a gateway — refuses an anonymous session once the user has
   * signed in). MCP says the client then starts a new session; calls waiting on the old one use the new one. Resource
   * subscriptions of the old session are not carried over.
   */
  async #reopen(session: OpenSession, server: string | undefined, timeout: number | undefined): Promise<void> {
    let pending = this.#reopening.get(session);
    if (!pending) {
      pending = (async () => {
        const source = this.#sources.kind === 'single' ? this.#sources.source : this.#sources.servers.get(server!)!;
        const stale = { ...session };
        const staleSubscriptions = this.#subscriptions.get(session);
        const fresh = await this.#open(source, server, timeout);
        stale.sdk.onclose = undefined;
        Object.assign(session, fresh);
        this.#subscriptions.set(session, this.#subscriptions.get(fresh)!);
        this.#subscriptions.delete(fresh);
        this.#watchClose(session, server);
        await staleSubscriptions?.close().catch(() => {});
        await stale.sdk.close().catch(() => {});
        await stale.dispose?.().catch(() => {});
      })().finally(() => this.#reopening.delete(session));
      this.#reopening.set(session, pending);
    }
    await pending;
  }

  #makeSdkClient(server: string | undefined): SdkClient {
    const sdk = new SdkClient(this.options.clientInfo ?? DEFAULT_CLIENT_INFO, {
      capabilities: capabilitiesFor(this.options),
      ...versionSettings(this.options.protocolVersion ?? 'auto'),
    });
    installHandlers(sdk, this.options, server === undefined ? {} : { server }, {
      currentRoots: () => this.#roots,
      progressFor: (token) => this.#progress.get(token),
      elicitationComplete: (id) => this.#urlElicitations.get(id)?.complete(),
    });
    return sdk;
  }

  /**
   * The protocol version negotiated with the (single) server, or with `server` of a multi-server client;
   * `undefined` before connecting.
   */
  protocolVersion(server?: string): string | undefined {
    return this.#sessions.get(this.#sources.kind === 'multi' ? (server ?? '') : '')?.sdk.getNegotiatedProtocolVersion();
  }

  /**
   * Replaces the roots offered to servers and tells every connected server (`notifications/roots/list_changed`),
   * so they ask for the new list.
   *
   * @example
   * ```ts
   * await using client = new Client('./server.mjs', { roots: ['/home/me/project'] });
   * await client.connect();
   * await client.setRoots(['/home/me/project', '/home/me/notes']);
   * ```
   */
  async setRoots(roots: NonNullable<ClientOptions['roots']>): Promise<void> {
    if (!this.options.roots) {
      throw new ConnectionError('Roots were not offered when connecting', {
        code: 'ERR_NO_ROOTS',
        hint: 'Pass `roots` to the Client (an empty list is fine) so it declares the roots capability.',
      });
    }
    this.#roots = roots;
    await Promise.allSettled([...this.#sessions.values()].map((session) => session.sdk.sendRootsListChanged()));
  }

  /**
   * Asks the server of `uri` to say when that resource changes: `messageHandler.onResourceUpdated(uri)` is called
   * then. Needs a server with resource subscriptions (`resources.subscribe`).
   *
   * @example
   * ```ts
   * await using client = new Client('https://mcp.example.com/mcp', {
   *   messageHandler: { onResourceUpdated: (uri) => console.log(`${uri} changed`) },
   * });
   * await client.subscribeResource('config://app');
   * ```
   */
  async subscribeResource(uri: string, options?: RequestOptions): Promise<void> {
    const target = await this.#routeUri(uri);
    await this.#call('resources/subscribe', target.server, this.#timeout(options), () =>
      this.#subscriptions.get(target.session)!.subscribe(target.name, this.#requestOptions(options)),
    );
  }

  /** Stops the updates {@link Client.subscribeResource} asked for. */
  async unsubscribeResource(uri: string, options?: RequestOptions): Promise<void> {
    const target = await this.#routeUri(uri);
    await this.#call('resources/unsubscribe', target.server, this.#timeout(options), () =>
      this.#subscriptions.get(target.session)!.unsubscribe(target.name, this.#requestOptions(options)),
    );
  }

  /** Closes every connection (and stops stdio server processes). Safe to call twice. */
  async close(): Promise<void> {
    await this.#connecting?.catch(() => {});
    const sessions = [...this.#sessions.values()];
    this.#sessions.clear();
    this.#failures = [];
    this.#connected = false;
    await Promise.allSettled(
      sessions.map(async (session) => {
        await this.#subscriptions.get(session)?.close();
        await session.sdk.close();
        await session.dispose?.();
      }),
    );
  }

  /** Closes the client: `await using client = new Client(…)`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #ensureConnected(): Promise<void> {
    if (!this.isConnected()) await this.connect();
  }

  #sessionsList(): Array<[string | undefined, OpenSession]> {
    return [...this.#sessions].map(([name, session]) => [this.#sources.kind === 'multi' ? name : undefined, session]);
  }

  /** Finds the server of a prefixed name (`weather_forecast` → `weather`, `forecast`); longest prefix wins. */
  async #route(
    kind: 'tool' | 'prompt',
    name: string,
  ): Promise<{ server?: string; session: OpenSession; name: string }> {
    await this.#ensureConnected();
    if (this.#sources.kind === 'single') return { session: this.#single(), name };
    return this.#routeTo(kind, name, (server) =>
      name.startsWith(`${server}_`) ? name.slice(server.length + 1) : undefined,
    );
  }

  async #routeUri(uri: string): Promise<{ server?: string; session: OpenSession; name: string }> {
    await this.#ensureConnected();
    if (this.#sources.kind === 'single') return { session: this.#single(), name: uri };
    const match = URI_WITH_AUTHORITY.exec(uri);
    return this.#routeTo('resource', uri, (server) => {
      if (!match || !match[2]!.startsWith(`${server}/`)) return undefined;
      return `${match[1]}://${match[2]!.slice(server.length + 1)}`;
    });
  }

  #routeTo(
    kind: string,
    name: string,
    strip: (server: string) => string | undefined,
  ): { server: string; session: OpenSession; name: string } {
    const servers = this.#sources.kind === 'multi' ? [...this.#sources.servers.keys()] : [];
    for (const server of servers.sort((a, b) => b.length - a.length)) {
      const rest = strip(server);
      if (rest === undefined) continue;
      const session = this.#sessions.get(server);
      if (!session) {
        const failure = this.#failures.find((f) => f.server === server);
        throw new ConnectionError(
          `Server ${server} is not connected${failure ? `: ${failure.error.message}` : ''}, so ${kind} ${name} is unavailable`,
          { code: 'ERR_NOT_CONNECTED', hint: 'See client.failures; call connect() again to retry the failed servers.' },
        );
      }
      return { server, session, name: rest };
    }
    const example = kind === 'resource' ? 'scheme://server/path' : `server_${kind}`;
    throw new McpError(`Unknown ${kind} ${name}: it names none of the servers ${servers.join(', ')}`, {
      protocolCode: -32602,
      code: 'ERR_UNKNOWN_SERVER',
      hint: `On a multi-server client, names look like ${example}; list them with the list methods.`,
    });
  }

  #single(): OpenSession {
    const session = this.#sessions.get('');
    if (!session) {
      throw new ConnectionError('The client is not connected', {
        code: 'ERR_NOT_CONNECTED',
        hint: 'The server closed the connection; call connect() again.',
      });
    }
    return session;
  }

  #timeout(options?: RequestOptions): number | undefined {
    return options?.timeout ?? this.options.timeout;
  }

  /**
   * Runs one request on `session` and types its failure. A session the server no longer knows (HTTP 404) is
   * replaced by a new one and the request sent once more: the server did not process it. So is a request the server
   * refused until the user completes a page (URL elicitation), once the user accepted it and the server said it
   * is done.
   */
  async #call<T>(
    method: string,
    server: string | undefined,
    timeout: number | undefined,
    run: () => Promise<T>,
    session?: OpenSession,
  ) {
    let reopen = false;
    try {
      return await run();
    } catch (error) {
      reopen = session !== undefined && sessionGone(error);
      if (!reopen && !(await this.#completeUrlElicitations(error, server))) {
        throw toClientError(error, { method, timeout, server });
      }
    }
    try {
      if (reopen) await this.#reopen(session!, server, timeout);
      return await run();
    } catch (error) {
      throw toClientError(error, { method, timeout, server });
    }
  }

  /** Runs `run` on every connected server in parallel and flattens the results. */
  async #onAll<T>(
    method: string,
    options: RequestOptions | undefined,
    run: (sdk: SdkClient, server?: string) => Promise<T[]>,
    { skipUnhealthy = true } = {},
  ) {
    await this.#ensureConnected();
    const timeout = this.#timeout(options);
    const sessions = this.#sessionsList();
    const settled = await Promise.allSettled(
      sessions.map(([server, session]) => this.#call(method, server, timeout, () => run(session.sdk, server), session)),
    );
    const lists: T[][] = [];
    let firstError: unknown;
    settled.forEach((outcome, i) => {
      const server = sessions[i]![0];
      if (outcome.status === 'fulfilled') lists.push(outcome.value);
      // On a multi-server client, a server that broke or hangs is set aside (see `failures`); the rest answer.
      else if (
        server !== undefined &&
        skipUnhealthy &&
        (outcome.reason instanceof ConnectionError || outcome.reason instanceof TimeoutError)
      ) {
        this.#fail(server, outcome.reason);
      } else firstError ??= outcome.reason;
    });
    if (firstError !== undefined) throw firstError;
    if (lists.length === 0 && sessions.length > 0) throw settled.find((o) => o.status === 'rejected')?.reason;
    return lists.flat();
  }

  #requestOptions(options?: RequestOptions) {
    return { timeout: this.#timeout(options), signal: options?.signal };
  }

  /** Pings every connected server; throws if any does not answer. */
  async ping(options?: RequestOptions): Promise<void> {
    // A health check: every server must answer, so nothing is skipped.
    await this.#onAll(
      'ping',
      options,
      async (sdk) => {
        // 2026-07-28 has no `ping`: asking the server what it supports proves it answers just as well.
        if (sdk.getProtocolEra() === 'modern') await sdk.discover(this.#requestOptions(options));
        else await sdk.ping(this.#requestOptions(options));
        return [];
      },
      { skipUnhealthy: false },
    );
  }

  /**
   * Lists the tools; on a multi-server client their names are prefixed `{server}_`.
   *
   * @example
   * ```ts
   * const tools = await client.listTools();
   * console.log(tools.map((tool) => tool.name));
   * ```
   */
  async listTools(options?: RequestOptions): Promise<Tool[]> {
    return this.#onAll('tools/list', options, async (sdk, server) => {
      const { tools } = await sdk.listTools(undefined, this.#requestOptions(options));
      return server === undefined ? tools : tools.map((tool) => ({ ...tool, name: `${server}_${tool.name}` }));
    });
  }

  /**
   * Calls a tool. Returns `{ content, structuredContent, data, isError }`; a tool that reports an error throws
   * {@link ToolError} unless `raiseOnError: false`. `T` types `data` (not checked at run time).
   *
   * @example
   * ```ts
   * const { data } = await client.callTool<{ sum: number }>('stats', { values: [1, 2, 3] }, { timeout: 5_000 });
   * console.log(data.sum);
   * ```
   */
  async callTool<T = unknown>(
    name: string,
    args: Record<string, unknown> = {},
    options: CallToolOptions = {},
  ): Promise<ToolResult<T>> {
    const target = await this.#route('tool', name);
    const onprogress = options.onProgress ?? this.options.progressHandler;
    const timeout = this.#timeout(options);
    const progressToken = onprogress ? `gatehouse-${++this.#nextProgressToken}` : undefined;
    if (progressToken && onprogress) this.#progress.set(progressToken, onprogress);
    const raw = await this.#call(
      'tools/call',
      target.server,
      timeout,
      () =>
        target.session.sdk.callTool(
          { name: target.name, arguments: args, ...(progressToken ? { _meta: { progressToken } } : {}) },
          this.#requestOptions(options),
        ),
      target.session,
    ).finally(() => {
      // Notifications read with the response are dispatched a tick later; let them through first.
      if (progressToken) setImmediate(() => this.#progress.delete(progressToken));
    });
    const result = toToolResult<T>(raw);
    if (result.isError && options.raiseOnError !== false) throw toolErrorFor(name, result);
    return result;
  }

  /** Lists the resources; on a multi-server client their URIs become `scheme://{server}/path`. */
  async listResources(options?: RequestOptions): Promise<Resource[]> {
    return this.#onAll('resources/list', options, async (sdk, server) => {
      const { resources } = await sdk.listResources(undefined, this.#requestOptions(options));
      return server === undefined ? resources : resources.map((r) => ({ ...r, uri: prefixUri(r.uri, server) }));
    });
  }

  /** Lists the resource templates; on a multi-server client their URI templates are prefixed like URIs. */
  async listResourceTemplates(options?: RequestOptions): Promise<ResourceTemplateType[]> {
    return this.#onAll('resources/templates/list', options, async (sdk, server) => {
      const { resourceTemplates } = await sdk.listResourceTemplates(undefined, this.#requestOptions(options));
      return server === undefined
        ? resourceTemplates
        : resourceTemplates.map((t) => ({ ...t, uriTemplate: prefixUri(t.uriTemplate, server) }));
    });
  }

  /**
   * Reads a resource and returns its contents (text or base64 `blob` entries).
   *
   * @example
   * ```ts
   * const [first] = await client.readResource('config://app');
   * if (first && 'text' in first) console.log(first.text);
   * ```
   */
  async readResource(uri: string, options?: RequestOptions): Promise<ReadResourceResult['contents']> {
    const target = await this.#routeUri(uri);
    const { contents } = await this.#call(
      'resources/read',
      target.server,
      this.#timeout(options),
      () => target.session.sdk.readResource({ uri: target.name }, this.#requestOptions(options)),
      target.session,
    );
    const server = target.server;
    return server === undefined ? contents : contents.map((c) => ({ ...c, uri: prefixUri(c.uri, server) }));
  }

  /** Lists the prompts; on a multi-server client their names are prefixed `{server}_`. */
  async listPrompts(options?: RequestOptions): Promise<Prompt[]> {
    return this.#onAll('prompts/list', options, async (sdk, server) => {
      const { prompts } = await sdk.listPrompts(undefined, this.#requestOptions(options));
      return server === undefined ? prompts : prompts.map((p) => ({ ...p, name: `${server}_${p.name}` }));
    });
  }

  /** Renders a prompt with its arguments. */
  async getPrompt(name: string, args: Record<string, string> = {}, options?: RequestOptions): Promise<GetPromptResult> {
    const target = await this.#route('prompt', name);
    return this.#call(
      'prompts/get',
      target.server,
      this.#timeout(options),
      () => target.session.sdk.getPrompt({ name: target.name, arguments: args }, this.#requestOptions(options)),
      target.session,
    );
  }

  /**
   * Asks for completions of a prompt's or a resource template's argument.
   *
   * @example
   * ```ts
   * const { values } = await client.complete({ type: 'ref/resource', uri: 'users://{id}/profile' }, { name: 'id', value: 'al' });
   * ```
   */
  async complete(
    ref: CompletionRef,
    argument: { name: string; value: string },
    context?: { arguments?: Record<string, string> },
    options?: RequestOptions,
  ): Promise<CompleteResult['completion']> {
    const target = ref.type === 'ref/prompt' ? await this.#route('prompt', ref.name) : await this.#routeUri(ref.uri);
    const routed = ref.type === 'ref/prompt' ? { ...ref, name: target.name } : { ...ref, uri: target.name };
    const { completion } = await this.#call(
      'completion/complete',
      target.server,
      this.#timeout(options),
      () =>
        target.session.sdk.complete(
          { ref: routed, argument, ...(context ? { context } : {}) },
          this.#requestOptions(options),
        ),
      target.session,
    );
    return completion;
  }

  #skillsOf(sdk: SdkClient): SkillsClient {
    let skills = this.#skills.get(sdk);
    if (!skills) {
      skills = new SkillsClient(sdk);
      this.#skills.set(sdk, skills);
    }
    return skills;
  }

  /**
   * Lists the skills servers offer (the skills extension, SEP-2640); servers without it offer none. Listing reads
   * no skill file: read one with {@link Client.readSkill} when the skill is needed. Entries are returned as the
   * server sent them (URIs unprefixed, since files are checked against them); on a multi-server client `server`
   * names the server.
   *
   * @example
   * ```ts
   * const skills = await client.listSkills();
   * for (const skill of skills) console.log(skill.frontmatter.name, skill.frontmatter.description);
   * ```
   */
  async listSkills(options?: RequestOptions): Promise<ServerSkill[]> {
    return this.#onAll('skills/list', options, async (sdk, server) => {
      const skills = this.#skillsOf(sdk);
      if (!skills.supported) return [];
      const { skills: entries } = await skills.list(undefined, this.#requestOptions(options));
      return server === undefined ? entries : entries.map((skill) => ({ ...skill, server }));
    });
  }

  /**
   * Reads a file of a skill — its `SKILL.md` by default, or `path` relative to the skill (`references/FORMS.md`) —
   * and verifies it against the skill's entry: the file must be listed, and its size and sha256 digest must match;
   * a `SKILL.md` must also carry the entry's frontmatter. A file that fails is not returned: the call throws
   * {@link SkillVerificationError}.
   *
   * @example
   * ```ts
   * const [skill] = await client.listSkills();
   * if (skill) {
   *   const manifest = await client.readSkill(skill); // SKILL.md: frontmatter and body
   *   console.log(manifest.frontmatter, manifest.body);
   *   const forms = await client.readSkill(skill, 'references/FORMS.md');
   *   console.log(forms.text);
   * }
   * ```
   */
  async readSkill(skill: ServerSkill, path?: string, options?: RequestOptions): Promise<SkillFile> {
    await this.#ensureConnected();
    const { server, ...entry } = skill;
    const session = this.#sources.kind === 'multi' ? this.#sessions.get(server ?? '') : this.#single();
    if (!session) {
      throw new ConnectionError(`Server ${server ?? '(none)'} of skill ${skill.uri} is not connected`, {
        code: 'ERR_NOT_CONNECTED',
        hint: 'Pass a skill from listSkills() of this client; see client.failures for servers that broke.',
      });
    }
    return this.#call('resources/read', server, this.#timeout(options), async () => {
      try {
        return await this.#skillsOf(session.sdk).read(entry, path, this.#requestOptions(options));
      } catch (error) {
        if (!(error instanceof SdkSkillVerificationError)) throw error;
        throw new SkillVerificationError(error.reason, error.uri, error.message, {
          differences: error.differences,
          cause: error,
        });
      }
    });
  }

  /** Sets the minimum level of the log messages servers send to `logHandler` (on every connected server). */
  async setLoggingLevel(level: LoggingLevel, options?: RequestOptions): Promise<void> {
    await this.#onAll('logging/setLevel', options, async (sdk) => {
      await sdk.setLoggingLevel(level, this.#requestOptions(options));
      return [];
    });
  }
}

/** Whether the server answered that it no longer knows the session (HTTP 404 to a request in a session). */
function sessionGone(error: unknown): boolean {
  return error instanceof SdkHttpError && error.status === 404;
}

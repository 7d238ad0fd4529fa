import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { JSONRPCMessage, JSONRPCRequest, RequestId } from '@modelcontextprotocol/client';
import { getDefaultEnvironment } from '@modelcontextprotocol/client/stdio';
import type { Logger } from 'pino';
import { type SessionIdentity, type UpstreamChannel, UpstreamUnavailableError } from './channel.js';
import type { UpstreamConfig } from './config.js';
import { type ProcessCredentials, UpstreamCredentialError } from './upstream-credentials.js';

/** Options of a {@link StdioPool} besides the upstream's config. */
export interface StdioPoolOptions {
  name: string;
  config: UpstreamConfig;
  /**
   * Extra environment for a process, computed when it starts (e.g. an exchanged token), and when the token in it
   * expires: past that (less a margin), the next request gets a fresh one and restarts the process with it.
   */
  environment?: (identity: SessionIdentity) => Promise<ProcessCredentials>;
  logger?: Logger;
}

type Message = JSONRPCMessage & { id?: RequestId; method?: string; params?: Record<string, unknown> };

const INIT_TIMEOUT_MS = 60_000;
const STDERR_TAIL = 5;
/** How long before its token expires a process is renewed (at most half the token's life). */
const RENEW_BEFORE_MS = 60_000;
/** How long a renewal waits for the requests in flight on the old process before it restarts it anyway. */
const DRAIN_TIMEOUT_MS = 60_000;

const sameEnvironment = (a: Record<string, string>, b: Record<string, string>): boolean =>
  Object.keys(a).length === Object.keys(b).length && Object.entries(a).every(([k, v]) => b[k] === v);

/** A spawned stdio server: newline-delimited JSON-RPC on stdin/stdout, stderr read line by line. */
class StdioProcess {
  private constructor(readonly child: ChildProcess) {}

  static start(
    config: UpstreamConfig,
    extraEnv: Record<string, string>,
    on: { message(m: Message): void; exit(how: string): void; stderr(line: string): void },
  ): Promise<StdioProcess> {
    const child = spawn(config.command!, config.args ?? [], {
      // Only a minimal inherited environment (PATH, HOME, …): the gateway's own secrets stay with the gateway.
      env: { ...getDefaultEnvironment(), ...config.env, ...extraEnv },
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(config.cwd ? { cwd: config.cwd } : {}),
      windowsHide: true,
    });
    const process = new StdioProcess(child);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.trim()) return;
      try {
        on.message(JSON.parse(line) as Message);
      } catch {
        on.stderr(`(not JSON-RPC on stdout) ${line.slice(0, 200)}`);
      }
    });
    createInterface({ input: child.stderr! }).on('line', on.stderr);
    child.stdin!.on('error', () => {}); // a write after exit; the exit handler reports it
    return new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('spawn', () => {
        child.off('error', reject);
        child.once('exit', (code, signal) => on.exit(signal ? `signal ${signal}` : `code ${code}`));
        resolve(process);
      });
    });
  }

  get pid(): number | null {
    return this.child.pid ?? null;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  send(message: JSONRPCMessage): Promise<void> {
    return new Promise((resolve, reject) => {
      if (!this.child.stdin?.writable) return reject(new Error('the process is not running'));
      this.child.stdin.write(`${JSON.stringify(message)}\n`, (error) => (error ? reject(error) : resolve()));
    });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin?.end();
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(timer);
  }
}

/** One session's attachment to a shared process. */
class Attachment implements UpstreamChannel {
  onmessage?: (message: JSONRPCMessage) => void;
  onfailure?: (reason: string) => void;
  /** Requests of this session the process has not answered yet. */
  inflight = 0;
  lastUsed = Date.now();
  /** Gateway ids of this session's requests in flight, by the session's own id (for `notifications/cancelled`). */
  readonly outbound = new Map<RequestId, number>();

  constructor(
    readonly process: SharedProcess,
    readonly identity: SessionIdentity,
  ) {}

  send(message: JSONRPCMessage): Promise<void> {
    return this.process.fromSession(this, message as Message);
  }

  async close(): Promise<void> {
    this.process.detach(this);
  }
}

/**
 * One stdio server process, shared by the sessions of one user (or owned by one session). It multiplexes:
 * request ids and progress tokens are rewritten to ones unique in the process and mapped back; the first
 * `initialize` reaches the server and later sessions get its cached result; after a crash the next request
 * starts a new process and replays the handshake.
 */
class SharedProcess {
  readonly sessions = new Set<Attachment>();
  #transport: StdioProcess | undefined;
  #starting: Promise<void> | undefined;
  /** The handshake the server saw first; replayed after a restart. */
  #initialize: JSONRPCRequest | undefined;
  #initResult: unknown;
  #handshakeDone = false;
  #initializedSent = false;
  #nextId = 1;
  readonly #pending = new Map<number, { attachment: Attachment; id: RequestId; internal?: (m: Message) => void }>();
  readonly #progress = new Map<string, { attachment: Attachment; token: string | number }>();
  #idleTimer: NodeJS.Timeout | undefined;
  #stderrTail: string[] = [];
  #lastActive: Attachment | undefined;
  /** The first session's `initialize`, while the server has not answered it. */
  #firstHandshake: { promise: Promise<void>; resolve: () => void; id?: number } | undefined;
  /** The credentials in the running process's environment, and when a fresh token is due (ms since the epoch). */
  #credentials: { env: Record<string, string>; renewAt?: number } | undefined;
  /** Credentials already obtained for the next start (a renewal). */
  #nextCredentials: ProcessCredentials | undefined;
  #renewing: Promise<void> | undefined;
  /** Called when no request is in flight on the process (a renewal waits for that). */
  #drained: (() => void) | undefined;

  constructor(
    readonly pool: StdioPool,
    readonly key: string,
  ) {}

  get running(): boolean {
    return this.#transport !== undefined;
  }

  get pid(): number | null {
    return this.#transport?.pid ?? null;
  }

  attach(identity: SessionIdentity): Attachment {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    const attachment = new Attachment(this, identity);
    this.sessions.add(attachment);
    return attachment;
  }

  detach(attachment: Attachment): void {
    if (!this.sessions.delete(attachment)) return;
    for (const [id, entry] of this.#pending) if (entry.attachment === attachment) this.#pending.delete(id);
    for (const [token, entry] of this.#progress) if (entry.attachment === attachment) this.#progress.delete(token);
    if (this.#lastActive === attachment) this.#lastActive = undefined;
    if (this.sessions.size === 0) {
      this.#idleTimer = setTimeout(() => void this.pool.retire(this), this.pool.idleTimeoutMs);
      this.#idleTimer.unref();
    }
  }

  async stop(): Promise<void> {
    clearTimeout(this.#idleTimer);
    const transport = this.#transport;
    this.#transport = undefined;
    await transport?.close().catch(() => {});
  }

  async #start(identity: SessionIdentity): Promise<void> {
    const { config, name } = this.pool.options;
    const credentials = this.#nextCredentials ?? (await this.pool.options.environment?.(identity)) ?? { env: {} };
    this.#nextCredentials = undefined;
    this.#stderrTail = [];
    const transport = await StdioProcess.start(config, credentials.env, {
      message: (message) => this.#fromUpstream(message),
      exit: (how) => this.#exited(transport, how),
      stderr: (line) => {
        this.#stderrTail.push(line);
        if (this.#stderrTail.length > STDERR_TAIL) this.#stderrTail.shift();
        this.pool.options.logger?.debug({ upstream: name, stderr: line }, 'upstream stderr');
      },
    }).catch((cause: Error) => {
      throw new UpstreamUnavailableError(
        `upstream "${name}" could not be started (${config.command}): ${cause.message}`,
      );
    });
    if (!transport.running) {
      throw new UpstreamUnavailableError(
        `upstream "${name}" exited right after starting: ${this.#stderrTail.join(' | ')}`,
      );
    }
    this.#transport = transport;
    this.#credentials = { env: credentials.env, ...renewal(credentials.expiresAt) };
    this.#handshakeDone = false;
    this.#initializedSent = false;
    this.pool.options.logger?.info({ upstream: name, pid: transport.pid, owner: this.key }, 'upstream process started');
  }

  #exited(transport: StdioProcess, how: string): void {
    if (this.#transport !== transport) return; // stopped on purpose
    this.#transport = undefined;
    const { name } = this.pool.options;
    const tail = this.#stderrTail.length ? `; its last output: ${this.#stderrTail.join(' | ')}` : '';
    const reason = `upstream "${name}" exited (${how}) before answering; it restarts on the next request${tail}`;
    this.pool.options.logger?.warn({ upstream: name, exit: how }, 'upstream process exited');
    this.#failPending(reason);
    if (this.sessions.size === 0) void this.pool.retire(this);
  }

  /** The process is gone: its requests in flight fail with `reason`, and a restart replays the handshake. */
  #failPending(reason: string): void {
    const failed = new Set<Attachment>();
    for (const { attachment, internal } of this.#pending.values()) {
      if (internal) internal({ jsonrpc: '2.0', id: 0, error: { code: -32603, message: reason } } as Message);
      else failed.add(attachment);
    }
    this.#pending.clear();
    this.#progress.clear();
    this.#firstHandshake?.resolve();
    this.#firstHandshake = undefined;
    if (!this.#handshakeDone) this.#initialize = undefined;
    for (const attachment of this.sessions) {
      attachment.outbound.clear();
      attachment.inflight = 0;
    }
    for (const attachment of failed) attachment.onfailure?.(reason);
    this.#drained?.();
  }

  /** Whether the token the process started with is about to expire. */
  #renewalDue(): boolean {
    const renewAt = this.#credentials?.renewAt;
    return this.#transport !== undefined && renewAt !== undefined && Date.now() >= renewAt;
  }

  /**
   * Gets a fresh token for a process whose token is about to expire. The same token (not refreshed yet, or one that
   * does not expire) only moves the deadline; a new one restarts the process with it once no request is in flight
   * (at most {@link DRAIN_TIMEOUT_MS}), and the handshake is replayed so the sessions go on. A credential that
   * cannot be had any more (unlinked, revoked) stops the process, which must not go on with the old one, and the
   * request gets the reason.
   */
  #renew(identity: SessionIdentity): Promise<void> {
    this.#renewing ??= (async () => {
      const { name, logger } = this.pool.options;
      let fresh: ProcessCredentials;
      try {
        fresh = await this.pool.options.environment!(identity);
      } catch (error) {
        if (!(error instanceof UpstreamCredentialError)) {
          // The AS could not be asked (unreachable): the process goes on with what it has, and the next request asks.
          logger?.warn(
            { upstream: name, owner: this.key, err: (error as Error).message },
            'upstream token renewal failed',
          );
          return;
        }
        logger?.info({ upstream: name, owner: this.key }, 'upstream process stopped: its token cannot be renewed');
        await this.#restartWith(undefined, `upstream "${name}" was stopped: ${error.message}`);
        throw error;
      }
      if (this.#credentials && sameEnvironment(fresh.env, this.#credentials.env)) {
        this.#credentials = { env: fresh.env, ...renewal(fresh.expiresAt) };
        return;
      }
      await this.#whenDrained();
      await this.#restartWith(fresh, `upstream "${name}" was restarted with a renewed token before answering`);
      await this.#ready(identity);
      logger?.info(
        { upstream: name, owner: this.key, pid: this.pid },
        'upstream process restarted with a renewed token',
      );
    })().finally(() => {
      this.#renewing = undefined;
    });
    return this.#renewing;
  }

  /** Whether a session's request is in flight on the process (the gateway's own handshake replay aside). */
  get #busy(): boolean {
    for (const pending of this.#pending.values()) if (!pending.internal) return true;
    return false;
  }

  /** Resolves once no request is in flight on the process, or after {@link DRAIN_TIMEOUT_MS}. */
  async #whenDrained(): Promise<void> {
    if (!this.#busy) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.#drained = resolve;
      timer = setTimeout(resolve, DRAIN_TIMEOUT_MS);
    });
    clearTimeout(timer);
    this.#drained = undefined;
  }

  /** Stops the process on purpose; the next start uses `credentials` (or asks for them) and replays the handshake. */
  async #restartWith(credentials: ProcessCredentials | undefined, reason: string): Promise<void> {
    const transport = this.#transport;
    this.#transport = undefined;
    this.#credentials = undefined;
    this.#nextCredentials = credentials;
    this.#failPending(reason);
    await transport?.close().catch(() => {});
  }

  /** Starts the process if needed and, for a restart under live sessions, replays their handshake. */
  async #ready(identity: SessionIdentity): Promise<void> {
    while (!this.#transport || (this.#initialize && !this.#handshakeDone)) {
      if (this.#starting) {
        await this.#starting;
        continue;
      }
      if (this.#transport && this.#firstHandshake) {
        await this.#firstHandshake.promise;
        continue;
      }
      this.#starting = (async () => {
        if (!this.#transport) await this.#start(identity);
        if (this.#initialize && !this.#handshakeDone) await this.#replayHandshake();
      })().finally(() => {
        this.#starting = undefined;
      });
      await this.#starting;
    }
  }

  async #replayHandshake(): Promise<void> {
    const id = this.#nextId++;
    const answer = new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new UpstreamUnavailableError('the upstream did not answer initialize')),
        INIT_TIMEOUT_MS,
      );
      this.#pending.set(id, {
        attachment: undefined as unknown as Attachment,
        id,
        internal: (message) => {
          clearTimeout(timer);
          resolve(message);
        },
      });
    });
    await this.#transport!.send({ ...this.#initialize!, id });
    const response = await answer;
    if ('error' in response)
      throw new UpstreamUnavailableError(String((response.error as { message?: unknown }).message));
    this.#handshakeDone = true;
    this.#initializedSent = true;
    await this.#transport!.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  }

  async fromSession(attachment: Attachment, message: Message): Promise<void> {
    attachment.lastUsed = Date.now();
    this.#lastActive = attachment;
    if (message.method !== undefined && message.id !== undefined) {
      if (this.#renewing || this.#renewalDue()) await this.#renew(attachment.identity);
      await this.#ready(attachment.identity);
      if (message.method === 'initialize') {
        if (this.#handshakeDone) {
          attachment.onmessage?.({ jsonrpc: '2.0', id: message.id, result: this.#initResult } as JSONRPCMessage);
          return;
        }
        this.#initialize = message as JSONRPCRequest;
        let resolve!: () => void;
        this.#firstHandshake = { promise: new Promise<void>((r) => (resolve = r)), resolve };
      }
      const id = this.#nextId++;
      if (message.method === 'initialize' && this.#firstHandshake) this.#firstHandshake.id = id;
      this.#pending.set(id, { attachment, id: message.id });
      attachment.outbound.set(message.id, id);
      attachment.inflight++;
      let params = message.params;
      const meta = params?.['_meta'] as { progressToken?: string | number } | undefined;
      if (meta?.progressToken !== undefined) {
        const token = `g${id}`;
        this.#progress.set(token, { attachment, token: meta.progressToken });
        params = { ...params, _meta: { ...meta, progressToken: token } };
      }
      await this.#write({ ...message, id, ...(params ? { params } : {}) } as JSONRPCMessage);
      return;
    }
    if (message.method === 'notifications/initialized') {
      if (this.#initializedSent) return;
      this.#initializedSent = true;
    } else if (message.method === 'notifications/cancelled') {
      const requestId = message.params?.['requestId'] as RequestId | undefined;
      const mapped = requestId === undefined ? undefined : attachment.outbound.get(requestId);
      if (mapped === undefined) return;
      message = { ...message, params: { ...message.params, requestId: mapped } };
    }
    if (!this.#transport) return; // a response or notification for a process that is gone
    await this.#write(message as JSONRPCMessage);
  }

  async #write(message: JSONRPCMessage): Promise<void> {
    const transport = this.#transport;
    if (!transport) throw new UpstreamUnavailableError(`upstream "${this.pool.options.name}" is not running`);
    await transport.send(message);
  }

  #fromUpstream(message: Message): void {
    const isResponse = message.method === undefined && message.id !== undefined;
    if (isResponse) {
      const entry = this.#pending.get(message.id as number);
      if (!entry) return;
      this.#pending.delete(message.id as number);
      if (entry.internal) {
        entry.internal(message);
        return;
      }
      const { attachment } = entry;
      if (this.#drained && !this.#busy) this.#drained();
      attachment.inflight = Math.max(0, attachment.inflight - 1);
      attachment.outbound.delete(entry.id);
      for (const [token, progress] of this.#progress) {
        if (progress.attachment === attachment && token === `g${message.id as number}`) this.#progress.delete(token);
      }
      if (this.#firstHandshake && this.#firstHandshake.id === message.id) {
        if ('result' in message) {
          this.#initResult = message.result;
          this.#handshakeDone = true;
        } else this.#initialize = undefined;
        this.#firstHandshake.resolve();
        this.#firstHandshake = undefined;
      }
      attachment.onmessage?.({ ...message, id: entry.id } as JSONRPCMessage);
      return;
    }
    if (message.method === 'notifications/progress') {
      const token = message.params?.['progressToken'];
      const entry = typeof token === 'string' ? this.#progress.get(token) : undefined;
      if (!entry) return;
      entry.attachment.onmessage?.({
        ...message,
        params: { ...message.params, progressToken: entry.token },
      } as JSONRPCMessage);
      return;
    }
    if (message.id !== undefined) {
      // A request from the server (sampling, elicitation, roots): the session that is waiting on it.
      const target = this.#busiest() ?? this.#lastActive ?? [...this.sessions].at(-1);
      target?.onmessage?.(message as JSONRPCMessage);
      return;
    }
    for (const attachment of this.sessions) attachment.onmessage?.(message as JSONRPCMessage);
  }

  /** The most recently used session with a request in flight. */
  #busiest(): Attachment | undefined {
    let best: Attachment | undefined;
    for (const attachment of this.sessions) {
      if (attachment.inflight > 0 && (!best || attachment.lastUsed >= best.lastUsed)) best = attachment;
    }
    return best;
  }
}

/** When a process with a token that expires at `expiresAt` should get a fresh one. */
function renewal(expiresAt: number | undefined): { renewAt?: number } {
  if (expiresAt === undefined) return {};
  return { renewAt: expiresAt - Math.min(RENEW_BEFORE_MS, Math.max(0, expiresAt - Date.now()) / 2) };
}

/**
 * The part of per-user process keys that keeps a user's sessions apart when their clients answer different server
 * requests. The process sees only the first session's `initialize`, and a server offers tools by what it says (no
 * sampling tool for a client without `sampling`), so a client without sampling or elicitation (mcp-remote's probe
 * connection, an inspector) must not decide what a later, fuller client of the same user gets. Empty for a client
 * declaring nothing the server can ask of it, so the common case stays one process per user.
 */
function capabilityClass(capabilities: Record<string, unknown> | undefined): string {
  if (!capabilities) return '';
  const parts: string[] = [];
  for (const name of Object.keys(capabilities).sort()) {
    const value = capabilities[name];
    const sub = value && typeof value === 'object' ? Object.keys(value).sort() : [];
    parts.push(sub.length ? `${name}(${sub.join(',')})` : name);
  }
  return parts.length ? `+${parts.join('+')}` : '';
}

/**
 * The processes of one stdio upstream: one per user (or per session), started on first use, stopped after an
 * idle timeout, at most `maxProcesses` at once.
 */
export class StdioPool {
  readonly #processes = new Map<string, SharedProcess>();
  readonly idleTimeoutMs: number;
  readonly maxProcesses: number;

  constructor(readonly options: StdioPoolOptions) {
    this.idleTimeoutMs = (options.config.idleTimeoutSeconds ?? 300) * 1000;
    this.maxProcesses = options.config.maxProcesses ?? 20;
  }

  /** Opens a channel for a session. Throws {@link UpstreamUnavailableError} when the process cap is reached. */
  open(identity: SessionIdentity): UpstreamChannel {
    const key =
      this.options.config.isolation === 'session'
        ? `session:${identity.sessionId}`
        : `user:${identity.subject}${capabilityClass(identity.clientCapabilities)}`;
    let process = this.#processes.get(key);
    if (!process) {
      if (this.#processes.size >= this.maxProcesses) this.#evictIdle();
      if (this.#processes.size >= this.maxProcesses) {
        throw new UpstreamUnavailableError(
          `upstream "${this.options.name}" is at its cap of ${this.maxProcesses} processes; try again later`,
        );
      }
      process = new SharedProcess(this, key);
      this.#processes.set(key, process);
    }
    return process.attach(identity);
  }

  #evictIdle(): void {
    for (const process of this.#processes.values()) {
      if (process.sessions.size === 0) {
        void this.retire(process);
        return;
      }
    }
  }

  /** Stops a process and forgets it. */
  async retire(process: SharedProcess): Promise<void> {
    if (this.#processes.get(process.key) === process) this.#processes.delete(process.key);
    if (process.running)
      this.options.logger?.info({ upstream: this.options.name, owner: process.key }, 'upstream process stopped');
    await process.stop();
  }

  /** The live processes, by owner (`user:<subject>` or `session:<id>`), with their pids. */
  processes(): Array<{ owner: string; pid: number | null; sessions: number }> {
    return [...this.#processes.values()].map((p) => ({ owner: p.key, pid: p.pid, sessions: p.sessions.size }));
  }

  async close(): Promise<void> {
    await Promise.all([...this.#processes.values()].map((p) => this.retire(p)));
  }
}

import {
  type AuthProvider,
  type FetchLike,
  InMemoryTransport,
  type OAuthClientProvider,
  type Client as SdkClient,
  SdkError,
  SdkErrorCode,
  SdkHttpError,
  SSEClientTransport,
  StreamableHTTPClientTransport,
  type Transport,
} from '@modelcontextprotocol/client';
import { GatehouseError } from '../oauth/errors.js';
import { MachineAuth } from './machine.js';
import { clientFetch } from './network.js';
import { OAuth, type WrapFetchHooks } from './oauth.js';
import type { ClientAuth, ResolvedSource } from './source.js';

/** How a connected server is reached. */
export type TransportKind = 'streamable-http' | 'sse' | 'stdio' | 'memory' | 'custom';

/** @internal An SDK client connected to one server, and how to tear it down. */
export interface OpenSession {
  sdk: SdkClient;
  transport: TransportKind;
  /** Extra teardown beyond `sdk.close()`, e.g. closing an in-memory server's end. */
  dispose?: () => Promise<void>;
}

const defaultOAuths = new WeakMap<object, OAuth>();

/**
 * `auth: 'oauth'`: one `OAuth` per source of a `Client` (so `close()` and reconnecting reuse the login), storing
 * its credential where the CLI does (encrypted, see `openDefaultTokenStore`).
 */
function defaultOAuthFor(owner: object, serverUrl: URL): OAuth {
  let oauth = defaultOAuths.get(owner);
  if (!oauth) {
    oauth = new OAuth({ mcpUrl: serverUrl.href });
    defaultOAuths.set(owner, oauth);
  }
  return oauth;
}

/**
 * @internal What the transports need for an `auth` option: an SDK auth provider, or OAuth's own `fetch`. Every
 * variant sends its requests through {@link clientFetch}, so proxies and extra CAs apply to the MCP traffic too.
 */
export function httpAuthFor(
  auth: ClientAuth | undefined,
  serverUrl: URL,
  hooks: WrapFetchHooks = {},
  owner?: object,
): { authProvider?: AuthProvider | OAuthClientProvider; fetch: FetchLike } {
  if (auth === undefined) return { fetch: clientFetch };
  const oauth =
    auth === 'oauth' ? defaultOAuthFor(owner ?? serverUrl, serverUrl) : auth instanceof OAuth ? auth : undefined;
  if (oauth) {
    // One credential per server, even when one OAuth is shared by several servers. wrapFetch adds the token,
    // refreshes it, logs in on 401 and steps up on 403 insufficient_scope.
    return { fetch: oauth.forServer(serverUrl).wrapFetch(clientFetch, hooks) };
  }
  // MachineAuth's own fetch gets the token: its `fetch` option, token cache and typed errors apply (handed to the SDK
  // as a provider, the SDK's auth() would send its token requests through clientFetch and throw its own errors).
  if (auth instanceof MachineAuth) return { fetch: auth.wrapFetch(clientFetch) };
  if (typeof auth === 'string') {
    const token = auth.replace(/^Bearer\s+/i, '');
    return { authProvider: { token: async () => token }, fetch: clientFetch };
  }
  return { authProvider: auth, fetch: clientFetch };
}

/**
 * Whether a failed streamable-HTTP connect means "this server only speaks SSE": the MCP spec's backwards
 * compatibility rule is to fall back on a 4xx answer to the initialize POST (typically 404 or 405). Auth failures
 * and unreachable hosts are not fallback signals.
 */
function shouldFallBackToSse(error: unknown): boolean {
  if (error instanceof SdkHttpError) {
    const status = error.status;
    return status >= 400 && status < 500 && status !== 401 && status !== 403;
  }
  return error instanceof SdkError && error.code === SdkErrorCode.ClientHttpNotImplemented;
}

/** The SDK's default request timeout, which also bounds the handshake when none is given. */
const DEFAULT_HANDSHAKE_TIMEOUT = 60_000;
const NO_SDK_TIMEOUT = 2_147_483_647;

/**
 * The handshake's own timeout: a clock that stops while the request is authorizing (a browser login has its own
 * timeout, `OAuth`'s `timeoutMs`), so a slow login never fails as a slow server.
 */
class HandshakeDeadline {
  readonly controller = new AbortController();
  #remaining: number;
  #startedAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #authorizing = 0;
  #done = false;

  constructor(readonly timeout: number) {
    this.#remaining = timeout;
    this.#run();
  }

  readonly hooks: WrapFetchHooks = {
    onAuthorizing: (authorizing) => {
      if (authorizing && this.#authorizing++ === 0) {
        clearTimeout(this.#timer);
        this.#remaining -= Date.now() - this.#startedAt;
      } else if (!authorizing && --this.#authorizing === 0) {
        this.#run();
      }
    },
  };

  #run(): void {
    if (this.#done) return; // connected: later logins belong to the requests, not the handshake
    this.#startedAt = Date.now();
    this.#timer = setTimeout(
      () =>
        this.controller.abort(
          new SdkError(SdkErrorCode.RequestTimeout, 'Request timed out', { timeout: this.timeout }),
        ),
      Math.max(0, this.#remaining),
    );
  }

  dispose(): void {
    this.#done = true;
    clearTimeout(this.#timer);
  }
}

/** Settles with `work`, or rejects with the signal's reason once it aborts. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  work.catch(() => {}); // settles later, after the abort has been reported
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * The SDK wraps what stopped its version probe (a login that timed out, a refused registration) in a generic
 * negotiation error: when that cause is one of ours, it is the error that names the real problem.
 */
function negotiationCause(error: unknown): unknown {
  if (error instanceof SdkError && error.code === SdkErrorCode.EraNegotiationFailed) {
    const cause = (error as { cause?: unknown }).cause;
    if (cause instanceof GatehouseError) return cause;
  }
  return error;
}

/**
 * Whether connecting in `'auto'` mode failed because the server process ended during the `server/discover` probe
 * (a pinned version fails for good: the SDK words that error differently).
 */
function probeEndedProcess(error: unknown): boolean {
  return (
    error instanceof SdkError &&
    error.code === SdkErrorCode.EraNegotiationFailed &&
    /closed during the server\/discover probe \(this transport probed in place/.test(error.message)
  );
}

/** The same client, set to skip the version probe and go straight to the 2025 handshake (`initialize`). */
function legacy(sdk: SdkClient): SdkClient {
  sdk.setVersionNegotiation({ mode: 'legacy' });
  return sdk;
}

/**
 * On a 2026-07-28 connection, a result without `resultType` is a complete one (SEP-2322: "the client MUST assume
 * `complete`"); the SDK refuses such results, so the field is filled in as the messages arrive. Earlier versions
 * are left alone: the SDK reads them that way already.
 */
function completeByDefault(transport: Transport, sdk: SdkClient): void {
  let handler: Transport['onmessage'];
  Object.defineProperty(transport, 'onmessage', {
    configurable: true,
    get: () => handler,
    set: (next: Transport['onmessage']) => {
      handler = next && ((message, extra) => next(withResultType(message, sdk), extra));
    },
  });
}

function withResultType<T>(message: T, sdk: SdkClient): T {
  const result = (message as { result?: unknown }).result;
  if (typeof result !== 'object' || result === null || 'resultType' in result) return message;
  if (sdk.getProtocolEra() !== 'modern') return message;
  return { ...message, result: { ...result, resultType: 'complete' } };
}

async function connectWith(
  make: () => SdkClient,
  transport: Transport,
  timeout: number | undefined,
  deadline?: HandshakeDeadline,
  { ownTransport = true } = {},
) {
  const sdk = make();
  // A caller's own transport is left as it is: its `onmessage` may be an accessor of its own.
  if (ownTransport) completeByDefault(transport, sdk);
  try {
    const connecting = sdk.connect(
      transport,
      deadline
        ? { timeout: NO_SDK_TIMEOUT, signal: deadline.controller.signal }
        : timeout === undefined
          ? undefined
          : { timeout },
    );
    // The SDK's version probe (server/discover) does not watch the signal: the deadline ends it all the same.
    if (deadline) await untilAborted(connecting, deadline.controller.signal);
    else await connecting;
    return sdk;
  } catch (error) {
    await sdk.close().catch(() => {});
    await transport.close().catch(() => {});
    throw negotiationCause(error);
  } finally {
    deadline?.dispose();
  }
}

/**
 * @internal Opens one session: builds the transport for `source` and connects a fresh SDK client from `make`.
 * HTTP sources in `auto` mode try streamable HTTP, then SSE.
 */
export async function openSession(
  source: ResolvedSource,
  make: () => SdkClient,
  timeout: number | undefined,
): Promise<OpenSession> {
  switch (source.kind) {
    case 'http': {
      // With OAuth the handshake may include a login: its clock stops meanwhile (see HandshakeDeadline).
      const oauth = source.auth === 'oauth' || source.auth instanceof OAuth;
      const deadline = () => (oauth ? new HandshakeDeadline(timeout ?? DEFAULT_HANDSHAKE_TIMEOUT) : undefined);
      let current: HandshakeDeadline | undefined;
      const auth = httpAuthFor(
        source.auth,
        source.url,
        { onAuthorizing: (on) => current?.hooks.onAuthorizing?.(on) },
        source,
      );
      const attempt = (transport: Transport) => {
        current = deadline();
        return connectWith(make, transport, timeout, current);
      };
      const requestInit = source.headers ? { headers: source.headers } : undefined;
      const sse = () => new SSEClientTransport(source.url, { ...auth, requestInit });
      if (source.transport === 'sse') return { sdk: await attempt(sse()), transport: 'sse' };
      const http = new StreamableHTTPClientTransport(source.url, { ...auth, requestInit });
      try {
        return { sdk: await attempt(http), transport: 'streamable-http' };
      } catch (error) {
        if (source.transport !== 'auto' || !shouldFallBackToSse(error)) throw error;
        return { sdk: await attempt(sse()), transport: 'sse' };
      }
    }
    case 'stdio': {
      // Loaded on demand: only stdio sources need child processes.
      const { StdioClientTransport, getDefaultEnvironment } = await import('@modelcontextprotocol/client/stdio');
      // A subclass, so the SDK's version probe (`server/discover`) runs on this very process: the SDK sends it to a
      // short-lived copy of the server only for its base class, which costs a second process on every connect.
      class InPlaceStdioTransport extends StdioClientTransport {}
      const transport = () =>
        new InPlaceStdioTransport({
          command: source.command,
          args: source.args,
          // The SDK replaces the environment when `env` is given; keep PATH, HOME and friends.
          env: source.env ? { ...getDefaultEnvironment(), ...source.env } : undefined,
          cwd: source.cwd,
        });
      try {
        return { sdk: await connectWith(make, transport(), timeout), transport: 'stdio' };
      } catch (error) {
        // Some 2025 servers exit on any request before `initialize`: start them once more, for the 2025 handshake.
        if (!probeEndedProcess(error)) throw error;
        return { sdk: await connectWith(() => legacy(make()), transport(), timeout), transport: 'stdio' };
      }
    }
    case 'memory': {
      const server = typeof source.server === 'function' ? await source.server() : source.server;
      const [clientEnd, serverEnd] = InMemoryTransport.createLinkedPair();
      await server.connect(serverEnd);
      try {
        return {
          sdk: await connectWith(make, clientEnd, timeout),
          transport: 'memory',
          dispose: () => serverEnd.close(),
        };
      } catch (error) {
        await serverEnd.close().catch(() => {});
        throw error;
      }
    }
    case 'transport':
      return {
        sdk: await connectWith(make, source.transport, timeout, undefined, { ownTransport: false }),
        transport: 'custom',
      };
  }
}

import {
  type JSONRPCMessage,
  type JSONRPCRequest,
  type RequestId,
  SSEClientTransport,
  type Transport,
} from '@modelcontextprotocol/client';
import { type SessionIdentity, type UpstreamChannel, UpstreamUnavailableError } from './channel.js';
import type { UpstreamConfig } from './config.js';
import { onUpstreamPool, StreamableHttpClient, UnrepeatableRequestError } from './streamable-client.js';

/** fetch on the gateway's upstream pool (for SSE upstreams; streamable HTTP ones use undici's request()). */
function upstreamFetch(input: string | URL, init: RequestInit): Promise<Response> {
  // Node's fetch takes the undici package's Agent as its dispatcher (the DOM types do not know the option).
  return onUpstreamPool((dispatcher) => fetch(input, { ...init, dispatcher } as RequestInit), init.signal, init.body);
}

/** An error's message with its cause's: `fetch failed` alone names no reason. */
function reasonOf(error: unknown): string {
  const { message, cause } = error as Error & { cause?: Error };
  return cause?.message ? `${message} (${cause.message})` : message;
}

/**
 * Whether an upstream answered that it no longer knows the session: 404 (the spec's answer), or 400 naming the
 * session (what servers built on the SDK's example code answer, server-everything among them).
 */
function sessionLost(error: unknown): boolean {
  const { status, message } = error as { status?: unknown; message?: string };
  const code = typeof status === 'number' ? status : Number(/\(HTTP (\d{3})\)/.exec(message ?? '')?.[1]);
  return code === 404 || (code === 400 && /session/i.test(message ?? ''));
}

/** Options of {@link openHttpChannel}. */
export interface HttpChannelOptions {
  name: string;
  config: UpstreamConfig;
  identity: SessionIdentity;
  /** Headers of the upstream's own credentials for this session (e.g. an exchanged token), per request. */
  credentials?: (identity: SessionIdentity) => Promise<Record<string, string>>;
}

/**
 * One gateway session's connection to an HTTP upstream: its own streamable-HTTP (or SSE) client session, so the
 * upstream's session id stays between the gateway and the upstream. Every request carries only the headers the
 * config and the credential source give — the caller's headers, its token first of all, never reach it.
 */
export function openHttpChannel(options: HttpChannelOptions): UpstreamChannel {
  const { config, identity, name } = options;
  const url = new URL(config.url!);
  const configHeaders: Record<string, string> = {};
  for (const [key, value] of Object.entries(config.headers ?? {})) configHeaders[key.toLowerCase()] = value;
  const { credentials } = options;
  /** The upstream's own headers: the config's, then the credential source's (read per request; copied by callers). */
  const upstreamHeaders = credentials
    ? async (): Promise<Record<string, string>> => {
        const headers = { ...configHeaders };
        for (const [key, value] of Object.entries(await credentials(identity))) headers[key.toLowerCase()] = value;
        return headers;
      }
    : (): Record<string, string> => configHeaders;
  const fetchWithCredentials = async (input: string | URL, init?: RequestInit): Promise<Response> => {
    const headers = new Headers(init?.headers);
    for (const [key, value] of Object.entries(await upstreamHeaders())) headers.set(key, value);
    return upstreamFetch(input, { ...init, headers });
  };
  let transport: Transport | undefined;
  let connecting: Promise<Transport> | undefined;
  /** The caller's `initialize`, replayed to open a new upstream session when the upstream lost this one. */
  let handshake: JSONRPCRequest | undefined;
  let replays = 0;
  const internal = new Map<RequestId, (message: JSONRPCMessage) => void>();

  const channel: UpstreamChannel = {
    async send(message) {
      const request = message as Partial<JSONRPCRequest>;
      const initializing = request.method === 'initialize' && request.id !== undefined;
      if (initializing) handshake = message as JSONRPCRequest;
      let live = transport ?? (await ready(initializing));
      try {
        await live.send(message);
      } catch (cause) {
        if (cause instanceof UnrepeatableRequestError) {
          throw new UpstreamUnavailableError(`upstream "${name}" ${cause.message}`);
        }
        if (initializing || !handshake || !sessionLost(cause)) {
          throw new UpstreamUnavailableError(`upstream "${name}" failed: ${reasonOf(cause)}`);
        }
        // The upstream restarted (or expired the session): a new upstream session under the caller's own.
        await drop(live);
        live = await ready(false);
        await live.send(message).catch((again: unknown) => {
          throw new UpstreamUnavailableError(`upstream "${name}" failed: ${reasonOf(again)}`);
        });
      }
    },
    async close() {
      const live = transport;
      transport = undefined;
      if (live instanceof StreamableHttpClient) await live.terminateSession().catch(() => {});
      await live?.close().catch(() => {});
    },
  };

  /** The live transport; a new one, with the handshake replayed unless the caller is sending it. */
  function ready(initializing: boolean): Promise<Transport> {
    if (transport) return Promise.resolve(transport);
    connecting ??= (async () => {
      const created = await connect();
      if (handshake && !initializing) await replayHandshake(created);
      transport = created;
      return created;
    })().finally(() => {
      connecting = undefined;
    });
    return connecting;
  }

  async function drop(live: Transport): Promise<void> {
    if (transport === live) transport = undefined;
    await live.close().catch(() => {});
  }

  async function replayHandshake(created: Transport): Promise<void> {
    const id = `gatehouse-reinitialize-${++replays}`;
    const answer = new Promise<JSONRPCMessage>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new UpstreamUnavailableError(`upstream "${name}" did not answer initialize`)),
        30_000,
      );
      internal.set(id, (message) => {
        clearTimeout(timer);
        resolve(message);
      });
    });
    try {
      await created.send({ ...handshake!, id });
      const response = await answer;
      if ('error' in response)
        throw new UpstreamUnavailableError(`upstream "${name}" refused initialize: ${response.error.message}`);
      await created.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    } catch (error) {
      await created.close().catch(() => {});
      throw error instanceof UpstreamUnavailableError
        ? error
        : new UpstreamUnavailableError(`upstream "${name}" failed: ${reasonOf(error)}`);
    } finally {
      internal.delete(id);
    }
  }

  async function connect(): Promise<Transport> {
    const created: Transport =
      config.type === 'sse'
        ? new SSEClientTransport(url, { fetch: fetchWithCredentials })
        : new StreamableHttpClient(url, upstreamHeaders);
    created.onmessage = (message: JSONRPCMessage) => {
      const id = (message as { id?: RequestId }).id;
      const waiting = id === undefined ? undefined : internal.get(id);
      if (waiting) waiting(message);
      else channel.onmessage?.(message);
    };
    created.onclose = () => {
      if (transport === created) {
        transport = undefined;
        channel.onfailure?.(`the connection to upstream "${name}" closed`);
      }
    };
    created.onerror = () => {};
    try {
      await created.start();
    } catch (cause) {
      throw new UpstreamUnavailableError(`upstream "${name}" cannot be reached at ${url.href}: ${reasonOf(cause)}`);
    }
    return created;
  }
  return channel;
}

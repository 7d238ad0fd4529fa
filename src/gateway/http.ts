import {
  type JSONRPCMessage,
  SSEClientTransport,
  StreamableHTTPClientTransport,
  type Transport,
} from '@modelcontextprotocol/client';
import { type SessionIdentity, type UpstreamChannel, UpstreamUnavailableError } from './channel.js';
import type { UpstreamConfig } from './config.js';

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
  const fetchWithCredentials = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const headers = new Headers(init?.headers);
    for (const [key, value] of Object.entries(config.headers ?? {})) headers.set(key, value);
    if (options.credentials) {
      for (const [key, value] of Object.entries(await options.credentials(identity))) headers.set(key, value);
    }
    return fetch(input, { ...init, headers });
  };
  let transport: Transport | undefined;
  let connecting: Promise<Transport> | undefined;
  const channel: UpstreamChannel = {
    async send(message) {
      if (!transport && !connecting) connecting = connect();
      const live = transport ?? (await connecting!);
      try {
        await live.send(message);
      } catch (cause) {
        throw new UpstreamUnavailableError(`upstream "${name}" failed: ${(cause as Error).message}`);
      }
    },
    async close() {
      const live = transport;
      transport = undefined;
      if (live instanceof StreamableHTTPClientTransport) await live.terminateSession().catch(() => {});
      await live?.close().catch(() => {});
    },
  };
  async function connect(): Promise<Transport> {
    const created: Transport =
      config.type === 'sse'
        ? new SSEClientTransport(url, { fetch: fetchWithCredentials })
        : new StreamableHTTPClientTransport(url, { fetch: fetchWithCredentials });
    created.onmessage = (message: JSONRPCMessage) => channel.onmessage?.(message);
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
      connecting = undefined;
      throw new UpstreamUnavailableError(
        `upstream "${name}" cannot be reached at ${url.href}: ${(cause as Error).message}`,
      );
    }
    transport = created;
    connecting = undefined;
    return created;
  }
  return channel;
}

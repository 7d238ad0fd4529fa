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
import { clientFetch } from './network.js';
import { OAuth } from './oauth.js';
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

/**
 * @internal What the transports need for an `auth` option: an SDK auth provider, or OAuth's own `fetch`. Every
 * variant sends its requests through {@link clientFetch}, so proxies and extra CAs apply to the MCP traffic too.
 */
export function httpAuthFor(
  auth: ClientAuth | undefined,
  serverUrl: URL,
): { authProvider?: AuthProvider | OAuthClientProvider; fetch: FetchLike } {
  if (auth === undefined) return { fetch: clientFetch };
  const oauth = auth === 'oauth' ? new OAuth({ mcpUrl: serverUrl.href }) : auth instanceof OAuth ? auth : undefined;
  if (oauth) {
    // An OAuth handed over without mcpUrl belongs to this server (OAuthOptions.mcpUrl says so).
    oauth.options.mcpUrl ??= serverUrl.href;
    // wrapFetch adds the token, refreshes it, logs in on 401 and steps up on 403 insufficient_scope.
    return { fetch: oauth.wrapFetch() };
  }
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

async function connectWith(make: () => SdkClient, transport: Transport, timeout: number | undefined) {
  const sdk = make();
  try {
    await sdk.connect(transport, timeout === undefined ? undefined : { timeout });
    return sdk;
  } catch (error) {
    await sdk.close().catch(() => {});
    throw error;
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
      const auth = httpAuthFor(source.auth, source.url);
      const requestInit = source.headers ? { headers: source.headers } : undefined;
      const sse = () => new SSEClientTransport(source.url, { ...auth, requestInit });
      if (source.transport === 'sse') return { sdk: await connectWith(make, sse(), timeout), transport: 'sse' };
      const http = new StreamableHTTPClientTransport(source.url, { ...auth, requestInit });
      try {
        return { sdk: await connectWith(make, http, timeout), transport: 'streamable-http' };
      } catch (error) {
        if (source.transport !== 'auto' || !shouldFallBackToSse(error)) throw error;
        return { sdk: await connectWith(make, sse(), timeout), transport: 'sse' };
      }
    }
    case 'stdio': {
      // Loaded on demand: only stdio sources need child processes.
      const { StdioClientTransport, getDefaultEnvironment } = await import('@modelcontextprotocol/client/stdio');
      const transport = new StdioClientTransport({
        command: source.command,
        args: source.args,
        // The SDK replaces the environment when `env` is given; keep PATH, HOME and friends.
        env: source.env ? { ...getDefaultEnvironment(), ...source.env } : undefined,
        cwd: source.cwd,
      });
      return { sdk: await connectWith(make, transport, timeout), transport: 'stdio' };
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
      return { sdk: await connectWith(make, source.transport, timeout), transport: 'custom' };
  }
}

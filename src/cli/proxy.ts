import {
  type FetchLike,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  type JSONRPCMessage,
  SdkError,
  SdkErrorCode,
  SdkHttpError,
  SSEClientTransport,
  StreamableHTTPClientTransport,
  type Transport,
} from '@modelcontextprotocol/client';
import { GatehouseError } from '../oauth/errors.js';
import { inCliWords } from './common.js';
import type { Output } from './output.js';

/** Which remote transport the proxy speaks, and whether it falls back to the other. */
export type ProxyTransportStrategy = 'http-first' | 'sse-first' | 'http-only' | 'sse-only';

export const PROXY_STRATEGIES: readonly ProxyTransportStrategy[] = ['http-first', 'sse-first', 'http-only', 'sse-only'];

export interface ProxyOptions {
  url: URL;
  strategy: ProxyTransportStrategy;
  /** The OAuth `fetch` (token, refresh, login on 401), or plain fetch without OAuth. */
  fetch?: FetchLike;
  headers?: Record<string, string>;
  /** The local side: stdio by default. */
  local?: Transport;
  out: Output;
  /** Which tools the local client sees and may call (`--allow-tool`, `--ignore-tool`). Default: all. */
  toolAllowed?: (name: string) => boolean;
  /** The flag that turned OAuth off, if one did: a 401 is then that flag's doing, and the fix says so. */
  withoutOAuth?: '--no-auth' | '--header';
}

/** A glob of tool names: `*` any run of characters, `?` one character, everything else literal. */
function globToRegExp(glob: string): RegExp {
  const source = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${source}$`);
}

/**
 * The tool filter of `--allow-tool` / `--ignore-tool` (each repeatable, globs): a tool is kept when it matches an
 * allow pattern (or none is given) and no ignore pattern.
 */
export function toolFilter(allow: string[] = [], ignore: string[] = []): ((name: string) => boolean) | undefined {
  if (allow.length === 0 && ignore.length === 0) return undefined;
  const allowed = allow.map(globToRegExp);
  const ignored = ignore.map(globToRegExp);
  return (name) => (allowed.length === 0 || allowed.some((r) => r.test(name))) && !ignored.some((r) => r.test(name));
}

/** A 4xx other than 401/403 on the first request: the server does not speak this transport (MCP back-compat rule). */
function wrongTransport(error: unknown): boolean {
  if (error instanceof SdkHttpError)
    return error.status >= 400 && error.status < 500 && ![401, 403].includes(error.status);
  if (error instanceof SdkError) return error.code === SdkErrorCode.ClientHttpNotImplemented;
  const status = (error as { code?: unknown } | undefined)?.code;
  return typeof status === 'number' && status >= 400 && status < 500 && status !== 401 && status !== 403;
}

function describe(
  error: unknown,
  url: URL,
  withoutOAuth?: ProxyOptions['withoutOAuth'],
): { message: string; hint: string } {
  let message = error instanceof Error ? error.message : String(error);
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof GatehouseError && e.hint) return { message, hint: inCliWords(e.hint) };
  }
  const code = ((error as { cause?: { code?: unknown } } | undefined)?.cause?.code ?? '') as string;
  if (/fetch failed|ECONNREFUSED|ENOTFOUND|ECONNRESET/.test(`${message} ${code}`)) {
    if (code) message = `cannot reach ${url.href}: ${message} (${code})`;
    else message = `cannot reach ${url.href}: ${message}`;
    return {
      message,
      hint: `check that the server is running and the URL is right (\`gatehouse doctor ${url.href}\`)`,
    };
  }
  if (error instanceof SdkHttpError && error.status === 401 && withoutOAuth) {
    return {
      message,
      hint:
        withoutOAuth === '--no-auth'
          ? 'the server requires OAuth: leave out --no-auth, and the proxy logs in'
          : 'the server refused the Authorization header given with --header: check its credential, or leave it out to log in with OAuth',
    };
  }
  if (error instanceof SdkHttpError) {
    return {
      message,
      hint: `the server answered HTTP ${error.status}; \`gatehouse doctor ${url.href}\` checks its setup`,
    };
  }
  return { message, hint: 'run the proxy with --verbose to see the cause' };
}

/**
 * Forwards MCP messages between a local stdio client and a remote HTTP server, unchanged, with OAuth on the
 * remote side. Resolves when either side closes. A request that cannot be forwarded is answered with a JSON-RPC
 * error naming the cause and the fix, so the desktop client shows it instead of hanging.
 */
export async function runProxy(options: ProxyOptions): Promise<void> {
  const { out } = options;
  const requestInit = options.headers ? { headers: options.headers } : undefined;
  const make = (kind: 'http' | 'sse'): Transport =>
    kind === 'http'
      ? new StreamableHTTPClientTransport(options.url, { fetch: options.fetch, requestInit })
      : new SSEClientTransport(options.url, { fetch: options.fetch, requestInit });
  const local = options.local ?? new (await import('@modelcontextprotocol/server/stdio')).StdioServerTransport();

  let kind: 'http' | 'sse' = options.strategy.startsWith('sse') ? 'sse' : 'http';
  const canFallBack = options.strategy.endsWith('-first');
  let remote: Transport | undefined;
  let remoteReady: Promise<Transport> | undefined;
  let firstSendDone = false;
  let closing = false;
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const pendingInitialize = new Set<string | number>();
  const pendingToolLists = new Set<string | number>();
  const toolAllowed = options.toolAllowed;

  const close = async (why: string) => {
    if (closing) return;
    closing = true;
    out.debug(`gatehouse proxy: closing (${why})`);
    if (remote instanceof StreamableHTTPClientTransport && remote.sessionId) {
      await remote.terminateSession().catch(() => {});
    }
    await Promise.allSettled([remote?.close(), local.close()]);
    finish();
  };

  const attach = (transport: Transport) => {
    transport.onmessage = (message) => {
      if (isJSONRPCResultResponse(message) && pendingInitialize.has(message.id)) {
        pendingInitialize.delete(message.id);
        const version = (message.result as { protocolVersion?: unknown }).protocolVersion;
        const settable = transport as Transport & { setProtocolVersion?: (v: string) => void };
        if (typeof version === 'string') settable.setProtocolVersion?.(version);
      }
      if (toolAllowed && isJSONRPCResultResponse(message) && pendingToolLists.delete(message.id)) {
        const result = message.result as { tools?: Array<{ name: string }> };
        if (Array.isArray(result.tools)) {
          message = { ...message, result: { ...result, tools: result.tools.filter((t) => toolAllowed(t.name)) } };
        }
      }
      local
        .send(message)
        .catch((error: unknown) => out.debug(`gatehouse proxy: cannot write to stdout: ${String(error)}`));
    };
    transport.onerror = (error) => out.debug(`gatehouse proxy: remote error: ${error.message}`);
    transport.onclose = () => {
      if (transport === remote) void close('the remote server closed the connection');
    };
  };

  const connect = async (which: 'http' | 'sse'): Promise<Transport> => {
    const transport = make(which);
    attach(transport);
    remote = transport;
    kind = which;
    try {
      await transport.start();
    } catch (error) {
      transport.onclose = undefined;
      transport.onmessage = undefined;
      transport.onerror = undefined;
      remote = undefined;
      throw error;
    }
    out.debug(`gatehouse proxy: connected to ${options.url.href} over ${which === 'http' ? 'streamable HTTP' : 'SSE'}`);
    return transport;
  };

  const ensureRemote = (): Promise<Transport> => {
    remoteReady ??= connect(kind).catch(async (error: unknown) => {
      // SSE opens its stream in start(): a server without SSE answers 404/405 there.
      if (kind === 'sse' && canFallBack && wrongTransport(error)) {
        out.debug(`gatehouse proxy: SSE refused (${String(error)}); trying streamable HTTP`);
        return connect('http');
      }
      throw error;
    });
    // A failed connect is retried by the next message (the server may just be starting).
    const attempt = remoteReady;
    attempt.catch(() => {
      if (remoteReady === attempt) remoteReady = undefined;
    });
    return remoteReady;
  };

  const forward = async (message: JSONRPCMessage): Promise<void> => {
    let transport = await ensureRemote();
    try {
      await transport.send(message);
      firstSendDone = true;
    } catch (error) {
      // Streamable HTTP finds out on the first POST that the server only speaks the old SSE transport. Only
      // before anything got through: later, a 404 means an expired session, not another transport.
      if (!firstSendDone && kind === 'http' && canFallBack && wrongTransport(error)) {
        out.debug(`gatehouse proxy: streamable HTTP refused (${String(error)}); trying SSE`);
        // Detach first: closing the refused transport must not close the proxy.
        transport.onclose = undefined;
        transport.onmessage = undefined;
        transport.onerror = undefined;
        await transport.close().catch(() => {});
        const sse = connect('sse');
        remoteReady = sse;
        sse.catch(() => {
          if (remoteReady === sse) remoteReady = undefined;
        });
        transport = await sse;
        await transport.send(message);
        firstSendDone = true;
      } else throw error;
    }
  };

  const report = async (message: JSONRPCMessage, error: unknown) => {
    const { message: text, hint } = describe(error, options.url, options.withoutOAuth);
    out.note(`gatehouse proxy: could not forward ${'method' in message ? message.method : 'a response'}: ${text}`);
    out.note(`fix: ${hint}`);
    if (isJSONRPCRequest(message)) {
      await local
        .send({
          jsonrpc: '2.0',
          id: message.id,
          error: { code: -32603, message: `gatehouse proxy: ${text} (fix: ${hint})` },
        })
        .catch(() => {});
    }
  };
  // The first message (initialize) goes alone: it may log in or fall back to the other transport. The rest
  // wait for it and then go concurrently, so a slow tool call does not hold up a ping or a cancellation.
  let first: Promise<void> | undefined;
  const inFlight = new Set<Promise<void>>();
  local.onmessage = (message: JSONRPCMessage) => {
    if (isJSONRPCRequest(message) && message.method === 'initialize') pendingInitialize.add(message.id);
    if (toolAllowed && isJSONRPCRequest(message) && message.method === 'tools/list') pendingToolLists.add(message.id);
    const tool = isJSONRPCRequest(message) && message.method === 'tools/call' ? message.params?.['name'] : undefined;
    if (toolAllowed && isJSONRPCRequest(message) && typeof tool === 'string' && !toolAllowed(tool)) {
      out.debug(`gatehouse proxy: refused tools/call ${tool} (filtered by --allow-tool/--ignore-tool)`);
      void local
        .send({
          jsonrpc: '2.0',
          id: message.id,
          error: { code: -32602, message: `Unknown tool: ${tool} (filtered out by gatehouse proxy)` },
        })
        .catch(() => {});
      return;
    }
    const run = () => forward(message).catch((error: unknown) => report(message, error));
    let task: Promise<void>;
    if (first) task = first.then(run);
    else {
      task = run();
      first = task;
    }
    inFlight.add(task);
    void task.finally(() => inFlight.delete(task));
  };
  local.onclose = () => {
    void Promise.allSettled([...inFlight]).then(() => close('the local client closed stdin'));
  };
  local.onerror = (error) => out.debug(`gatehouse proxy: local error: ${error.message}`);
  await local.start();
  const onSignal = () => void close('signal');
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await finished;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

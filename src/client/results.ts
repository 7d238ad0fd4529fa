import {
  type CallToolResult,
  type ContentBlock,
  ProtocolError,
  SdkError,
  SdkErrorCode,
  SdkHttpError,
  UrlElicitationRequiredError as SdkUrlElicitationRequiredError,
  UnauthorizedError,
} from '@modelcontextprotocol/client';
import { GatehouseError } from '../oauth/errors.js';
import {
  AuthenticationError,
  ConnectionError,
  McpError,
  TimeoutError,
  ToolError,
  type UrlElicitation,
  UrlElicitationRequiredError,
} from './errors.js';

/**
 * What {@link Client.callTool} returns. `data` is the tool's structured result: `structuredContent` when the tool
 * sent it, otherwise the text of a single text block, parsed as JSON when it is JSON (so `"42"` becomes `42`).
 */
export interface ToolResult<T = unknown> {
  content: ContentBlock[];
  structuredContent: unknown;
  /** The structured result, or the (parsed) text of a single text block; `undefined` otherwise. */
  data: T;
  isError: boolean;
  /** The result's `_meta`, if any. */
  meta?: Record<string, unknown>;
}

function parseText(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** @internal */
export function toToolResult<T>(result: CallToolResult): ToolResult<T> {
  const content = result.content ?? [];
  const [first] = content;
  let data: unknown;
  if (result.structuredContent !== undefined) data = result.structuredContent;
  else if (content.length === 1 && first?.type === 'text') data = parseText(first.text);
  const out: ToolResult<T> = {
    content,
    structuredContent: result.structuredContent,
    data: data as T,
    isError: result.isError === true,
  };
  if (result._meta) out.meta = result._meta as Record<string, unknown>;
  return out;
}

/** @internal The text of a tool error, for the {@link ToolError} message. */
export function toolErrorFor(name: string, result: ToolResult): ToolError {
  const text = result.content
    .filter((block): block is Extract<ContentBlock, { type: 'text' }> => block.type === 'text')
    .map((block) => block.text)
    .join('\n')
    .trim();
  return new ToolError(name, `Tool ${name} failed: ${text || 'it returned isError without a message'}`, result);
}

const PROTOCOL_HINTS: Record<number, string> = {
  [-32601]: 'The server does not support this method; check its capabilities.',
  [-32602]: 'Check the name and arguments against what the server lists (listTools, listResources, listPrompts).',
  [-32603]: "The server failed internally; see the server's logs.",
  [-32002]: 'Check the URI against listResources() and listResourceTemplates().',
};

/**
 * @internal Turns what the SDK throws into our typed errors: `ProtocolError` → {@link McpError}, timeouts →
 * {@link TimeoutError}, transport failures → {@link ConnectionError}, 401s → {@link AuthenticationError}.
 */
export function toClientError(error: unknown, context: { method: string; timeout?: number; server?: string }): unknown {
  // Ours, possibly wrapped by the SDK (a login that failed inside its version probe, a refused connection): it
  // names the cause better than the wrapper.
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof GatehouseError) return e;
  }
  const where = context.server ? ` (server ${context.server})` : '';
  const elicitations = urlElicitationsOf(error);
  if (elicitations) {
    return new UrlElicitationRequiredError(
      `${context.method} failed${where}: ${(error as Error).message}`,
      elicitations,
      {
        cause: error,
      },
    );
  }
  if (error instanceof ProtocolError) {
    return new McpError(`${context.method} failed${where}: ${error.message}`, {
      protocolCode: error.code,
      data: error.data,
      hint: PROTOCOL_HINTS[error.code],
      cause: error,
    });
  }
  if (error instanceof UnauthorizedError || (error instanceof SdkHttpError && error.status === 401)) {
    return new AuthenticationError(`The server refused the credentials${where}: ${error.message}`, {
      code: 'ERR_UNAUTHORIZED',
      hint: "Pass auth: 'oauth' (or an OAuth with login) to log in, or a valid bearer token.",
      cause: error,
    });
  }
  if (error instanceof SdkHttpError && error.status === 403) {
    return new AuthenticationError(`The server denied access${where}: ${error.message}`, {
      code: 'ERR_FORBIDDEN',
      hint: 'The token lacks a scope or permission this server requires; log in with the needed scopes.',
      cause: error,
    });
  }
  if (error instanceof SdkError) {
    if (error.code === SdkErrorCode.RequestTimeout) {
      const hint =
        context.method === 'connect'
          ? 'The server did not finish the handshake: check that it starts, or pass a larger `connectTimeout` (ms).'
          : undefined;
      return new TimeoutError(context.method, context.timeout, { hint, cause: error });
    }
    if (error.code === SdkErrorCode.NotConnected || error.code === SdkErrorCode.ConnectionClosed) {
      return new ConnectionError(`${context.method} failed${where}: the connection is closed (${error.message})`, {
        code: 'ERR_NOT_CONNECTED',
        hint: 'Call connect() first, or reconnect: the server may have exited or dropped the connection.',
        cause: error,
      });
    }
    return new ConnectionError(`${context.method} failed${where}: ${error.message}`, { cause: error });
  }
  if (error instanceof Error) {
    const cause = error.cause as { code?: string } | undefined;
    const code = (error as { code?: unknown }).code ?? cause?.code;
    if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'ENOENT' || code === 'ECONNRESET') {
      return new ConnectionError(`Could not reach the server${where}: ${error.message} (${String(code)})`, {
        cause: error,
      });
    }
    if (error.name === 'TypeError' && /fetch failed/i.test(error.message)) {
      return new ConnectionError(`Could not reach the server${where}: ${error.message}`, { cause: error });
    }
  }
  return error;
}

/**
 * @internal The pages a URL-elicitation-required error (-32042) asks the user to open, or `undefined` for any other
 * error. Only well-formed `http(s)` entries are kept: the URL is shown to a person.
 */
export function urlElicitationsOf(error: unknown): UrlElicitation[] | undefined {
  if (!(error instanceof SdkUrlElicitationRequiredError)) return undefined;
  return error.elicitations
    .filter((e) => e.mode === 'url' && /^https?:\/\//i.test(e.url) && typeof e.elicitationId === 'string')
    .map((e) => ({ url: e.url, message: e.message, elicitationId: e.elicitationId }));
}

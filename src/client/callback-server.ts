import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { constantTimeEqual } from '../oauth/constant-time.js';
import { AuthenticationError, CallbackTimeoutError } from './errors.js';

/** What arrived at the callback: the full redirect URL (`code`, `state`, `iss`, or `error`). */
export interface CallbackResult {
  url: URL;
  code: string | undefined;
  state: string | undefined;
  iss: string | undefined;
  error: string | undefined;
  errorDescription: string | undefined;
}

/** Options of {@link startCallbackServer}. */
export interface CallbackServerOptions {
  /** Port to listen on. `0` or absent: a random free port. */
  port?: number;
  /** Path of the redirect URI. Default `/callback`. */
  path?: string;
}

/** A loopback server waiting for one authorization response. */
export interface CallbackServer {
  /** The port it listens on (the same on 127.0.0.1 and ::1). */
  readonly port: number;
  /** The redirect URI to register and send: `http://localhost:<port>/callback`. */
  readonly redirectUri: string;
  /**
   * Waits for the authorization response whose `state` equals `expectedState` (compared in constant time).
   * Rejects with {@link CallbackTimeoutError} after `timeoutMs` (default 300 s). A response with another state is
   * answered `400` and ignored: the login keeps waiting for its own.
   */
  waitForCallback(expectedState: string, timeoutMs?: number): Promise<CallbackResult>;
  close(): Promise<void>;
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML element content and quoted attributes. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!);
}

/** The pages the user sees in the browser. Every value that came from the URL is escaped. */
function page(res: ServerResponse, status: number, title: string, message: string, detail?: string): void {
  const body = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}
code{background:#f3f3f3;padding:.1rem .3rem;border-radius:.2rem;word-break:break-all}</style></head>
<body><h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p>${
    detail ? `<p><code>${escapeHtml(detail)}</code></p>` : ''
  }</body></html>`;
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'x-frame-options': 'DENY',
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
  });
  res.end(body);
}

function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

function listenOn(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => {
      server.off('listening', onListening);
      reject(error);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ port, host, exclusive: true });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/**
 * Starts the loopback server that receives the authorization response at `http://localhost:<port>/callback`. It
 * listens on 127.0.0.1 and on ::1 with the same port, so the redirect works however `localhost` resolves; it
 * answers only loopback peers and only requests whose `Host` is this server (DNS-rebinding defence).
 *
 * A fixed port that is taken raises an error naming the port; a random port is retried.
 *
 * @example
 * ```ts
 * import { startCallbackServer } from 'gatehouse/client';
 *
 * const server = await startCallbackServer();
 * console.log(server.redirectUri); // http://localhost:53124/callback
 * const { code } = await server.waitForCallback(state);
 * await server.close();
 * ```
 */
export async function startCallbackServer(options: CallbackServerOptions = {}): Promise<CallbackServer> {
  const path = options.path ?? '/callback';
  let waiter: { state: string; resolve: (result: CallbackResult) => void; reject: (error: Error) => void } | undefined;
  let port = 0;

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    if (!isLoopbackAddress(req.socket.remoteAddress)) {
      res.destroy();
      return;
    }
    const host = (req.headers.host ?? '').toLowerCase();
    if (![`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`].includes(host)) {
      page(res, 421, 'Wrong host', 'This login server only answers requests addressed to itself.');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET', 'x-frame-options': 'DENY' }).end();
      return;
    }
    const url = new URL(req.url ?? '/', `http://localhost:${port}`);
    if (url.pathname !== path) {
      page(res, 404, 'Not found', 'This server only receives the login callback.');
      return;
    }
    const get = (name: string) => url.searchParams.get(name) ?? undefined;
    const result: CallbackResult = {
      url,
      code: get('code'),
      state: get('state'),
      iss: get('iss'),
      error: get('error'),
      errorDescription: get('error_description'),
    };
    if (!waiter) {
      page(res, 409, 'No login in progress', 'This application is not waiting for a login. Start it again.');
      return;
    }
    const current = waiter;
    if (!result.state || !constantTimeEqual(result.state, current.state)) {
      // A stray or forged request (an old tab, another site) must not end the login the user is finishing.
      page(res, 400, 'Login failed', 'The response does not belong to the login this application started.');
      return;
    }
    waiter = undefined;
    if (result.error) {
      const denied = result.error === 'access_denied';
      page(
        res,
        denied ? 403 : 400,
        denied ? 'Access denied' : 'Login failed',
        denied
          ? 'The request was not approved. You can close this tab.'
          : 'The authorization server reported an error. You can close this tab.',
        `${result.error}${result.errorDescription ? `: ${result.errorDescription}` : ''}`,
      );
    } else if (!result.code) {
      page(res, 400, 'Login failed', 'The response carries no authorization code. You can close this tab.');
    } else {
      page(res, 200, 'Logged in', 'You are logged in. You can close this tab and return to the application.');
    }
    current.resolve(result);
  };

  const v4 = createServer(handler);
  const v6 = createServer(handler);
  const fixed = options.port !== undefined && options.port !== 0;
  for (let attempt = 0; ; attempt++) {
    try {
      port = await listenOn(v4, fixed ? options.port! : 0, '127.0.0.1');
    } catch (error) {
      throw portError(options.port ?? 0, error);
    }
    try {
      await listenOn(v6, port, '::1');
      break;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // No IPv6 loopback on this machine: 127.0.0.1 alone is how localhost resolves here.
      if (code === 'EADDRNOTAVAIL' || code === 'EAFNOSUPPORT') break;
      await closeServer(v4);
      if (fixed || attempt >= 5) throw portError(port, error);
    }
  }

  return {
    port,
    redirectUri: `http://localhost:${port}${path}`,
    waitForCallback(expectedState, timeoutMs = 300_000) {
      if (waiter) waiter.reject(new AuthenticationError('A newer login replaced this one', { code: 'ERR_SUPERSEDED' }));
      return new Promise<CallbackResult>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiter = undefined;
          reject(new CallbackTimeoutError(timeoutMs));
        }, timeoutMs);
        timer.unref?.();
        waiter = {
          state: expectedState,
          resolve: (result) => {
            clearTimeout(timer);
            resolve(result);
          },
          reject: (error) => {
            clearTimeout(timer);
            reject(error);
          },
        };
      });
    },
    async close() {
      await Promise.all([closeServer(v4), closeServer(v6)]);
    },
  };
}

function portError(port: number, cause: unknown): AuthenticationError {
  const code = (cause as NodeJS.ErrnoException).code;
  return new AuthenticationError(
    code === 'EADDRINUSE'
      ? `The login callback port ${port} is already in use on localhost`
      : `Could not listen for the login callback on localhost:${port} (${code ?? String(cause)})`,
    {
      code: 'ERR_CALLBACK_PORT',
      hint: 'Close the program using that port, or choose another callbackPort (or none, for a random port).',
      cause,
    },
  );
}

import type { Dispatcher } from 'undici';
import { ConnectionError } from './errors.js';

type Undici = typeof import('undici');

let network: Promise<{ undici: Undici; dispatcher: Dispatcher }> | undefined;

/**
 * The dispatcher every client request goes through, made on first use: undici's `EnvHttpProxyAgent`, which reads
 * `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` (and their lower-case forms) once, and tunnels `https:` requests
 * through the proxy with `CONNECT`. TLS to the servers (direct or tunnelled) uses Node's default trust store,
 * which includes the certificates of `NODE_EXTRA_CA_CERTS` (read by Node at startup).
 */
function loadNetwork(): Promise<{ undici: Undici; dispatcher: Dispatcher }> {
  // Loaded on demand: importing gatehouse/client stays cheap, and undici loads only when a request is made.
  network ??= import('undici').then((undici) => ({ undici, dispatcher: new undici.EnvHttpProxyAgent() }));
  return network;
}

/**
 * A `Request` from Node's bundled fetch is not one of the undici package's: its fetch would read it as a string.
 * Hand over its parts instead.
 */
function unpack(input: RequestInfo | URL, init: RequestInit | undefined): [string | URL, RequestInit | undefined] {
  if (!(input instanceof Request)) return [input, init];
  const body = input.body ?? undefined;
  return [
    input.url,
    {
      method: input.method,
      headers: input.headers,
      body,
      redirect: input.redirect,
      signal: input.signal,
      ...(body ? { duplex: 'half' } : {}),
      ...init,
    } as RequestInit,
  ];
}

/**
 * The `fetch` of gatehouse/client: every request it makes — the MCP transport, OAuth discovery, registration,
 * token and refresh requests, the headless login, `diagnose()` — goes through it unless you pass your own.
 * It honours `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` (lower-case forms too) and `NODE_EXTRA_CA_CERTS`, using the
 * undici package's `fetch` with its `EnvHttpProxyAgent` (Node's built-in `fetch` ignores proxy variables).
 * A request that gets no answer rejects with a {@link ConnectionError} naming the cause (see
 * {@link describeNetworkFailure}); an aborted request rejects with the abort reason, as `fetch` does.
 *
 * @example Use it for your own requests so they take the same route as the client's
 * ```ts
 * import { clientFetch } from 'gatehouse/client';
 *
 * // HTTPS_PROXY=http://proxy.corp:3128 NO_PROXY=localhost,.internal node app.js
 * const response = await clientFetch('https://mcp.example.com/.well-known/oauth-protected-resource');
 * console.log(response.status);
 * ```
 */
export const clientFetch: typeof fetch = async (input, init) => {
  const { undici, dispatcher } = await loadNetwork();
  const [url, options] = unpack(input, init);
  const link = linkSignal(options?.signal);
  // The package's types differ from the DOM's in detail (its own Headers, BodyInit); the shapes match at run time.
  let response: Awaited<ReturnType<Undici['fetch']>>;
  try {
    response = await undici.fetch(url as Parameters<Undici['fetch']>[0], {
      ...(options as Parameters<Undici['fetch']>[1]),
      ...(link ? { signal: link.signal } : {}),
      dispatcher,
    });
  } catch (error) {
    link?.release();
    // A refused connection, an unknown host, an untrusted certificate: say which, and for which host.
    throw describeNetworkFailure(error, url) ?? error;
  }
  return asGlobalResponse(response, link?.release);
};

/** A per-request signal that follows the caller's, and the way to stop following it once the request is over. */
interface SignalLink {
  signal: AbortSignal;
  release: () => void;
}

/** Stops following the caller's signal of a response nobody read to the end, once that response is collected. */
const unreadResponses = new FinalizationRegistry<() => void>((release) => release());

/**
 * undici's `fetch` adds an `abort` listener to the signal it is given and removes it only when the request object
 * is garbage-collected (and raises that signal's listener limit to 1500). An MCP transport hands every request the
 * same long-lived signal, so a busy client piles up one listener per request until a full GC — past 1500 Node
 * warns of a leak. The request gets its own signal instead, linked to the caller's by one listener that is
 * removed as soon as the request is over (failed, or its body read, cancelled or collected).
 */
function linkSignal(caller: AbortSignal | null | undefined): SignalLink | undefined {
  if (!caller || caller.aborted) return undefined; // nothing to follow; an aborted signal fails the request at once
  const request = new AbortController();
  const forward = () => request.abort(caller.reason);
  caller.addEventListener('abort', forward, { once: true });
  return { signal: request.signal, release: () => caller.removeEventListener('abort', forward) };
}

/** Statuses whose responses carry no body: the `Response` constructor refuses one for them. */
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/**
 * The undici package's `Response` is not the global class, so `instanceof Response` — which the MCP SDK uses to
 * read OAuth error bodies — is false for it. Hand back a global `Response` over the same stream and headers.
 */
function asGlobalResponse(response: Awaited<ReturnType<Undici['fetch']>>, release?: () => void): Response {
  const stream = NULL_BODY_STATUSES.has(response.status) ? null : (response.body as ReadableStream<Uint8Array> | null);
  const body = stream && release ? releasedAtEnd(stream, release) : stream;
  if (!body) release?.();
  const global = new Response(body, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers as unknown as HeadersInit,
  });
  // `url` and `redirected` are read-only on a constructed Response; callers resolve relative URLs against `url`.
  Object.defineProperty(global, 'url', { value: response.url });
  Object.defineProperty(global, 'redirected', { value: response.redirected });
  if (body && release) unreadResponses.register(global, release);
  return global;
}

/**
 * `stream`, calling `release` once it ends, fails or is cancelled: until then an abort of the caller's signal
 * still stops the download (the MCP transport aborts its streams that way on close).
 */
function releasedAtEnd(stream: ReadableStream<Uint8Array>, release: () => void): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (error) {
          release();
          throw error;
        }
        if (chunk.done) {
          release();
          controller.close();
        } else controller.enqueue(chunk.value);
      },
      cancel(reason) {
        release();
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/** Certificate errors of Node's TLS layer: the server's certificate is not one this process trusts. */
const UNTRUSTED_CERTIFICATE =
  /^(DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_UNTRUSTED)$/;

function networkCode(error: unknown): { code: string; message: string } | undefined {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && !code.startsWith('ERR_')) return { code, message: e.message };
    if (typeof code === 'string' && /^ERR_(TLS|SSL)_/.test(code)) return { code, message: e.message };
  }
  return undefined;
}

/**
 * What a failed request tells a person: the connection was refused, the host name does not resolve, the TLS
 * certificate is not trusted, … — as a {@link ConnectionError} naming the host and the fix; `undefined` when
 * `error` is not a network failure. `clientFetch` throws these, so every part of the client reports them alike.
 */
export function describeNetworkFailure(error: unknown, url: string | URL): ConnectionError | undefined {
  if (error instanceof ConnectionError) return error;
  // fetch refuses the Fetch standard's "bad ports" (1, 6000, 6665-6669, …) before connecting, with no code.
  if (error instanceof Error && (error.cause as Error | undefined)?.message === 'bad port') {
    const { hostname, port } = new URL(url);
    return new ConnectionError(
      `fetch refuses port ${port} of ${hostname}: it is on the Fetch standard's list of blocked ports`,
      {
        code: 'ERR_BLOCKED_PORT',
        hint: `Run the server on another port (e.g. 8000): Node's fetch, like every browser, never connects to port ${port}.`,
        cause: error,
      },
    );
  }
  const found = networkCode(error);
  if (!found) return undefined;
  const target = new URL(url);
  const host = target.host;
  const { code, message } = found;
  if (code === 'ECONNREFUSED') {
    return new ConnectionError(`Connection refused by ${host}: nothing listens there (${code})`, {
      code: 'ERR_CONNECTION_REFUSED',
      hint: `Start the server, or correct the host and port in the URL: nothing accepts connections on ${host}.`,
      cause: error,
    });
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_FAIL' || code === 'EAI_NONAME') {
    return new ConnectionError(`The host name ${target.hostname} does not resolve (DNS ${code})`, {
      code: 'ERR_DNS',
      hint: `Check the host name in ${target.origin} for a typo, and your network, VPN or DNS settings.`,
      cause: error,
    });
  }
  if (UNTRUSTED_CERTIFICATE.test(code) || /^(ERR_TLS_|ERR_SSL_|CERT_)/.test(code)) {
    return new ConnectionError(`The TLS certificate of ${host} is not trusted: ${message} (${code})`, {
      code: 'ERR_TLS',
      hint:
        code === 'ERR_TLS_CERT_ALTNAME_INVALID'
          ? `The certificate is for another host name: use the name it was issued for, or fix the certificate of ${host}.`
          : `If ${host} is yours, make Node trust its CA: NODE_EXTRA_CA_CERTS=/path/to/ca.pem (never turn verification off).`,
      cause: error,
    });
  }
  if (code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new ConnectionError(`Connecting to ${host} timed out (${code})`, {
      code: 'ERR_CONNECTION_TIMEOUT',
      hint: `Check that ${host} is reachable from here (firewall, proxy: HTTPS_PROXY / NO_PROXY).`,
      cause: error,
    });
  }
  return new ConnectionError(`The request to ${host} failed: ${message} (${code})`, {
    hint: `Check that the server runs at ${target.origin} and the network path to it.`,
    cause: error,
  });
}

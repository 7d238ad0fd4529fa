import type { Dispatcher } from 'undici';

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
  // The package's types differ from the DOM's in detail (its own Headers, BodyInit); the shapes match at run time.
  const response = await undici.fetch(url as Parameters<Undici['fetch']>[0], {
    ...(options as Parameters<Undici['fetch']>[1]),
    dispatcher,
  });
  return asGlobalResponse(response);
};

/** Statuses whose responses carry no body: the `Response` constructor refuses one for them. */
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/**
 * The undici package's `Response` is not the global class, so `instanceof Response` — which the MCP SDK uses to
 * read OAuth error bodies — is false for it. Hand back a global `Response` over the same stream and headers.
 */
function asGlobalResponse(response: Awaited<ReturnType<Undici['fetch']>>): Response {
  const body = NULL_BODY_STATUSES.has(response.status) ? null : (response.body as ReadableStream<Uint8Array> | null);
  const global = new Response(body, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers as unknown as HeadersInit,
  });
  // `url` and `redirected` are read-only on a constructed Response; callers resolve relative URLs against `url`.
  Object.defineProperty(global, 'url', { value: response.url });
  Object.defineProperty(global, 'redirected', { value: response.redirected });
  return global;
}

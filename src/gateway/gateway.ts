import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { AuthorizationServerOptions } from '../authorization-server/server.js';
import type { Authenticator } from '../authorization-server/users.js';
import { OAuthProtocolError } from '../oauth/errors.js';
import { TOKEN_EXCHANGE_GRANT_TYPE } from '../oauth/token-exchange.js';
import { TokenExchangeClient } from '../server/grant.js';
import { jwtVerifier } from '../server/jwt-verifier.js';
import { toNodeListener } from '../server/node.js';
import { type FetchHandler, type ProtectedHandler, protect } from '../server/protect.js';
import type { AuthInfo } from '../server/verifier.js';
import type { OidcAdapterFactory } from '../storage/oidc/common.js';
import type { SessionIdentity, UpstreamChannel } from './channel.js';
import { type GatewayConfig, GatewayConfigError, resolveConfig, type UpstreamConfig } from './config.js';
import { type SessionPostRoute, takeSessionPost } from './fast-path.js';
import { openHttpChannel } from './http.js';
import { SessionRecords } from './records.js';
import { AnswerRelay } from './relay.js';
import { sameOriginAuthorizationServer } from './same-origin.js';
import { GatewaySession, subjectOf } from './session.js';
import { StdioPool } from './stdio.js';
import {
  LinkWaiters,
  requiringCredentials,
  type UpstreamToken,
  type UpstreamTokenSource,
  upstreamCredentials,
  upstreamTokenSource,
} from './upstream-credentials.js';

/** The client ID the embedded authorization server knows the gateway by, for token exchange. */
export const GATEWAY_CLIENT_ID = 'gatehouse-gateway';

/** The scope of an upstream that names none. */
export const DEFAULT_SCOPE = 'mcp:tools';

/**
 * The caller of a public tool who sent no token. Its subject (`client:`) is none a token can have: client ids are
 * never empty.
 */
const ANONYMOUS: AuthInfo = { token: '', clientId: '', scopes: [] };

/** How long the gateway keeps an idle client connection open. */
const CLIENT_KEEP_ALIVE_MS = 65_000;

/** Whether MCP session records go to the store: one several instances can share (Redis, PostgreSQL). */
const sharedStore = (store: string | undefined): boolean => /^(rediss?|postgres(ql)?):\/\//.test(store ?? '');

/** Runtime settings of {@link startGateway} that are not in the config file. */
export interface GatewayRuntime {
  env?: NodeJS.ProcessEnv;
  /** Structured logs and the audit trail (one `mcp request` line per MCP request). Default: silent. */
  logger?: Logger;
  /**
   * Where the embedded authorization server keeps its data (created 0700); with an external `issuer`, where the
   * at-rest key file of a Redis or PostgreSQL `store` is created unless `GATEHOUSE_STORE_KEY` is set. Default:
   * `gatehouse serve`'s.
   */
  dataDir?: string;
  /** Seconds an MCP session with no request lives on. Default 1800. */
  sessionIdleSeconds?: number;
}

/** A running gateway. */
export interface RunningGateway {
  /** The base URL it listens on. */
  url: string;
  /** The authorization server's issuer (embedded or external). */
  issuer: string;
  /** Whether the authorization server runs inside the gateway. */
  embedded: boolean;
  /** Each upstream's name and the MCP URL clients connect to. */
  upstreams: Array<{ name: string; url: string; kind: 'stdio' | 'http' | 'sse' }>;
  /** The generated login of the embedded authorization server, on the first start without users. */
  generatedLogin?: { username: string; password: string; usersFile: string };
  /** The login configured for the embedded authorization server, when it is a generated one from an earlier start. */
  usersFile?: string;
  /** Live stdio processes, by upstream. */
  processes(): Record<string, Array<{ owner: string; pid: number | null; sessions: number }>>;
  close(): Promise<void>;
}

interface Route {
  name: string;
  config: UpstreamConfig;
  resource: string;
  handler: ProtectedHandler;
  pool?: StdioPool;
}

const jsonRpcError = (status: number, message: string): Response =>
  Response.json({ jsonrpc: '2.0', id: null, error: { code: -32000, message } }, { status });

/**
 * Starts a gateway: puts OAuth in front of MCP servers that have none — stdio commands (one process per user or
 * per session) and HTTP servers (streamable HTTP or SSE) — each behind `protect()` at its own path, with an
 * authorization server embedded in the same process (or an external one, `issuer`). The caller's token never
 * reaches an upstream; upstreams get their own credentials (static headers/env, or a token by RFC 8693
 * exchange). Every MCP request leaves one audit line.
 *
 * @example
 * ```ts
 * import { startGateway } from 'gatehouse/gateway';
 *
 * const gateway = await startGateway({
 *   port: 8080,
 *   superuser: 'admin',
 *   mcpServers: { everything: { command: 'npx', args: ['-y', '@modelcontextprotocol/server-everything'] } },
 * }, { env: { ...process.env, GATEHOUSE_SUPERUSER_PASSWORD: 'a long password' } });
 * console.log(gateway.upstreams[0]?.url); // http://127.0.0.1:8080/everything/mcp
 * await gateway.close();
 * ```
 */
export async function startGateway(input: GatewayConfig, runtime: GatewayRuntime = {}): Promise<RunningGateway> {
  const env = runtime.env ?? process.env;
  const config = resolveConfig(input, env);
  const logger = runtime.logger;
  const host = config.host ?? '127.0.0.1';

  const server = createServer();
  // Node's default (5 s) loses races under load: a client whose event loop lags writes its next request onto a
  // connection the gateway is just closing, and gets `fetch failed` (other side closed / ECONNRESET). Idle
  // connections live longer than clients and load balancers keep them (60 s at common LBs), so the client closes.
  server.keepAliveTimeout = CLIENT_KEEP_ALIVE_MS;
  server.headersTimeout = CLIENT_KEEP_ALIVE_MS + 1000;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port ?? 8080, host, () => resolve());
    });
  } catch (cause) {
    throw new GatewayConfigError(`cannot listen on ${host}:${config.port ?? 8080}: ${(cause as Error).message}`, {
      code: 'ERR_GATEWAY_CONFIG',
      hint: 'Pick another --port, or stop what is using it.',
    });
  }
  const address = server.address() as AddressInfo;
  const listenUrl = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  const base = (config.publicUrl ?? listenUrl).replace(/\/+$/, '');
  const embedded = config.issuer === undefined;
  const issuer = config.issuer ?? base;
  const cleanups: Array<() => Promise<void>> = [
    async () => {
      await new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      });
    },
  ];
  const closeAll = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  };

  try {
    const names = Object.keys(config.mcpServers);
    const paths = new Map<string, string>();
    for (const name of names) {
      const path = config.mcpServers[name]!.path ?? `/${name}/mcp`;
      if ([...paths.values()].includes(path)) {
        throw new GatewayConfigError(`two upstreams are served at ${path}`, {
          code: 'ERR_GATEWAY_CONFIG',
          hint: 'Give each upstream its own "path" (or leave it to the default /<name>/mcp).',
        });
      }
      paths.set(name, path);
    }
    const resourceOf = (name: string) => `${base}${paths.get(name)}`;
    // An authorization server grants nothing for a resource without scopes: such an upstream gets `mcp:tools`.
    const scopesOf = (c: UpstreamConfig) => {
      const all = new Set([
        ...(c.scopes ?? []),
        ...Object.values(c.toolScopes ?? {}).flat(),
        ...Object.keys(c.scopeHierarchy ?? {}),
        // The user consents to what the gateway asks for on their behalf: exchanged scopes are the token's own.
        ...(c.tokenExchange?.scopes ?? []),
      ]);
      return all.size ? [...all] : [DEFAULT_SCOPE];
    };
    // Upstreams with a token of their own (tokenExchange or upstreamIdentity): both are a token exchange.
    const sources = new Map<string, UpstreamTokenSource>();
    for (const name of names) {
      const source = upstreamTokenSource(name, config.mcpServers[name]!, issuer);
      if (source) sources.set(name, source);
    }
    const exchanging = [...sources.keys()];

    // The gateway's own client at the authorization server, used only for token exchange.
    let credentials =
      config.clientId && config.clientSecret
        ? { clientId: config.clientId, clientSecret: config.clientSecret }
        : undefined;
    let generatedLogin: RunningGateway['generatedLogin'];
    let usersFilePath: string | undefined;
    let records: SessionRecords | undefined;
    // Sessions answered "link the provider first" (URL elicitation), told when the embedded AS stored the tokens.
    const linkWaiters = new LinkWaiters();

    /** The data directory (created 0700): the embedded AS's data, or the store's at-rest key file. */
    const dataDirectory = async () => {
      const { serveDataDirectory } = await import('../authorization-server/serve.js');
      const dir = runtime.dataDir ?? (await serveDataDirectory(env));
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chmodSync(dir, 0o700);
      return dir;
    };
    // A store other instances can share: MCP sessions are recorded there and recoverable on any instance.
    let recordStore: OidcAdapterFactory | undefined;
    const recordsIn = (store: OidcAdapterFactory) => {
      recordStore = store;
      return new SessionRecords(store, { idleSeconds: runtime.sessionIdleSeconds ?? 1800, ...(logger && { logger }) });
    };

    if (embedded) {
      const { buildAuthenticator, buildUpstreamIdentity, openStore } = await import('../authorization-server/serve.js');
      const dataDir = await dataDirectory();
      let authenticator: Authenticator;
      if (config.superuser || config.users) {
        authenticator = await buildAuthenticator({ superuser: config.superuser, users: config.users }, env);
      } else {
        const { hashPassword, usersFile } = await import('../authorization-server/users.js');
        usersFilePath = join(dataDir, 'gateway-users.json');
        if (!existsSync(usersFilePath)) {
          const password = randomBytes(12).toString('base64url');
          const users = [{ username: 'admin', passwordHash: await hashPassword(password) }];
          await writeFile(usersFilePath, `${JSON.stringify({ users }, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
          generatedLogin = { username: 'admin', password, usersFile: usersFilePath };
        }
        authenticator = await usersFile(usersFilePath);
      }
      const store = await openStore(config.store ?? 'sqlite:', dataDir, env);
      cleanups.push(() => store.close());
      if (sharedStore(config.store)) records = recordsIn(store);
      if (exchanging.length && !credentials) {
        credentials = { clientId: GATEWAY_CLIENT_ID, clientSecret: randomBytes(32).toString('base64url') };
      }
      const targets = new Map<string, Set<string>>();
      for (const source of sources.values()) {
        const set = targets.get(source.resource) ?? new Set<string>();
        for (const s of source.scopes) set.add(s);
        targets.set(source.resource, set);
      }
      // The vault's providers, and a resource per upstreamIdentity upstream that it answers with the user's
      // provider token; those are no resources the AS issues tokens for.
      const identityTargets = [...sources.values()].filter((s) => s.kind === 'upstreamIdentity');
      const vault = await buildUpstreamIdentity(
        {
          store: config.store ?? 'sqlite:',
          ...(config.identityProviders && { upstreams: config.identityProviders }),
          ...(config.upstreamKey && { upstreamKey: config.upstreamKey }),
          upstreamResources: identityTargets.map((s) => ({
            resource: s.resource,
            upstream: s.provider!,
            scopes: s.scopes,
          })),
        },
        {
          env,
          issuer,
          dataDir,
          ...(logger && { logger }),
          onTokensStored: ({ subject, upstream }) => linkWaiters.linked(subject, upstream),
        },
      );
      if (vault) cleanups.push(() => vault.store.close());
      const issued = [...targets].filter(([resource]) => !identityTargets.some((s) => s.resource === resource));
      const options: AuthorizationServerOptions = {
        issuer,
        authenticator,
        resources: [
          ...names.map((name) => ({ resource: resourceOf(name), scopes: scopesOf(config.mcpServers[name]!) })),
          ...issued.map(([resource, scopes]) => ({ resource, scopes: [...scopes] })),
        ],
        adapter: store,
        proxy: config.publicUrl !== undefined,
        ...(logger && { logger }),
        ...(vault && { upstream: vault.identity, localLogin: true }),
        ...(credentials &&
          exchanging.length && {
            clients: [
              {
                client_id: credentials.clientId,
                client_secret: credentials.clientSecret,
                grant_types: [TOKEN_EXCHANGE_GRANT_TYPE],
                redirect_uris: [],
                response_types: [],
                token_endpoint_auth_method: 'client_secret_basic',
              },
            ],
            tokenExchange: [
              {
                clientId: credentials.clientId,
                from: exchanging.map(resourceOf),
                to: [...targets].map(([resource, scopes]) => ({ resource, scopes: [...scopes] })),
              },
            ],
          }),
      };
      const { createAuthorizationServer } = await import('../authorization-server/server.js');
      const as = await createAuthorizationServer(options);
      // The embedded AS shares the gateway's origin; its endpoints are /auth and /reg. Asked for same-origin
      // endpoints, the gateway also answers at the paths a 2025-03-26 client falls back to.
      const aliases: Record<string, string> = config.sameOriginAuthorizationServer
        ? { '/authorize': '/auth', '/register': '/reg' }
        : {};
      server.on('request', (req: IncomingMessage, res: ServerResponse) => {
        const url = req.url ?? '/';
        if (byPath.has(url)) return; // an MCP endpoint as clients call it: no URL to parse
        const pathname = new URL(url, listenUrl).pathname;
        if (routeFor(pathname)) return;
        const alias = aliases[pathname];
        if (alias) req.url = alias + url.slice(pathname.length);
        as.listener(req, res);
      });
    }
    if (!embedded && sharedStore(config.store)) {
      // With an external AS the store holds nothing but MCP session records, sealed with the same at-rest key
      // (GATEHOUSE_STORE_KEY or the data directory's key file) as the embedded AS's store would be. Memory and
      // SQLite, which no other instance can share, leave sessions in this process as without a store.
      const { openStore } = await import('../authorization-server/serve.js');
      const store = await openStore(config.store!, await dataDirectory(), env);
      cleanups.push(() => store.close());
      records = recordsIn(store);
    }
    if (exchanging.length && !credentials) {
      throw new GatewayConfigError(
        `upstream ${exchanging[0]} uses ${sources.get(exchanging[0]!)!.kind}, but the gateway has no client credentials`,
        {
          code: 'ERR_GATEWAY_CONFIG',
          hint: 'Set clientId and clientSecret (e.g. "${GATEWAY_CLIENT_SECRET}") in the config file for the external authorization server.',
        },
      );
    }
    const exchanger = credentials
      ? new TokenExchangeClient({
          ...(embedded ? { tokenEndpoint: `${listenUrl}/token` } : { issuer }),
          credentials,
        })
      : undefined;
    const exchangedToken = async (
      identity: SessionIdentity,
      resource: string,
      scopes: string[],
    ): Promise<UpstreamToken> => {
      const access = await exchanger!.exchange({
        subjectToken: identity.authInfo().token,
        subject: identity.subject,
        resource,
        scopes,
      });
      return {
        token: access.accessToken,
        ...(access.expiresAt !== undefined && { expiresAt: access.expiresAt * 1000 }),
      };
    };

    const verifier = jwtVerifier({
      issuer,
      ...(embedded ? { jwksUri: `${listenUrl}/jwks` } : config.jwksUri ? { jwksUri: config.jwksUri } : {}),
    });
    const sessions = new Map<string, GatewaySession>();
    const broadcast = recordStore?.broadcast;
    // Answers to server-to-client requests that the load balancer sends to another instance come back here, and
    // messages for a GET stream open at another instance go there.
    const relay = records && broadcast ? new AnswerRelay({ sessions, ...(logger && { logger }) }) : undefined;
    if (relay) {
      await relay.start((topic, onmessage) => broadcast!(topic, onmessage));
      cleanups.push(() => relay.close());
      records!.relayAnswers(relay);
    }
    const routes: Route[] = [];
    /** Each upstream's MCP path, for the hot path of a session's POSTs. */
    const hotPaths = new Map<string, SessionPostRoute>();
    const undelivered = relay?.stream.bind(relay);
    for (const name of names) {
      const upstream = config.mcpServers[name]!;
      const resource = resourceOf(name);
      const source = sources.get(name);
      const own = source && upstreamCredentials(name, source, exchangedToken, issuer);
      const pool = upstream.command
        ? new StdioPool({
            name,
            config: upstream,
            ...(logger && { logger }),
            ...(own && { environment: own.environment }),
          })
        : undefined;
      if (pool) cleanups.push(() => pool.close());
      const connect = (identity: SessionIdentity): UpstreamChannel => {
        if (pool) return pool.open(identity);
        const channel = openHttpChannel({
          name,
          config: upstream,
          identity,
          ...(own && { credentials: own.headers }),
        });
        return own ? requiringCredentials(channel, () => own.headers(identity)) : channel;
      };
      const sessionOptions = {
        upstream: name,
        connect,
        requiredScopes: upstream.scopes ?? [],
        toolScopes: upstream.toolScopes ?? {},
        publicTools: upstream.publicTools ?? [],
        ...(upstream.scopeHierarchy && { scopeHierarchy: upstream.scopeHierarchy }),
        ...(logger && { audit: logger }),
        logArguments: config.logArguments ?? false,
        linkWaiters,
        ...(undelivered && { undelivered }),
        onclose: (session: GatewaySession) => {
          if (session.sessionId && sessions.get(session.sessionId) === session) sessions.delete(session.sessionId);
        },
      };
      const mcp = async (request: Request, given: { authInfo?: AuthInfo; parsedBody?: unknown }): Promise<Response> => {
        // An anonymous caller (of a public tool) is one more owner: its sessions and processes are its own.
        const init = { ...given, authInfo: given.authInfo ?? ANONYMOUS };
        if (records) return records.handle(request, init.authInfo, init.parsedBody, cluster);
        const sessionId = request.headers.get('mcp-session-id');
        if (sessionId) {
          const session = sessions.get(sessionId);
          // A session answers only its owner, on its own upstream.
          if (!session || session.options.upstream !== name || session.subject !== subjectOf(init.authInfo)) {
            return jsonRpcError(404, 'Session not found');
          }
          return session.handle(request, init.authInfo, init.parsedBody);
        }
        if (request.method !== 'POST') return jsonRpcError(400, 'Bad Request: Mcp-Session-Id header is required');
        const session = new GatewaySession(sessionOptions, init.authInfo, (s) => sessions.set(s.sessionId!, s));
        return session.handle(request, init.authInfo, init.parsedBody);
      };
      const cluster = {
        upstream: name,
        sessions,
        open: (authInfo: AuthInfo, sessionId?: string) =>
          new GatewaySession(sessionOptions, authInfo, (s) => sessions.set(s.sessionId!, s), sessionId),
      };
      const handler = protect(mcp, {
        resource,
        authorizationServers: [issuer],
        verifier,
        requiredScopes: upstream.scopes ?? [],
        ...(upstream.toolScopes && { toolScopes: upstream.toolScopes }),
        ...(upstream.scopeHierarchy && { scopeHierarchy: upstream.scopeHierarchy }),
        ...(upstream.publicTools && { publicTools: upstream.publicTools }),
        scopesSupported: scopesOf(upstream),
        resourceName: name,
      });
      routes.push({ name, config: upstream, resource, handler, ...(pool && { pool }) });
      // With records, a session may live on another instance: those requests take the full path.
      if (!records) hotPaths.set(new URL(resource).pathname, { upstream: name, handler, sessions });
    }
    cleanups.push(async () => {
      await Promise.all([...sessions.values()].map((s) => s.close()));
    });

    const idleMs = (runtime.sessionIdleSeconds ?? 1800) * 1000;
    const sweep = setInterval(
      () => {
        const now = Date.now();
        for (const session of sessions.values()) if (now - session.lastUsed > idleMs) void session.close();
      },
      Math.min(idleMs, 60_000),
    );
    sweep.unref();
    cleanups.push(async () => clearInterval(sweep));

    const byPath = new Map<string, Route>();
    for (const route of routes) {
      const path = new URL(route.resource).pathname;
      byPath.set(path, route);
      byPath.set(`${path}/`, route);
      byPath.set(new URL(route.handler.resourceMetadataUrl).pathname, route);
    }
    function routeFor(pathname: string): Route | undefined {
      const exact = byPath.get(pathname);
      if (exact) return exact;
      // The root metadata document: unambiguous only with one upstream.
      if (pathname.startsWith('/.well-known/oauth-protected-resource') && routes.length === 1) return routes[0];
      return undefined;
    }
    // The embedded AS already answers at the gateway's origin; an external one does when asked to.
    const sameOrigin =
      !embedded && config.sameOriginAuthorizationServer ? sameOriginAuthorizationServer({ issuer, base }) : undefined;
    const gatewayFetch: FetchHandler = async (request) => {
      const pathname = new URL(request.url).pathname;
      const route = routeFor(pathname);
      if (!route && sameOrigin?.handles(pathname)) return sameOrigin(request);
      if (!route) {
        return new OAuthProtocolError('invalid_request', 'not found', { status: 404 }).toResponse();
      }
      return route.handler(request);
    };
    const gatewayListener = toNodeListener(gatewayFetch);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const hot = hotPaths.get(req.url ?? '');
      if (hot && takeSessionPost(hot, req, res, gatewayListener)) return;
      const pathname = new URL(req.url ?? '/', listenUrl).pathname;
      if (routeFor(pathname) || !embedded) gatewayListener(req, res);
    });

    logger?.info(
      {
        listen: listenUrl,
        issuer,
        embedded,
        sharedSessions: records !== undefined,
        upstreams: routes.map((r) => ({ name: r.name, url: r.resource })),
      },
      'gateway listening',
    );
    return {
      url: base,
      issuer,
      embedded,
      upstreams: routes.map((r) => ({
        name: r.name,
        url: r.resource,
        kind: r.config.command ? 'stdio' : r.config.type === 'sse' ? 'sse' : 'http',
      })),
      ...(generatedLogin && { generatedLogin }),
      ...(usersFilePath && { usersFile: usersFilePath }),
      processes: () => Object.fromEntries(routes.filter((r) => r.pool).map((r) => [r.name, r.pool!.processes()])),
      close: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

import { closeSync, linkSync, mkdirSync, openSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { GatehouseError } from '../oauth/errors.js';
import { isLoopbackUrl } from '../oauth/resource-uri.js';
import { splitScopes } from '../oauth/scopes.js';
import { StorageConfigError, StorageDependencyError } from '../storage/errors.js';
import type { OidcAdapterFactory } from '../storage/oidc/common.js';
import { oidcAdapterFactory } from '../storage/oidc/factory.js';
import type { GatehouseStore } from '../storage/types.js';
import { readConfigFile } from './config-file.js';
import { DEFAULT_ACTIVATION_SECONDS, SIGNING_ALGORITHMS } from './keys.js';
import { type LoginRateLimitStore, parseTrustProxy, type TrustProxy } from './rate-limit.js';
import type { AuthorizationServer, AuthorizationServerOptions, ResourceConfig } from './server.js';
import type { UpstreamIdentity, UpstreamIdentityOptions } from './upstream/engine.js';
import { type Authenticator, anyOf, staticUsers, usersFile } from './users.js';

/** A configuration problem in `gatehouse serve` / `gatehouse admin`: message plus a one-line fix. */
export class ServeConfigError extends GatehouseError {}

const fail = (message: string, hint: string): never => {
  throw new ServeConfigError(message, { code: 'ERR_SERVE_CONFIG', hint });
};

/**
 * One upstream identity provider in a config file: a spec (`github`, `google`, `entra:<tenant>`, `oidc:<issuer>`,
 * `<name>=…`), or the spec with secrets and base-URL overrides. `gatehouse serve`'s `upstreams` and the gateway's
 * `identityProviders` share it, e.g. `"github"` or `{ "spec": "corp=oidc:https://idp.example.com", "clientId": "…" }`.
 */
export const UpstreamProviderEntrySchema = z.union([
  z.string(),
  z
    .object({
      spec: z.string(),
      clientId: z.string().optional(),
      clientSecret: z.string().optional(),
      baseUrl: z.string().url().optional(),
      apiBaseUrl: z.string().url().optional(),
      scopes: z.array(z.string()).optional(),
    })
    .strict(),
]);

/** The config file (`--config FILE`, JSON). Every command-line flag has a key here; flags win. */
export const ServeConfigSchema = z
  .object({
    port: z.number().int().min(0).max(65535).optional(),
    host: z.string().optional(),
    issuer: z.string().url().optional(),
    store: z.string().optional(),
    users: z.string().optional(),
    superuser: z.string().optional(),
    /** The service's display name on the login and consent pages. */
    name: z.string().min(1).max(100).optional(),
    /** A logo URL shown on those pages: https (http on loopback) or a data:image URL. */
    logo: z.string().optional(),
    resources: z
      .array(
        z.object({
          resource: z.string(),
          /** Display name on the consent page. */
          name: z.string().optional(),
          /** Scope names, or `{ name, description }` with the sentence the consent page shows. */
          scopes: z
            .array(z.union([z.string(), z.object({ name: z.string(), description: z.string().optional() }).strict()]))
            .optional(),
          accessTokenTtl: z.number().int().positive().optional(),
          defaultScopes: z.array(z.string()).optional(),
          accessTokenFormat: z.enum(['jwt', 'opaque']).optional(),
          signingAlg: z.enum(SIGNING_ALGORITHMS).optional(),
          requireDpop: z.boolean().optional(),
        }),
      )
      .optional(),
    clients: z.array(z.record(z.string(), z.unknown())).optional(),
    tokenExchange: z
      .array(
        z.object({
          clientId: z.string(),
          from: z.array(z.string()),
          to: z.array(
            z.object({ resource: z.string(), scopes: z.array(z.string()), beyondConsent: z.boolean().optional() }),
          ),
        }),
      )
      .optional(),
    /**
     * Enterprise IdPs whose identity assertion grants (ID-JAG) are accepted through the JWT-bearer grant: issuer,
     * `jwksUri` or `jwks`, and optionally `name`, `clients`, `resources`, `accounts` (`namespaced` | `local`).
     */
    enterpriseIdps: z
      .array(
        z
          .object({
            issuer: z.string().url(),
            jwksUri: z.string().url().optional(),
            jwks: z.object({ keys: z.array(z.record(z.string(), z.unknown())) }).optional(),
            name: z.string().optional(),
            clients: z.array(z.string()).optional(),
            resources: z.array(z.string()).optional(),
            accounts: z.enum(['namespaced', 'local']).optional(),
            algorithms: z.array(z.string()).optional(),
            maxLifetimeSeconds: z.number().int().positive().optional(),
          })
          .strict(),
      )
      .optional(),
    registration: z.object({ enabled: z.boolean().optional(), initialAccessToken: z.string().optional() }).optional(),
    clientIdMetadataDocument: z
      .object({
        enabled: z.boolean().optional(),
        allowPrivateNetworks: z.boolean().optional(),
        maxBytes: z.number().int().positive().optional(),
        timeoutMs: z.number().int().positive().optional(),
        cacheSeconds: z.object({ min: z.number(), max: z.number() }).optional(),
      })
      .optional(),
    refreshTokenGraceSeconds: z.number().min(0).max(300).optional(),
    /** The device authorization grant (RFC 8628): on unless `false`; its poll interval, lifetime, wrong-code limit. */
    deviceFlow: z
      .union([
        z.literal(false),
        z
          .object({
            interval: z.number().int().min(1).max(60).optional(),
            expiresIn: z.number().int().min(10).max(3600).optional(),
            userCodeAttempts: z.number().int().positive().optional(),
          })
          .strict(),
      ])
      .optional(),
    loginRateLimit: z
      .object({
        attempts: z.number().int().positive().optional(),
        addressAttempts: z.number().int().positive().optional(),
        accountAttempts: z.number().int().positive().optional(),
        windowSeconds: z.number().positive().optional(),
      })
      .strict()
      .optional(),
    proxy: z.boolean().optional(),
    /**
     * Proxies whose `X-Forwarded-For` names the client address: a hop count, or addresses/CIDRs (`loopback`,
     * `10.0.0.0/8`), as a list or comma-separated. Implies `proxy`.
     */
    trustProxy: z.union([z.number().int().min(0).max(10), z.string(), z.array(z.string())]).optional(),
    /** Extra oidc-provider configuration, deep-merged into Gatehouse's (the MCP profile stays). */
    providerConfiguration: z.record(z.string(), z.unknown()).optional(),
    /**
     * Upstream identity providers: a spec (`github`, `google`, `entra:<tenant>`, `oidc:<issuer>`, `<name>=…`) or an
     * object with the spec plus secrets and base-URL overrides.
     */
    upstreams: z.array(UpstreamProviderEntrySchema).optional(),
    /** Resources served with the user's upstream token, e.g. `{ resource: 'https://api.github.com', upstream: 'github' }`. */
    upstreamResources: z
      .array(z.object({ resource: z.string(), upstream: z.string(), scopes: z.array(z.string()).optional() }).strict())
      .optional(),
    /** The key encrypting upstream tokens at rest (base64url, 32 bytes). Default `$GATEHOUSE_UPSTREAM_KEY`. */
    upstreamKey: z.string().optional(),
    /** Show the username/password form. Default: true when local users are configured. */
    localLogin: z.boolean().optional(),
    /** Send every login straight to this upstream. */
    autoUpstream: z.string().optional(),
    linkByVerifiedEmail: z.boolean().optional(),
    admission: z
      .object({
        allowedEmailDomains: z.array(z.string()).optional(),
        requiredClaims: z
          .record(
            z.string(),
            z.union([z.string(), z.number(), z.boolean(), z.array(z.union([z.string(), z.number(), z.boolean()]))]),
          )
          .optional(),
      })
      .strict()
      .optional(),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).optional(),
    /** Signing keys (see "Key rotation" in docs/authorization-server.md). */
    keys: z
      .object({
        /** Rotate this often (`--rotate-keys-every`): `30d`, `12h`, `90m`, or seconds. Default: never. */
        rotateEvery: z.union([z.string(), z.number().int().positive()]).optional(),
        /** Seconds between a scheduled rotation and the moment its keys sign. Default 900. */
        activateIn: z.number().int().min(0).optional(),
        /** Seconds between reads of the stored keys (how soon a rotation reaches this instance). Default 5. */
        refreshSeconds: z.number().positive().max(300).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

/** Settings of `gatehouse serve`, after merging the config file, flags and environment. */
export type ServeConfig = z.infer<typeof ServeConfigSchema>;

/** Reads and validates a config file. */
export function readServeConfig(path: string): Promise<ServeConfig> {
  return readConfigFile(path, ServeConfigSchema, fail, 'docs/authorization-server.md');
}

/**
 * What `gatehouse serve` warns about when its issuer is plain `http:` on a host that is not loopback (e.g.
 * `--host 0.0.0.0` without `--issuer`): codes, tokens and passwords would cross the network unencrypted.
 * `undefined` for an `https:` or loopback issuer.
 *
 * @example
 * plainHttpIssuerWarning('http://0.0.0.0:9000'); // 'issuer http://0.0.0.0:9000 is plain http …'
 * plainHttpIssuerWarning('https://auth.example.com'); // undefined
 */
export function plainHttpIssuerWarning(issuer: string): string | undefined {
  if (URL.parse(issuer)?.protocol !== 'http:' || isLoopbackUrl(issuer)) return undefined;
  return (
    `issuer ${issuer} is plain http on a non-loopback address: authorization codes, tokens and passwords cross ` +
    'the network unencrypted. Put a TLS proxy in front and pass --issuer https://… (its public URL).'
  );
}

/** A logo URL the pages may load: https, http on loopback, or an inline image. */
export function checkLogo(logo: string): string {
  const url = URL.parse(logo);
  const ok =
    url !== null &&
    (url.protocol === 'https:' ||
      (url.protocol === 'http:' && isLoopbackUrl(url)) ||
      (url.protocol === 'data:' && /^image\/[a-z+.-]+[;,]/.test(url.pathname)));
  if (!ok) {
    return fail(
      `--logo ${logo.slice(0, 80)}: not an https URL, a loopback http URL or a data:image URL`,
      'Give an https URL of the logo, e.g. --logo https://example.com/logo.svg',
    );
  }
  return logo;
}

/** Parses `--trust-proxy` (or the config file's `trustProxy`): a hop count or proxy addresses. */
export function parseTrustProxySetting(value: NonNullable<ServeConfig['trustProxy']>): TrustProxy {
  try {
    return parseTrustProxy(value);
  } catch (error) {
    return fail(
      `--trust-proxy ${String(value)}: ${(error as Error).message}`,
      'Give the number of proxies in front (e.g. --trust-proxy 1) or their addresses (e.g. --trust-proxy 10.0.0.0/8,loopback).',
    );
  }
}

/** Parses a duration: `30d`, `12h`, `90m`, `45s` or a number of seconds. */
export function parseDuration(value: string | number, flag: string): number {
  const match = /^([1-9][0-9]*)([smhd]?)$/.exec(String(value).trim());
  if (!match) {
    return fail(`${flag} ${value}: not a duration`, `Write e.g. ${flag} 30d (or 12h, 90m, 3600s, 3600).`);
  }
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[match[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(match[1]) * unit;
}

const RESOURCE_FLAG_HINT =
  'Write --resource https://mcp.example.com/mcp=scope1,scope2[,format=jwt|opaque][,alg=RS256|ES256][,ttl=SECONDS][,dpop=required]';

/**
 * Parses `--resource URL[=item,item,…]`: each item is a scope, or one of the options `format=jwt|opaque`,
 * `alg=RS256|ES256`, `ttl=SECONDS` (the access-token lifetime) and `dpop=required` (only DPoP-bound tokens).
 */
export function parseResourceFlag(value: string): ResourceConfig {
  const eq = value.indexOf('=');
  const resource = eq === -1 ? value : value.slice(0, eq);
  if (!URL.canParse(resource)) return fail(`--resource ${value}: ${resource} is not a URL`, RESOURCE_FLAG_HINT);
  // The security default protect() applies too: tokens for a plain-http resource would cross the network in clear.
  if (new URL(resource).protocol !== 'https:' && !isLoopbackUrl(resource)) {
    return fail(
      `--resource ${value}: ${resource} must use https (http is allowed only on loopback)`,
      `Give the MCP server's https URL, e.g. --resource https://mcp.example.com/mcp (http only for 127.0.0.1, localhost or [::1])`,
    );
  }
  const config: ResourceConfig = { resource, scopes: [] };
  // Scopes and options are separated by commas or spaces, as everywhere scopes are written.
  for (const item of eq === -1 ? [] : splitScopes(value.slice(eq + 1))) {
    const [key, setting] = item.split('=', 2) as [string, string | undefined];
    if (setting === undefined) config.scopes!.push(item);
    else if (key === 'format' && (setting === 'jwt' || setting === 'opaque')) config.accessTokenFormat = setting;
    else if (key === 'alg' && (SIGNING_ALGORITHMS as readonly string[]).includes(setting)) {
      config.signingAlg = setting as ResourceConfig['signingAlg'];
    } else if (key === 'ttl' && /^[1-9][0-9]*$/.test(setting)) config.accessTokenTtl = Number(setting);
    else if (key === 'dpop' && setting === 'required') config.requireDpop = true;
    else return fail(`--resource ${value}: ${item} is not a known option or a valid value`, RESOURCE_FLAG_HINT);
  }
  return config;
}

/** Parses `--upstream-resource URL=NAME[,scope,…]`. */
export function parseUpstreamResourceFlag(value: string): { resource: string; upstream: string; scopes?: string[] } {
  const eq = value.indexOf('=');
  const resource = eq === -1 ? value : value.slice(0, eq);
  const [upstream, ...scopes] = splitScopes(eq === -1 ? '' : value.slice(eq + 1));
  if (!URL.canParse(resource) || !upstream) {
    return fail(
      `--upstream-resource ${value}: expected URL=NAME`,
      'Write --upstream-resource https://api.github.com=github',
    );
  }
  const list = scopes.filter(Boolean);
  return { resource, upstream, ...(list.length ? { scopes: list } : {}) };
}

/** The name an upstream spec gives its upstream: `corp` for `corp=oidc:…`, else the kind (`github`, `oidc`, …). */
export function upstreamSpecName(spec: string): string {
  const eq = spec.indexOf('=');
  const colon = spec.indexOf(':');
  if (eq > 0 && (colon === -1 || eq < colon)) return spec.slice(0, eq).trim();
  return (colon === -1 ? spec : spec.slice(0, colon)).trim().toLowerCase();
}

type UpstreamEntry = NonNullable<ServeConfig['upstreams']>[number];

/**
 * Merges `--upstream` flags into the config file's upstreams: a flag replaces the spec of the same-named entry and
 * keeps its secrets and overrides.
 */
export function mergeUpstreams(file: UpstreamEntry[] = [], flags: string[] = []): UpstreamEntry[] {
  const byName = new Map<string, UpstreamEntry>();
  for (const entry of file) byName.set(upstreamSpecName(typeof entry === 'string' ? entry : entry.spec), entry);
  for (const spec of flags) {
    const existing = byName.get(upstreamSpecName(spec));
    byName.set(upstreamSpecName(spec), existing && typeof existing !== 'string' ? { ...existing, spec } : spec);
  }
  return [...byName.values()];
}

/** Opens the key-value store upstream accounts and tokens live in, beside the authorization server's data. */
export async function openUpstreamStore(store: string, dataDir: string): Promise<GatehouseStore> {
  const options = parseStore(store, dataDir);
  switch (options.backend) {
    case 'memory': {
      const { memoryStore } = await import('../storage/memory.js');
      return memoryStore({ namespace: 'upstream' });
    }
    case 'sqlite': {
      const { sqliteStore } = await import('../storage/sqlite.js');
      prepareSqliteFile(options.path);
      return sqliteStore(options.path, { table: 'gatehouse_upstream', namespace: 'upstream' });
    }
    case 'redis': {
      const { redisStore } = await import('../storage/redis.js');
      return redisStore(options.url ?? 'redis://127.0.0.1:6379', { namespace: 'upstream' });
    }
    case 'postgres': {
      const { postgresStore } = await import('../storage/postgres.js');
      return postgresStore(options.url ?? '', { table: 'gatehouse_upstream', namespace: 'upstream' });
    }
  }
}

/**
 * Builds the upstream-identity engine from the config (`upstreams`, `upstreamResources`, `upstreamKey`,
 * `admission`, `linkByVerifiedEmail`): client IDs and secrets from the entries, else from
 * `GATEHOUSE_UPSTREAM_<NAME>_CLIENT_ID` / `_CLIENT_SECRET`; the encryption key from `upstreamKey`, else
 * `GATEHOUSE_UPSTREAM_KEY` (a memory store without one gets a fresh key per start). Undefined without upstreams.
 */
export async function buildUpstreamIdentity(
  config: ServeConfig,
  runtime: {
    env: NodeJS.ProcessEnv;
    issuer: string;
    dataDir: string;
    logger?: import('pino').Logger;
    onTokensStored?: UpstreamIdentityOptions['onTokensStored'];
  },
): Promise<{ identity: UpstreamIdentity; store: GatehouseStore } | undefined> {
  const entries = config.upstreams ?? [];
  if (entries.length === 0) return undefined;
  const { createUpstreamIdentity, parseUpstreamSpec, UpstreamConfigError } = await import('./upstream/index.js');
  const storeUrl = config.store ?? 'sqlite:';
  const backend = parseStore(storeUrl, runtime.dataDir).backend;
  let key = config.upstreamKey ?? runtime.env['GATEHOUSE_UPSTREAM_KEY'];
  if (!key) {
    if (backend !== 'memory') {
      return fail(
        'upstream tokens need an encryption key: GATEHOUSE_UPSTREAM_KEY is not set',
        "Set GATEHOUSE_UPSTREAM_KEY to 32 random bytes in base64url, e.g. node -e \"console.log(require('crypto').randomBytes(32).toString('base64url'))\"",
      );
    }
    const { generateEncryptionKey } = await import('../storage/encrypted.js');
    key = generateEncryptionKey();
  }
  const providers = entries.map((entry) => {
    const spec = typeof entry === 'string' ? entry : entry.spec;
    const name = upstreamSpecName(spec);
    const options =
      typeof entry === 'string'
        ? {}
        : {
            secrets: { [name]: { clientId: entry.clientId, clientSecret: entry.clientSecret } },
            overrides: { [name]: { baseUrl: entry.baseUrl, apiBaseUrl: entry.apiBaseUrl, scopes: entry.scopes } },
          };
    try {
      const provider = parseUpstreamSpec(spec, { env: runtime.env, ...options });
      if (!provider.clientId) {
        fail(
          `upstream ${name} has no client ID`,
          `Set GATEHOUSE_UPSTREAM_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_CLIENT_ID (and _CLIENT_SECRET), or clientId in the config file.`,
        );
      }
      return provider;
    } catch (error) {
      if (error instanceof UpstreamConfigError) return fail(`upstream ${spec}: ${error.message}`, error.hint ?? '');
      throw error;
    }
  });
  const store = await openUpstreamStore(storeUrl, runtime.dataDir);
  try {
    const identity = createUpstreamIdentity({
      issuer: runtime.issuer,
      providers,
      store,
      encryption: { keys: [key] },
      resources: config.upstreamResources,
      linkByVerifiedEmail: config.linkByVerifiedEmail,
      admission: config.admission,
      logger: runtime.logger,
      ...(runtime.onTokensStored && { onTokensStored: runtime.onTokensStored }),
    });
    return { identity, store };
  } catch (error) {
    await store.close();
    if (error instanceof UpstreamConfigError) return fail(error.message, error.hint ?? '');
    throw error;
  }
}

/** The default data directory of `gatehouse serve`: `$GATEHOUSE_DATA_DIR`, else the platform's data directory. */
export async function serveDataDirectory(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (env['GATEHOUSE_DATA_DIR']) return resolve(env['GATEHOUSE_DATA_DIR']);
  const { defaultDataDirectory } = await import('../storage/file.js');
  return defaultDataDirectory(env);
}

/** Where `--store` points: the backend and its address, before keys are added. */
export type StoreLocation =
  | { backend: 'memory' }
  | { backend: 'sqlite'; path: string }
  | { backend: 'redis'; url: string; prefix?: string }
  | { backend: 'postgres'; url: string; table?: string };

/**
 * Turns a `--store` value into storage options: `memory`, `sqlite:` (a file in the data directory),
 * `sqlite:PATH`, `redis://…`/`rediss://…`, `postgres://…`/`postgresql://…`.
 */
export function parseStore(store: string, dataDir: string): StoreLocation {
  if (store === 'memory' || store === 'memory:') return { backend: 'memory' };
  if (store === 'sqlite' || store.startsWith('sqlite:')) {
    const rest = store.replace(/^sqlite:(\/\/)?/, '').replace(/^sqlite$/, '');
    const path = rest === '' ? join(dataDir, 'authorization-server.db') : isAbsolute(rest) ? rest : resolve(rest);
    return { backend: 'sqlite', path };
  }
  if (/^rediss?:\/\//.test(store) || /^postgres(ql)?:\/\//.test(store)) {
    // `?prefix=` (Redis) and `?table=` (PostgreSQL) choose where the entries live; the rest goes to the driver.
    const url = URL.parse(store);
    if (!url)
      return fail(`--store ${store} is not a URL`, 'Write e.g. redis://127.0.0.1:6379 or postgres://user@host/db');
    const prefix = url.searchParams.get('prefix') ?? undefined;
    const table = url.searchParams.get('table') ?? undefined;
    url.searchParams.delete('prefix');
    url.searchParams.delete('table');
    if (table !== undefined && !/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(table)) {
      return fail(
        `--store table ${table} is not a plain identifier`,
        'Use letters, digits and underscores, e.g. ?table=gatehouse_oidc',
      );
    }
    return url.protocol.startsWith('redis')
      ? { backend: 'redis', url: url.href, ...(prefix ? { prefix } : {}) }
      : { backend: 'postgres', url: url.href, ...(table ? { table } : {}) };
  }
  return fail(
    `unknown store ${store}`,
    'Use --store memory, sqlite:[PATH], redis://HOST:6379 or postgres://USER@HOST/DB.',
  );
}

/** The store as a person recognises it, without its password. */
function storeLabel(store: string, options: StoreLocation): string {
  if (options.backend === 'sqlite') return options.path;
  const url = URL.parse(store);
  if (!url) return store;
  if (url.password) url.password = '***';
  return url.href;
}

/** A driver error's message; `AggregateError` (one per address tried) has an empty one. */
function causeMessage(cause: unknown): string {
  const error = cause as { message?: string; code?: string; errors?: unknown[] };
  if (error?.message) return error.message;
  const inner = (error?.errors ?? []).map((e) => (e as Error).message).filter(Boolean);
  return inner.length ? [...new Set(inner)].join('; ') : String(error?.code ?? cause);
}

/** The codes of an error and of its causes (a driver error may be wrapped), outermost first. */
function errorCodes(cause: unknown): string[] {
  const codes: string[] = [];
  for (
    let error = cause as { code?: unknown; cause?: unknown } | undefined;
    error;
    error = error.cause as typeof error
  ) {
    if (typeof error.code === 'string') codes.push(error.code);
    if (codes.length > 5) break;
  }
  return codes;
}

/** What to do about a store that did not open, by its real cause: "is it running?" only when it refused. */
function storeHint(cause: unknown, options: StoreLocation): string {
  if (options.backend === 'sqlite') return 'Check that the directory is writable, or pass --store memory.';
  const codes = errorCodes(cause);
  const message = causeMessage(cause);
  // The Redis client reports the resolver's failure in its message only.
  if (codes.includes('ENOTFOUND') || codes.includes('EAI_AGAIN') || /\b(ENOTFOUND|EAI_AGAIN)\b/.test(message))
    return 'The host name in --store does not resolve: check its spelling, or use its IP address.';
  // PostgreSQL SQLSTATEs: 3D000 no such database, 28000/28P01 authentication refused.
  if (codes.includes('3D000'))
    return 'Create that database (e.g. `createdb NAME`), or name an existing one in --store.';
  if (codes.includes('28000') || codes.includes('28P01') || /WRONGPASS|NOAUTH/.test(message))
    return 'Check the user name and password in --store (postgres://USER:PASSWORD@HOST/DB, redis://:PASSWORD@HOST:6379).';
  return `Check that ${options.backend} is running and the URL in --store is right.`;
}

/** What to do when the listening socket could not be opened, by its cause. */
function listenHint(cause: unknown, host: string): string {
  const code = errorCodes(cause)[0];
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN')
    return `${host} is not an address of this machine: pass --host 127.0.0.1, or --host 0.0.0.0 for every interface.`;
  if (code === 'EACCES') return 'Ports below 1024 need privileges: pick --port 1024 or above (e.g. 9000).';
  return 'Pick another --port, or stop what is using it.';
}

const STORE_KEY_FILE = 'store.key';

/**
 * The at-rest keys of the store, newest first: `GATEHOUSE_STORE_KEY` (comma-separated), else the key file
 * `store.key` in the data directory, created (0600, in a 0700 directory) with a random key on first start. Every
 * instance sharing a store must end up with the same keys.
 */
export function storeKeys(env: NodeJS.ProcessEnv, dataDir: string): string[] {
  const parse = (text: string, source: string) => {
    const keys = text
      .split(/[,\s]+/)
      .map((k) => k.trim())
      .filter(Boolean);
    for (const key of keys) {
      if (!/^[A-Za-z0-9_-]{43}$/.test(key)) {
        fail(
          `${source} holds something that is not a 32-byte base64url key`,
          "Generate one with node -e \"console.log(require('crypto').randomBytes(32).toString('base64url'))\"",
        );
      }
    }
    if (keys.length === 0) fail(`${source} is empty`, 'Put the at-rest key there, or remove it to start afresh.');
    return keys;
  };
  const fromEnv = env['GATEHOUSE_STORE_KEY'];
  if (fromEnv !== undefined && fromEnv !== '') return parse(fromEnv, 'GATEHOUSE_STORE_KEY');
  const path = join(dataDir, STORE_KEY_FILE);
  try {
    return parse(readFileSync(path, 'utf8'), path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // Written aside, then linked into place: of several instances starting at once on one data directory, one key wins.
  const staged = `${path}.${process.pid}.tmp`;
  writeFileSync(staged, `${generateKey()}\n`, { mode: 0o600, flag: 'wx' });
  try {
    linkSync(staged, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    unlinkSync(staged);
  }
  return parse(readFileSync(path, 'utf8'), path);
}

function generateKey(): string {
  return Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(32))).toString('base64url');
}

/** Creates the SQLite file's directory (0700) and the file itself (0600) before SQLite opens it. */
function prepareSqliteFile(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  closeSync(openSync(path, 'a', 0o600));
}

/**
 * Opens the store named by `store` with its at-rest keys ({@link storeKeys}), creating the SQLite file if needed;
 * resolves once connected, migrated and checked.
 */
export async function openStore(
  store: string,
  dataDir: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<OidcAdapterFactory> {
  const options = parseStore(store, dataDir);
  if (options.backend === 'sqlite') prepareSqliteFile(options.path);
  const factory =
    options.backend === 'memory'
      ? oidcAdapterFactory(options)
      : oidcAdapterFactory({ ...options, encryptionKeys: storeKeys(env, dataDir) });
  try {
    await factory.ready();
  } catch (cause) {
    await factory.close().catch(() => {});
    // A missing driver package says which package to install; "is it running?" would send the user astray.
    if (cause instanceof StorageDependencyError) return fail(cause.message, cause.hint!);
    return fail(
      `cannot open the ${options.backend} store ${storeLabel(store, options)}: ${causeMessage(cause)}`,
      cause instanceof StorageConfigError && cause.hint ? cause.hint : storeHint(cause, options),
    );
  }
  return factory;
}

/** Builds the authenticator: the superuser (password from `GATEHOUSE_SUPERUSER_PASSWORD`) and/or a users file. */
export async function buildAuthenticator(config: ServeConfig, env: NodeJS.ProcessEnv): Promise<Authenticator> {
  const parts: Authenticator[] = [];
  if (config.superuser) {
    const password = env['GATEHOUSE_SUPERUSER_PASSWORD'];
    if (!password) {
      fail(
        `--superuser ${config.superuser} needs a password`,
        'Set GATEHOUSE_SUPERUSER_PASSWORD in the environment (never on the command line).',
      );
    }
    if (password!.length < 8)
      fail('GATEHOUSE_SUPERUSER_PASSWORD is shorter than 8 characters', 'Use a longer password.');
    parts.push(await staticUsers({ [config.superuser]: password! }));
  }
  if (config.users) parts.push(await usersFile(config.users));
  if (parts.length === 0) {
    fail('no users: nobody could log in', 'Pass --superuser NAME (with GATEHOUSE_SUPERUSER_PASSWORD) or --users FILE.');
  }
  return parts.length === 1 ? parts[0]! : anyOf(...parts);
}

function unavailable(res: ServerResponse): void {
  res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1', 'cache-control': 'no-store' });
  res.end(JSON.stringify({ error: 'temporarily_unavailable', error_description: 'the server did not start' }));
}

/**
 * Opens the connection the login rate limits share through (the Redis or PostgreSQL the server stores in), so
 * instances count failures together. Memory and SQLite count in the process.
 */
async function openLoginLimitsStore(
  options: StoreLocation,
): Promise<{ store: LoginRateLimitStore; close: () => Promise<unknown> } | undefined> {
  if (options.backend === 'redis') {
    const { connectRedis } = await import('../storage/redis.js');
    const client = await connectRedis(options.url ?? 'redis://127.0.0.1:6379');
    return {
      store: { backend: 'redis', client, prefix: `${options.prefix ?? 'gatehouse:oidc:'}limits:` },
      close: async () => (client.close ?? client.quit)?.call(client),
    };
  }
  if (options.backend === 'postgres') {
    const { openPgPool } = await import('../storage/postgres.js');
    const pool = await openPgPool(options.url ?? '', { max: 2 });
    pool.on('error', () => {});
    return {
      store: { backend: 'postgres', pool, table: `${options.table ?? 'gatehouse_oidc'}_login_limits` },
      close: () => pool.end(),
    };
  }
  return undefined;
}

/** A running `gatehouse serve`. */
export interface RunningAuthorizationServer {
  /** The URL it listens on. */
  url: string;
  issuer: string;
  close(): Promise<void>;
}

/**
 * Starts the authorization server as `gatehouse serve` does: store, keys (kept in the store), users, resources,
 * HTTP listener. The logger receives structured events, never secrets.
 *
 * @example
 * ```ts
 * import { serve } from 'gatehouse/authorization-server';
 *
 * const running = await serve(
 *   { port: 9000, store: 'sqlite:', superuser: 'admin', resources: [{ resource: 'http://127.0.0.1:8000/mcp', scopes: ['mcp:tools'] }] },
 *   { env: { GATEHOUSE_SUPERUSER_PASSWORD: 'a long password' } },
 * );
 * console.log(running.issuer);
 * await running.close();
 * ```
 */
export async function serve(
  config: ServeConfig,
  runtime: { env?: NodeJS.ProcessEnv; logger?: import('pino').Logger } = {},
): Promise<RunningAuthorizationServer> {
  const env = runtime.env ?? process.env;
  const host = config.host ?? '127.0.0.1';
  const port = config.port ?? 9000;
  if (!config.resources?.length) {
    fail(
      'no resources: tokens could not be issued for anything',
      'Pass --resource https://mcp.example.com/mcp=scope1,scope2',
    );
  }
  const hasLocalUsers = config.superuser !== undefined || config.users !== undefined;
  const upstreamOnly = !hasLocalUsers && (config.upstreams?.length ?? 0) > 0;
  const authenticator: Authenticator = upstreamOnly
    ? { authenticate: async () => undefined }
    : await buildAuthenticator(config, env);
  const dataDir = await serveDataDirectory(env);
  const trustProxy = config.trustProxy === undefined ? undefined : parseTrustProxySetting(config.trustProxy);
  const rotateEvery =
    config.keys?.rotateEvery === undefined ? undefined : parseDuration(config.keys.rotateEvery, '--rotate-keys-every');
  const activateIn = config.keys?.activateIn;
  if (rotateEvery !== undefined && rotateEvery <= (activateIn ?? DEFAULT_ACTIVATION_SECONDS)) {
    fail(
      `--rotate-keys-every ${config.keys!.rotateEvery}: not longer than the ${activateIn ?? DEFAULT_ACTIVATION_SECONDS} s a new key waits before it signs`,
      'Rotate less often (e.g. --rotate-keys-every 30d), or lower keys.activateIn in the config file.',
    );
  }
  const store = await openStore(config.store ?? 'sqlite:', dataDir, env);
  const closers: Array<() => Promise<unknown>> = [() => store.close()];
  const closeAll = async () => {
    for (const close of closers.reverse()) await close().catch(() => {});
  };

  // Requests are answered only once the server can answer them: until then they wait (and get 503 if start-up
  // fails). The port opens after everything is built, unless the issuer must be read from the port (`--port 0`).
  const server = createServer();
  let ready: AuthorizationServer['listener'] | undefined;
  let failed = false;
  const waiting: Array<[IncomingMessage, ServerResponse]> = [];
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (ready) return ready(req, res);
    if (failed) return unavailable(res);
    waiting.push([req, res]);
  });
  const listen = async () => {
    try {
      await new Promise<void>((resolveListen, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolveListen();
        });
      });
    } catch (cause) {
      await closeAll();
      return fail(`cannot listen on ${host}:${port}: ${(cause as Error).message}`, listenHint(cause, host));
    }
    const address = server.address() as AddressInfo;
    return `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  };
  const listenFirst = config.issuer === undefined && port === 0;
  let url = listenFirst ? await listen() : `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const issuer = config.issuer ?? url;
  let upstream: Awaited<ReturnType<typeof buildUpstreamIdentity>>;
  let as: AuthorizationServer;
  try {
    upstream = await buildUpstreamIdentity(config, { env, issuer, dataDir, logger: runtime.logger });
    if (upstream) closers.push(() => upstream!.store.close());
    const limitsStore = await openLoginLimitsStore(parseStore(config.store ?? 'sqlite:', dataDir));
    if (limitsStore) closers.push(limitsStore.close);
    const options: AuthorizationServerOptions = {
      issuer,
      authenticator,
      resources: config.resources!,
      clients: (config.clients ?? []) as unknown as AuthorizationServerOptions['clients'],
      adapter: store,
      tokenExchange: config.tokenExchange,
      ...(config.enterpriseIdps && {
        enterpriseIdps: config.enterpriseIdps as AuthorizationServerOptions['enterpriseIdps'],
      }),
      registration: config.registration,
      clientIdMetadataDocument: config.clientIdMetadataDocument,
      refreshTokenGraceSeconds: config.refreshTokenGraceSeconds,
      ...(rotateEvery !== undefined && { keyRotationSeconds: rotateEvery }),
      ...(activateIn !== undefined && { keyActivationSeconds: activateIn }),
      ...(config.keys?.refreshSeconds !== undefined && { keyRefreshSeconds: config.keys.refreshSeconds }),
      ...(config.deviceFlow !== undefined && { deviceFlow: config.deviceFlow }),
      loginRateLimit: { ...config.loginRateLimit, ...(limitsStore && { store: limitsStore.store }) },
      proxy: config.proxy,
      ...(trustProxy !== undefined && { trustProxy }),
      ...(config.providerConfiguration && {
        providerConfiguration: config.providerConfiguration as AuthorizationServerOptions['providerConfiguration'],
      }),
      logger: runtime.logger,
      branding: {
        ...(config.name !== undefined && { name: config.name }),
        ...(config.logo !== undefined && { logoUrl: checkLogo(config.logo) }),
      },
      ...(upstream && {
        upstream: upstream.identity,
        localLogin: config.localLogin ?? !upstreamOnly,
        ...(config.autoUpstream !== undefined && { autoUpstream: config.autoUpstream }),
      }),
    };
    // Loaded here so that `gatehouse admin` never loads oidc-provider.
    const { createAuthorizationServer } = await import('./server.js');
    as = await createAuthorizationServer(options);
    closers.push(() => as.close());
  } catch (error) {
    failed = true;
    for (const [, res] of waiting.splice(0)) unavailable(res);
    server.close();
    await closeAll();
    throw error;
  }
  if (!listenFirst) url = await listen();
  ready = as.listener;
  for (const [req, res] of waiting.splice(0)) as.listener(req, res);
  runtime.logger?.info(
    {
      issuer,
      listen: url,
      store: parseStore(config.store ?? 'sqlite:', dataDir).backend,
      resources: config.resources!.map((r) => r.resource),
      ...(upstream && { upstreams: upstream.identity.providers.map((p) => p.name) }),
    },
    'authorization server listening',
  );
  return {
    url,
    issuer,
    close: async () => {
      await new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      });
      await closeAll();
    },
  };
}

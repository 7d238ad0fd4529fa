import { z } from 'zod';
import { readConfigFile } from '../authorization-server/config-file.js';
import { UpstreamProviderEntrySchema, upstreamSpecName } from '../authorization-server/serve.js';
import { GatehouseError } from '../oauth/errors.js';

/** A configuration problem in `gatehouse gateway`: message plus a one-line fix. */
export class GatewayConfigError extends GatehouseError {}

const fail = (message: string, hint: string): never => {
  throw new GatewayConfigError(message, { code: 'ERR_GATEWAY_CONFIG', hint });
};

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** One upstream MCP server, in the `mcpServers` shape clients use, plus the gateway's own keys. */
export const UpstreamConfigSchema = z
  .object({
    /** The URL path the gateway serves this upstream at. Default `/<name>/mcp`. */
    path: z
      .string()
      .regex(/^\/[A-Za-z0-9_.~/-]*$/)
      .optional(),
    /** A stdio server: the command to start. */
    command: z.string().min(1).optional(),
    args: z.array(z.string()).optional(),
    /** Environment of the stdio process (on top of a minimal inherited one). `${VAR}` expands from the gateway's. */
    env: z.record(z.string(), z.string()).optional(),
    cwd: z.string().optional(),
    /** An HTTP server: its MCP endpoint. `${VAR}` expands from the gateway's environment. */
    url: z
      .string()
      // A URL with `${VAR}` in it is checked once expanded (resolveConfig).
      .refine((value) => value.includes('${') || URL.canParse(value), 'Invalid URL')
      .optional(),
    /** `stdio`, `http` (streamable HTTP, the default for a URL) or `sse` (the 2024-11-05 transport). */
    type: z.enum(['stdio', 'http', 'streamable-http', 'sse']).optional(),
    /** Headers sent to an HTTP upstream. `${VAR}` expands from the gateway's environment. */
    headers: z.record(z.string(), z.string()).optional(),
    /** Scopes every request to this upstream needs. */
    scopes: z.array(z.string()).optional(),
    /** Scopes each tool needs on top of `scopes`; `tools/list` hides tools the caller's token may not call. */
    toolScopes: z.record(z.string(), z.array(z.string())).optional(),
    /**
     * Tools anyone may list and call without signing in; the rest still need a token. An anonymous caller gets
     * sessions (and, for stdio, a process) of its own: after signing in, a client starts a new session.
     */
    publicTools: z.array(z.string().min(1)).optional(),
    /** Scopes that imply others, e.g. `{ "admin": ["files:write"] }`. */
    scopeHierarchy: z.record(z.string(), z.array(z.string())).optional(),
    /** stdio: one process per user (default) or per MCP session. */
    isolation: z.enum(['user', 'session']).optional(),
    /** stdio: seconds a process with no open session lives on. Default 300. */
    idleTimeoutSeconds: z.number().positive().optional(),
    /** stdio: at most this many processes of this upstream at once. Default 20. */
    maxProcesses: z.number().int().positive().optional(),
    /**
     * Give the upstream a token of its own, obtained by RFC 8693 token exchange of the caller's token: sent as
     * `Authorization: Bearer` (HTTP, or `header`) or put in the environment variable `env` (stdio).
     */
    tokenExchange: z
      .object({
        resource: z.string().url(),
        scopes: z.array(z.string()).optional(),
        header: z.string().optional(),
        env: z.string().optional(),
      })
      .strict()
      .optional(),
    /**
     * Give the upstream the user's own token at an identity provider (GitHub, Google, …), from the authorization
     * server's vault: sent as `Authorization: Bearer` (HTTP, or `header`) or put in the environment variable `env`
     * of the user's stdio process. The user links the provider once (or signs in with it).
     */
    upstreamIdentity: z
      .object({
        /** The identity provider's name, e.g. `github` (one of `identityProviders` with the embedded AS). */
        provider: z.string().regex(/^[a-z][a-z0-9-]*$/),
        /** Scopes the user's provider token must carry, e.g. `["repo"]`. */
        scopes: z.array(z.string()).optional(),
        header: z
          .string()
          .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/)
          .optional(),
        env: z
          .string()
          .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
          .optional(),
        /**
         * The resource the authorization server serves with the provider's token. Default (embedded AS):
         * `<issuer>/upstream/<provider>/<name>`; required with an external `issuer`.
         */
        resource: z.string().url().optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

/** The gateway's config file (`--config FILE`, JSON). */
export const GatewayConfigSchema = z
  .object({
    mcpServers: z.record(z.string(), UpstreamConfigSchema),
    port: z.number().int().min(0).max(65535).optional(),
    host: z.string().optional(),
    /** The public base URL (behind TLS or a load balancer), e.g. `https://mcp.example.com`. */
    publicUrl: z.string().url().optional(),
    /** An external authorization server's issuer; without it an embedded one runs in the gateway. */
    issuer: z.string().url().optional(),
    /** The external issuer's JWKS URL. Default: from its metadata. */
    jwksUri: z.string().url().optional(),
    /**
     * With an external `issuer`: serve its metadata and its `/authorize`, `/token`, `/register` at the gateway's
     * origin too, for clients that assume the MCP server's origin is the authorization server. The embedded
     * authorization server always answers there.
     */
    sameOriginAuthorizationServer: z.boolean().optional(),
    /** The gateway's client credentials at the authorization server, for token exchange. */
    clientId: z.string().optional(),
    clientSecret: z.string().optional(),
    /**
     * Identity providers the embedded authorization server offers for sign-in and linking, and whose tokens
     * `upstreamIdentity` hands to upstreams: `gatehouse serve`'s `upstreams` entries (`"github"`, `{ "spec": … }`).
     */
    identityProviders: z.array(UpstreamProviderEntrySchema).optional(),
    /** The key encrypting users' provider tokens at rest (base64url, 32 bytes). Default `$GATEHOUSE_UPSTREAM_KEY`. */
    upstreamKey: z.string().optional(),
    /**
     * Embedded authorization server: `memory`, `sqlite:[PATH]` (default), `redis://…`, `postgres://…`. Redis and
     * PostgreSQL also hold MCP session records, shared by every instance on the store — with an external `issuer`
     * too, where they are all the store holds.
     */
    store: z.string().optional(),
    users: z.string().optional(),
    superuser: z.string().optional(),
    /** Log tool-call arguments in the audit trail. Default false. */
    logArguments: z.boolean().optional(),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).optional(),
  })
  .strict();

export type UpstreamConfig = z.infer<typeof UpstreamConfigSchema>;
export type GatewayConfig = z.infer<typeof GatewayConfigSchema>;

/** Replaces `${VAR}` with the variable's value; a variable that is not set is an error naming it. */
export function expandEnv(value: string, env: NodeJS.ProcessEnv, where: string): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
    const found = env[name];
    if (found === undefined) {
      return fail(`${where} uses \${${name}}, which is not set`, `Set ${name} in the gateway's environment.`);
    }
    return found;
  });
}

/** Expands `${VAR}` in an upstream URL and checks the result (not shown in the error: it may hold a secret). */
function expandedUrl(value: string, env: NodeJS.ProcessEnv, where: string): string {
  const url = expandEnv(value, env, where);
  if (!URL.canParse(url)) {
    fail(
      `${where} is not a URL once its variables are expanded`,
      'Give the upstream MCP endpoint, e.g. http://127.0.0.1:3000/mcp.',
    );
  }
  return url;
}

function expandRecord(
  record: Record<string, string> | undefined,
  env: NodeJS.ProcessEnv,
  where: string,
): Record<string, string> | undefined {
  if (!record) return undefined;
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, expandEnv(v, env, `${where}.${k}`)]));
}

/** Validates upstream names and shapes and expands `${VAR}` in `env`, `headers`, `url` and the credentials. */
export function resolveConfig(config: GatewayConfig, env: NodeJS.ProcessEnv): GatewayConfig {
  const names = Object.keys(config.mcpServers);
  if (names.length === 0)
    fail('no upstream MCP server configured', 'Run `gatehouse gateway -- <command>` or give --upstream URL.');
  const mcpServers: Record<string, UpstreamConfig> = {};
  for (const name of names) {
    const upstream = config.mcpServers[name]!;
    const where = `mcpServers.${name}`;
    if (!NAME.test(name))
      fail(`${where}: "${name}" cannot be a URL path segment`, 'Use letters, digits, ".", "_" and "-".');
    const isHttp = upstream.url !== undefined;
    if (isHttp === (upstream.command !== undefined)) {
      fail(
        `${where} needs exactly one of "command" (stdio) and "url" (HTTP)`,
        'See docs/gateway.md for the config file.',
      );
    }
    if (upstream.type === 'stdio' && isHttp) fail(`${where}: type stdio needs "command"`, 'Remove "type" or "url".');
    if (upstream.type && upstream.type !== 'stdio' && !isHttp)
      fail(`${where}: type ${upstream.type} needs "url"`, 'Give the upstream URL.');
    if (upstream.publicTools?.length && upstream.tokenExchange) {
      fail(
        `${where}: publicTools and tokenExchange do not go together: an anonymous caller has no token to exchange`,
        'Remove publicTools, or serve the public tools from an upstream without tokenExchange.',
      );
    }
    if (upstream.upstreamIdentity) checkUpstreamIdentity(config, name, upstream);
    mcpServers[name] = {
      ...upstream,
      ...(upstream.url ? { url: expandedUrl(upstream.url, env, `${where}.url`) } : {}),
      ...(upstream.env ? { env: expandRecord(upstream.env, env, `${where}.env`) } : {}),
      ...(upstream.headers ? { headers: expandRecord(upstream.headers, env, `${where}.headers`) } : {}),
    };
  }
  if (config.identityProviders?.length && config.issuer) {
    fail(
      'identityProviders configure the embedded authorization server, and "issuer" names an external one',
      "Configure the identity providers at the external authorization server (gatehouse serve --upstream), and give each upstreamIdentity that server's resource.",
    );
  }
  return {
    ...config,
    mcpServers,
    ...(config.clientSecret ? { clientSecret: expandEnv(config.clientSecret, env, 'clientSecret') } : {}),
    ...(config.upstreamKey ? { upstreamKey: expandEnv(config.upstreamKey, env, 'upstreamKey') } : {}),
    ...(config.identityProviders && {
      identityProviders: config.identityProviders.map((entry, i) =>
        typeof entry === 'string' || entry.clientSecret === undefined
          ? entry
          : { ...entry, clientSecret: expandEnv(entry.clientSecret, env, `identityProviders[${i}].clientSecret`) },
      ),
    }),
  };
}

/** `upstreamIdentity` needs a user behind every request and, with the embedded AS, a configured provider. */
function checkUpstreamIdentity(config: GatewayConfig, name: string, upstream: UpstreamConfig): void {
  const where = `mcpServers.${name}`;
  const { provider, resource } = upstream.upstreamIdentity!;
  if (upstream.publicTools?.length) {
    fail(
      `${where}: publicTools and upstreamIdentity do not go together: an anonymous caller has no ${provider} account`,
      'Remove publicTools, or serve the public tools from an upstream without upstreamIdentity.',
    );
  }
  if (upstream.tokenExchange) {
    fail(
      `${where}: give the upstream one token, from tokenExchange or from upstreamIdentity`,
      'Remove one of the two.',
    );
  }
  if (config.issuer) {
    if (!resource) {
      fail(
        `${where}.upstreamIdentity needs "resource" with an external issuer`,
        'Give the resource that authorization server maps to the provider (gatehouse serve --upstream-resource URL=NAME).',
      );
    }
    return;
  }
  const names = (config.identityProviders ?? []).map((e) => upstreamSpecName(typeof e === 'string' ? e : e.spec));
  if (!names.includes(provider)) {
    fail(
      `${where}.upstreamIdentity names the provider "${provider}", which is not in identityProviders`,
      names.length
        ? `Configured: ${names.join(', ')}. Add "${provider}" to identityProviders (or --identity-provider ${provider}).`
        : `Add it: "identityProviders": ["${provider}"] (or --identity-provider ${provider}).`,
    );
  }
}

/** Reads and validates a config file. */
export function readGatewayConfig(path: string): Promise<GatewayConfig> {
  return readConfigFile(path, GatewayConfigSchema, fail, 'docs/gateway.md');
}

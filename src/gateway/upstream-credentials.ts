import { UrlElicitationRequiredError } from '@modelcontextprotocol/client';
import { linkUrlIn } from '../authorization-server/upstream/errors.js';
import { OAuthProtocolError } from '../oauth/errors.js';
import type { SessionIdentity, UpstreamChannel } from './channel.js';
import type { UpstreamConfig } from './config.js';

/** The environment variable a stdio upstream finds its token in, unless the config names another. */
export const DEFAULT_TOKEN_ENV = 'GATEHOUSE_UPSTREAM_TOKEN';

/**
 * An upstream's own token and where it goes. Both kinds are one RFC 8693 exchange of the caller's token at the
 * authorization server: `tokenExchange` gets a token that server issues for `resource`; `upstreamIdentity` gets
 * the user's token at an identity provider (GitHub, Google, …) from the server's vault, which answers the
 * exchange toward a resource it maps to that provider.
 */
export interface UpstreamTokenSource {
  kind: 'tokenExchange' | 'upstreamIdentity';
  resource: string;
  scopes: string[];
  /** The header an HTTP upstream gets it in (`authorization`: as `Bearer <token>`). */
  header: string;
  /** The environment variable a stdio upstream gets it in. */
  env: string;
  /** The identity provider (`upstreamIdentity`). */
  provider?: string;
}

/**
 * The resource the embedded authorization server maps to a provider for one upstream: one per upstream, so each
 * carries its own required provider scopes.
 */
export function upstreamIdentityResource(issuer: string, provider: string, upstream: string): string {
  return `${issuer}/upstream/${encodeURIComponent(provider)}/${encodeURIComponent(upstream)}`;
}

/** The token source of an upstream's config, if it has one. */
export function upstreamTokenSource(
  name: string,
  config: UpstreamConfig,
  issuer: string,
): UpstreamTokenSource | undefined {
  const te = config.tokenExchange;
  if (te) {
    return {
      kind: 'tokenExchange',
      resource: te.resource,
      scopes: te.scopes ?? [],
      header: te.header ?? 'authorization',
      env: te.env ?? DEFAULT_TOKEN_ENV,
    };
  }
  const ui = config.upstreamIdentity;
  if (ui) {
    return {
      kind: 'upstreamIdentity',
      resource: ui.resource ?? upstreamIdentityResource(issuer, ui.provider, name),
      scopes: ui.scopes ?? [],
      header: ui.header ?? 'authorization',
      env: ui.env ?? DEFAULT_TOKEN_ENV,
      provider: ui.provider,
    };
  }
  return undefined;
}

/**
 * The caller cannot be given the upstream's credentials (e.g. the user has not linked the provider yet). Its
 * message is meant for the caller as it is: it names the link URL and never a token. `linkUrl` is set when the user
 * can fix it at that page (link the provider, grant it again, or grant missing scopes).
 */
export class UpstreamCredentialError extends Error {
  readonly linkUrl: string | undefined;
  readonly provider: string | undefined;

  constructor(message: string, options: { linkUrl?: string; provider?: string } = {}) {
    super(message);
    this.name = 'UpstreamCredentialError';
    this.linkUrl = options.linkUrl;
    this.provider = options.provider;
  }
}

/** A token for an upstream, and when it expires (ms since the epoch; undefined when the AS did not say). */
export interface UpstreamToken {
  token: string;
  expiresAt?: number;
}

/** Exchanges a session's token for a token toward `resource` (cached by the exchanging client). */
export type ExchangeToken = (identity: SessionIdentity, resource: string, scopes: string[]) => Promise<UpstreamToken>;

/** The environment a stdio process starts with, and when the token in it expires (ms since the epoch). */
export interface ProcessCredentials {
  env: Record<string, string>;
  expiresAt?: number;
}

/** An upstream's credential hooks: headers for each request to an HTTP upstream, environment for a stdio process. */
export interface UpstreamCredentials {
  headers(identity: SessionIdentity): Promise<Record<string, string>>;
  environment(identity: SessionIdentity): Promise<ProcessCredentials>;
}

/**
 * The credential hooks of one upstream, from its token source. `issuer` is the authorization server's: a link URL
 * is passed on to the caller only when it is on that server's origin, never one an upstream could have chosen.
 */
export function upstreamCredentials(
  name: string,
  source: UpstreamTokenSource,
  exchange: ExchangeToken,
  issuer: string,
): UpstreamCredentials {
  const token = async (identity: SessionIdentity): Promise<UpstreamToken> => {
    if (source.kind === 'tokenExchange') return exchange(identity, source.resource, source.scopes);
    try {
      return await exchange(identity, source.resource, source.scopes);
    } catch (error) {
      // The vault's errors say what to do and where (`…; they can grant access at <link URL>`); the AS's own
      // refusals and network failures are named as what they are.
      const reason =
        error instanceof OAuthProtocolError ? (error.description ?? error.error) : (error as Error).message;
      const linkUrl = error instanceof OAuthProtocolError ? linkUrlIn(error.description) : undefined;
      throw new UpstreamCredentialError(`upstream "${name}" needs the user's own ${source.provider} token: ${reason}`, {
        ...(linkUrl && sameOrigin(linkUrl, issuer) && { linkUrl }),
        ...(source.provider && { provider: source.provider }),
      });
    }
  };
  return {
    async headers(identity) {
      const { token: value } = await token(identity);
      return { [source.header]: source.header.toLowerCase() === 'authorization' ? `Bearer ${value}` : value };
    },
    async environment(identity) {
      const { token: value, expiresAt } = await token(identity);
      return { env: { [source.env]: value }, ...(expiresAt !== undefined && { expiresAt }) };
    },
  };
}

function sameOrigin(url: string, issuer: string): boolean {
  try {
    return new URL(url).origin === new URL(issuer).origin;
  } catch {
    return false;
  }
}

/** A JSON-RPC error object, as a response carries it. */
export interface RpcError {
  code: number;
  message: string;
  data?: unknown;
}

/**
 * The JSON-RPC error for a caller whose credentials cannot be had. A client that declared URL elicitation
 * (`capabilities.elicitation.url`) gets the URL-elicitation-required error of MCP 2025-11-25 (-32042), whose
 * `data.elicitations` names the link page, so it can offer to open it and retry; any other gets -32603 with the
 * same message, which names the page too.
 */
export function credentialErrorAnswer(error: UpstreamCredentialError, elicitationId: string | undefined): RpcError {
  if (!error.linkUrl || elicitationId === undefined) return { code: -32603, message: error.message };
  const provider = error.provider ?? 'the provider';
  const required = new UrlElicitationRequiredError(
    [
      {
        mode: 'url',
        elicitationId,
        url: error.linkUrl,
        message: `Connect your ${provider} account (the tools of this server act as you there), then retry.`,
      },
    ],
    error.message,
  );
  return { code: required.code, message: required.message, data: required.data };
}

/** Whether a client's `initialize` capabilities declare URL-mode elicitation. */
export function acceptsUrlElicitation(capabilities: Record<string, unknown> | undefined): boolean {
  const elicitation = capabilities?.['elicitation'];
  return typeof elicitation === 'object' && elicitation !== null && 'url' in elicitation;
}

/** A session that answered URL elicitations for linking a provider, told when the user has linked it. */
export interface LinkWaiter {
  linked(provider: string): void;
}

/**
 * The sessions waiting for a user to link a provider, so that each hears `notifications/elicitation/complete` for
 * the elicitation it was answered with once the embedded authorization server stored the user's tokens.
 */
export class LinkWaiters {
  readonly #waiting = new Map<string, Set<LinkWaiter>>();

  wait(subject: string, provider: string, waiter: LinkWaiter): void {
    const key = `${subject}\n${provider}`;
    const set = this.#waiting.get(key) ?? new Set();
    set.add(waiter);
    this.#waiting.set(key, set);
  }

  /** The user linked (or signed in with) the provider. */
  linked(subject: string, provider: string): void {
    const key = `${subject}\n${provider}`;
    const set = this.#waiting.get(key);
    this.#waiting.delete(key);
    for (const waiter of set ?? []) waiter.linked(provider);
  }

  forget(waiter: LinkWaiter): void {
    for (const [key, set] of this.#waiting) {
      set.delete(waiter);
      if (set.size === 0) this.#waiting.delete(key);
    }
  }
}

/**
 * A channel whose every message first makes sure the credentials can be had: when they cannot, the send fails
 * with {@link UpstreamCredentialError} and the caller gets it as the JSON-RPC error — whatever the transport would
 * have wrapped it in — and nothing reaches the upstream. (The token is cached, so the request itself reuses it.)
 */
export function requiringCredentials(channel: UpstreamChannel, check: () => Promise<unknown>): UpstreamChannel {
  const send = channel.send.bind(channel);
  channel.send = async (message) => {
    await check();
    await send(message);
  };
  return channel;
}

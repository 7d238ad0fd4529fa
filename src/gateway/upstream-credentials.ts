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
 * message is meant for the caller as it is: it names the link URL and never a token.
 */
export class UpstreamCredentialError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UpstreamCredentialError';
  }
}

/** Exchanges a session's token for a token toward `resource` (cached by the exchanging client). */
export type ExchangeToken = (identity: SessionIdentity, resource: string, scopes: string[]) => Promise<string>;

/** An upstream's credential hooks: headers for each request to an HTTP upstream, environment for a stdio process. */
export interface UpstreamCredentials {
  headers(identity: SessionIdentity): Promise<Record<string, string>>;
  environment(identity: SessionIdentity): Promise<Record<string, string>>;
}

/** The credential hooks of one upstream, from its token source. */
export function upstreamCredentials(
  name: string,
  source: UpstreamTokenSource,
  exchange: ExchangeToken,
): UpstreamCredentials {
  const token = async (identity: SessionIdentity): Promise<string> => {
    if (source.kind === 'tokenExchange') return exchange(identity, source.resource, source.scopes);
    try {
      return await exchange(identity, source.resource, source.scopes);
    } catch (error) {
      // The vault's errors say what to do and where (`…; they can grant access at <link URL>`); the AS's own
      // refusals and network failures are named as what they are.
      const reason =
        error instanceof OAuthProtocolError ? (error.description ?? error.error) : (error as Error).message;
      throw new UpstreamCredentialError(`upstream "${name}" needs the user's own ${source.provider} token: ${reason}`);
    }
  };
  return {
    async headers(identity) {
      const value = await token(identity);
      return { [source.header]: source.header.toLowerCase() === 'authorization' ? `Bearer ${value}` : value };
    },
    async environment(identity) {
      return { [source.env]: await token(identity) };
    },
  };
}

/**
 * A channel whose every message first makes sure the credentials can be had: when they cannot, the send fails
 * with {@link UpstreamCredentialError} and the caller gets its message as the JSON-RPC error — whatever the
 * transport would have wrapped it in — and nothing reaches the upstream. (The token is cached, so the request
 * itself reuses it.)
 */
export function requiringCredentials(channel: UpstreamChannel, check: () => Promise<unknown>): UpstreamChannel {
  const send = channel.send.bind(channel);
  channel.send = async (message) => {
    await check();
    await send(message);
  };
  return channel;
}

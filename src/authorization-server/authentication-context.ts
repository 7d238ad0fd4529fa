import { type Configuration, interactionPolicy, type KoaContextWithOIDC, errors as oidcErrors } from 'oidc-provider';
import type { Account } from './users.js';

/**
 * The authentication context classes (`acr`) Gatehouse issues: how the user proved who they are, as far as this
 * server knows. They say which way the user signed in, not how strong that way is: Gatehouse itself checks a
 * password, and an upstream identity provider's own checks (MFA or not) are not visible to it. An authenticator
 * that checks more (a second factor, say) reports its own value as {@link Account.acr}.
 */
export const ACR = {
  /** The username/password form on this server's login page. */
  password: 'urn:gatehouse:acr:password',
  /** Prefix of a login through the upstream identity provider `<name>`: `urn:gatehouse:acr:upstream:<name>`. */
  upstreamPrefix: 'urn:gatehouse:acr:upstream:',
} as const;

/** The `acr` of a login through the upstream identity provider `name`. */
export const upstreamAcr = (name: string): string => `${ACR.upstreamPrefix}${name}`;

/** The `acr` and `amr` (RFC 8176) of a password login on the login page. */
export function passwordLogin(account: Account): { acr: string; amr: string[] } {
  return { acr: account.acr ?? ACR.password, amr: account.amr ?? ['pwd'] };
}

/*
 * RFC 9470 §4 defines `max_age` and `acr_values` for OAuth authorization requests; oidc-provider honours them only
 * on OpenID requests (`scope` with `openid`), and MCP clients rarely ask for `openid`. Without it, the two are
 * carried under these names to the login checks below.
 */
const MAX_AGE = 'gatehouse_max_age';
const ACR_VALUES = 'gatehouse_acr_values';

/** The extra authorization parameters the step-up checks read. */
export const STEP_UP_PARAMS = [MAX_AGE, ACR_VALUES];

/**
 * The query of a `GET /auth` with `max_age` / `acr_values` on a request without `openid`, those two moved to where
 * the login checks read them; any other URL unchanged.
 */
export function withStepUpParams(url: string): string {
  const query = url.indexOf('?');
  if (query === -1) return url;
  const params = new URLSearchParams(url.slice(query + 1));
  if (!params.has('max_age') && !params.has('acr_values')) return url;
  if ((params.get('scope') ?? '').split(' ').includes('openid')) return url;
  for (const [from, to] of [
    ['max_age', MAX_AGE],
    ['acr_values', ACR_VALUES],
  ] as const) {
    const value = params.get(from);
    params.delete(from);
    if (value !== null) params.set(to, value);
  }
  return `${url.slice(0, query)}?${params.toString()}`;
}

type Params = Record<string, unknown>;

/**
 * oidc-provider's interaction policy with two more login checks: a session older than `max_age` logs in again,
 * and so does one whose `acr` is none of `acr_values` (oidc-provider treats `acr_values` as a wish). After that
 * login the token carries the `acr` actually reached, and the resource server decides.
 */
export function stepUpPolicy(): NonNullable<NonNullable<Configuration['interactions']>['policy']> {
  const policy = interactionPolicy.base();
  const login = policy.get('login')!;
  const { Check } = interactionPolicy;
  login.checks.add(
    new Check('gatehouse_max_age', 'End-User authentication could not be obtained', (ctx: KoaContextWithOIDC) => {
      const raw = (ctx.oidc.params as Params)[MAX_AGE];
      if (raw === undefined) return Check.NO_NEED_TO_PROMPT;
      if (typeof raw !== 'string' || !/^\d{1,9}$/.test(raw)) {
        throw new oidcErrors.InvalidRequest('max_age must be a whole number of seconds');
      }
      if (!ctx.oidc.session?.accountId) return Check.REQUEST_PROMPT;
      return ctx.oidc.session.past(Number(raw)) && !ctx.oidc.result?.['login']
        ? Check.REQUEST_PROMPT
        : Check.NO_NEED_TO_PROMPT;
    }),
  );
  login.checks.add(
    new Check('gatehouse_acr_values', 'requested ACR could not be obtained', (ctx: KoaContextWithOIDC) => {
      const params = ctx.oidc.params as Params;
      const raw = params[ACR_VALUES] ?? params['acr_values'];
      if (typeof raw !== 'string' || !raw.trim() || ctx.oidc.result?.['login']) return Check.NO_NEED_TO_PROMPT;
      if (!ctx.oidc.session?.accountId) return Check.REQUEST_PROMPT;
      return raw.split(' ').includes(String(ctx.oidc.session.acr)) ? Check.NO_NEED_TO_PROMPT : Check.REQUEST_PROMPT;
    }),
  );
  return policy;
}

/** Where the login behind a token is recorded: the code, refresh token or device code it came from. */
interface LoginRecord {
  authTime?: number;
  acr?: string;
}

/**
 * `auth_time` and `acr` of the login an access token stems from (RFC 9068 §2.2.1), for `extraTokenClaims`: they
 * go into JWT access tokens and introspection answers. Tokens without a user (client credentials) have none.
 */
export function authenticationClaims(ctx: KoaContextWithOIDC | undefined): { auth_time?: number; acr?: string } {
  const entities = (ctx?.oidc?.entities ?? {}) as Record<string, LoginRecord | undefined>;
  const source = entities['AuthorizationCode'] ?? entities['RefreshToken'] ?? entities['DeviceCode'];
  if (!source) return {};
  return {
    ...(typeof source.authTime === 'number' && { auth_time: source.authTime }),
    ...(typeof source.acr === 'string' && { acr: source.acr }),
  };
}

/**
 * Upstream identity: sign in through GitHub, Google, Entra or any OIDC provider, and hand MCP servers the user's
 * own upstream token by token exchange. See `docs/upstream-identity.md`.
 *
 * @packageDocumentation
 */
export {
  type AdmissionRules,
  admissionProblem,
  defaultSubject,
  type LinkedIdentity,
  UpstreamAccounts,
  type UpstreamUser,
} from './accounts.js';
export {
  createUpstreamIdentity,
  type UpstreamIdentity,
  type UpstreamIdentityOptions,
  type UpstreamLoginResult,
  type UpstreamResource,
  type UpstreamTokenExchangeResponse,
  upstreamAuthenticator,
} from './engine.js';
export {
  linkUrlIn,
  UpstreamConfigError,
  UpstreamError,
  type UpstreamErrorOptions,
  type UpstreamErrorReason,
} from './errors.js';
export { parseTokenBody, type UpstreamClientAuth, type UpstreamTokenResponse } from './http.js';
export {
  type EntraUpstreamOptions,
  entraUpstream,
  envName,
  type GithubUpstreamOptions,
  type GoogleUpstreamOptions,
  githubUpstream,
  googleUpstream,
  type OidcUpstreamOptions,
  oidcUpstream,
  parseUpstreamSpec,
  standardProfile,
  type UpstreamContext,
  type UpstreamEndpoints,
  type UpstreamProfile,
  type UpstreamProvider,
  type UpstreamSpecOptions,
} from './providers.js';
export type { UpstreamAccessToken, UpstreamTokenRecord } from './vault.js';

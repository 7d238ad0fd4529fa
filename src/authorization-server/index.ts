/**
 * `gatehouse/authorization-server`: a self-hostable MCP authorization server on oidc-provider.
 *
 * @packageDocumentation
 */
export type { ClientIdMetadataDocumentOptions } from './cimd.js';
export {
  type EnterpriseIdentityProvider,
  EnterpriseIdentityProviderConfigError,
  ID_JAG_REPLAY_MODEL,
} from './identity-assertion.js';
export { KEYS_MODEL, type KeySet, loadOrCreateKeys, rotateKeys } from './keys.js';
export type { Branding } from './pages.js';
export type { LoginRateLimit } from './rate-limit.js';
export { type RunningAuthorizationServer, type ServeConfig, ServeConfigError, serve } from './serve.js';
export {
  type AdapterFactory,
  type AuthorizationServer,
  AuthorizationServerConfigError,
  type AuthorizationServerOptions,
  createAuthorizationServer,
  type ResourceConfig,
  type ScopeConfig,
} from './server.js';
export type { TokenExchangePolicy } from './token-exchange.js';
export {
  type AdmissionRules,
  createUpstreamIdentity,
  type EntraUpstreamOptions,
  entraUpstream,
  type GithubUpstreamOptions,
  type GoogleUpstreamOptions,
  githubUpstream,
  googleUpstream,
  type LinkedIdentity,
  linkUrlIn,
  type OidcUpstreamOptions,
  oidcUpstream,
  parseUpstreamSpec,
  UpstreamConfigError,
  UpstreamError,
  type UpstreamErrorReason,
  type UpstreamIdentity,
  type UpstreamIdentityOptions,
  type UpstreamProvider,
  type UpstreamResource,
  type UpstreamUser,
  upstreamAuthenticator,
} from './upstream/index.js';
export {
  type Account,
  type Authenticator,
  anyOf,
  hashedUsers,
  hashPassword,
  staticUsers,
  type UserRecord,
  UsersFileError,
  usersFile,
  verifyPassword,
} from './users.js';

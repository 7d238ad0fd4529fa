/**
 * `gatehouse/server`: protect an MCP server with OAuth.
 *
 * @packageDocumentation
 */
export {
  AccessContext,
  type AccessError,
  type AccessStatus,
  type ResourceAccess,
  ResourceAccessError,
} from './access-context.js';
export { type AuthProvider, type AuthProviderOptions, createAuthProvider } from './auth-provider.js';
export { type ClientCredentials, clientAuthMethod } from './client-auth.js';
export { DiscoveryError, discoverAuthorizationServer } from './discovery.js';
export { InsufficientScopeError, InsufficientUserAuthenticationError, InvalidTokenError } from './errors.js';
export { type ExpressLikeRequest, type ExpressMiddleware, expressHandler } from './express.js';
export {
  createGrant,
  type ExchangeRequest,
  type Grant,
  type GrantOptions,
  type GrantWrapper,
  getAccessContext,
  TokenExchangeClient,
  TokenExchangeError,
  type TokenExchangeOptions,
} from './grant.js';
export { honoMiddleware } from './hono.js';
export { type IntrospectionVerifierOptions, introspectionVerifier } from './introspection-verifier.js';
export { type JwtVerifierOptions, jwtVerifier } from './jwt-verifier.js';
export { listen, type RunningServer, toNodeListener } from './node.js';
export {
  type FetchHandler,
  type McpHandlerOptions,
  type McpRequestHandler,
  type ProtectedHandler,
  type ProtectOptions,
  protect,
} from './protect.js';
export { expandScopes, missingScopes, requireScopes, type ScopeHierarchy } from './scopes.js';
export {
  type AuthenticationRequirement,
  checkUserAuthentication,
} from './user-authentication.js';
export type { AuthInfo, TokenVerifier, VerifyContext } from './verifier.js';

/**
 * `gatehouse/authorization-server`: a self-hostable MCP authorization server on oidc-provider.
 *
 * @packageDocumentation
 */
export {
  type AuthorizationServer,
  type AuthorizationServerOptions,
  createAuthorizationServer,
  type ResourceConfig,
} from './server.js';
export { type Account, type Authenticator, hashPassword, staticUsers, verifyPassword } from './users.js';

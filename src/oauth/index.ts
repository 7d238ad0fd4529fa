/**
 * `gatehouse/oauth`: the protocol pieces shared by the client, the resource server and the authorization server.
 *
 * @packageDocumentation
 */

export {
  DEVICE_CODE_GRANT_TYPE,
  type DeviceAuthorizationResponse,
  DeviceAuthorizationResponseSchema,
} from './device.js';
export {
  authorizationServerMetadataUrls,
  protectedResourceMetadataUrl,
  protectedResourceMetadataUrls,
} from './discovery.js';
export { GatehouseError, type OAuthErrorCode, OAuthProtocolError } from './errors.js';
export { ID_JAG_JWT_TYPE, ID_JAG_TOKEN_TYPE, JWT_BEARER_GRANT_TYPE } from './jwt-bearer.js';
export {
  type AuthorizationServerMetadata,
  AuthorizationServerMetadataSchema,
  InvalidMetadataError,
  type ProtectedResourceMetadata,
  ProtectedResourceMetadataSchema,
  parseAuthorizationServerMetadata,
  parseProtectedResourceMetadata,
} from './metadata.js';
export {
  assertSecureUrl,
  canonicalResourceUri,
  InvalidResourceUriError,
  isLoopbackUrl,
  sameResource,
} from './resource-uri.js';
export { splitScopes } from './scopes.js';
export { TOKEN_EXCHANGE_GRANT_TYPE, TOKEN_TYPE } from './token-exchange.js';
export {
  type Challenge,
  findBearerChallenge,
  formatWwwAuthenticate,
  parseWwwAuthenticate,
} from './www-authenticate.js';

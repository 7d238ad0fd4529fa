/**
 * `gatehouse/server`: protect an MCP server with OAuth.
 *
 * @packageDocumentation
 */
export { InsufficientScopeError, InvalidTokenError } from './errors.js';
export { type JwtVerifierOptions, jwtVerifier } from './jwt-verifier.js';
export { listen, type RunningServer, toNodeListener } from './node.js';
export { type FetchHandler, type McpRequestHandler, type ProtectOptions, protect } from './protect.js';
export type { AuthInfo, TokenVerifier } from './verifier.js';

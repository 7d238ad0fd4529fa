/**
 * `gatehouse/testing`: helpers to test MCP servers and clients against real OAuth on loopback.
 *
 * @packageDocumentation
 */
export { type MockAccessContextOptions, type MockedAccessContext, mockAccessContext } from './access-context.js';
export { DEMO_SCOPE, type DemoStack, type DemoStackOptions, startDemoStack } from './demo-stack.js';
export {
  type MintTokenOptions,
  startTestAuthorizationServer,
  type TestAuthorizationServer,
  type TestAuthorizationServerOptions,
  type TestClient,
  type TokenExchangeFailure,
  type TokenExchangeOutcome,
  type TokenExchangeRequest,
  type TokenExchangeSuccess,
} from './test-authorization-server.js';

/**
 * `gatehouse/gateway`: OAuth in front of any MCP server — stdio commands and HTTP servers — without touching its
 * code.
 *
 * @packageDocumentation
 */
export { type SessionIdentity, type UpstreamChannel, UpstreamUnavailableError } from './channel.js';
export {
  expandEnv,
  type GatewayConfig,
  GatewayConfigError,
  GatewayConfigSchema,
  readGatewayConfig,
  type UpstreamConfig,
  UpstreamConfigSchema,
} from './config.js';
export { GATEWAY_CLIENT_ID, type GatewayRuntime, type RunningGateway, startGateway } from './gateway.js';

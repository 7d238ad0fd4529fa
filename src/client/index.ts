/**
 * `gatehouse/client`: log in to MCP servers with OAuth 2.1.
 *
 * @packageDocumentation
 */

export { canOpenBrowser, type OpenBrowserOptions, openBrowser } from './browser.js';
export {
  type CallbackResult,
  type CallbackServer,
  type CallbackServerOptions,
  startCallbackServer,
} from './callback-server.js';
export {
  type CallToolOptions,
  Client,
  type ClientOptions,
  type CompletionRef,
  type ProtocolVersionChoice,
  type RequestOptions,
  type ServerFailure,
  type ServerSkill,
  type SkillFile,
} from './client.js';
export { type DeviceCodeHandler, type DeviceCodePrompt, printDeviceCode } from './device-login.js';
export { type DoctorCheck, type DoctorReport, diagnose, explainLoginFailure, formatDoctorReport } from './doctor.js';
export {
  AuthenticationError,
  AuthorizationDeniedError,
  CallbackTimeoutError,
  ConnectionError,
  DeviceCodeExpiredError,
  DeviceFlowUnsupportedError,
  DiscoveryError,
  IssuerMismatchError,
  McpError,
  RefreshFailedError,
  RegistrationError,
  SkillVerificationError,
  TimeoutError,
  ToolError,
  type UrlElicitation,
  UrlElicitationRequiredError,
} from './errors.js';
export type {
  ElicitationHandler,
  LogMessage,
  MessageHandler,
  ProgressHandler,
  RequestOrigin,
  RootsInput,
  SamplingHandler,
} from './handlers.js';
export { headlessAuthorize, type LoginCredentials } from './headless-login.js';
export { type AssertionContext, type IdJagOptions, MachineAuth, type MachineAuthOptions } from './machine.js';
export { clientFetch, describeNetworkFailure } from './network.js';
export {
  type AuthorizeOptions,
  type AuthorizeOutcome,
  OAuth,
  type OAuthEvent,
  type OAuthOptions,
  type WrapFetchHooks,
} from './oauth.js';
export type { ToolResult } from './results.js';
export {
  type ClientAuth,
  type ClientSource,
  type HttpServerConfig,
  type InProcessServer,
  type InProcessServerFactory,
  InvalidSourceError,
  type McpServersConfig,
  type ServerConfig,
  type StdioServerConfig,
} from './source.js';
export type { TransportKind } from './transports.js';

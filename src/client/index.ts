/**
 * `gatehouse/client`: log in to MCP servers with OAuth 2.1.
 *
 * @packageDocumentation
 */

export { type DoctorCheck, type DoctorReport, diagnose, formatDoctorReport } from './doctor.js';
export {
  AuthenticationError,
  AuthorizationDeniedError,
  CallbackTimeoutError,
  DiscoveryError,
  IssuerMismatchError,
  RefreshFailedError,
  RegistrationError,
} from './errors.js';
export { headlessAuthorize, type LoginCredentials } from './headless-login.js';
export { OAuth, type OAuthEvent, type OAuthOptions } from './oauth.js';

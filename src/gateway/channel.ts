import type { JSONRPCMessage } from '@modelcontextprotocol/client';
import type { AuthInfo } from '../server/verifier.js';

/** Who a gateway session belongs to, and the token it last presented (never forwarded upstream). */
export interface SessionIdentity {
  /** The token's subject; the key of per-user isolation. */
  readonly subject: string;
  readonly sessionId: string;
  /**
   * What the client said it can answer (`initialize`'s `capabilities`), when the session began with it. A shared
   * per-user process sees one `initialize`, so sessions that differ here cannot share one (see `StdioPool`).
   */
  readonly clientCapabilities?: Record<string, unknown>;
  /** The caller's current verified token, for token exchange only. */
  authInfo(): AuthInfo;
}

/**
 * One gateway session's line to its upstream: JSON-RPC messages in both directions. A channel may share one
 * upstream process with other sessions (per-user isolation); it hides that.
 */
export interface UpstreamChannel {
  send(message: JSONRPCMessage): Promise<void>;
  /** A message from the upstream for this session. */
  onmessage?: (message: JSONRPCMessage) => void;
  /** The upstream went away: every request in flight on this channel is lost. The next send reconnects. */
  onfailure?: (reason: string) => void;
  /** Detaches this session (stops the upstream connection, or lets a shared process idle out). */
  close(): Promise<void>;
}

/** A failure to reach an upstream at all (start it, or connect): the caller gets it as a JSON-RPC error. */
export class UpstreamUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UpstreamUnavailableError';
  }
}

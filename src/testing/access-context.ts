import { AccessContext, type AccessError } from '../server/access-context.js';
import { setAccessContextMock } from '../server/grant.js';

/** Options of {@link mockAccessContext}. */
export interface MockAccessContextOptions {
  /** The token every resource gets. Default `test_access_token`. */
  accessToken?: string;
  /** Tokens per resource; resources not listed fail with `invalid_target`. */
  resourceTokens?: Record<string, string>;
  /** Makes every resource fail with this error (a string becomes the message of an `access_denied` error). */
  error?: string | AccessError;
}

function build(resources: readonly string[], options: MockAccessContextOptions): AccessContext {
  const context = new AccessContext();
  const error: AccessError | undefined =
    typeof options.error === 'string' ? { error: 'access_denied', message: options.error } : options.error;
  for (const resource of resources) {
    if (error) context.setResourceError(resource, error);
    else if (options.resourceTokens && !(resource in options.resourceTokens)) {
      context.setResourceError(resource, { error: 'invalid_target', message: `no mock token for ${resource}` });
    } else {
      const accessToken = options.resourceTokens?.[resource] ?? options.accessToken ?? 'test_access_token';
      context.setToken({ resource, accessToken, tokenType: 'Bearer' });
    }
  }
  if (error) context.setError(error);
  return context;
}

/** A mocked access context, installed until `restore()` (or the end of a `using` block). */
export interface MockedAccessContext {
  /** The context for a given set of resources, as `grant()` would build it (for calling a handler directly). */
  contextFor(resources: readonly string[]): AccessContext;
  /** Makes `grant()` exchange tokens for real again. */
  restore(): void;
  [Symbol.dispose](): void;
}

/**
 * Makes every `grant()`-wrapped tool run with a prepared {@link AccessContext} instead of exchanging tokens
 * (seed: Keycard's `mock_access_context`): a default token, one token for every resource, a token per resource,
 * or an error. Restore it after the test.
 *
 * @example
 * ```ts
 * import { mockAccessContext } from 'gatehouse/testing';
 *
 * const mock = mockAccessContext({ resourceTokens: { 'https://api.example.com': 'api_token_123' } });
 * try {
 *   const result = await client.callTool({ name: 'sync_data', arguments: {} });
 * } finally {
 *   mock.restore();
 * }
 *
 * // Or, with explicit resource management:
 * using _ = mockAccessContext({ error: 'Token exchange failed' });
 * ```
 */
export function mockAccessContext(options: MockAccessContextOptions = {}): MockedAccessContext {
  setAccessContextMock((resources) => build(resources, options));
  const restore = () => setAccessContextMock(undefined);
  return { contextFor: (resources) => build(resources, options), restore, [Symbol.dispose]: restore };
}

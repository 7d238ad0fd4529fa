/** Network error codes after which a GET can safely be sent again: the request never got an answer. */
const TRANSIENT = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'ECONNREFUSED', 'ETIMEDOUT']);

function transient(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && TRANSIENT.has(code)) return true;
  }
  return false;
}

/**
 * Wraps `fetch` so a GET (discovery, metadata) that failed on a reset or refused connection is tried once more:
 * a keep-alive socket the server just closed is the usual cause, and discovery should not fail a login for it.
 * Other methods are never repeated: a token request may have been processed (a spent code, a rotated refresh token).
 */
export function retryingFetch(base: typeof fetch): typeof fetch {
  return async (input, init) => {
    const method = (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    try {
      return await base(input, init);
    } catch (error) {
      if ((method !== 'GET' && method !== 'HEAD') || !transient(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
      return base(input, init);
    }
  };
}

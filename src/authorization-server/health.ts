import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Adapter } from 'oidc-provider';

/** How long `/readyz` waits for the store before calling it unreachable. */
const STORE_CHECK_MS = 2000;

function json(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

/**
 * `/healthz` (the process answers: liveness) and `/readyz` (the store answers and the keys are there: readiness),
 * for load balancers and orchestrators. Returns whether it answered the request.
 */
export function healthEndpoints(
  keysAdapter: Adapter,
  keysId: string,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    if (path === '/healthz') {
      json(res, 200, { status: 'ok' });
      return true;
    }
    if (path !== '/readyz') return false;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), STORE_CHECK_MS);
    });
    Promise.race([keysAdapter.find(keysId), timeout])
      .then(
        (found) => {
          if (found === 'timeout') return json(res, 503, { status: 'unavailable', store: 'timeout', keys: 'unknown' });
          if (!found) return json(res, 503, { status: 'unavailable', store: 'ok', keys: 'missing' });
          json(res, 200, { status: 'ready', store: 'ok', keys: 'ok' });
        },
        () => json(res, 503, { status: 'unavailable', store: 'unreachable', keys: 'unknown' }),
      )
      .finally(() => clearTimeout(timer));
    return true;
  };
}

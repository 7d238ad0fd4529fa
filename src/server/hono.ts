import type { MiddlewareHandler } from 'hono';
import type { FetchHandler } from './protect.js';

/**
 * Mounts a {@link protect}ed handler in Hono. Requests for the resource path and the well-known metadata paths
 * go to it; everything else goes on to the next route.
 *
 * @example
 * ```ts
 * import { Hono } from 'hono';
 * import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
 * import { honoMiddleware, jwtVerifier, protect } from 'gatehouse/server';
 *
 * const mcp = createMcpHandler(() => new McpServer({ name: 'example', version: '1.0.0' }));
 * const app = new Hono();
 * app.use(
 *   honoMiddleware(
 *     protect(mcp, {
 *       resource: 'https://mcp.example.com/mcp',
 *       authorizationServers: ['https://auth.example.com'],
 *       verifier: jwtVerifier({ issuer: 'https://auth.example.com' }),
 *     }),
 *   ),
 * );
 * export default app;
 * ```
 */
export function honoMiddleware(handler: FetchHandler & { handles?: (pathname: string) => boolean }): MiddlewareHandler {
  return async (c, next) => {
    if (handler.handles && !handler.handles(new URL(c.req.url).pathname)) {
      await next();
      return;
    }
    return handler(c.req.raw);
  };
}

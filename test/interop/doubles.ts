import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { listen, type RunningServer } from '../../src/server/node.js';

/** Options of {@link startQuirkyPeer}: each switch reproduces how one real server behaves. */
export interface QuirkyPeerOptions {
  /** How the token endpoint answers: GitHub's `'unless-json'` (form-encoded unless `Accept: application/json`),
   * `'always'` form-encoded, or JSON. */
  tokenFormat?: 'unless-json' | 'always' | 'json';
  /** Entra ID: refuses the `resource` parameter (AADSTS9010010). */
  rejectResource?: boolean;
  /** Lists `offline_access` and issues a refresh token only when it was requested (Entra, Auth0, Okta). */
  offlineAccess?: boolean;
  /** The scope the MCP endpoint wants for the n-th request (1-based), or none. */
  requiredScope?: (n: number) => string | undefined;
  /** How the 403 challenge names scopes: only what is missing (`'missing'`, the loop-prone style) or all. */
  challenge?: 'missing' | 'all';
}

/** A single-origin authorization server + MCP endpoint double, recording what it received. */
export interface QuirkyPeer {
  url: string;
  mcpUrl: string;
  authorizeRequests: URLSearchParams[];
  tokenRequests: Array<{ headers: IncomingMessage['headers']; body: URLSearchParams }>;
  close(): Promise<void>;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => resolve(body));
  });
}

export async function startQuirkyPeer(options: QuirkyPeerOptions = {}): Promise<QuirkyPeer> {
  const codes = new Map<string, string>();
  const issued = new Map<string, string>(); // access token → scope
  const authorizeRequests: URLSearchParams[] = [];
  const tokenRequests: QuirkyPeer['tokenRequests'] = [];
  let mcpCalls = 0;
  let url = '';
  const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
  };
  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    const u = new URL(req.url ?? '/', url);
    if (u.pathname.startsWith('/.well-known/oauth-protected-resource')) {
      return json(res, 200, { resource: `${url}/mcp`, authorization_servers: [url], scopes_supported: ['read'] });
    }
    if (u.pathname === '/.well-known/oauth-authorization-server') {
      return json(res, 200, {
        issuer: url,
        authorization_endpoint: `${url}/authorize`,
        token_endpoint: `${url}/token`,
        response_types_supported: ['code'],
        grant_types_supported: ['authorization_code', 'refresh_token'],
        code_challenge_methods_supported: ['S256'],
        token_endpoint_auth_methods_supported: ['none'],
        scopes_supported: ['read', 'write', 'admin', ...(options.offlineAccess ? ['offline_access'] : [])],
      });
    }
    if (u.pathname === '/authorize') {
      authorizeRequests.push(u.searchParams);
      const code = randomBytes(8).toString('hex');
      const known = ['read', 'write', 'admin', 'offline_access'];
      const requested = (u.searchParams.get('scope') ?? '').split(' ').filter((s) => known.includes(s));
      codes.set(code, requested.join(' ')); // grants only the scopes it knows
      const back = new URL(u.searchParams.get('redirect_uri')!);
      back.searchParams.set('code', code);
      back.searchParams.set('state', u.searchParams.get('state') ?? '');
      res.writeHead(302, { location: back.href }).end();
      return;
    }
    if (u.pathname === '/token' && req.method === 'POST') {
      const body = new URLSearchParams(await readBody(req));
      tokenRequests.push({ headers: req.headers, body });
      if (options.rejectResource && body.has('resource')) {
        return json(res, 400, {
          error: 'invalid_target',
          error_description: "AADSTS9010010: The resource parameter provided in the request doesn't match.",
        });
      }
      let scope: string | undefined;
      if (body.get('grant_type') === 'authorization_code') scope = codes.get(body.get('code') ?? '');
      else if (body.get('grant_type') === 'refresh_token') scope = body.get('refresh_token')?.split('|')[1];
      if (scope === undefined) return json(res, 400, { error: 'invalid_grant' });
      const access = randomBytes(8).toString('hex');
      issued.set(access, scope);
      const granted: Record<string, string> = { access_token: access, token_type: 'bearer', scope, expires_in: '3600' };
      if (!options.offlineAccess || scope.split(' ').includes('offline_access')) {
        granted['refresh_token'] = `${randomBytes(8).toString('hex')}|${scope}`;
      }
      const wantsJson = /application\/json/.test(req.headers.accept ?? '');
      const format = options.tokenFormat ?? 'json';
      if (format === 'always' || (format === 'unless-json' && !wantsJson)) {
        res.writeHead(200, { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' });
        res.end(new URLSearchParams(granted).toString());
        return;
      }
      return json(res, 200, { ...granted, expires_in: 3600 });
    }
    if (u.pathname === '/mcp') {
      mcpCalls++;
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      const granted = token ? issued.get(token) : undefined;
      if (granted === undefined) {
        res.writeHead(401, {
          'www-authenticate': `Bearer resource_metadata="${url}/.well-known/oauth-protected-resource/mcp"`,
        });
        res.end();
        return;
      }
      const needed = options.requiredScope?.(mcpCalls)?.split(' ') ?? [];
      const have = granted.split(' ');
      const missing = needed.filter((s) => !have.includes(s));
      if (missing.length) {
        const named = options.challenge === 'all' ? needed : missing;
        res.writeHead(403, { 'www-authenticate': `Bearer error="insufficient_scope", scope="${named.join(' ')}"` });
        res.end();
        return;
      }
      return json(res, 200, { ok: true, scope: granted });
    }
    res.writeHead(404).end();
  };
  const server: RunningServer = await listen((req, res) => {
    handler(req, res).catch((error) => {
      res.writeHead(500).end(String(error));
    });
  });
  url = server.url;
  return { url, mcpUrl: `${url}/mcp`, authorizeRequests, tokenRequests, close: () => server.close() };
}

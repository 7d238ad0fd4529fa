import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A GitHub user of the double. */
export interface DoubleUser {
  id: number;
  login: string;
  password: string;
  name?: string;
  email?: string | null;
  emails?: Array<{ email: string; primary: boolean; verified: boolean }>;
}

interface Code {
  user: DoubleUser;
  clientId: string;
  redirectUri: string;
  challenge: string | undefined;
  scope: string;
  expiresAt: number;
}

interface Token {
  user: DoubleUser;
  scope: string;
  expiresAt: number;
  kind: 'access' | 'refresh';
  revoked: boolean;
}

export interface GithubDouble {
  url: string;
  /** The REST API base (`<url>/api`). */
  apiUrl: string;
  /** Every token-endpoint request: method, accept header, whether the body held a client secret. */
  tokenRequests: Array<{ accept: string; grantType: string }>;
  /** Revokes every token of a user. */
  revokeAll(login: string): void;
  /** Access tokens currently valid. */
  liveAccessTokens(): string[];
  close(): Promise<void>;
}

/**
 * A small GitHub-shaped OAuth 2.0 server: `/login/oauth/authorize` (auto-approve, or a login form), a token
 * endpoint that answers form-encoded unless `Accept: application/json` (and errors with HTTP 200, like GitHub),
 * expiring access tokens with refresh tokens, `/api/user` and `/api/user/emails`.
 */
export async function startGithubDouble(options: {
  clientId: string;
  clientSecret: string;
  users: DoubleUser[];
  /** Skip the login form and sign in as this user. */
  autoApprove?: string;
  /** Users who click "Cancel" at the consent step: the callback carries error=access_denied. */
  denyingUsers?: string[];
  accessTokenTtl?: number;
  now?: () => number;
}): Promise<GithubDouble> {
  const now = () => Math.floor((options.now ?? Date.now)() / 1000);
  const codes = new Map<string, Code>();
  const tokens = new Map<string, Token>();
  const tokenRequests: GithubDouble['tokenRequests'] = [];
  const ttl = options.accessTokenTtl ?? 28_800;

  const readBody = async (req: IncomingMessage) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
    return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
  };
  const answer = (req: IncomingMessage, res: ServerResponse, body: Record<string, string | number>) => {
    const json = (req.headers.accept ?? '').includes('application/json');
    res.writeHead(200, { 'content-type': json ? 'application/json' : 'application/x-www-form-urlencoded' });
    res.end(
      json
        ? JSON.stringify(body)
        : new URLSearchParams(Object.entries(body).map(([k, v]) => [k, String(v)])).toString(),
    );
  };
  const issue = (user: DoubleUser, scope: string) => {
    const access = `gho_${randomBytes(16).toString('hex')}`;
    const refresh = `ghr_${randomBytes(16).toString('hex')}`;
    tokens.set(access, { user, scope, expiresAt: now() + ttl, kind: 'access', revoked: false });
    tokens.set(refresh, { user, scope, expiresAt: now() + 15_811_200, kind: 'refresh', revoked: false });
    return {
      access_token: access,
      expires_in: ttl,
      refresh_token: refresh,
      refresh_token_expires_in: 15_811_200,
      scope: scope
        .split(/[\s,]+/)
        .filter(Boolean)
        .join(','),
      token_type: 'bearer',
    };
  };
  const redirectWithCode = (res: ServerResponse, params: URLSearchParams, user: DoubleUser) => {
    const code = randomBytes(10).toString('hex');
    codes.set(code, {
      user,
      clientId: params.get('client_id') ?? '',
      redirectUri: params.get('redirect_uri') ?? '',
      challenge: params.get('code_challenge') ?? undefined,
      scope: params.get('scope') ?? '',
      expiresAt: now() + 600,
    });
    const target = new URL(params.get('redirect_uri')!);
    target.searchParams.set('code', code);
    if (params.get('state')) target.searchParams.set('state', params.get('state')!);
    res.writeHead(302, { location: target.href });
    res.end();
  };

  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/login/oauth/authorize') {
      const params = req.method === 'POST' ? await readBody(req) : url.searchParams;
      if (params.get('client_id') !== options.clientId) {
        res.writeHead(404).end('unknown client');
        return;
      }
      if (req.method === 'GET' && options.autoApprove) {
        return redirectWithCode(res, params, options.users.find((u) => u.login === options.autoApprove)!);
      }
      if (req.method === 'POST') {
        const user = options.users.find((u) => u.login === params.get('login'));
        if (user && user.password === params.get('password') && options.denyingUsers?.includes(user.login)) {
          const target = new URL(params.get('redirect_uri')!);
          target.searchParams.set('error', 'access_denied');
          target.searchParams.set('error_description', 'The user has denied your application access.');
          target.searchParams.set('state', params.get('state') ?? '');
          res.writeHead(302, { location: target.href });
          res.end();
          return;
        }
        if (user && user.password === params.get('password')) return redirectWithCode(res, params, user);
        res.writeHead(401, { 'content-type': 'text/html' }).end('<p>Incorrect username or password.</p>');
        return;
      }
      const hidden = [...url.searchParams]
        .map(([k, v]) => `<input type="hidden" name="${k}" value="${v.replace(/"/g, '&quot;')}">`)
        .join('');
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<form method="post" action="/login/oauth/authorize">${hidden}
<input type="text" name="login"><input type="password" name="password"><button type="submit">Sign in</button></form>`);
      return;
    }
    if (url.pathname === '/login/oauth/access_token' && req.method === 'POST') {
      const body = await readBody(req);
      tokenRequests.push({ accept: req.headers.accept ?? '', grantType: body.get('grant_type') ?? '' });
      if (body.get('client_id') !== options.clientId || body.get('client_secret') !== options.clientSecret) {
        return answer(req, res, { error: 'incorrect_client_credentials', error_description: 'bad client' });
      }
      const grantType = body.get('grant_type') ?? 'authorization_code';
      if (grantType === 'authorization_code') {
        const code = codes.get(body.get('code') ?? '');
        codes.delete(body.get('code') ?? '');
        const verifier = body.get('code_verifier') ?? '';
        const ok =
          code &&
          code.expiresAt > now() &&
          code.redirectUri === body.get('redirect_uri') &&
          (!code.challenge || createHash('sha256').update(verifier).digest('base64url') === code.challenge);
        if (!ok) return answer(req, res, { error: 'bad_verification_code', error_description: 'The code is wrong' });
        return answer(req, res, issue(code.user, code.scope));
      }
      if (grantType === 'refresh_token') {
        const old = tokens.get(body.get('refresh_token') ?? '');
        if (old?.kind !== 'refresh' || old.revoked || old.expiresAt <= now()) {
          return answer(req, res, { error: 'bad_refresh_token', error_description: 'The refresh token is invalid' });
        }
        old.revoked = true; // rotation
        return answer(req, res, issue(old.user, old.scope));
      }
      return answer(req, res, { error: 'unsupported_grant_type' });
    }
    if (url.pathname === '/api/user' || url.pathname === '/api/user/emails') {
      const bearer = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? '';
      const token = tokens.get(bearer);
      if (token?.kind !== 'access' || token.revoked || token.expiresAt <= now()) {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ message: 'Bad credentials' }));
        return;
      }
      const { user } = token;
      res.writeHead(200, { 'content-type': 'application/json', 'x-oauth-scopes': token.scope });
      if (url.pathname === '/api/user/emails') {
        res.end(JSON.stringify(user.emails ?? []));
        return;
      }
      res.end(
        JSON.stringify({
          id: user.id,
          login: user.login,
          name: user.name ?? null,
          email: user.email ?? null,
          avatar_url: `https://avatars.example/${user.id}`,
        }),
      );
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    apiUrl: `${url}/api`,
    tokenRequests,
    revokeAll(login) {
      for (const token of tokens.values()) if (token.user.login === login) token.revoked = true;
    },
    liveAccessTokens() {
      return [...tokens]
        .filter(([, t]) => t.kind === 'access' && !t.revoked && t.expiresAt > now())
        .map(([value]) => value);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type AuthorizationServer,
  type AuthorizationServerOptions,
  createAuthorizationServer,
  staticUsers,
} from '../../src/authorization-server/index.js';
import type { ServeConfig } from '../../src/authorization-server/serve.js';
import { parseForms } from '../../src/client/headless-login.js';
import { cli } from '../cli/helpers.js';
import { startServeProcess } from '../helpers/serve-process.js';

export const RESOURCE = 'http://127.0.0.1:8123/mcp';
export const DOWNSTREAM = 'http://127.0.0.1:8124/api';
export const USER = { username: 'alice', password: 'wonderland' };

export interface RunningAs extends AuthorizationServer {
  url: string;
  close(): Promise<void>;
}

/** Starts an authorization server on a free loopback port. */
export async function startAs(options: Partial<AuthorizationServerOptions> = {}, port = 0): Promise<RunningAs> {
  let target: AuthorizationServer['listener'] | undefined;
  const server: Server = createServer((req, res) => target!(req, res));
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const as = await createAuthorizationServer({
    issuer: url,
    authenticator: await staticUsers({ [USER.username]: USER.password }),
    resources: [
      { resource: RESOURCE, scopes: ['mcp:tools', 'mcp:admin'] },
      { resource: DOWNSTREAM, scopes: ['api:read', 'api:write'] },
    ],
    refreshTokenGraceSeconds: 0,
    ...options,
  });
  target = as.listener;
  return {
    ...as,
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A `gatehouse serve` process started by {@link startServedAs}. */
export interface ServedAs {
  url: string;
  close(): Promise<void>;
}

/**
 * Starts `gatehouse serve` as a process with what {@link startAs} gives in-process: the user alice in a users file
 * made by `gatehouse admin users hash`, RESOURCE and DOWNSTREAM as `--resource` flags, no grace window; `config`
 * goes in `--config`, `args` are more flags, `env` adds to its environment.
 */
export async function startServedAs(
  config: ServeConfig = {},
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<ServedAs> {
  const hashed = await cli(['admin', 'users', 'hash'], {}, USER.password);
  if (hashed.status !== 0) throw new Error(`gatehouse admin users hash failed: ${hashed.stderr}`);
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-served-as-'));
  const users = join(dir, 'users.json');
  writeFileSync(users, JSON.stringify({ users: [{ username: USER.username, passwordHash: hashed.stdout.trim() }] }));
  const server = await startServeProcess(
    [
      '--users',
      users,
      '--resource',
      `${RESOURCE}=mcp:tools,mcp:admin`,
      '--resource',
      `${DOWNSTREAM}=api:read,api:write`,
      ...args,
    ],
    { refreshTokenGraceSeconds: 0, ...config },
    env,
  );
  return {
    url: server.url,
    close: async () => {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

export async function register(
  as: { url: string },
  metadata: Record<string, unknown>,
  headers: Record<string, string> = {},
) {
  const response = await fetch(`${as.url}/reg`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(metadata),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

export async function token(
  as: { url: string },
  params: Record<string, string>,
  auth?: { id: string; secret: string },
) {
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (auth)
    headers['authorization'] =
      `Basic ${Buffer.from(`${encodeURIComponent(auth.id)}:${encodeURIComponent(auth.secret)}`).toString('base64')}`;
  const response = await fetch(`${as.url}/token`, { method: 'POST', headers, body: new URLSearchParams(params) });
  return {
    status: response.status,
    headers: response.headers,
    body: (await response.json()) as Record<string, string>,
  };
}

/** A browser stand-in: a cookie jar across requests to the authorization server. */
export class Browser {
  readonly cookies = new Map<string, string>();
  readonly pages: Array<{ kind: 'login' | 'consent' | 'other'; status: number; html: string }> = [];

  /** `fetchImpl`: how requests go out (e.g. from one simulated client address). Default: the global fetch. */
  constructor(readonly fetchImpl: typeof fetch = fetch) {}

  async request(url: URL, init: { method?: string; body?: URLSearchParams } = {}) {
    const headers = new Headers({ accept: 'text/html' });
    if (this.cookies.size) headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    if (init.body) headers.set('content-type', 'application/x-www-form-urlencoded');
    const response = await this.fetchImpl(url, {
      method: init.method ?? 'GET',
      headers,
      body: init.body?.toString(),
      redirect: 'manual',
    });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const eq = pair!.indexOf('=');
      const value = pair!.slice(eq + 1);
      if (/expires=Thu, 01 Jan 1970/i.test(line) || value === '') this.cookies.delete(pair!.slice(0, eq));
      else this.cookies.set(pair!.slice(0, eq), value);
    }
    return response;
  }

  /**
   * Runs an authorization request to the end: logs in with `credentials` if asked, approves (or denies) consent,
   * and returns the redirect to `redirectUri` (or `undefined` if the server stopped at a page).
   */
  async authorize(
    authorizationUrl: URL,
    redirectUri: string,
    options: { credentials?: { username: string; password: string }; decision?: 'approve' | 'deny' } = {},
  ): Promise<{ callback?: URL; last: { status: number; html: string } }> {
    const credentials = options.credentials ?? USER;
    let url = authorizationUrl;
    let init: { method?: string; body?: URLSearchParams } = {};
    for (let step = 0; step < 15; step++) {
      const response = await this.request(url, init);
      const location = response.headers.get('location');
      if (response.status >= 300 && response.status < 400 && location) {
        const next = new URL(location, url);
        if (next.href.startsWith(redirectUri)) return { callback: next, last: { status: response.status, html: '' } };
        url = next;
        init = {};
        continue;
      }
      const html = await response.text();
      const form = parseForms(html).find((f) => f.method === 'post');
      const kind = html.includes('type="password"') ? 'login' : html.includes('name="decision"') ? 'consent' : 'other';
      this.pages.push({ kind, status: response.status, html });
      if (!form || kind === 'other' || response.status >= 400) return { last: { status: response.status, html } };
      const body = new URLSearchParams();
      for (const field of form.fields) body.set(field.name, field.value);
      if (kind === 'login') {
        body.set('username', credentials.username);
        body.set('password', credentials.password);
      } else body.set('decision', options.decision ?? 'approve');
      url = new URL(form.action, url);
      init = { method: 'POST', body };
    }
    throw new Error('authorization did not finish');
  }
}

export function authorizationUrl(
  as: { url: string },
  params: { clientId: string; redirectUri: string; challenge?: string; scope?: string; resource?: string } & Record<
    string,
    string | undefined
  >,
): URL {
  const { clientId, redirectUri, challenge, scope, resource, ...extra } = params;
  const url = new URL(`${as.url}/auth`);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('client_id', clientId);
  url.searchParams.set('redirect_uri', redirectUri);
  url.searchParams.set('state', randomBytes(8).toString('hex'));
  if (challenge) {
    url.searchParams.set('code_challenge', challenge);
    url.searchParams.set('code_challenge_method', 'S256');
  }
  url.searchParams.set('scope', scope ?? 'mcp:tools offline_access');
  if (resource !== '') url.searchParams.set('resource', resource ?? RESOURCE);
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) url.searchParams.set(k, v);
  return url;
}

/**
 * Registers a native client (unless `clientId` is given) and completes one authorization-code flow for RESOURCE as
 * `credentials` (default alice); returns the code redemption result.
 */
export async function loginFlow(
  as: { url: string },
  browser = new Browser(),
  clientId?: string,
  credentials: { username: string; password: string } = USER,
) {
  const redirectUri = 'http://127.0.0.1:4711/callback';
  let id = clientId;
  if (!id) {
    const reg = await register(as, { redirect_uris: [redirectUri], client_name: 'Test client' });
    if (reg.status !== 201) throw new Error(`registration failed: ${JSON.stringify(reg.body)}`);
    id = String(reg.body['client_id']);
  }
  const { verifier, challenge } = pkce();
  const { callback } = await browser.authorize(
    authorizationUrl(as, { clientId: id, redirectUri, challenge }),
    redirectUri,
    { credentials },
  );
  if (!callback?.searchParams.get('code')) throw new Error(`no code: ${callback?.href}`);
  const code = callback.searchParams.get('code')!;
  const redeem = () =>
    token(as, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
      client_id: id!,
      resource: RESOURCE,
    });
  const first = await redeem();
  return { clientId: id, code, callback, first, redeem, browser, redirectUri };
}

export function decodeJwt(jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8'));
}

/** A host serving client ID metadata documents over https on loopback, counting how often each is fetched. */
export interface DocumentHost {
  /** e.g. `https://127.0.0.1:40123`; a document at path `/x.json` has the client ID `${base}/x.json`. */
  base: string;
  documents: Map<string, Record<string, unknown>>;
  fetches: Map<string, number>;
  close(): void;
}

/** A fresh self-signed certificate for 127.0.0.1 (PEM key and certificate), made with the openssl command line. */
export function selfSignedIdentity(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-cert-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-days',
      '1',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ],
    { stdio: 'ignore' },
  );
  const identity = {
    key: readFileSync(join(dir, 'key.pem'), 'utf8'),
    cert: readFileSync(join(dir, 'cert.pem'), 'utf8'),
  };
  rmSync(dir, { recursive: true, force: true });
  return identity;
}

/**
 * Starts a {@link DocumentHost} with a fresh self-signed certificate. CIMD requires https, so the calling test
 * worker must trust it: set `NODE_TLS_REJECT_UNAUTHORIZED=0` in that test file only.
 */
export async function startDocumentHost(): Promise<DocumentHost> {
  const identity = selfSignedIdentity();
  const documents = new Map<string, Record<string, unknown>>();
  const fetches = new Map<string, number>();
  const host = createHttpsServer(identity, (req, res) => {
    const path = req.url ?? '/';
    fetches.set(path, (fetches.get(path) ?? 0) + 1);
    const doc = documents.get(path);
    if (!doc) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=600' });
    res.end(JSON.stringify(doc));
  });
  await new Promise<void>((resolve) => host.listen(0, '127.0.0.1', resolve));
  const base = `https://127.0.0.1:${(host.address() as AddressInfo).port}`;
  return { base, documents, fetches, close: () => host.close() };
}

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type Provider from 'oidc-provider';
import type { Adapter } from 'oidc-provider';
import type { Logger } from 'pino';
import { passwordLogin, upstreamAcr } from './authentication-context.js';
import { escapeHtml, PAGE_HEADERS, page, pageHeadersFor } from './html.js';
import {
  type Branding,
  type ClientView,
  describeScope,
  consentPage as renderConsentPage,
  loginPage as renderLoginPage,
} from './pages.js';
import { clientAddress, type LoginLimiter, type TrustProxy } from './rate-limit.js';
import type { UpstreamIdentity } from './upstream/engine.js';
import { UpstreamError } from './upstream/errors.js';
import type { Account, Authenticator } from './users.js';

/** The model remembering consent: (account, client) → the grant the user approved. */
export const CONSENT_MODEL = 'GatehouseConsent';

/** The store key of a remembered consent. */
export const consentKey = (accountId: string, clientId: string): string =>
  `${encodeURIComponent(accountId)}:${encodeURIComponent(clientId)}`;

const MAX_FORM_BYTES = 16 * 1024;

/** OAuth errors the upstream error page may end an interaction with (the form is the user's, so it is checked). */
const ABORT_ERRORS = new Set(['access_denied', 'temporarily_unavailable', 'server_error']);

const UPSTREAM_LINK = /^\/upstream\/([a-z][a-z0-9-]*)\/link$/;

/** Pending links (outside an authorization request) use this prefix where logins use the interaction uid. */
const LINK_PREFIX = 'link.';

const EXPIRED_PAGE = (message = 'Go back to the application and start again.') =>
  page('Sign-in expired', `<h1>This sign-in has expired</h1><p>${escapeHtml(message)}</p>`);

function seeOther(res: ServerResponse, location: string): void {
  res.writeHead(303, { location, 'cache-control': 'no-store' });
  res.end();
}

function send(res: ServerResponse, status: number, html: string, headers: Record<string, string> = PAGE_HEADERS): void {
  res.writeHead(status, headers);
  res.end(html);
}

/** The application as the consent and device pages show it. */
export function clientView(client: InstanceType<Provider['Client']> | undefined, clientId: string): ClientView {
  const clientUri = client?.metadata()['client_uri'];
  return {
    name: client?.clientName ?? clientId,
    clientId,
    ...(typeof clientUri === 'string' && { uri: clientUri }),
    metadataDocument: /^https:\/\//.test(clientId),
  };
}

/** A consent with no scope to grant and no earlier grant: oidc-provider would end it in `access_denied`. */
function nothingToGrant(details: Awaited<ReturnType<Provider['interactionDetails']>>): boolean {
  const missing = details.prompt.details;
  return (
    details.grantId === undefined &&
    !(missing['missingOIDCScope'] as string[] | undefined)?.length &&
    Object.values((missing['missingResourceScopes'] as Record<string, string[]>) ?? {}).flat().length === 0
  );
}

/** A client that asked for JSON rather than a page (a headless login). */
function prefersJson(req: IncomingMessage): boolean {
  const accept = req.headers.accept ?? '';
  return accept.includes('application/json') && !accept.includes('text/html');
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const type = req.headers['content-type'] ?? '';
  if (!type.startsWith('application/x-www-form-urlencoded')) throw new Error('expected a form submission');
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/**
 * The login and consent steps of the authorization flow, mounted at `/interaction/:uid`.
 *
 * CSRF: every form carries a token that is an HMAC of the interaction id; oidc-provider itself binds the
 * interaction to the browser with its `_interaction` cookie, so a cross-site post has neither.
 */
export function createInteractionHandler(
  provider: Provider,
  options: {
    authenticator: Authenticator;
    /** HMAC keys of the form tokens, shared by every instance (derived from the stored keys); the first signs. */
    formTokenSecrets: () => readonly Buffer[];
    adapter: (model: string) => Adapter;
    loginLimiter: LoginLimiter;
    /** Which proxies' `X-Forwarded-For` names the client address for the login limits. */
    trustProxy?: TrustProxy;
    secure?: boolean;
    logger?: Logger;
    /** Upstream identity providers offered on the login page. */
    upstream?: UpstreamIdentity;
    /** Show the username/password form. Default true. */
    localLogin?: boolean;
    /** Skip the login page and go straight to this upstream. */
    autoUpstream?: string;
    /** The service's name and logo on the pages. */
    branding?: Branding;
    /** A resource's display name and scope descriptions, for the consent page. */
    describeResource?: (indicator: string) => { name?: string; scopes: Record<string, string> } | undefined;
    /** The account signed in, for "Signed in as …" on the consent page. */
    findAccount?: (subject: string) => Promise<Account | undefined>;
  },
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const limits = options.loginLimiter;
  const consents = options.adapter(CONSENT_MODEL);
  const sign = (secret: Buffer, uid: string) => createHmac('sha256', secret).update(uid).digest('base64url');
  const csrfToken = (uid: string) => sign(options.formTokenSecrets()[0]!, uid);
  // Any current key verifies, so a form rendered before a key rotation still posts.
  const csrfValid = (uid: string, token: string | null) => {
    if (!token) return false;
    const actual = Buffer.from(token);
    return options.formTokenSecrets().some((secret) => {
      const expected = Buffer.from(sign(secret, uid));
      return actual.length === expected.length && timingSafeEqual(actual, expected);
    });
  };

  const upstream = options.upstream;
  const localLogin = options.localLogin ?? true;
  const upstreamNames = new Set(upstream?.providers.map((p) => p.name) ?? []);
  const branding = options.branding ?? {};

  function upstreamErrorPage(uid: string, error: UpstreamError, canRetry: boolean): string {
    return page(
      'Sign-in failed',
      `<h1>Sign-in failed</h1>
<p class="error" role="alert">${escapeHtml(error.userMessage)}</p>
<form method="post" action="/interaction/${escapeHtml(uid)}/abort">
  <input type="hidden" name="csrf" value="${escapeHtml(csrfToken(uid))}">
  <input type="hidden" name="error" value="${escapeHtml(ABORT_ERRORS.has(error.error) ? error.error : 'access_denied')}">
  <input type="hidden" name="error_description" value="${escapeHtml(error.description ?? '')}">
  <button type="submit">Back to the application</button>
</form>
${canRetry ? `<p><a href="/interaction/${escapeHtml(uid)}">Try again</a></p>` : ''}`,
    );
  }

  function loginPage(uid: string, clientName: string, error?: string): string {
    return renderLoginPage({
      uid,
      csrf: csrfToken(uid),
      branding,
      clientName,
      upstreams: upstream?.providers ?? [],
      localLogin,
      ...(error !== undefined && { error }),
    });
  }

  /** The consent page for this interaction: the client, the servers and scopes asked for, the account. */
  async function consentPage(
    details: Awaited<ReturnType<Provider['interactionDetails']>>,
    client: InstanceType<Provider['Client']> | undefined,
    redirectHost: string | undefined,
  ): Promise<string> {
    const { uid, params } = details;
    const clientId = String(params['client_id']);
    const missing = (details.prompt.details['missingResourceScopes'] as Record<string, string[]> | undefined) ?? {};
    const requested = [params['resource']].flat().filter((r): r is string => typeof r === 'string');
    const resources = [...new Set([...requested, ...Object.keys(missing)])].map((uri) => {
      const described = options.describeResource?.(uri);
      return {
        uri,
        ...(described?.name !== undefined && { name: described.name }),
        scopes: (missing[uri] ?? []).map((name) =>
          describeScope({
            name,
            ...(described?.scopes[name] !== undefined && { description: described.scopes[name] }),
          }),
        ),
      };
    });
    // oidc-provider lists resource scopes among the OIDC ones too: show each once, under its server.
    const underServers = new Set(Object.values(missing).flat());
    const otherScopes = ((details.prompt.details['missingOIDCScope'] as string[] | undefined) ?? [])
      .filter((name) => !underServers.has(name))
      .map((name) => describeScope({ name }));
    const accountId = String(details.session?.accountId ?? '');
    const account = await options.findAccount?.(accountId).catch(() => undefined);
    const claims = account?.claims ?? {};
    const shown = [claims['name'], claims['email'], claims['preferred_username']].find((c) => typeof c === 'string');
    const label = shown ? `${String(shown)}${shown === accountId ? '' : ` (${accountId})`}` : accountId;
    // "Not you?": the same authorization request again, with prompt=login so that another account can sign in.
    const again = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (name === 'prompt' || value === undefined) continue;
      for (const one of [value].flat()) again.append(name, String(one));
    }
    again.set('prompt', 'login');
    return renderConsentPage({
      uid,
      csrf: csrfToken(uid),
      branding,
      client: clientView(client, clientId),
      resources,
      otherScopes,
      // A device sign-in has no authorization request to repeat with another account.
      account: { label, ...(redirectHost !== undefined && { switchUrl: `/auth?${again}` }) },
      ...(redirectHost !== undefined && { redirectHost }),
      approvedBefore: details.grantId !== undefined,
    });
  }

  function nothingToApprovePage(
    uid: string,
    clientName: string,
    redirectHost: string | undefined,
    resources: unknown[],
  ): string {
    const names = resources.map((r) => `<code>${escapeHtml(String(r))}</code>`).join(', ');
    return page(
      'Nothing to authorize',
      `<h1>Nothing to authorize</h1>
<p><strong>${escapeHtml(clientName)}</strong> asked for access to ${names || 'a resource'}, which has no scopes configured and
none were requested, so no access can be granted. The administrator can give it scopes
(<code>--resource URL=scope</code>).</p>
<p>${redirectHost === undefined ? 'Your device will be told.' : `You will be sent back to <strong>${escapeHtml(redirectHost)}</strong>.`}</p>
<form method="post" action="/interaction/${escapeHtml(uid)}/confirm">
  <input type="hidden" name="csrf" value="${escapeHtml(csrfToken(uid))}">
  <button type="submit" name="decision" value="deny">Back to the application</button>
</form>`,
    );
  }

  const linkCookie = options.secure ? '__Secure-gh_upstream_link' : 'gh_upstream_link';
  const readLinkCookie = (req: IncomingMessage): string | undefined => {
    for (const part of (req.headers.cookie ?? '').split(';')) {
      const [name, ...value] = part.trim().split('=');
      if (name === linkCookie) return value.join('=');
    }
    return undefined;
  };
  const setLinkCookie = (value: string, maxAge: number) =>
    `${linkCookie}=${value}; Path=/upstream; HttpOnly; SameSite=Lax; Max-Age=${maxAge}${options.secure ? '; Secure' : ''}`;

  /**
   * `GET /upstream/<name>/link[?scope=…]`: a signed-in user (Gatehouse session) grants an upstream again, or links
   * one more, outside an authorization request. The round trip is bound to this browser by a short-lived cookie.
   */
  async function linkUpstream(req: IncomingMessage, res: ServerResponse, name: string, url: URL): Promise<void> {
    const target = upstream!.providers.find((p) => p.name === name);
    if (!target) return send(res, 404, page('Not found', '<h1>No such sign-in option</h1>'));
    const session = await provider.Session.get({ req, res, secure: options.secure === true } as never);
    const accountId = (session as { accountId?: string }).accountId;
    if (!accountId) {
      return send(
        res,
        401,
        page(
          `Connect ${target.displayName}`,
          `<h1>Connect ${escapeHtml(target.displayName)}</h1>
<p>Your sign-in here has expired. Sign in to the application again and choose <strong>Sign in with ${escapeHtml(
            target.displayName,
          )}</strong>; approve the access ${escapeHtml(target.displayName)} asks for.</p>`,
        ),
      );
    }
    const scopes = (url.searchParams.get('scope') ?? '').split(' ').filter((s) => /^[\x21-\x7e]{1,200}$/.test(s));
    const linkId = randomBytes(24).toString('base64url');
    try {
      const { authorizationUrl } = await upstream!.beginUpstreamLogin({
        provider: name,
        interactionUid: `${LINK_PREFIX}${linkId}`,
        scopes,
        linkTo: accountId,
      });
      res.writeHead(303, {
        location: authorizationUrl,
        'cache-control': 'no-store',
        'set-cookie': setLinkCookie(linkId, 600),
      });
      res.end();
    } catch (error) {
      if (!(error instanceof UpstreamError)) throw error;
      send(
        res,
        error.status >= 500 ? 503 : 400,
        page(
          'Connection failed',
          `<h1>Connection failed</h1>
<p class="error" role="alert">${escapeHtml(error.userMessage)}</p>`,
        ),
      );
    }
  }

  async function finishLink(req: IncomingMessage, res: ServerResponse, interactionUid: string, url: URL) {
    const expected = Buffer.from(interactionUid.slice(LINK_PREFIX.length));
    const actual = Buffer.from(readLinkCookie(req) ?? '');
    const clear = { 'set-cookie': setLinkCookie('', 0) };
    if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) {
      return send(res, 400, EXPIRED_PAGE('This response does not belong to this browser. Start again.'), {
        ...PAGE_HEADERS,
        ...clear,
      });
    }
    try {
      const result = await upstream!.completeUpstreamLogin({ callbackUrl: url, interactionUid });
      const name = upstream!.providers.find((p) => p.name === result.upstream)?.displayName ?? result.upstream;
      options.logger?.info({ upstream: result.upstream, subject: result.subject }, 'upstream linked');
      return send(
        res,
        200,
        page(
          `${name} connected`,
          `<h1>${escapeHtml(name)} is connected</h1><p>Go back to the application and try again.</p>`,
        ),
        { ...PAGE_HEADERS, ...clear },
      );
    } catch (error) {
      if (!(error instanceof UpstreamError)) throw error;
      options.logger?.info({ upstream: error.upstream, reason: error.reason }, 'upstream link failed');
      return send(
        res,
        error.status >= 500 ? 503 : 400,
        page(
          'Connection failed',
          `<h1>Connection failed</h1><p class="error" role="alert">${escapeHtml(error.userMessage)}</p>`,
        ),
        { ...PAGE_HEADERS, ...clear },
      );
    }
  }

  return async function interactionHandler(req, res) {
    const url = new URL(req.url ?? '/', 'http://localhost');

    // The fixed redirect URI registered upstream. oidc-provider's interaction cookie is scoped to
    // /interaction/<uid>, so this only routes the browser there; the cookie then proves it is the same browser.
    if (upstream && url.pathname === '/upstream/callback') {
      try {
        const { interactionUid } = await upstream.resolveUpstreamCallback(url);
        if (interactionUid.startsWith(LINK_PREFIX)) return finishLink(req, res, interactionUid, url);
        return seeOther(res, `/interaction/${encodeURIComponent(interactionUid)}/upstream/callback${url.search}`);
      } catch (error) {
        if (!(error instanceof UpstreamError)) throw error;
        return send(res, 400, EXPIRED_PAGE(error.userMessage));
      }
    }
    const link = UPSTREAM_LINK.exec(url.pathname);
    if (upstream && link) return linkUpstream(req, res, link[1]!, url);

    const [, , uidFromPath, action, sub] = url.pathname.split('/');
    let details: Awaited<ReturnType<Provider['interactionDetails']>>;
    try {
      details = await provider.interactionDetails(req, res);
    } catch {
      send(res, 400, EXPIRED_PAGE());
      return;
    }
    const { uid, prompt, params } = details;
    if (uidFromPath !== uid) {
      send(res, 400, page('Invalid request', '<h1>Invalid request</h1>'));
      return;
    }
    const client = await provider.Client.find(String(params['client_id']));
    const clientName = client?.clientName ?? String(params['client_id']);
    const formHeaders = pageHeadersFor(String(params['redirect_uri']), branding.logoUrl);

    if (req.method === 'GET' && action === 'upstream' && upstream && sub) {
      if (prompt.name !== 'login') {
        return send(res, 400, page('Invalid request', '<h1>Invalid request</h1><p>You are already signed in.</p>'));
      }
      try {
        if (sub === 'callback') {
          const account = await upstream.completeUpstreamLogin({ callbackUrl: url, interactionUid: uid });
          await provider.interactionFinished(
            req,
            res,
            { login: { accountId: account.subject, acr: upstreamAcr(account.upstream), amr: ['fed'] } },
            { mergeWithLastSubmission: false },
          );
          return;
        }
        const { authorizationUrl } = await upstream.beginUpstreamLogin({ provider: sub, interactionUid: uid });
        return seeOther(res, authorizationUrl);
      } catch (error) {
        if (!(error instanceof UpstreamError)) throw error;
        options.logger?.info(
          { client: String(params['client_id']), upstream: error.upstream, reason: error.reason },
          'upstream sign-in failed',
        );
        const retry = error.reason !== 'login_expired' || sub !== 'callback';
        return send(res, error.status >= 500 ? 503 : 400, upstreamErrorPage(uid, error, retry), formHeaders);
      }
    }

    if (req.method === 'GET' && action === undefined) {
      if (prompt.name === 'login') {
        const requested = typeof params['upstream'] === 'string' ? params['upstream'] : undefined;
        const chosen = requested && upstreamNames.has(requested) ? requested : options.autoUpstream;
        if (chosen) return seeOther(res, `/interaction/${encodeURIComponent(uid)}/upstream/${chosen}`);
        return send(res, 200, loginPage(uid, clientName), formHeaders);
      }
      // A device sign-in (RFC 8628) has no redirect: the user goes back to the device.
      const redirectUri = typeof params['redirect_uri'] === 'string' ? params['redirect_uri'] : undefined;
      const redirect = redirectUri === undefined ? null : URL.parse(redirectUri);
      const redirectHost = redirectUri === undefined ? undefined : redirect?.host || redirect?.protocol || redirectUri;
      // oidc-provider issues nothing without a granted scope: say so, rather than offer an approval that fails.
      if (nothingToGrant(details)) {
        return send(
          res,
          200,
          nothingToApprovePage(uid, clientName, redirectHost, [params['resource']].flat()),
          formHeaders,
        );
      }
      return send(res, 200, await consentPage(details, client, redirectHost), formHeaders);
    }

    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'GET, POST' });
      res.end();
      return;
    }
    let form: URLSearchParams;
    try {
      form = await readForm(req);
    } catch (error) {
      send(res, 400, page('Invalid request', `<h1>Invalid request</h1><p>${escapeHtml((error as Error).message)}</p>`));
      return;
    }
    if (!csrfValid(uid, form.get('csrf'))) {
      send(res, 403, page('Invalid request', '<h1>Invalid request</h1><p>The form token is missing or wrong.</p>'));
      return;
    }

    if (action === 'abort') {
      const error = form.get('error') ?? '';
      await provider.interactionFinished(
        req,
        res,
        {
          error: ABORT_ERRORS.has(error) ? error : 'access_denied',
          error_description: (form.get('error_description') ?? '').slice(0, 300) || 'The sign-in was not completed.',
        },
        { mergeWithLastSubmission: false },
      );
      return;
    }

    if (action === 'login' && prompt.name === 'login' && localLogin) {
      const username = (form.get('username') ?? '').slice(0, 256);
      const address = clientAddress(req, options.trustProxy);
      const wait = await limits.wait(address, username);
      if (wait > 0) {
        options.logger?.warn({ client: String(params['client_id']) }, 'login rate limited');
        const message = `Too many failed sign-in attempts. Try again in ${wait} seconds.`;
        res.setHeader('retry-after', String(wait));
        if (prefersJson(req)) {
          res.writeHead(429, { 'content-type': 'application/json', 'cache-control': 'no-store' });
          res.end(JSON.stringify({ error: 'temporarily_unavailable', error_description: message }));
          return;
        }
        return send(res, 429, loginPage(uid, clientName, message), formHeaders);
      }
      const account = await options.authenticator.authenticate(username, (form.get('password') ?? '').slice(0, 1024));
      if (!account) {
        await limits.failure(address, username);
        options.logger?.info({ client: String(params['client_id']) }, 'login failed');
        return send(res, 401, loginPage(uid, clientName, 'Invalid username or password.'), formHeaders);
      }
      await limits.success(address, username);
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId: account.subject, ...passwordLogin(account) } },
        {
          mergeWithLastSubmission: false,
        },
      );
      return;
    }

    if (action === 'confirm' && prompt.name === 'consent') {
      const nothing = nothingToGrant(details);
      if (form.get('decision') !== 'approve' || nothing) {
        await provider.interactionFinished(
          req,
          res,
          {
            error: 'access_denied',
            error_description: nothing
              ? 'The resource has no scopes configured and none were requested.'
              : 'The user denied the request.',
          },
          { mergeWithLastSubmission: false },
        );
        return;
      }
      const accountId = details.session?.accountId;
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId, clientId: String(params['client_id']) });
      if (!grant) throw new Error('grant not found');
      const missingScope = details.prompt.details['missingOIDCScope'] as string[] | undefined;
      if (missingScope) grant.addOIDCScope(missingScope.join(' '));
      const missingClaims = details.prompt.details['missingOIDCClaims'] as string[] | undefined;
      if (missingClaims) grant.addOIDCClaims(missingClaims);
      const missingResource = details.prompt.details['missingResourceScopes'] as Record<string, string[]> | undefined;
      for (const [indicator, scopes] of Object.entries(missingResource ?? {}))
        grant.addResourceScope(indicator, scopes);
      const grantId = await grant.save();
      if (accountId) {
        await consents.upsert(consentKey(accountId, String(params['client_id'])), { grantId } as never, 14 * 24 * 3600);
      }
      await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      return;
    }

    send(res, 400, page('Invalid request', '<h1>Invalid request</h1><p>This step does not match the sign-in.</p>'));
  };
}

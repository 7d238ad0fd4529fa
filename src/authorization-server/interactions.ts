import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type Provider from 'oidc-provider';
import type { Adapter } from 'oidc-provider';
import type { Logger } from 'pino';
import { escapeHtml, PAGE_HEADERS, page, pageHeadersFor } from './html.js';
import { type LoginRateLimit, RateLimiter } from './rate-limit.js';
import type { Authenticator } from './users.js';

/** The model remembering consent: (account, client) → the grant the user approved. */
export const CONSENT_MODEL = 'GatehouseConsent';

/** The store key of a remembered consent. */
export const consentKey = (accountId: string, clientId: string): string =>
  `${encodeURIComponent(accountId)}:${encodeURIComponent(clientId)}`;

const MAX_FORM_BYTES = 16 * 1024;

function send(res: ServerResponse, status: number, html: string, headers: Record<string, string> = PAGE_HEADERS): void {
  res.writeHead(status, headers);
  res.end(html);
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
    csrfSecret: Buffer;
    adapter: (model: string) => Adapter;
    rateLimit?: LoginRateLimit;
    secure?: boolean;
    logger?: Logger;
  },
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const perUser = new RateLimiter(options.rateLimit);
  const perAddress = new RateLimiter({
    attempts: (options.rateLimit?.attempts ?? 10) * 5,
    windowSeconds: options.rateLimit?.windowSeconds ?? 300,
  });
  const consents = options.adapter(CONSENT_MODEL);
  const csrfToken = (uid: string) => createHmac('sha256', options.csrfSecret).update(uid).digest('base64url');
  const csrfValid = (uid: string, token: string | null) => {
    if (!token) return false;
    const expected = Buffer.from(csrfToken(uid));
    const actual = Buffer.from(token);
    return actual.length === expected.length && timingSafeEqual(actual, expected);
  };

  function loginPage(uid: string, clientName: string, error?: string): string {
    return page(
      'Sign in',
      `<h1>Sign in</h1>
<p>to continue to <strong>${escapeHtml(clientName)}</strong></p>
${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="on">
  <input type="hidden" name="csrf" value="${escapeHtml(csrfToken(uid))}">
  <label for="username">Username</label>
  <input id="username" name="username" type="text" autocomplete="username" required autofocus>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <button type="submit">Sign in</button>
</form>`,
    );
  }

  function consentPage(
    uid: string,
    clientName: string,
    redirectHost: string,
    scopes: string[],
    approvedBefore: boolean,
  ): string {
    const items = scopes.length
      ? scopes.map((scope) => `<li><code>${escapeHtml(scope)}</code></li>`).join('')
      : '<li>basic access</li>';
    const what =
      approvedBefore && scopes.length === 0
        ? `<p>You approved <strong>${escapeHtml(clientName)}</strong> before. Apps on this device can claim its name, so please confirm it is you who started this sign-in.</p>`
        : `<p><strong>${escapeHtml(clientName)}</strong> wants to access your account with:</p>
<ul>${items}</ul>`;
    return page(
      'Authorize access',
      `<h1>Authorize ${escapeHtml(clientName)}</h1>
${what}
<p>After you decide, you will be sent to <strong>${escapeHtml(redirectHost)}</strong>.</p>
<form method="post" action="/interaction/${escapeHtml(uid)}/confirm">
  <input type="hidden" name="csrf" value="${escapeHtml(csrfToken(uid))}">
  <button type="submit" name="decision" value="approve">Approve</button>
  <button type="submit" name="decision" value="deny" class="secondary">Deny</button>
</form>`,
    );
  }

  return async function interactionHandler(req, res) {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const [, , uidFromPath, action] = url.pathname.split('/');
    let details: Awaited<ReturnType<Provider['interactionDetails']>>;
    try {
      details = await provider.interactionDetails(req, res);
    } catch {
      send(
        res,
        400,
        page('Sign-in expired', '<h1>This sign-in has expired</h1><p>Go back to the application and start again.</p>'),
      );
      return;
    }
    const { uid, prompt, params } = details;
    if (uidFromPath !== uid) {
      send(res, 400, page('Invalid request', '<h1>Invalid request</h1>'));
      return;
    }
    const client = await provider.Client.find(String(params['client_id']));
    const clientName = client?.clientName ?? String(params['client_id']);
    const formHeaders = pageHeadersFor(String(params['redirect_uri']));

    if (req.method === 'GET' && action === undefined) {
      if (prompt.name === 'login') return send(res, 200, loginPage(uid, clientName), formHeaders);
      const scopes = [
        ...new Set([
          ...((details.prompt.details['missingOIDCScope'] as string[] | undefined) ?? []),
          ...Object.values((details.prompt.details['missingResourceScopes'] as Record<string, string[]>) ?? {}).flat(),
        ]),
      ];
      const redirect = URL.parse(String(params['redirect_uri']));
      const redirectHost = redirect?.host || redirect?.protocol || String(params['redirect_uri']);
      return send(
        res,
        200,
        consentPage(uid, clientName, redirectHost, scopes, details.grantId !== undefined),
        formHeaders,
      );
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

    if (action === 'login' && prompt.name === 'login') {
      const username = (form.get('username') ?? '').slice(0, 256);
      const address = req.socket.remoteAddress ?? 'unknown';
      const userKey = `${address}\n${username}`;
      const wait = Math.max(perUser.blocked(userKey), perAddress.blocked(address));
      if (wait > 0) {
        options.logger?.warn({ client: String(params['client_id']) }, 'login rate limited');
        res.setHeader('retry-after', String(wait));
        return send(
          res,
          429,
          loginPage(uid, clientName, `Too many failed sign-in attempts. Try again in ${wait} seconds.`),
          formHeaders,
        );
      }
      const account = await options.authenticator.authenticate(username, (form.get('password') ?? '').slice(0, 1024));
      if (!account) {
        perUser.failure(userKey);
        perAddress.failure(address);
        options.logger?.info({ client: String(params['client_id']) }, 'login failed');
        return send(res, 401, loginPage(uid, clientName, 'Invalid username or password.'), formHeaders);
      }
      perUser.success(userKey);
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId: account.subject } },
        {
          mergeWithLastSubmission: false,
        },
      );
      return;
    }

    if (action === 'confirm' && prompt.name === 'consent') {
      if (form.get('decision') !== 'approve') {
        await provider.interactionFinished(
          req,
          res,
          { error: 'access_denied', error_description: 'The user denied the request.' },
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

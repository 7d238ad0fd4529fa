// The comparison subject of bench/authorization-server.mjs: plain oidc-provider (the version Gatehouse depends on)
// on its built-in memory adapter, configured like `gatehouse serve`'s defaults where the benchmark touches them:
// authorization code + PKCE S256, resource indicators with JWT (RFC 9068) access tokens signed RS256, rotated
// refresh tokens, the same lifetimes, one pre-registered public native client. Its login and consent are the
// smallest honest ones: a page with a form (HMAC form token bound to the interaction), a scrypt password check with
// Node's default cost (what Gatehouse's users file uses), and a grant saved on consent. The same HTTP round trips as
// Gatehouse's pages: GET login page, POST login, GET consent page, POST consent.
//
//   node bench/oidc-provider-server.mjs USERS_FILE CLIENTS_JSON RESOURCE
//
// Prints `listening on http://127.0.0.1:PORT` on stderr, like `gatehouse serve`.
import { createHmac, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { promisify } from 'node:util';
import { exportJWK, generateKeyPair } from 'jose';
import Provider, { errors } from 'oidc-provider';

const scryptAsync = promisify(scrypt);
const [usersFile, clientsJson, resource] = process.argv.slice(2);
const users = new Map(JSON.parse(readFileSync(usersFile, 'utf8')).users.map((u) => [u.username, u.passwordHash]));
const formSecret = randomBytes(32);

async function passwordMatches(password, encoded) {
  const [scheme, salt, hash] = String(encoded).split('$');
  if (scheme !== 'scrypt') return false;
  const expected = Buffer.from(hash, 'base64url');
  const actual = await scryptAsync(password, Buffer.from(salt, 'base64url'), expected.length);
  return timingSafeEqual(actual, expected);
}

const formToken = (uid) => createHmac('sha256', formSecret).update(uid).digest('base64url');
const formTokenValid = (uid, token) => {
  const expected = Buffer.from(formToken(uid));
  const actual = Buffer.from(String(token ?? ''));
  return actual.length === expected.length && timingSafeEqual(actual, expected);
};

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: JSON.parse(clientsJson),
  jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: 'bench', alg: 'RS256', use: 'sig' }] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  responseTypes: ['code'],
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access', 'mcp:tools'],
  clientDefaults: {
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    id_token_signed_response_alg: 'RS256',
  },
  findAccount: async (_ctx, sub) => (users.has(sub) ? { accountId: sub, claims: async () => ({ sub }) } : undefined),
  features: {
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => {
        if (oneOf) return oneOf;
        throw new errors.InvalidTarget('the resource parameter is required');
      },
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, indicator) => {
        if (indicator !== resource) throw new errors.InvalidTarget();
        return {
          scope: 'mcp:tools',
          audience: indicator,
          accessTokenTTL: 3600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  issueRefreshToken: async (_ctx, client, code) =>
    client.grantTypeAllowed('refresh_token') &&
    (code.scopes.has('offline_access') || client.applicationType === 'native'),
  rotateRefreshToken: true,
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    Grant: 14 * 24 * 3600,
    IdToken: 3600,
    Interaction: 3600,
    RefreshToken: 14 * 24 * 3600,
    Session: 14 * 24 * 3600,
  },
});

const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (title, body) =>
  `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body>${body}</body></html>`;
const loginPage = (uid) =>
  page(
    'Sign in',
    `<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<input type="hidden" name="csrf" value="${escapeHtml(formToken(uid))}">
<input name="username" autocomplete="username"><input type="password" name="password">
<button type="submit">Sign in</button></form>`,
  );
const consentPage = (uid, details) =>
  page(
    'Authorize',
    `<p>${escapeHtml(details.params.client_id)} asks for ${escapeHtml(details.params.scope)}</p>
<form method="post" action="/interaction/${escapeHtml(uid)}/confirm">
<input type="hidden" name="csrf" value="${escapeHtml(formToken(uid))}">
<button type="submit" name="decision" value="approve">Allow</button></form>`,
  );

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params } = details;
  const action = new URL(req.url, issuer).pathname.split('/')[3];
  if (req.method === 'GET') {
    return send(res, 200, prompt.name === 'login' ? loginPage(uid) : consentPage(uid, details));
  }
  const form = await readForm(req);
  if (!formTokenValid(uid, form.get('csrf'))) return send(res, 403, page('Invalid', 'bad form token'));
  if (action === 'login' && prompt.name === 'login') {
    const username = form.get('username') ?? '';
    const known = users.get(username);
    if (!known || !(await passwordMatches(form.get('password') ?? '', known))) {
      return send(res, 401, loginPage(uid));
    }
    return provider.interactionFinished(
      req,
      res,
      { login: { accountId: username } },
      { mergeWithLastSubmission: false },
    );
  }
  if (action === 'confirm' && prompt.name === 'consent' && form.get('decision') === 'approve') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes);
    }
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  return send(res, 400, page('Invalid', 'step does not match'));
}

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((error) => {
      if (!res.headersSent) send(res, 500, page('Error', escapeHtml(error.message)));
      else res.end();
    });
    return;
  }
  callback(req, res);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
console.error(`oidc-provider: listening on ${issuer}`);

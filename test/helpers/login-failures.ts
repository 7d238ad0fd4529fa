import { listen, type RunningServer } from '../../src/server/node.js';
import { selfSignedIdentity } from '../authorization-server/helpers.js';
import { type OAuthTestStack, startOAuthTestStack } from '../client/oauth-helpers.js';

/**
 * Real loopback servers that each make a login fail for one reason: an MCP server (`protect()` around an SDK
 * server) whose metadata is not served, a web page, a JSON API, a server that is gone, one with a self-signed
 * certificate, an authorization server refusing dynamic registration and knowing a client only by another
 * redirect URI, and a healthy stack (whose authorization server's own URL is a mistake users make).
 */
export interface LoginFailures {
  /** A healthy stack: its issuer stands for "the AS URL given instead of the MCP URL", and a user may deny there. */
  healthy: OAuthTestStack;
  /** The MCP server answers 401 but serves no protected-resource metadata. */
  noMetadata: OAuthTestStack;
  /** https with a self-signed certificate nobody trusts. */
  selfSigned: OAuthTestStack;
  /** Dynamic registration needs an initial access token; client `fixed-redirect` is registered for another URI. */
  restricted: OAuthTestStack;
  webPage: string;
  jsonApi: string;
  /** A URL nothing listens on (its server was closed). */
  refused: string;
  /** A host name that cannot resolve (RFC 2606 `.invalid`). */
  unresolvable: string;
  close(): Promise<void>;
}

export const FIXED_REDIRECT_CLIENT = 'fixed-redirect';

export async function startLoginFailures(): Promise<LoginFailures> {
  const healthy = await startOAuthTestStack();
  const noMetadata = await startOAuthTestStack({
    front: {
      mcp: (req, res) => {
        if (req.url?.startsWith('/.well-known/')) {
          res.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found');
          return true;
        }
        if (!req.headers.authorization) {
          res.writeHead(401, { 'www-authenticate': 'Bearer' }).end(); // no resource_metadata either
          return true;
        }
        return false;
      },
    },
  });
  const selfSigned = await startOAuthTestStack({ tls: selfSignedIdentity() });
  const restricted = await startOAuthTestStack({
    authorizationServer: {
      registration: { initialAccessToken: 'only-for-the-operator' },
      clients: [
        {
          client_id: FIXED_REDIRECT_CLIENT,
          token_endpoint_auth_method: 'none',
          application_type: 'native',
          redirect_uris: ['http://localhost:1234/oauth/callback'],
          grant_types: ['authorization_code', 'refresh_token'],
          response_types: ['code'],
        },
      ],
    },
  });
  const page: RunningServer = await listen((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<!doctype html><h1>Welcome</h1>');
  });
  const api: RunningServer = await listen((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"items":[],"next":null}');
  });
  const gone = await listen(() => {});
  const refused = `${gone.url}/mcp`;
  await gone.close();
  return {
    healthy,
    noMetadata,
    selfSigned,
    restricted,
    webPage: `${page.url}/`,
    jsonApi: `${api.url}/api/v1/items`,
    refused,
    unresolvable: 'https://mcp.gatehouse-test.invalid/mcp',
    close: async () => {
      await Promise.all([
        healthy.close(),
        noMetadata.close(),
        selfSigned.close(),
        restricted.close(),
        page.close(),
        api.close(),
      ]);
    },
  };
}

/** One cause of a failed login, and what its error must say. */
export interface Cause {
  name: string;
  url: (servers: LoginFailures) => string;
  code: string;
  message: (url: string) => RegExp;
  hint: RegExp;
  /** Whether the hint sends the user to `gatehouse doctor <url>` (when discovery is the problem). */
  doctor: boolean;
}

const literal = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const hostOf = (url: string) => literal(new URL(url).host);

/** The causes every layer (OAuth, Client, CLI) must name, each with its fix. */
export const CAUSES: Cause[] = [
  {
    name: 'a server without protected-resource metadata',
    url: (s) => s.noMetadata.mcpUrl,
    code: 'ERR_NO_RESOURCE_METADATA',
    message: (url) =>
      new RegExp(
        `publishes no protected-resource metadata .*${literal(new URL(url).origin)}/\\.well-known/oauth-protected-resource/mcp → 404`,
      ),
    hint: /must serve it at .*\/\.well-known\/oauth-protected-resource\/mcp/,
    doctor: true,
  },
  {
    name: 'a web page',
    url: (s) => s.webPage,
    code: 'ERR_NOT_MCP_SERVER',
    message: (url) =>
      new RegExp(`^${literal(url)} does not speak MCP: a JSON-RPC POST got HTTP 200 text/html \\(a web page\\)`),
    hint: /must be the server's MCP endpoint/,
    doctor: true,
  },
  {
    name: 'a JSON API',
    url: (s) => s.jsonApi,
    code: 'ERR_NOT_MCP_SERVER',
    message: (url) =>
      new RegExp(`^${literal(url)} does not speak MCP: .*application/json \\(JSON, but not JSON-RPC\\)`),
    hint: /must be the server's MCP endpoint/,
    doctor: true,
  },
  {
    name: "the authorization server's URL instead of the MCP server's",
    url: (s) => s.healthy.issuer,
    code: 'ERR_AUTHORIZATION_SERVER_URL',
    message: (url) => new RegExp(`is an authorization server \\(issuer ${literal(url)}\\), not an MCP server`),
    hint: /Pass the MCP server's URL/,
    doctor: true,
  },
  {
    name: 'a refused connection',
    url: (s) => s.refused,
    code: 'ERR_CONNECTION_REFUSED',
    message: (url) => new RegExp(`Connection refused by ${hostOf(url)}: nothing listens there \\(ECONNREFUSED\\)`),
    hint: /Start the server, or correct the host and port/,
    doctor: false,
  },
  {
    name: 'a host name that does not resolve',
    url: (s) => s.unresolvable,
    code: 'ERR_DNS',
    message: () => /The host name mcp\.gatehouse-test\.invalid does not resolve \(DNS E[A-Z_]+\)/,
    hint: /Check the host name in https:\/\/mcp\.gatehouse-test\.invalid for a typo/,
    doctor: false,
  },
  {
    name: 'a certificate that is not trusted',
    url: (s) => s.selfSigned.mcpUrl,
    code: 'ERR_TLS',
    message: (url) =>
      new RegExp(
        `The TLS certificate of ${hostOf(url)} is not trusted: self-signed certificate \\(DEPTH_ZERO_SELF_SIGNED_CERT\\)`,
      ),
    hint: /NODE_EXTRA_CA_CERTS=/,
    doctor: false,
  },
  {
    name: 'a refused dynamic registration',
    url: (s) => s.restricted.mcpUrl,
    code: 'ERR_REGISTRATION',
    message: () => /refused the dynamic client registration \(HTTP 401: invalid_token \(no access token provided\)\)/,
    hint: /pass clientId .*--client-id/,
    doctor: false,
  },
];

/** The redirect-URI mismatch: a pre-registered client whose registered redirect URI is not the client's. */
export const REDIRECT_MISMATCH = {
  code: 'ERR_REDIRECT_URI_MISMATCH',
  message:
    /refused the redirect URI http:\/\/localhost:\d+\/callback \(HTTP 400\): .*redirect_uri did not match any of the client's registered redirect_uris/,
  hint: /Register http:\/\/localhost:\d+\/callback for this client .*callbackPort \(gatehouse: --callback-port\)/,
};

/** The user pressing Deny on the consent page. */
export const CONSENT_DENIED = {
  code: 'ERR_AUTHORIZATION_DENIED',
  message: /Authorization was refused: access_denied/,
  hint: /denied at the consent page .*choose Approve/,
};

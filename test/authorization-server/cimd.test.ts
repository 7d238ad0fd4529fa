import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  authorizationUrl,
  Browser,
  type DocumentHost,
  pkce,
  type ServedAs,
  startDocumentHost,
  startServedAs,
} from './helpers.js';

// A metadata document host on loopback with a self-signed certificate. Only this test worker trusts it.
process.env['NODE_TLS_REJECT_UNAUTHORIZED'] = '0';

describe('client ID metadata documents (accepted)', () => {
  let as: ServedAs;
  let host: DocumentHost;
  let base: string;
  let documents: DocumentHost['documents'];
  let fetches: DocumentHost['fetches'];

  beforeAll(async () => {
    host = await startDocumentHost();
    ({ base, documents, fetches } = host);
    // Loopback documents are allowed here only because the test says so.
    as = await startServedAs({ clientIdMetadataDocument: { allowPrivateNetworks: true } });
  });
  afterAll(async () => {
    host?.close();
    await as?.close();
  });

  const authorize = async (clientId: string, redirectUri: string) =>
    new Browser().authorize(authorizationUrl(as, { clientId, redirectUri, challenge: pkce().challenge }), redirectUri);

  it('accepts a draft 00 document (no auth method, http logo) and matches loopback redirects on any port', async () => {
    const clientId = `${base}/draft-00.json`;
    documents.set('/draft-00.json', {
      client_id: clientId,
      client_name: 'Draft 00 client',
      client_uri: 'http://example.com',
      logo_uri: 'http://example.com/logo.png',
      redirect_uris: ['http://127.0.0.1/callback', 'http://localhost/callback'],
    });
    const { callback } = await authorize(clientId, 'http://127.0.0.1:61234/callback');
    expect(callback?.searchParams.get('code')).toBeTruthy();
    // Cached: a second authorization does not fetch the document again.
    await authorize(clientId, 'http://localhost:5555/callback');
    expect(fetches.get('/draft-00.json')).toBe(1);
  });

  it('accepts a draft 02 document', async () => {
    const clientId = `${base}/draft-02.json`;
    documents.set('/draft-02.json', {
      client_id: clientId,
      client_name: 'Draft 02 client',
      redirect_uris: ['http://127.0.0.1:3000/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    });
    const { callback } = await authorize(clientId, 'http://127.0.0.1:3000/callback');
    expect(callback?.searchParams.get('code')).toBeTruthy();
  });

  it('refuses documents with secrets, a wrong client_id, or an unsafe redirect', async () => {
    const cases: Array<[string, Record<string, unknown>]> = [
      ['/secret.json', { client_secret: 'x', redirect_uris: ['http://127.0.0.1/callback'] }],
      ['/mismatch.json', { redirect_uris: ['http://127.0.0.1/callback'] }],
      ['/unsafe.json', { redirect_uris: ['http://evil.example.com/callback'] }],
    ];
    for (const [path, doc] of cases) {
      const clientId = `${base}${path}`;
      documents.set(path, { client_id: path === '/mismatch.json' ? `${base}/other.json` : clientId, ...doc });
      const redirect = String((doc['redirect_uris'] as string[])[0]);
      const response = await new Browser().request(
        authorizationUrl(as, { clientId, redirectUri: redirect, challenge: pkce().challenge }),
      );
      expect(response.status, path).toBe(400);
      expect(response.headers.get('location'), path).toBeNull();
    }
  });

  it('refuses a document larger than the size limit', async () => {
    const clientId = `${base}/big.json`;
    documents.set('/big.json', {
      client_id: clientId,
      redirect_uris: ['http://127.0.0.1/callback'],
      client_name: 'x'.repeat(10_000),
    });
    const response = await new Browser().request(
      authorizationUrl(as, { clientId, redirectUri: 'http://127.0.0.1/callback', challenge: pkce().challenge }),
    );
    expect(response.status).toBe(400);
  });
});

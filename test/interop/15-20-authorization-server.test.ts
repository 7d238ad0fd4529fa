import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OAuth } from '../../src/client/index.js';
import {
  authorizationUrl,
  Browser,
  type DocumentHost,
  loginFlow,
  pkce,
  type RunningAs,
  register,
  startAs,
  startDocumentHost,
  token,
} from '../authorization-server/helpers.js';
import { startQuirkyPeer } from './doubles.js';

// CIMD documents are served over https from loopback with a self-signed certificate; only this worker trusts it.
process.env['NODE_TLS_REJECT_UNAUTHORIZED'] = '0';

let noGrace: RunningAs; // oidc-provider's default: a repeated refresh token revokes the grant at once
let grace: RunningAs; // Gatehouse's default behaviour, with a window wide enough for a slow machine
let shortGrace: RunningAs; // a 1 s window, to see reuse after the window
let host: DocumentHost;
let base: string;
let documents: DocumentHost['documents'];

beforeAll(async () => {
  noGrace = await startAs({ refreshTokenGraceSeconds: 0, clientIdMetadataDocument: { allowPrivateNetworks: true } });
  grace = await startAs({ refreshTokenGraceSeconds: 60 });
  shortGrace = await startAs({ refreshTokenGraceSeconds: 1 });
  host = await startDocumentHost();
  ({ base, documents } = host);
}, 60_000);
afterAll(async () => {
  host?.close();
  await Promise.all([noGrace?.close(), grace?.close(), shortGrace?.close()]);
});

const refresh = (as: RunningAs, refreshToken: string, clientId: string) =>
  token(as, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId });

describe('note 15: rotation without grace', () => {
  it('note 15: provoked — with no grace (oidc-provider default) a retried refresh revokes the whole grant', async () => {
    const flow = await loginFlow(noGrace);
    const old = flow.first.body['refresh_token']!;
    const first = await refresh(noGrace, old, flow.clientId);
    expect(first.status).toBe(200);
    const retry = await refresh(noGrace, old, flow.clientId); // the network blip's retry
    expect(retry.status).toBe(400);
    expect(retry.body['error']).toBe('invalid_grant');
    expect((await refresh(noGrace, first.body['refresh_token']!, flow.clientId)).status).toBe(400); // grant gone
  });

  it('note 15: within the grace window a repeat of the just-rotated token returns the same new pair', async () => {
    const flow = await loginFlow(grace);
    const old = flow.first.body['refresh_token']!;
    const first = await refresh(grace, old, flow.clientId);
    const repeat = await refresh(grace, old, flow.clientId);
    expect(repeat.status).toBe(200);
    expect(repeat.body['refresh_token']).toBe(first.body['refresh_token']);
    expect(repeat.body['access_token']).toBe(first.body['access_token']);
    expect((await refresh(grace, first.body['refresh_token']!, flow.clientId)).status).toBe(200);
  });

  it('note 15: reuse after the window still revokes the grant (reuse detection kept)', async () => {
    const flow = await loginFlow(shortGrace);
    const old = flow.first.body['refresh_token']!;
    const first = await refresh(shortGrace, old, flow.clientId);
    expect(first.status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 3000)); // well past the 1 s window
    const late = await refresh(shortGrace, old, flow.clientId);
    expect(late.status).toBe(400);
    expect(late.body['error']).toBe('invalid_grant');
    expect((await refresh(shortGrace, first.body['refresh_token']!, flow.clientId)).status).toBe(400);
  });
});

describe('note 16: loopback ports', () => {
  it('note 16: provoked — a web (exact-match) client’s loopback redirect fails on another port', async () => {
    const web = await register(noGrace, { application_type: 'web', redirect_uris: ['http://localhost:3000/cb'] });
    const response = await new Browser().request(
      authorizationUrl(noGrace, {
        clientId: String(web.body['client_id']),
        redirectUri: 'http://localhost:3001/cb',
        challenge: pkce().challenge,
      }),
    );
    expect(response.status).toBe(400);
    await response.text();
  });

  it('note 16: a CIMD document like Claude Code’s (portless loopback, no application_type) matches any port', async () => {
    const clientId = `${base}/claude-code.json`;
    documents.set('/claude-code.json', {
      client_id: clientId,
      client_name: 'Claude Code',
      redirect_uris: ['http://localhost/callback', 'http://127.0.0.1/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    });
    for (const redirectUri of ['http://localhost:54321/callback', 'http://127.0.0.1:61000/callback']) {
      const { callback } = await new Browser().authorize(
        authorizationUrl(noGrace, { clientId, redirectUri, challenge: pkce().challenge }),
        redirectUri,
      );
      expect(callback?.searchParams.get('code'), redirectUri).toBeTruthy();
    }
  });

  it('note 16: DCR with only loopback redirects and no application_type is native: any port matches', async () => {
    const reg = await register(noGrace, { redirect_uris: ['http://127.0.0.1/callback'] });
    expect(reg.status).toBe(201);
    expect(reg.body['application_type']).toBe('native');
    const redirectUri = 'http://127.0.0.1:53682/callback';
    const { callback } = await new Browser().authorize(
      authorizationUrl(noGrace, { clientId: String(reg.body['client_id']), redirectUri, challenge: pkce().challenge }),
      redirectUri,
    );
    expect(callback?.searchParams.get('code')).toBeTruthy();
  });
});

describe('note 17: CIMD versions', () => {
  it('note 17: accepts a draft 00 document (MCP’s pin: no token_endpoint_auth_method, http logo_uri)', async () => {
    const clientId = `${base}/draft-00.json`;
    documents.set('/draft-00.json', {
      client_id: clientId,
      client_name: 'Draft 00 client',
      client_uri: 'http://example.com',
      logo_uri: 'http://example.com/logo.png',
      redirect_uris: ['http://127.0.0.1/callback'],
    });
    const redirectUri = 'http://127.0.0.1:40001/callback';
    const { callback } = await new Browser().authorize(
      authorizationUrl(noGrace, { clientId, redirectUri, challenge: pkce().challenge }),
      redirectUri,
    );
    expect(callback?.searchParams.get('code')).toBeTruthy();
  });

  it('note 17: accepts a draft 02 document (oidc-provider’s shape)', async () => {
    const clientId = `${base}/draft-02.json`;
    documents.set('/draft-02.json', {
      client_id: clientId,
      client_name: 'Draft 02 client',
      redirect_uris: ['http://127.0.0.1:3000/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      application_type: 'native',
    });
    const redirectUri = 'http://127.0.0.1:3000/callback';
    const { callback } = await new Browser().authorize(
      authorizationUrl(noGrace, { clientId, redirectUri, challenge: pkce().challenge }),
      redirectUri,
    );
    expect(callback?.searchParams.get('code')).toBeTruthy();
  });
});

describe('note 18: one redirect rule set, at registration and at /authorize', () => {
  it('note 18: provoked — a DCR request with a cursor:// redirect and no application_type (Cursor)', async () => {
    const redirectUri = 'cursor://anysphere.cursor-retrieval/oauth/user-gatehouse/callback';
    const reg = await register(noGrace, { client_name: 'Cursor', redirect_uris: [redirectUri] });
    expect(reg.status).toBe(201); // accepted, as native …
    expect(reg.body['application_type']).toBe('native');
    // … and what registered also works at /authorize.
    const { callback } = await new Browser().authorize(
      authorizationUrl(noGrace, { clientId: String(reg.body['client_id']), redirectUri, challenge: pkce().challenge }),
      redirectUri,
    );
    expect(callback?.searchParams.get('code')).toBeTruthy();
  });

  it('note 18: custom schemes are for native clients only, and unsafe redirects fail at registration', async () => {
    const web = await register(noGrace, { application_type: 'web', redirect_uris: ['vscode://vscode.dev/callback'] });
    expect(web.status).toBe(400);
    for (const bad of ['http://app.example.com/cb', 'javascript:alert(1)', 'https://app.example.com/cb#frag']) {
      expect((await register(noGrace, { redirect_uris: [bad] })).status, bad).toBe(400);
    }
  });
});

describe('note 19: unknown or deleted client', () => {
  it('note 19: an unknown client gets 401 invalid_client at the token endpoint', async () => {
    const cases: Array<Record<string, string>> = [
      {
        grant_type: 'authorization_code',
        code: 'x',
        redirect_uri: 'http://127.0.0.1:1/cb',
        code_verifier: 'x'.repeat(43),
      },
      { grant_type: 'refresh_token', refresh_token: 'x' },
    ];
    for (const params of cases) {
      const response = await token(noGrace, { ...params, client_id: 'no-such-client' });
      expect(response.status, params.grant_type).toBe(401);
      expect(response.body['error']).toBe('invalid_client');
    }
  });

  it('note 19: provoked — a deleted client refreshing gets 401 invalid_client, never 400 or 500', async () => {
    const flow = await loginFlow(noGrace);
    await noGrace.adapter('Client').destroy(flow.clientId);
    const response = await refresh(noGrace, flow.first.body['refresh_token']!, flow.clientId);
    expect(response.status).toBe(401);
    expect(response.body['error']).toBe('invalid_client');
  });
});

describe('note 20: IdPs without DCR', () => {
  it('note 20: provoked — an AS without a registration endpoint: DCR is impossible; a pre-registered clientId works', async () => {
    const peer = await startQuirkyPeer(); // advertises no registration_endpoint, like Entra or Google
    try {
      const dcr = new OAuth({ mcpUrl: peer.mcpUrl, tokenStorage: new Map(), login: { username: 'u', password: 'p' } });
      const error = (await dcr.authorize().catch((e: unknown) => e)) as { code?: string; hint?: string };
      expect(error.code).toBe('ERR_REGISTRATION');
      expect(error.hint).toMatch(/clientId/);
      const preRegistered = new OAuth({
        mcpUrl: peer.mcpUrl,
        clientId: 'registered-in-the-idp-console',
        tokenStorage: new Map(),
        login: { username: 'u', password: 'p' },
      });
      await preRegistered.authorize();
      expect(await preRegistered.tokens()).toBeTruthy();
      // The AS side — Gatehouse as the DCR front door with the login delegated upstream — is covered by
      // test/upstream/ (being wired now; see docs/upstream-identity.md).
    } finally {
      await peer.close();
    }
  });
});

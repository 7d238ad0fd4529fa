import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { protect } from '../../src/server/protect.js';
import { SERVE_USER, type ServeProcess, startServeProcess } from '../helpers/serve-process.js';
import { introspectAs, RESOURCE_SERVER_CLIENT, type Slot, startSlot } from '../helpers/serve-stack.js';
import { whoamiMcp } from '../server/helpers.js';
import { freePort } from '../stores/services.js';
import { cli, tempStore } from './helpers.js';

// `gatehouse logout` of a login made with a pre-registered confidential client, against `gatehouse serve`.

const SECRET = 'confidential-cli-secret-0123456789abcdef';

describe('gatehouse logout --client-id --client-secret (a confidential client)', () => {
  let as: ServeProcess;
  let mcp: Slot;
  let port: number;
  const client = { client_id: 'cli-confidential', client_secret: SECRET };

  beforeAll(async () => {
    [mcp, port] = await Promise.all([startSlot(), freePort()]);
    as = await startServeProcess(['--resource', `${mcp.mcpUrl}=mcp:tools`], {
      clients: [
        {
          ...client,
          token_endpoint_auth_method: 'client_secret_basic',
          application_type: 'native',
          redirect_uris: [`http://localhost:${port}/callback`],
          grant_types: ['authorization_code', 'refresh_token'],
          response_types: ['code'],
        },
        { ...RESOURCE_SERVER_CLIENT },
      ],
    });
    mcp.set(
      protect(whoamiMcp(), {
        resource: mcp.mcpUrl,
        authorizationServers: [as.url],
        requiredScopes: ['mcp:tools'],
        verifier: jwtVerifier({ issuer: as.url }),
      }),
    );
  }, 60_000);
  afterAll(async () => {
    await as?.close();
    await mcp?.close();
  });

  /** Logs in headlessly as the confidential client; returns the stored refresh token. */
  async function login(store: string): Promise<string> {
    const args = ['--client-id', client.client_id, '--client-secret', SECRET, '--callback-port', String(port)];
    const result = await cli(
      ['login', mcp.mcpUrl, ...args, '--login', `${SERVE_USER.username}:${SERVE_USER.password}`, '--json'],
      { GATEHOUSE_STORE: store },
    );
    expect(result.status, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ loggedIn: true, refreshable: true, clientId: client.client_id });
    const { TokenStorage } = await import('../../src/storage/tokens.js');
    const { openDefaultTokenStore } = await import('../../src/storage/default.js');
    const storage = new TokenStorage((await openDefaultTokenStore({ directory: store })).store);
    const refreshToken = (await storage.getTokens(mcp.mcpUrl))?.refresh_token;
    expect(refreshToken).toBeTruthy();
    expect((await introspectAs(as.url, refreshToken!)).active).toBe(true);
    return refreshToken!;
  }

  /** The refresh grant as the confidential client: the status and error the token endpoint answers. */
  async function refresh(refreshToken: string): Promise<{ status: number; error?: string }> {
    const response = await fetch(`${as.url}/token`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${client.client_id}:${SECRET}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }),
    });
    const body = (await response.json()) as { error?: string };
    return { status: response.status, error: body.error };
  }

  it('revokes the grant at the authorization server, then deletes the credential', { timeout: 60_000 }, async () => {
    const store = await tempStore();
    try {
      const refreshToken = await login(store.dir);
      const logout = await cli(
        ['logout', mcp.mcpUrl, '--client-id', client.client_id, '--client-secret', SECRET, '--json'],
        { GATEHOUSE_STORE: store.dir },
      );
      expect(logout.status, logout.stderr).toBe(0);
      expect(JSON.parse(logout.stdout)).toEqual([
        expect.objectContaining({ server: mcp.mcpUrl, refreshToken: 'revoked', deleted: true }),
      ]);
      expect((await introspectAs(as.url, refreshToken)).active).toBe(false);
      expect(await refresh(refreshToken)).toEqual({ status: 400, error: 'invalid_grant' });
      expect(JSON.parse((await cli(['status', '--json'], { GATEHOUSE_STORE: store.dir })).stdout)).toEqual([]);
    } finally {
      await store.cleanup();
    }
  });

  it('a wrong secret fails on one line with exit 1, and keeps the credential and the grant', {
    timeout: 60_000,
  }, async () => {
    const store = await tempStore();
    try {
      const refreshToken = await login(store.dir);
      const logout = await cli(
        ['logout', mcp.mcpUrl, '--client-id', client.client_id, '--client-secret', 'not-the-secret'],
        { GATEHOUSE_STORE: store.dir },
      );
      expect(logout.status).toBe(1);
      const [error, fix, ...rest] = logout.stderr.trimEnd().split('\n');
      expect(rest).toEqual([]);
      expect(error).toMatch(/^gatehouse logout: .*refused the client credentials.*invalid_client/);
      expect(error).toContain(client.client_id);
      expect(fix).toMatch(/^fix: .*--client-secret/);
      // Nothing lost: the credential is still stored and usable, and the grant is still active.
      const status = await cli(['status', mcp.mcpUrl, '--json'], { GATEHOUSE_STORE: store.dir });
      expect(status.status).toBe(0);
      expect(JSON.parse(status.stdout)).toMatchObject({ state: 'valid', refreshable: true });
      expect((await introspectAs(as.url, refreshToken)).active).toBe(true);
      const call = await cli(['call', mcp.mcpUrl, 'whoami', '--json'], { GATEHOUSE_STORE: store.dir });
      expect(call.status, call.stderr).toBe(0);
      // Without the flags, logout authenticates with the secret login stored, and revokes.
      const again = await cli(['logout', mcp.mcpUrl], { GATEHOUSE_STORE: store.dir });
      expect(again.status, again.stderr).toBe(0);
      expect((await introspectAs(as.url, refreshToken)).active).toBe(false);
    } finally {
      await store.cleanup();
    }
  });

  it('--client-secret without --client-id is bad usage', async () => {
    const result = await cli(['logout', mcp.mcpUrl, '--client-secret', SECRET]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('--client-secret needs --client-id');
  });

  it('docs/cli.md says what logout does with a confidential client and a refused secret', async () => {
    const docs = await readFile(fileURLToPath(new URL('../../docs/cli.md', import.meta.url)), 'utf8');
    const section = docs.slice(docs.indexOf('## logout'), docs.indexOf('## tools'));
    expect(section).toContain('--client-secret');
    expect(section).toMatch(/refuse[sd]? the client credentials/);
    expect(section).toMatch(/nothing is deleted/i);
  });
});

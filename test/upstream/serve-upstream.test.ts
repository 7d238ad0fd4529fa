import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  buildUpstreamIdentity,
  mergeUpstreams,
  parseUpstreamResourceFlag,
  type RunningAuthorizationServer,
  readServeConfig,
  serve,
  upstreamSpecName,
} from '../../src/authorization-server/serve.js';
import admin from '../../src/cli/commands/admin.js';
import { headlessAuthorize } from '../../src/client/headless-login.js';
import { generateEncryptionKey } from '../../src/storage/encrypted.js';
import { authorizationUrl, decodeJwt, pkce, register, token } from '../authorization-server/helpers.js';
import { type GithubDouble, startGithubDouble } from './github-double.js';

const RESOURCE = 'http://127.0.0.1:8124/mcp';

async function runAdmin(args: string[]): Promise<{ code: number; lines: Array<Record<string, unknown>> }> {
  const out: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((line: string) => {
    out.push(line);
  });
  const err = vi.spyOn(console, 'error').mockImplementation(() => {});
  try {
    const code = await admin.run(args);
    return { code, lines: out.map((l) => JSON.parse(l) as Record<string, unknown>) };
  } finally {
    log.mockRestore();
    err.mockRestore();
  }
}

describe('upstream flags and config of gatehouse serve', () => {
  it('parses --upstream-resource and merges --upstream flags into the config file entries', () => {
    expect(parseUpstreamResourceFlag('https://api.github.com=github')).toEqual({
      resource: 'https://api.github.com',
      upstream: 'github',
    });
    expect(parseUpstreamResourceFlag('https://www.googleapis.com=google,drive.readonly')).toEqual({
      resource: 'https://www.googleapis.com',
      upstream: 'google',
      scopes: ['drive.readonly'],
    });
    expect(() => parseUpstreamResourceFlag('https://api.github.com')).toThrow(/URL=NAME/);
    expect(upstreamSpecName('corp=oidc:https://idp.example.com')).toBe('corp');
    expect(upstreamSpecName('oidc:https://idp.example.com')).toBe('oidc');
    expect(upstreamSpecName('github')).toBe('github');
    expect(
      mergeUpstreams(
        [{ spec: 'github', clientId: 'from-file', baseUrl: 'http://127.0.0.1:1' }, 'google'],
        ['github', 'entra:common'],
      ),
    ).toEqual([{ spec: 'github', clientId: 'from-file', baseUrl: 'http://127.0.0.1:1' }, 'google', 'entra:common']);
  });

  it('refuses upstreams without an encryption key on a persistent store, and without a client ID', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-upstream-'));
    const base = { port: 0, resources: [{ resource: RESOURCE }], upstreams: ['github'] };
    await expect(serve({ ...base, store: 'sqlite:' }, { env: { GATEHOUSE_DATA_DIR: dataDir } })).rejects.toThrow(
      /GATEHOUSE_UPSTREAM_KEY/,
    );
    await expect(serve({ ...base, store: 'memory' }, { env: { GATEHOUSE_DATA_DIR: dataDir } })).rejects.toThrow(
      /no client ID/,
    );
  });
});

describe('gatehouse serve with --upstream github, and gatehouse admin users', () => {
  let gh: GithubDouble;
  let running: RunningAuthorizationServer;
  let dataDir: string;
  let store: string;
  const key = generateEncryptionKey();

  beforeAll(async () => {
    gh = await startGithubDouble({
      clientId: 'gh-cli',
      clientSecret: 'gh-cli-secret',
      users: [
        {
          id: 77,
          login: 'hubot',
          password: 'beep',
          emails: [{ email: 'hubot@example.com', primary: true, verified: true }],
        },
      ],
    });
    dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-upstream-serve-'));
    store = `sqlite:${join(dataDir, 'as.db')}`;
    const configPath = join(dataDir, 'gatehouse.json');
    await writeFile(
      configPath,
      JSON.stringify({
        store,
        resources: [{ resource: RESOURCE, scopes: ['mcp:tools'] }],
        upstreams: [{ spec: 'github', baseUrl: gh.url, apiBaseUrl: gh.apiUrl, clientSecret: 'gh-cli-secret' }],
        upstreamResources: [{ resource: gh.apiUrl, upstream: 'github' }],
      }),
    );
    const config = { ...(await readServeConfig(configPath)), port: 0 };
    running = await serve(config, {
      env: { GATEHOUSE_DATA_DIR: dataDir, GATEHOUSE_UPSTREAM_KEY: key, GATEHOUSE_UPSTREAM_GITHUB_CLIENT_ID: 'gh-cli' },
    });
  });
  afterAll(async () => {
    await running?.close();
    await gh?.close();
  });

  it('signs in through GitHub only (no local users: straight to GitHub), then lists, shows and unlinks the user', async () => {
    const redirectUri = 'http://127.0.0.1:4712/callback';
    const reg = await register({ url: running.url }, { redirect_uris: [redirectUri] });
    const clientId = String(reg.body['client_id']);
    const { verifier, challenge } = pkce();
    const callback = await headlessAuthorize(
      authorizationUrl(
        { url: running.url },
        { clientId, redirectUri, challenge, resource: RESOURCE, scope: 'mcp:tools' },
      ),
      redirectUri,
      { username: 'hubot', password: 'beep' },
    );
    const tokens = await token(
      { url: running.url },
      {
        grant_type: 'authorization_code',
        code: callback.searchParams.get('code')!,
        redirect_uri: redirectUri,
        code_verifier: verifier,
        client_id: clientId,
        resource: RESOURCE,
      },
    );
    expect(tokens.status).toBe(200);
    const subject = String(decodeJwt(tokens.body['access_token']!)['sub']);
    expect(subject).toMatch(/^u_/);

    vi.stubEnv('GATEHOUSE_UPSTREAM_KEY', key);
    vi.stubEnv('GATEHOUSE_UPSTREAM_GITHUB_CLIENT_ID', 'gh-cli');
    // `gatehouse admin` opens the same store as the server, so it reads the at-rest key from the same data directory.
    vi.stubEnv('GATEHOUSE_DATA_DIR', dataDir);
    try {
      const args = ['--config', join(dataDir, 'gatehouse.json'), '--store', store];
      const list = await runAdmin(['users', 'list', ...args]);
      expect(list.code).toBe(0);
      expect(list.lines).toEqual([
        expect.objectContaining({ subject, email: 'hubot@example.com', upstreams: ['github'] }),
      ]);
      const show = await runAdmin(['users', 'show', subject, ...args]);
      expect(show.lines[0]).toMatchObject({ subject, identities: [{ upstream: 'github', upstreamSubject: '77' }] });
      expect(JSON.stringify(show.lines)).not.toMatch(/gho_|access_token/);
      expect((await runAdmin(['users', 'show', 'u_nobody', ...args])).code).toBe(1);
      // Generated IDs may start with '-': never taken for an option.
      expect((await runAdmin(['users', 'show', '-nobody', ...args])).code).toBe(1);
      // Revoking the user's grant deletes their upstream tokens, as the server does on grant.revoked.
      const built = await buildUpstreamIdentity(
        { ...(await readServeConfig(join(dataDir, 'gatehouse.json'))), store },
        { env: process.env, issuer: running.issuer, dataDir },
      );
      try {
        expect((await built!.identity.getUpstreamAccessToken(subject, 'github')).access_token).toBeTruthy();
        const grants = await runAdmin(['grants', 'list', ...args]);
        const grant = grants.lines.find((l) => l['account'] === subject)!;
        const revoked = await runAdmin(['grants', 'revoke', String(grant['grant_id']), ...args]);
        expect(revoked.lines[0]).toEqual({ revoked_grant: grant['grant_id'], upstream_tokens: 'deleted' });
        await expect(built!.identity.getUpstreamAccessToken(subject, 'github')).rejects.toMatchObject({
          reason: 'not_linked',
        });
      } finally {
        await built!.store.close();
      }

      const unlink = await runAdmin(['users', 'unlink', subject, 'github', ...args]);
      expect(unlink).toMatchObject({ code: 0, lines: [{ unlinked: subject, upstream: 'github' }] });
      const after = await runAdmin(['users', 'list', ...args]);
      expect(after.lines.filter((l) => (l['upstreams'] as string[]).includes('github'))).toEqual([]);
    } finally {
      vi.unstubAllEnvs();
    }
  });
});

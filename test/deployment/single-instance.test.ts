import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jwtVerifier } from '../../src/server/jwt-verifier.js';
import { authorizationUrl, Browser, pkce, register, token } from '../authorization-server/helpers.js';
import { type Instance, PASSWORD, redeemCode, startInstance } from './cluster.js';

const REDIRECT = 'http://127.0.0.1:4713/callback';
const SCOPED = 'http://127.0.0.1:8441/mcp';
const UNSCOPED = 'http://127.0.0.1:8442/mcp';

const freePort = () =>
  new Promise<number>((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });

describe('one gatehouse serve process', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gatehouse-single-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const env = () => ({ GATEHOUSE_SUPERUSER_PASSWORD: PASSWORD, GATEHOUSE_DATA_DIR: dir });

  it('answers every request that reaches its port during start-up', async () => {
    const port = await freePort();
    const table = `gh_ready_${randomBytes(4).toString('hex')}`;
    const outcomes = { refused: 0, answered: 0, other: [] as string[] };
    let stop = false;
    const hammer = (async () => {
      while (!stop) {
        try {
          const response = await fetch(`http://127.0.0.1:${port}/.well-known/oauth-authorization-server`, {
            signal: AbortSignal.timeout(5000),
          });
          await response.arrayBuffer();
          expect(response.status).toBe(200);
          outcomes.answered++;
        } catch (error) {
          const code = (error as { cause?: { code?: string } }).cause?.code;
          if (code === 'ECONNREFUSED') outcomes.refused++;
          else outcomes.other.push(String(code ?? error));
          await new Promise((r) => setTimeout(r, 2));
        }
      }
    })();
    const instance = await startInstance(
      [
        '--port',
        String(port),
        '--store',
        `postgres://postgres@127.0.0.1:5432/postgres?table=${table}`,
        '--superuser',
        'admin',
        '--resource',
        `${SCOPED}=mcp:tools`,
      ],
      env(),
    );
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await hammer;
    instance.process.kill('SIGTERM');
    await new Promise((r) => instance.process.once('exit', r));
    const pg = await import('pg');
    const pool = new pg.default.Pool({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres', max: 1 });
    await pool.query(`DROP TABLE IF EXISTS ${table}, ${table}_login_limits`);
    await pool.end();
    expect(outcomes.other).toEqual([]);
    expect(outcomes.refused).toBeGreaterThan(10);
    expect(outcomes.answered).toBeGreaterThan(0);
  });

  describe('with providerConfiguration in --config and a resource without scopes', () => {
    let instance: Instance;
    beforeAll(async () => {
      const config = join(dir, 'provider.json');
      await writeFile(
        config,
        JSON.stringify({
          providerConfiguration: { features: { userinfo: { enabled: true }, devInteractions: { enabled: true } } },
        }),
      );
      instance = await startInstance(
        [
          '--port',
          '0',
          '--store',
          'memory',
          '--superuser',
          'admin',
          '--resource',
          `${SCOPED}=mcp:tools`,
          '--resource',
          UNSCOPED,
          '--config',
          config,
        ],
        env(),
      );
    });
    afterAll(() => {
      instance?.process.kill('SIGTERM');
    });

    it('keeps the MCP profile when features are added (deep merge) and never turns development logins on', async () => {
      const metadata = (await (await fetch(`${instance.url}/.well-known/openid-configuration`)).json()) as Record<
        string,
        unknown
      >;
      expect(metadata['userinfo_endpoint']).toBeTruthy();
      expect(metadata['registration_endpoint']).toBeTruthy();
      expect(metadata['introspection_endpoint']).toBeTruthy();
      expect(metadata['revocation_endpoint']).toBeTruthy();
      expect(metadata['client_id_metadata_document_supported']).toBe(true);
      expect(metadata['code_challenge_methods_supported']).toEqual(['S256']);
      // Resource indicators still required: an authorization request without `resource` is refused.
      const reg = await register(instance, { redirect_uris: [REDIRECT] });
      const clientId = String(reg.body['client_id']);
      const { challenge } = pkce();
      const browser = new Browser();
      const withoutResource = await browser.authorize(
        authorizationUrl(instance, { clientId, redirectUri: REDIRECT, challenge, resource: '' }),
        REDIRECT,
        { credentials: { username: 'admin', password: PASSWORD } },
      );
      expect(withoutResource.callback?.searchParams.get('error')).toBe('invalid_target');
      // Gatehouse's login page, not oidc-provider's development one.
      const { last } = await new Browser().authorize(
        authorizationUrl(instance, { clientId, redirectUri: REDIRECT, challenge, resource: SCOPED }),
        REDIRECT,
        { credentials: { username: 'admin', password: 'wrong password' } },
      );
      expect(last.status).toBe(401);
      expect(last.html).toContain('Invalid username or password.');
    });

    it('says on the consent page that a resource without scopes cannot be granted, and the flow agrees', async () => {
      const reg = await register(instance, { redirect_uris: [REDIRECT], client_name: 'No scopes' });
      const clientId = String(reg.body['client_id']);
      const { challenge } = pkce();
      const browser = new Browser();
      const { callback } = await browser.authorize(
        authorizationUrl(instance, { clientId, redirectUri: REDIRECT, challenge, resource: UNSCOPED, scope: '' }),
        REDIRECT,
        { credentials: { username: 'admin', password: PASSWORD } },
      );
      const page = browser.pages.find((p) => p.html.includes('Nothing to authorize'));
      expect(page?.html).toContain(`<code>${UNSCOPED}</code>, which has no scopes configured`);
      expect(page?.html).not.toContain('value="approve"');
      // The flow agrees: even a forged "approve" ends with exactly that reason.
      expect(callback?.searchParams.get('error')).toBe('access_denied');
      expect(callback?.searchParams.get('error_description')).toBe(
        'The resource has no scopes configured and none were requested.',
      );
    });

    it('issues an audience-bound token for a scoped resource requested without a scope (its default scopes)', async () => {
      const reg = await register(instance, { redirect_uris: [REDIRECT], client_name: 'Default scopes' });
      const clientId = String(reg.body['client_id']);
      const { verifier, challenge } = pkce();
      const { callback } = await new Browser().authorize(
        authorizationUrl(instance, { clientId, redirectUri: REDIRECT, challenge, resource: SCOPED, scope: '' }),
        REDIRECT,
        { credentials: { username: 'admin', password: PASSWORD } },
      );
      const tokens = await redeemCode(instance, {
        callback,
        redirectUri: REDIRECT,
        verifier,
        clientId,
        resource: SCOPED,
      });
      expect(tokens.status, JSON.stringify(tokens.body)).toBe(200);
      expect(decodeJwt(tokens.body['access_token']!)).toMatchObject({ aud: SCOPED, scope: 'mcp:tools' });
    });
  });

  it('rotates its signing keys on a schedule (--rotate-keys-every, SQLite): published first, then signing; a warm verifier accepts every token', async () => {
    const config = join(dir, 'rotation.json');
    const service = { id: 'scheduled', secret: 'scheduled-rotation-secret-0123456789' };
    await writeFile(
      config,
      JSON.stringify({
        clients: [
          {
            client_id: service.id,
            client_secret: service.secret,
            token_endpoint_auth_method: 'client_secret_basic',
            grant_types: ['client_credentials'],
            response_types: [],
            redirect_uris: [],
          },
        ],
        keys: { activateIn: 3, refreshSeconds: 1 },
      }),
    );
    const instance = await startInstance(
      [
        '--port',
        '0',
        '--store',
        `sqlite:${join(dir, 'rotation.db')}`,
        '--superuser',
        'admin',
        '--resource',
        `${SCOPED}=mcp:tools`,
        '--config',
        config,
        '--rotate-keys-every',
        '6',
      ],
      env(),
    );
    try {
      const issue = async () => {
        const answer = await token(
          instance,
          { grant_type: 'client_credentials', resource: SCOPED, scope: 'mcp:tools' },
          service,
        );
        expect(answer.status, JSON.stringify(answer.body)).toBe(200);
        return answer.body['access_token'] as string;
      };
      const verifier = jwtVerifier({ issuer: instance.url, audience: SCOPED, jwksCooldown: 1, cacheTtl: 0 });
      const first = await issue();
      await verifier.verify(first);
      const firstKid = decodeProtectedHeader(first).kid!;
      const kids = new Set<string>();
      const pendingSeen = new Set<string>();
      const deadline = Date.now() + 9000;
      while (Date.now() < deadline) {
        const value = await issue();
        await verifier.verify(value); // throws on any refusal
        kids.add(decodeProtectedHeader(value).kid!);
        const published = ((await (await fetch(`${instance.url}/jwks`)).json()) as { keys: Array<{ kid: string }> })
          .keys;
        for (const key of published) if (!kids.has(key.kid)) pendingSeen.add(key.kid);
        await new Promise((r) => setTimeout(r, 100));
      }
      // It rotated on its own: a later key signed, and every kid that signed after the first was published before.
      const later = [...kids].filter((kid) => kid !== firstKid);
      expect(later.length).toBeGreaterThan(0);
      for (const kid of later) expect(pendingSeen).toContain(kid);
    } finally {
      instance.process.kill('SIGTERM');
    }
  }, 60_000);
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, OAuth } from '../../src/client/index.js';
import { GatehouseError } from '../../src/oauth/errors.js';
import { memoryStore } from '../../src/storage/index.js';
import { Browser } from '../authorization-server/helpers.js';
import {
  CAUSES,
  CONSENT_DENIED,
  FIXED_REDIRECT_CLIENT,
  type LoginFailures,
  REDIRECT_MISMATCH,
  startLoginFailures,
} from '../helpers/login-failures.js';

// Every failed login names its cause and the fix, through OAuth.authorize() and through Client.connect().
let servers: LoginFailures;
beforeAll(async () => {
  servers = await startLoginFailures();
});
afterAll(() => servers?.close());

const login = { username: 'demo', password: 'demo' };
const oauth = (options: ConstructorParameters<typeof OAuth>[0] = {}) =>
  new OAuth({ login, tokenStorage: memoryStore(), ...options });

async function failure(run: () => Promise<unknown>): Promise<GatehouseError> {
  const error = await run().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(GatehouseError);
  return error as GatehouseError;
}

describe('a failed login names the cause and its fix', () => {
  for (const cause of CAUSES) {
    it(`${cause.name}: OAuth and Client say so`, async () => {
      const url = cause.url(servers);
      const direct = await failure(() => oauth({ mcpUrl: url }).authorize());
      const viaClient = await failure(async () => {
        await using client = new Client(url, { auth: oauth() });
        await client.connect();
      });
      for (const error of [direct, viaClient]) {
        expect(error.code).toBe(cause.code);
        expect(error.message).toMatch(cause.message(url));
        expect(error.hint).toMatch(cause.hint);
        if (cause.doctor) expect(error.hint).toContain(`\`gatehouse doctor ${url.replace(/\/$/, '')}\``);
        else expect(error.hint).not.toContain('gatehouse doctor');
      }
      expect(viaClient.message).not.toMatch(/fetch failed|Version negotiation|SSE error/);
    });
  }

  it('a URL that is not MCP is named without auth too', async () => {
    for (const url of [servers.webPage, servers.healthy.issuer]) {
      const error = await failure(async () => {
        await using client = new Client(url);
        await client.connect();
      });
      expect(error.code).toMatch(/^ERR_(NOT_MCP_SERVER|AUTHORIZATION_SERVER_URL)$/);
      expect(error.hint).toContain(`gatehouse doctor ${url.replace(/\/$/, '')}`);
    }
  });

  it('a redirect URI the authorization server does not know', async () => {
    const mcpUrl = servers.restricted.mcpUrl;
    const direct = await failure(() => oauth({ mcpUrl, clientId: FIXED_REDIRECT_CLIENT }).authorize());
    const viaClient = await failure(async () => {
      await using client = new Client(mcpUrl, { auth: oauth({ clientId: FIXED_REDIRECT_CLIENT }) });
      await client.connect();
    });
    for (const error of [direct, viaClient]) {
      expect(error.code).toBe(REDIRECT_MISMATCH.code);
      expect(error.message).toMatch(REDIRECT_MISMATCH.message);
      expect(error.hint).toMatch(REDIRECT_MISMATCH.hint);
    }
  });

  it('the user denies consent', async () => {
    // The user logs in in "the browser" and presses Deny; the AS redirects back with error=access_denied.
    const deny = async (url: URL) => {
      const { callback } = await new Browser().authorize(url, url.searchParams.get('redirect_uri')!, {
        credentials: login,
        decision: 'deny',
      });
      if (!callback) throw new Error('the authorization server did not redirect back');
      await (await fetch(callback)).text();
    };
    const mcpUrl = servers.healthy.mcpUrl;
    const direct = await failure(() =>
      new OAuth({ mcpUrl, tokenStorage: memoryStore(), redirectHandler: deny }).authorize(),
    );
    const viaClient = await failure(async () => {
      const auth = new OAuth({ tokenStorage: memoryStore(), redirectHandler: deny });
      await using client = new Client(mcpUrl, { auth });
      await client.connect();
    });
    for (const error of [direct, viaClient]) {
      expect(error.code).toBe(CONSENT_DENIED.code);
      expect(error.message).toMatch(CONSENT_DENIED.message);
      expect(error.hint).toMatch(CONSENT_DENIED.hint);
    }
  });
});

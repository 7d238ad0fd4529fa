import { createServer } from 'node:net';
import { afterAll, expect, it } from 'vitest';
import { type ServeProcess, startServeProcess } from '../helpers/serve-process.js';
import { RESOURCE_SERVER_CLIENT, revokeAs, userTokens } from '../helpers/serve-stack.js';
import { callTool, rpc } from './helpers.js';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

let as: ServeProcess | undefined;
afterAll(() => as?.close());

// The example as its header says to run it, against `gatehouse serve` as its docs say to start it. The example's
// server stays up until this test file's worker ends.
it('examples/server-hono.ts works against gatehouse serve: introspection of its JWT access tokens', async () => {
  const resource = `http://127.0.0.1:${await freePort()}/mcp`;
  as = await startServeProcess(['--resource', `${resource}=notes:read,notes:write`], {
    clients: [{ ...RESOURCE_SERVER_CLIENT }],
  });
  Object.assign(process.env, {
    ISSUER: as.url,
    RESOURCE: resource,
    CLIENT_ID: RESOURCE_SERVER_CLIENT.client_id,
    CLIENT_SECRET: RESOURCE_SERVER_CLIENT.client_secret,
  });
  await import('../../examples/server-hono.js');
  const tokens = await userTokens(as.url, resource, 'notes:read');
  const result = await callTool(resource, tokens.body['access_token']!, 'whoami');
  expect(result.content[0]?.text).toBe(JSON.stringify(['notes:read']));
  const mirrored = await (await fetch(new URL('/.well-known/oauth-authorization-server', resource))).json();
  expect(mirrored).toMatchObject({ issuer: as.url, introspection_endpoint: `${as.url}/token/introspection` });
  // The example caches active answers for 30 s: a token revoked before its first use is refused at once.
  const second = await userTokens(as.url, resource, 'notes:read');
  expect(await revokeAs(as.url, second.clientId, second.body['access_token']!)).toBe(200);
  expect((await rpc(resource, 'tools/list', {}, second.body['access_token']!)).status).toBe(401);
});

// docs/login.md, "Machines: MachineAuth": `dpop: true` gets DPoP-bound tokens (RFC 9449, server nonces included).
// A client_credentials MachineAuth through Client against `gatehouse serve` (as a process) and a protect()-ed SDK
// server that requires DPoP with nonces: the call succeeds, the token is bound to the client's key, and the same
// token presented as a plain bearer is refused.
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, MachineAuth } from '../../src/client/index.js';
import { type ServeProcess, startServeProcess } from '../helpers/serve-process.js';
import { type Slot, serveWhoami, startSlot } from '../helpers/serve-stack.js';

const JOB = {
  client_id: 'nightly-job',
  client_secret: 'nightly-job-secret-0123456789abcdef',
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
};

let as: ServeProcess;
let mcp: Slot;
beforeAll(async () => {
  mcp = await startSlot();
  as = await startServeProcess(['--resource', `${mcp.mcpUrl}=mcp:tools,dpop=required`], { clients: [JOB] });
  serveWhoami(mcp, as.url, { dpop: { required: true, nonce: true } });
}, 60_000);
afterAll(async () => {
  await Promise.all([as?.close(), mcp?.close()]);
});

describe('MachineAuth with dpop: true', () => {
  it('calls a tool with a DPoP-bound token, through the resource server’s nonce; the token alone is refused', async () => {
    const auth = new MachineAuth({
      mcpUrl: mcp.mcpUrl,
      clientId: JOB.client_id,
      clientSecret: JOB.client_secret,
      dpop: true,
    });
    await using client = new Client(mcp.mcpUrl, { auth });
    const { data } = await client.callTool<{ clientId: string }>('whoami');
    expect(data.clientId).toBe(JOB.client_id);
    const token = (await auth.tokens())!.access_token;
    expect((decodeJwt(token)['cnf'] as { jkt?: string } | undefined)?.jkt).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const asBearer = await fetch(mcp.mcpUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        authorization: `Bearer ${token}`,
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
    });
    expect(asBearer.status).toBe(401);
  });
});

#!/usr/bin/env node
// Gatehouse's client under the official MCP conformance suite (@modelcontextprotocol/conformance).
//
//   conformance client --command "npm run -s conformance-client --" --suite all
//
// The runner appends the server URL as the last argument and passes the scenario in MCP_CONFORMANCE_SCENARIO,
// its context (client credentials, keys, ...) as JSON in MCP_CONFORMANCE_CONTEXT, and --spec-version in
// MCP_CONFORMANCE_PROTOCOL_VERSION. Gatehouse is loaded from dist/ (run `npm run build` first), or from the
// directory in GATEHOUSE_SRC_DIR (the vitest wrapper transpiles src/ there, so it never tests a stale build).
import net from 'node:net';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

// The runner starts every scenario at once; on a busy machine a loopback connect can take longer than Node's
// 250 ms happy-eyeballs attempt timeout for `localhost`, which then fails as "fetch failed".
net.setDefaultAutoSelectFamilyAttemptTimeout(10_000);

const serverUrl = process.argv.at(-1);
const scenario = process.env.MCP_CONFORMANCE_SCENARIO ?? '';
const context = process.env.MCP_CONFORMANCE_CONTEXT ? JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT) : {};
const protocolVersion = process.env.MCP_CONFORMANCE_PROTOCOL_VERSION;
const base = process.env.GATEHOUSE_SRC_DIR ?? new URL('../../dist', import.meta.url).pathname;
const gatehouse = await import(`${base}/client/oauth.js`);
const machine = await import(`${base}/client/machine.js`).catch(() => undefined);

/** The suite's authorization server redirects straight back; deliver that redirect to our callback server. */
async function followAuthorization(url) {
  const response = await fetch(url, { redirect: 'manual' });
  const location = response.headers.get('location');
  await response.body?.cancel();
  if (!location) throw new Error(`the authorization endpoint answered HTTP ${response.status} without a redirect`);
  const callback = await fetch(new URL(location, url));
  await callback.body?.cancel();
}

function newClient() {
  const options = protocolVersion?.startsWith('2026') ? { versionNegotiation: { mode: { pin: protocolVersion } } } : {};
  return new Client({ name: 'gatehouse-conformance', version: '1.0.0' }, { capabilities: {}, ...options });
}

async function session(transportOptions, { callTool = true } = {}) {
  const client = newClient();
  await client.connect(new StreamableHTTPClientTransport(new URL(serverUrl), transportOptions));
  try {
    const { tools } = await client.listTools();
    if (callTool && tools.length > 0) {
      const tool = tools.find((t) => t.name === 'test-tool') ?? tools[0];
      await client.callTool({ name: tool.name, arguments: {} });
    }
  } finally {
    await client.close();
  }
}

async function interactive() {
  const oauth = new gatehouse.OAuth({
    mcpUrl: serverUrl,
    clientName: 'gatehouse-conformance',
    clientMetadataUrl: 'https://conformance-test.local/client-metadata.json',
    clientId: context.client_id,
    clientSecret: context.client_secret,
    tokenStorage: new Map(),
    redirectHandler: followAuthorization,
    timeoutMs: 20_000,
    dpop: scenario.startsWith('auth/dpop'),
  });
  await session({ fetch: oauth.wrapFetch() });
}

async function machineClient() {
  if (!machine) throw new Error('machine clients are not built');
  const auth = new machine.MachineAuth({
    mcpUrl: serverUrl,
    clientId: context.client_id,
    clientSecret: context.client_secret,
    privateKey: context.private_key_pem,
    algorithm: context.signing_algorithm,
    assertion: context.valid_jwt,
    idJag: context.idp_token_endpoint
      ? { tokenEndpoint: context.idp_token_endpoint, idToken: context.idp_id_token, clientId: context.idp_client_id }
      : undefined,
  });
  await session({ fetch: auth.wrapFetch() });
}

try {
  if (!serverUrl) throw new Error('usage: conformance-client <server-url>');
  if (/^auth\/(client-credentials|wif|enterprise)/.test(scenario)) await machineClient();
  else if (scenario.startsWith('auth/')) await interactive();
  else await session({}, { callTool: scenario === 'tools_call' });
  process.exit(0);
} catch (error) {
  console.error(`[gatehouse-conformance] ${scenario}: ${error?.stack ?? error}`);
  if (error?.cause) console.error('cause:', error.cause);
  if (process.env.GATEHOUSE_CONFORMANCE_DEBUG) console.error(JSON.stringify(context));
  process.exit(1);
}

#!/usr/bin/env node
// Gatehouse's client under the official MCP conformance suite (@modelcontextprotocol/conformance).
//
//   conformance client --command "npm run -s conformance-client --" --suite all
//
// The runner appends the server URL as the last argument and passes the scenario in MCP_CONFORMANCE_SCENARIO,
// its context (client credentials, keys, ...) as JSON in MCP_CONFORMANCE_CONTEXT, and --spec-version in
// MCP_CONFORMANCE_PROTOCOL_VERSION. Every scenario runs through Gatehouse's `Client` (as users do), which negotiates
// the newest protocol version both sides speak. Gatehouse is loaded from dist/ (run `npm run build` first), or from the
// directory in GATEHOUSE_SRC_DIR (the vitest wrapper transpiles src/ there, so it never tests a stale build).
import net from 'node:net';

// The runner starts every scenario at once; on a busy machine a loopback connect can take longer than Node's
// 250 ms happy-eyeballs attempt timeout for `localhost`, which then fails as "fetch failed".
net.setDefaultAutoSelectFamilyAttemptTimeout(10_000);

const serverUrl = process.argv.at(-1);
const scenario = process.env.MCP_CONFORMANCE_SCENARIO ?? '';
const context = process.env.MCP_CONFORMANCE_CONTEXT ? JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT) : {};
const base = process.env.GATEHOUSE_SRC_DIR ?? new URL('../../dist', import.meta.url).pathname;
const { Client, OAuth, MachineAuth } = await import(`${base}/client/index.js`);

/** The suite's authorization server redirects straight back; deliver that redirect to our callback server. */
async function followAuthorization(url) {
  const response = await fetch(url, { redirect: 'manual' });
  const location = response.headers.get('location');
  await response.body?.cancel();
  if (!location) throw new Error(`the authorization endpoint answered HTTP ${response.status} without a redirect`);
  const callback = await fetch(new URL(location, url));
  await callback.body?.cancel();
}

/** What a user's program does with a server: list the tools and call them (with numbers for number arguments). */
async function session(auth, { callTools = true } = {}) {
  const client = new Client(serverUrl, {
    auth,
    clientInfo: { name: 'gatehouse-conformance', version: '1.0.0' },
    // Accept every elicitation without filling anything in: the schema's defaults fill the form.
    elicitationHandler: async () => ({ action: 'accept' }),
  });
  try {
    const tools = await client.listTools();
    if (callTools) {
      for (const tool of tools) {
        const args = Object.fromEntries(
          Object.entries(tool.inputSchema?.properties ?? {}).map(([name, schema]) => [
            name,
            schema?.type === 'number' || schema?.type === 'integer' ? 1 : schema?.type === 'boolean' ? true : 'x',
          ]),
        );
        await client.callTool(tool.name, args, { raiseOnError: false });
      }
    }
  } finally {
    await client.close();
  }
}

async function interactive() {
  const oauth = new OAuth({
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
  await session(oauth, { callTools: true });
}

async function machineClient() {
  const auth = new MachineAuth({
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
  await session(auth, { callTools: false });
}

try {
  if (!serverUrl) throw new Error('usage: conformance-client <server-url>');
  if (/^auth\/(client-credentials|wif|enterprise)/.test(scenario)) await machineClient();
  else if (scenario.startsWith('auth/')) await interactive();
  else await session(undefined);
  process.exit(0);
} catch (error) {
  console.error(`[gatehouse-conformance] ${scenario}: ${error?.stack ?? error}`);
  if (error?.cause) console.error('cause:', error.cause);
  if (process.env.GATEHOUSE_CONFORMANCE_DEBUG) console.error(JSON.stringify(context));
  process.exit(1);
}

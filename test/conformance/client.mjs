#!/usr/bin/env node
// Gatehouse's client under the official MCP conformance suite (@modelcontextprotocol/conformance).
//
//   conformance client --command "npm run -s conformance-client --" --suite all
//
// The runner appends the server URL as the last argument and passes the scenario in MCP_CONFORMANCE_SCENARIO,
// its context (client credentials, keys, ...) as JSON in MCP_CONFORMANCE_CONTEXT, and --spec-version in
// MCP_CONFORMANCE_PROTOCOL_VERSION. Every scenario runs through Gatehouse's `Client` (as users do), speaking that
// version: the runner's mock servers accept any version, so a client left to negotiate would speak its own choice in
// every column. GATEHOUSE_CONFORMANCE_PROTOCOL_VERSION overrides it (`auto`: the newest version both sides speak).
// Gatehouse is loaded from dist/ (run `npm run build` first), or from the directory in GATEHOUSE_SRC_DIR (the vitest
// wrapper transpiles src/ there, so it never tests a stale build).
import net from 'node:net';

// The runner starts every scenario at once; on a busy machine a loopback connect can take longer than Node's
// 250 ms happy-eyeballs attempt timeout for `localhost`, which then fails as "fetch failed".
net.setDefaultAutoSelectFamilyAttemptTimeout(10_000);

const serverUrl = process.argv.at(-1);
const scenario = process.env.MCP_CONFORMANCE_SCENARIO ?? '';
const context = process.env.MCP_CONFORMANCE_CONTEXT ? JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT) : {};
// A 2025 version is spoken through the 2025 handshake offering only it; 2026-07-28 and later through server/discover.
const protocolVersion =
  process.env.GATEHOUSE_CONFORMANCE_PROTOCOL_VERSION ?? process.env.MCP_CONFORMANCE_PROTOCOL_VERSION ?? 'auto';
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

/** Arguments for a tool: the scenario's own (`context.toolCalls`), else a value of each parameter's type. */
function argumentsFor(tool) {
  const given = context.toolCalls?.find((call) => call.name === tool.name);
  if (given) return given.arguments;
  return Object.fromEntries(
    Object.entries(tool.inputSchema?.properties ?? {}).map(([name, schema]) => [
      name,
      schema?.type === 'number' || schema?.type === 'integer' ? 1 : schema?.type === 'boolean' ? true : 'x',
    ]),
  );
}

/** What a user's program does with a server: use everything it offers — tools, resources, prompts. */
async function tour(client, { callTools = true } = {}) {
  const offered = client.sdk().getServerCapabilities() ?? {};
  const tools = await client.listTools();
  if (callTools) {
    for (const tool of tools) await client.callTool(tool.name, argumentsFor(tool), { raiseOnError: false });
  }
  if (offered.resources) {
    for (const resource of await client.listResources()) await client.readResource(resource.uri);
  }
  if (offered.prompts) {
    for (const prompt of await client.listPrompts()) {
      const args = Object.fromEntries((prompt.arguments ?? []).map((argument) => [argument.name, 'x']));
      await client.getPrompt(prompt.name, args);
    }
  }
}

/** What each scenario's user does, when it is more than the tour. */
const SCENARIO_WORK = {
  // Lists the tools only: the mock serves nothing else; the point is that the schema's remote $ref is not fetched.
  'json-schema-ref-no-deref': (client) => client.listTools(),
  // Hands a tool's input schema, as listed, to the echo tool: the server compares it with what it sent.
  'json-schema-2020-12-preservation': async (client) => {
    const tools = await client.listTools();
    const focal = tools.find((tool) => tool.name === 'json_schema_2020_12_tool');
    if (!focal) throw new Error('the server did not list json_schema_2020_12_tool');
    await client.callTool('json_schema_echo', { schema: focal.inputSchema });
  },
  // Lists the skills and loads none: nothing may be read ahead of need.
  'sep-2640-client-no-prefetch': (client) => client.listSkills(),
  // Loads each skill (reads and verifies SKILL.md), then its other files — which a tampered SKILL.md must stop.
  ...Object.fromEntries(
    ['sep-2640-client-verify-digest', 'sep-2640-client-verify-size', 'sep-2640-client-verify-frontmatter'].map(
      (name) => [name, loadSkills],
    ),
  ),
};

async function loadSkills(client) {
  for (const skill of await client.listSkills()) {
    await client.readSkill(skill);
    if (skill.resources === 'dynamic') continue;
    for (const file of skill.resources) if (file.uri !== skill.uri) await client.readSkill(skill, file.uri);
  }
}

async function session(auth, options) {
  const client = new Client(serverUrl, {
    auth,
    clientInfo: { name: 'gatehouse-conformance', version: '1.0.0' },
    // Accept every elicitation without filling anything in: the schema's defaults fill the form.
    elicitationHandler: async () => ({ action: 'accept' }),
    samplingHandler: async () => ({
      role: 'assistant',
      model: 'gatehouse-conformance',
      content: { type: 'text', text: 'ok' },
    }),
    roots: [process.cwd()],
    protocolVersion,
  });
  try {
    await client.connect();
    // The runner keeps stdout: the version each scenario was spoken at goes into the matrix. Said before the work,
    // so a client that refuses what the server serves next still reports it.
    console.log(`negotiated ${client.protocolVersion()}`);
    await (SCENARIO_WORK[scenario] ?? ((c) => tour(c, options)))(client);
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
  await session(oauth);
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
  else await session(undefined, {});
  process.exit(0);
} catch (error) {
  console.error(`[gatehouse-conformance] ${scenario}: ${error?.stack ?? error}`);
  if (error?.cause) console.error('cause:', error.cause);
  if (process.env.GATEHOUSE_CONFORMANCE_DEBUG) console.error(JSON.stringify(context));
  process.exit(1);
}

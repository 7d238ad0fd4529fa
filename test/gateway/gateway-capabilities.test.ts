import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answerServerRequests, CAPABILITIES, SAMPLED_ANSWER } from './everything-tools.js';
import { cleanup, EVERYTHING, type GatewayProcess, headlessOAuth, sdkClient, startGatewayProcess } from './helpers.js';

const SAMPLING_TOOL = 'trigger-sampling-request';

describe('gatehouse gateway: one user, clients with different capabilities, per-user stdio processes', () => {
  let gateway: GatewayProcess;
  beforeAll(async () => {
    gateway = await startGatewayProcess(['--', process.execPath, EVERYTHING]);
  });
  afterAll(cleanup);

  const connect = (capabilities: ConstructorParameters<typeof import('@modelcontextprotocol/client').Client>[1]) => {
    const url = gateway.mcp['mcp']!;
    return sdkClient(url, headlessOAuth(url, 'admin', gateway.password!), capabilities);
  };
  const owners = () =>
    gateway
      .logs()
      .filter((line) => line['msg'] === 'upstream process started')
      .map((line) => String(line['owner']));

  it('a client without sampling first does not decide what a later client with sampling is offered', async () => {
    // mcp-remote's probe connection does exactly this: capabilities {} first, the real client after.
    const probe = await connect({});
    expect((await probe.listTools()).tools.map((t) => t.name)).not.toContain(SAMPLING_TOOL);

    const full = await connect(CAPABILITIES);
    const { requests } = answerServerRequests(full);
    expect((await full.listTools()).tools.map((t) => t.name)).toContain(SAMPLING_TOOL);
    const sampled = await full.callTool({ name: SAMPLING_TOOL, arguments: { prompt: 'hi', maxTokens: 10 } });
    expect(JSON.stringify(sampled.content)).toContain(SAMPLED_ANSWER);
    expect(requests.map((r) => r.method)).toContain('sampling/createMessage');

    // Clients that declare the same capabilities still share the user's process.
    const again = await connect({});
    expect((await again.listTools()).tools.map((t) => t.name)).not.toContain(SAMPLING_TOOL);
    expect(owners()).toHaveLength(2);
    expect(new Set(owners().map((owner) => owner.split('+')[0]))).toEqual(new Set(['user:admin']));
  });
});

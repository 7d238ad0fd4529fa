// The CLI as a process honours HTTPS_PROXY and NODE_EXTRA_CA_CERTS (docs/cli.md, "Network"): an https MCP server and
// authorization server whose certificate a private CA signed, reached through a CONNECT proxy on loopback that
// records its tunnels; the servers record the socket of each request, so "all through the proxy" is checked per request.
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OAuthTestStack } from '../client/oauth-helpers.js';
import { cleanEnv, startProxiedTlsStack } from '../helpers/network.js';
import { cli } from './helpers.js';

describe('gatehouse through HTTPS_PROXY, trusting NODE_EXTRA_CA_CERTS', () => {
  let network: Awaited<ReturnType<typeof startProxiedTlsStack>>;
  let caFile: string;
  let stack: OAuthTestStack;
  let proxy: Awaited<ReturnType<typeof startProxiedTlsStack>>['proxy'];
  const seen: Array<{ peerPort: number; request: string }> = [];
  const record = (req: IncomingMessage) => {
    seen.push({ peerPort: req.socket.remotePort ?? 0, request: `${req.method} ${req.url}` });
    return false;
  };
  /** The test machine's environment without proxy or CA variables, plus `extra`, for `cli()`. */
  const env = (extra: Record<string, string>) => {
    const clean = cleanEnv({ GATEHOUSE_STORE: join(network.dir, 'store'), GATEHOUSE_KEYCHAIN: '0', ...extra });
    const unset = Object.fromEntries(
      Object.keys(process.env)
        .filter((name) => !(name in clean))
        .map((name) => [name, undefined]),
    );
    return { ...unset, ...clean };
  };

  beforeAll(async () => {
    network = await startProxiedTlsStack('cli-network', { as: record, mcp: record });
    ({ caFile, stack, proxy } = network);
  }, 60_000);
  afterAll(async () => {
    await network?.close();
  });

  it('logs in and calls a tool with every request through a CONNECT tunnel, trusting the extra CA', {
    timeout: 90_000,
  }, async () => {
    const variables = env({ HTTPS_PROXY: proxy.url, NODE_EXTRA_CA_CERTS: caFile });
    const login = await cli(['login', stack.mcpUrl, '--login', 'demo:demo'], variables);
    expect(login.status, login.stderr).toBe(0);
    const call = await cli(['call', stack.mcpUrl, 'whoami'], variables);
    expect(call.status, call.stderr).toBe(0);
    expect(call.stdout).toContain('demo');

    expect(new Set(proxy.tunnels.map((t) => t.target))).toEqual(
      new Set([new URL(stack.issuer).host, new URL(stack.mcpUrl).host]),
    );
    const tunnelPorts = new Set(proxy.tunnels.map((t) => t.upstreamPort));
    expect(seen.filter((s) => !tunnelPorts.has(s.peerPort))).toEqual([]);
    expect(seen.map((s) => s.request)).toEqual(
      expect.arrayContaining(['POST /token', 'POST /mcp', 'GET /.well-known/oauth-protected-resource/mcp']),
    );
  });

  it('without NODE_EXTRA_CA_CERTS the certificate is refused, with the cause and a fix', {
    timeout: 60_000,
  }, async () => {
    seen.length = 0;
    proxy.tunnels.length = 0;
    const login = await cli(
      ['login', stack.mcpUrl, '--login', 'demo:demo', '--force'],
      env({ HTTPS_PROXY: proxy.url }),
    );
    expect(login.status).toBe(1);
    const [message, fix] = login.stderr.trimEnd().split('\n').slice(-2);
    expect(message).toMatch(/^gatehouse login: .*certificate/i);
    expect(fix).toMatch(/^fix: .*NODE_EXTRA_CA_CERTS/);
    expect(proxy.tunnels.length).toBeGreaterThan(0);
    expect(seen).toEqual([]); // no request got through the TLS handshake
  });
});

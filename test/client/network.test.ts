// Proxies and extra CAs: a user's program (a child process, so HTTPS_PROXY, NO_PROXY and NODE_EXTRA_CA_CERTS are
// real environment variables, read the way Node and the client read them) logs in, refreshes, calls a tool and
// runs diagnose() against an https MCP server and authorization server whose certificate a private CA signed.
// A CONNECT proxy written here counts the tunnels it opens and where to; the servers record the socket each
// request came on, so "every request went through the proxy" is checked request by request.
import { execFile } from 'node:child_process';
import type { IncomingMessage } from 'node:http';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, startProxiedTlsStack } from '../helpers/network.js';
import { buildClientForChildren, type OAuthTestStack } from './oauth-helpers.js';

const child = fileURLToPath(new URL('./fixtures/proxy-child.mjs', import.meta.url));

type ChildOutcome = { subjects: unknown[]; failed: string[] } | { error: string[] };

function runChild(src: string, mcpUrl: string, env: Record<string, string>): Promise<ChildOutcome> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [child, src, mcpUrl],
      { env: cleanEnv(env), timeout: 60_000 },
      (error, stdout, stderr) => {
        const line = stdout.trim().split('\n').at(-1);
        if (!line) reject(new Error(`the child printed nothing (${error?.message ?? ''}): ${stderr}`));
        else resolve(JSON.parse(line) as ChildOutcome);
      },
    );
  });
}

describe('proxies and extra CAs, for every request the client makes', () => {
  let src: string;
  let network: Awaited<ReturnType<typeof startProxiedTlsStack>>;
  let caFile: string;
  let stack: OAuthTestStack;
  let proxy: Awaited<ReturnType<typeof startProxiedTlsStack>>['proxy'];
  /** Every request the servers received, by the port of the peer that sent it. */
  const seen: Array<{ server: 'as' | 'mcp'; peerPort: number; request: string }> = [];
  let asHost: string;
  let mcpHost: string;
  const record = (server: 'as' | 'mcp') => (req: IncomingMessage) => {
    seen.push({ server, peerPort: req.socket.remotePort ?? 0, request: `${req.method} ${req.url}` });
    return false;
  };

  beforeAll(async () => {
    src = await buildClientForChildren();
    network = await startProxiedTlsStack('network', { as: record('as'), mcp: record('mcp') });
    ({ caFile, stack, proxy } = network);
    asHost = new URL(stack.issuer).host;
    mcpHost = new URL(stack.mcpUrl).host;
  }, 60_000);

  afterAll(async () => {
    await network?.close();
  });

  const reset = () => {
    seen.length = 0;
    proxy.tunnels.length = 0;
    for (const key of Object.keys(stack.grants)) delete stack.grants[key];
  };

  it('HTTPS_PROXY: login, refresh, tool calls and diagnose() all go through CONNECT tunnels, trusting NODE_EXTRA_CA_CERTS', async () => {
    reset();
    const outcome = await runChild(src, stack.mcpUrl, { HTTPS_PROXY: proxy.url, NODE_EXTRA_CA_CERTS: caFile });
    expect(outcome).toEqual({ subjects: ['demo', 'demo'], failed: [] });
    expect(stack.grants['authorization_code']).toBe(1);
    expect(stack.grants['refresh_token']).toBeGreaterThanOrEqual(1);

    const targets = new Set(proxy.tunnels.map((t) => t.target));
    expect(targets).toEqual(new Set([asHost, mcpHost]));
    // Every request either server received came through one of the proxy's tunnels.
    const tunnelPorts = new Set(proxy.tunnels.map((t) => t.upstreamPort));
    const direct = seen.filter((s) => !tunnelPorts.has(s.peerPort));
    expect(direct).toEqual([]);
    // The whole flow was there: discovery, registration, login, token, MCP.
    const requests = seen.map((s) => `${s.server} ${s.request}`);
    expect(requests).toEqual(
      expect.arrayContaining([
        'mcp GET /.well-known/oauth-protected-resource/mcp',
        'as GET /.well-known/oauth-authorization-server',
        'as POST /reg',
        'as POST /token',
        'mcp POST /mcp',
      ]),
    );
  }, 90_000);

  it('https_proxy (lower case) without the extra CA: the tunnel opens, and TLS refuses the unknown certificate', async () => {
    reset();
    const outcome = await runChild(src, stack.mcpUrl, { https_proxy: proxy.url });
    expect('error' in outcome && outcome.error.join(' ')).toMatch(/certificate/i);
    expect(proxy.tunnels.map((t) => t.target)).toContain(mcpHost);
    expect(seen).toEqual([]); // no request got through the TLS handshake
  }, 90_000);

  it('NO_PROXY / no_proxy: loopback servers are reached directly, no tunnel opened', async () => {
    const variants: Array<Record<string, string>> = [{ NO_PROXY: '127.0.0.1' }, { no_proxy: 'localhost,127.0.0.1' }];
    for (const noProxy of variants) {
      reset();
      const outcome = await runChild(src, stack.mcpUrl, {
        HTTPS_PROXY: proxy.url,
        NODE_EXTRA_CA_CERTS: caFile,
        ...noProxy,
      });
      expect(outcome).toEqual({ subjects: ['demo', 'demo'], failed: [] });
      expect(proxy.tunnels).toEqual([]);
      expect(seen.length).toBeGreaterThan(5);
    }
  }, 120_000);
});

import { afterAll, describe, expect, it } from 'vitest';
import { Client } from '../../src/client/client.js';
import {
  BIN,
  cleanup,
  EVERYTHING,
  freePort,
  headlessOAuth,
  spawnTracked,
  startGatewayProcess,
  tempDir,
  waitFor,
} from './helpers.js';

const PASSWORD = 'external-admin-password';

describe('gatehouse gateway --issuer: an external authorization server', () => {
  afterAll(cleanup);

  it('protects the upstream with tokens from `gatehouse serve`, and runs no authorization server itself', async () => {
    const port = await freePort();
    const mcpUrl = `http://127.0.0.1:${port}/mcp`;
    const serve = spawnTracked(
      process.execPath,
      [BIN, 'serve', '--port', '0', '--store', 'memory', '--superuser', 'admin', '--resource', `${mcpUrl}=mcp:tools`],
      { GATEHOUSE_SUPERUSER_PASSWORD: PASSWORD, GATEHOUSE_DATA_DIR: await tempDir() },
    );
    let serveOutput = '';
    serve.stderr!.on('data', (d) => {
      serveOutput += d;
    });
    const [, issuer] = await waitFor(() => serveOutput, /issuer (\S+), listening/, 30_000);
    const gateway = await startGatewayProcess([
      '--port',
      String(port),
      '--issuer',
      issuer!,
      '--',
      process.execPath,
      EVERYTHING,
    ]);
    expect(gateway.stderr()).toContain(`authorization server: ${issuer}`);
    expect(gateway.stderr()).not.toContain('(embedded)');
    expect(gateway.password).toBeUndefined();
    expect((await fetch(`${gateway.url}/.well-known/oauth-authorization-server`)).status).toBe(404);
    const metadata = (await (await fetch(`${gateway.url}/.well-known/oauth-protected-resource/mcp`)).json()) as {
      authorization_servers: string[];
    };
    expect(metadata.authorization_servers).toEqual([issuer]);

    await using client = await new Client(mcpUrl, { auth: headlessOAuth(mcpUrl, 'admin', PASSWORD) }).connect();
    const echo = await client.callTool('echo', { message: 'external issuer' });
    expect(echo.data).toBe('Echo: external issuer');
  }, 90_000);
});

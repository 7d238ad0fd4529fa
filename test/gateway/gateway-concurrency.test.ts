import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Client as SdkClient, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/authorization-server/users.js';
import type { OAuth } from '../../src/client/oauth.js';
import {
  cleanup,
  EVERYTHING,
  everythingOverHttp,
  freePort,
  type GatewayProcess,
  headlessOAuth,
  startGatewayProcess,
  tempDir,
  waitFor,
} from './helpers.js';

const SESSIONS = 200;
const USERS = 8;
const PASSWORD = 'concurrency-password-0123';

/**
 * 200 MCP sessions opened at once, each initialising, calling one tool and closing, spread over several users:
 * every one must succeed. (Before the gateway kept idle client connections longer than its clients do, and reused
 * upstream connections only well inside the upstream's keep-alive, a loaded machine lost a third of them to
 * `fetch failed`: requests written onto connections the other side was closing.)
 */
async function concurrentSessions(mcpUrl: string, logins: OAuth[]): Promise<string[]> {
  const failures: string[] = [];
  await Promise.all(
    Array.from({ length: SESSIONS }, async (_, i) => {
      const client = new SdkClient({ name: 'concurrency', version: '1.0.0' });
      try {
        const fetch = logins[i % logins.length]!.wrapFetch();
        await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { fetch }));
        const result = await client.callTool({ name: 'echo', arguments: { message: `session ${i}` } });
        if (!JSON.stringify(result.content).includes(`Echo: session ${i}"`)) failures.push(`${i}: wrong answer`);
      } catch (error) {
        const cause = (error as Error & { cause?: Error }).cause;
        failures.push(`${i}: ${(error as Error).message}${cause ? ` (${cause.message})` : ''}`);
      } finally {
        await client.close().catch(() => {});
      }
    }),
  );
  return failures;
}

describe(`gatehouse gateway: ${SESSIONS} concurrent sessions, 0 errors`, () => {
  let gateway: GatewayProcess;
  afterAll(cleanup);

  beforeAll(async () => {
    const httpPort = await freePort();
    await everythingOverHttp(httpPort);
    const dir = await tempDir();
    const users = await Promise.all(
      Array.from({ length: USERS }, async (_, i) => ({
        username: `user${i}`,
        passwordHash: await hashPassword(PASSWORD),
      })),
    );
    await writeFile(join(dir, 'users.json'), JSON.stringify({ users }));
    await writeFile(
      join(dir, 'gateway.json'),
      JSON.stringify({
        users: join(dir, 'users.json'),
        mcpServers: {
          http: { url: `http://127.0.0.1:${httpPort}/mcp` },
          // One process per user, capped at the number of users: 200 sessions share 8 processes.
          stdio: { command: process.execPath, args: [EVERYTHING], isolation: 'user', maxProcesses: USERS },
        },
      }),
    );
    gateway = await startGatewayProcess(['--config', join(dir, 'gateway.json'), '--store', 'memory'], {
      dataDir: dir,
    });
  }, 120_000);

  async function logins(mcpUrl: string): Promise<OAuth[]> {
    const all = Array.from({ length: USERS }, (_, i) => headlessOAuth(mcpUrl, `user${i}`, PASSWORD));
    // Logged in one by one before the burst: the burst is about sessions, not about the login page.
    for (const oauth of all) {
      const client = new SdkClient({ name: 'login', version: '1.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { fetch: oauth.wrapFetch() }));
      await client.close();
    }
    return all;
  }

  it('through an HTTP upstream (server-everything in streamable-HTTP mode)', async () => {
    const mcpUrl = gateway.mcp['http']!;
    const failures = await concurrentSessions(mcpUrl, await logins(mcpUrl));
    expect(failures).toEqual([]);
    // Every call left its audit line (the last ones may still be on their way through the pipe).
    const okCalls = () =>
      gateway.logs().filter((l) => l['upstream'] === 'http' && l['method'] === 'tools/call' && l['outcome'] === 'ok');
    await waitFor(() => String(okCalls().length), new RegExp(`^${SESSIONS}$`));
  }, 180_000);

  it('through a stdio upstream, one process per user under a cap of one per user', async () => {
    const mcpUrl = gateway.mcp['stdio']!;
    const failures = await concurrentSessions(mcpUrl, await logins(mcpUrl));
    expect(failures).toEqual([]);
    const started = gateway.logs().filter((l) => l['msg'] === 'upstream process started' && l['upstream'] === 'stdio');
    expect(new Set(started.map((l) => l['owner']))).toEqual(
      new Set(Array.from({ length: USERS }, (_, i) => `user:user${i}`)),
    );
    expect(started).toHaveLength(USERS);
  }, 180_000);
});

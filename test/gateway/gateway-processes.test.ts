import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Client as SdkClient, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/authorization-server/users.js';
import {
  cleanup,
  EVERYTHING,
  type GatewayProcess,
  headlessOAuth,
  startGatewayProcess,
  tempDir,
  waitFor,
} from './helpers.js';

const USERS = { alice: 'alice-password-1', bob: 'bob-password-22', carol: 'carol-password-3' };

async function usersFile(): Promise<string> {
  const dir = await tempDir();
  const path = join(dir, 'users.json');
  const users = await Promise.all(
    Object.entries(USERS).map(async ([username, password]) => ({
      username,
      passwordHash: await hashPassword(password),
    })),
  );
  await writeFile(path, JSON.stringify({ users }));
  return path;
}

function started(gateway: GatewayProcess): Array<{ owner: string; pid: number }> {
  return gateway
    .logs()
    .filter((l) => l['msg'] === 'upstream process started')
    .map((l) => ({ owner: String(l['owner']), pid: Number(l['pid']) }));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const clients: Record<string, Array<{ client: SdkClient; transport: StreamableHTTPClientTransport }>> = {};

async function connect(gateway: GatewayProcess, user: keyof typeof USERS): Promise<SdkClient> {
  const url = gateway.mcp['mcp']!;
  const client = new SdkClient({ name: user, version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    fetch: headlessOAuth(url, user, USERS[user]).wrapFetch(),
  });
  await client.connect(transport);
  clients[user] = [...(clients[user] ?? []), { client, transport }];
  return client;
}

describe('gatehouse gateway: stdio processes per user', () => {
  let gateway: GatewayProcess;
  let users: string;
  afterAll(async () => {
    for (const list of Object.values(clients)) for (const { client } of list) await client.close().catch(() => {});
    await cleanup();
  });
  beforeAll(async () => {
    users = await usersFile();
    gateway = await startGatewayProcess(
      [
        '--users',
        users,
        '--store',
        'memory',
        '--idle-timeout',
        '1',
        '--max-processes',
        '2',
        '--env',
        'GREETING=${GATEWAY_TEST_GREETING}',
        '--',
        process.execPath,
        EVERYTHING,
      ],
      { env: { GATEWAY_TEST_GREETING: 'hello from the config', GATEHOUSE_SUPERUSER_PASSWORD: 'must-not-leak' } },
    );
  });

  it('starts one process per user on first use, shared by that user’s sessions, with the upstream environment only', async () => {
    const first = await connect(gateway, 'alice');
    const second = await connect(gateway, 'alice');
    await first.callTool({ name: 'echo', arguments: { message: 'a' } });
    await second.callTool({ name: 'echo', arguments: { message: 'b' } });
    const bob = await connect(gateway, 'bob');
    await bob.callTool({ name: 'echo', arguments: { message: 'c' } });
    expect(
      started(gateway)
        .map((s) => s.owner)
        .sort(),
    ).toEqual(['user:alice', 'user:bob']);

    const env = await first.callTool({ name: 'get-env', arguments: {} });
    const text = JSON.stringify(env.content);
    expect(text).toContain('hello from the config');
    expect(text).not.toContain('must-not-leak');
    expect(text).not.toContain('GATEWAY_TEST_GREETING');
  });

  it("answers 404 to another user's token on a user's session", async () => {
    const url = gateway.mcp['mcp']!;
    const aliceSession = clients['alice']![0]!.transport.sessionId!;
    const asBob = headlessOAuth(url, 'bob', USERS.bob).wrapFetch() as typeof fetch;
    const stolen = await asBob(url, {
      method: 'POST',
      headers: {
        accept: 'application/json, text/event-stream',
        'content-type': 'application/json',
        'mcp-protocol-version': '2025-06-18',
        'mcp-session-id': aliceSession,
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'get-env', arguments: {} } }),
    });
    expect(stolen.status).toBe(404);
    expect(((await stolen.json()) as { error: { message: string } }).error.message).toBe('Session not found');
  });

  it('refuses a new user beyond the process cap with a clear error', async () => {
    await expect(connect(gateway, 'carol')).rejects.toThrow(/cap of 2 processes/);
  });

  it('answers a clear JSON-RPC error when the process dies mid-call, restarts it on the next call, and stays up', async () => {
    const client = await connect(gateway, 'alice');
    const { pid } = started(gateway).find((s) => s.owner === 'user:alice')!;
    const call = client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 5, steps: 5 } });
    await new Promise((r) => setTimeout(r, 300));
    process.kill(pid, 'SIGKILL');
    await expect(call).rejects.toThrow(
      // With the process's last stderr lines (server-everything's start banner).
      /upstream "mcp" exited \(signal SIGKILL\) before answering; it restarts on the next request; its last output: .*Starting default \(STDIO\) server/,
    );
    const again = await client.callTool({ name: 'echo', arguments: { message: 'after the crash' } });
    expect(JSON.stringify(again.content)).toContain('Echo: after the crash');
    const restarted = started(gateway).filter((s) => s.owner === 'user:alice');
    expect(restarted).toHaveLength(2);
    expect(alive(restarted[1]!.pid)).toBe(true);
    expect(gateway.child.exitCode).toBeNull();
  });

  it('stops a user’s process after the idle timeout once the sessions are closed', async () => {
    const bobPid = started(gateway).find((s) => s.owner === 'user:bob')!.pid;
    expect(alive(bobPid)).toBe(true);
    // Closing a client ends its session (DELETE); bob's process then idles out, alice's stays.
    for (const { client, transport } of clients['bob']!) {
      await transport.terminateSession();
      await client.close();
    }
    await waitFor(() => gateway.stdout(), /"owner":"user:bob","msg":"upstream process stopped"/, 10_000);
    await waitFor(() => String(alive(bobPid)), /false/, 5_000);
    const alicePid = started(gateway)
      .filter((s) => s.owner === 'user:alice')
      .at(-1)!.pid;
    expect(alive(alicePid)).toBe(true);
  });
});

describe('gatehouse gateway --isolation session', () => {
  afterAll(async () => {
    for (const list of Object.values(clients)) for (const { client } of list) await client.close().catch(() => {});
    await cleanup();
  });

  it('starts one process per MCP session, even for the same user', async () => {
    const gateway = await startGatewayProcess([
      '--users',
      await usersFile(),
      '--store',
      'memory',
      '--isolation',
      'session',
      '--',
      process.execPath,
      EVERYTHING,
    ]);
    const first = await connect(gateway, 'alice');
    const second = await connect(gateway, 'alice');
    await first.callTool({ name: 'echo', arguments: { message: 'a' } });
    await second.callTool({ name: 'echo', arguments: { message: 'b' } });
    const owners = started(gateway).map((s) => s.owner);
    expect(owners).toHaveLength(2);
    expect(owners.every((o) => o.startsWith('session:'))).toBe(true);
    expect(new Set(owners).size).toBe(2);
  });
});

describe('gatehouse gateway --max-processes: idle processes make room', () => {
  afterAll(async () => {
    for (const list of Object.values(clients)) for (const { client } of list) await client.close().catch(() => {});
    await cleanup();
  });

  it('stops an idle process (its sessions closed) to start one for a new user at the cap', async () => {
    // The idle timeout is long: only the cap can stop alice's process before bob needs one.
    const gateway = await startGatewayProcess([
      '--users',
      await usersFile(),
      '--store',
      'memory',
      '--idle-timeout',
      '300',
      '--max-processes',
      '1',
      '--',
      process.execPath,
      EVERYTHING,
    ]);
    const alice = await connect(gateway, 'alice');
    await alice.callTool({ name: 'echo', arguments: { message: 'a' } });
    const { transport } = clients['alice']!.at(-1)!;
    await transport.terminateSession();
    await alice.close();
    const alicePid = started(gateway).find((s) => s.owner === 'user:alice')!.pid;

    const bob = await connect(gateway, 'bob');
    const echo = await bob.callTool({ name: 'echo', arguments: { message: 'b' } });
    expect(JSON.stringify(echo.content)).toContain('Echo: b');
    expect(gateway.stdout()).toMatch(/"owner":"user:alice","msg":"upstream process stopped"/);
    await waitFor(() => String(alive(alicePid)), /false/, 5_000);
    // bob's process is busy (a session open): a third user is refused, naming the cap.
    await expect(connect(gateway, 'carol')).rejects.toThrow(/cap of 1 processes/);
  });
});

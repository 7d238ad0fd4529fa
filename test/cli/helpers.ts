import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import type { ClientMetadata } from 'oidc-provider';
import { afterAll, beforeAll, expect } from 'vitest';
import { z } from 'zod';
import { listen, type RunningServer, toNodeListener } from '../../src/server/node.js';
import type { DemoStack } from '../../src/testing/demo-stack.js';
import { type SpawnedServe, spawnServe } from '../helpers/serve-process.js';

export const BIN = fileURLToPath(new URL('../../bin/gatehouse.js', import.meta.url));

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the built CLI without blocking this process, whose event loop serves the servers under test. The
 * environment is the test's minus anything that would leak state in (GATEHOUSE_*), plus `env`; `input` is its stdin.
 */
export function cli(args: string[], env: Record<string, string | undefined> = {}, input?: string): Promise<CliResult> {
  const base: Record<string, string | undefined> = { ...process.env };
  for (const key of Object.keys(base)) if (key.startsWith('GATEHOUSE_')) delete base[key];
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [BIN, ...args],
      { encoding: 'utf8', env: defined({ ...base, NO_COLOR: '1', ...env }), timeout: 60_000 },
      (error, stdout, stderr) => {
        resolve({ status: error ? Number((error as { code?: unknown }).code ?? 1) : 0, stdout, stderr });
      },
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

function defined(env: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined));
}

export async function tempStore(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-cli-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** An MCP server without OAuth, with an `echo` tool. */
export async function startOpenServer(): Promise<RunningServer & { mcpUrl: string }> {
  const mcp = createMcpHandler(() => {
    const server = new McpServer({ name: 'open', version: '1.0.0' });
    server.registerTool(
      'echo',
      {
        description: 'Echoes its arguments back.',
        inputSchema: z.object({ text: z.string(), n: z.number().optional(), flag: z.boolean().optional() }),
      },
      async (args) => ({ content: [{ type: 'text', text: JSON.stringify(args) }] }),
    );
    server.registerTool('fail', { description: 'Always reports an error.' }, async () => ({
      content: [{ type: 'text', text: 'this tool always fails' }],
      isError: true,
    }));
    return server;
  });
  const running = await listen(toNodeListener((request) => mcp.fetch(request)));
  return { ...running, mcpUrl: `${running.url}/mcp` };
}

/** A pre-registered confidential client that may introspect every token of the demo stack. */
export const INTROSPECTOR: ClientMetadata = {
  client_id: 'introspector',
  client_secret: 'introspector-secret-0123456789',
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: [],
  response_types: [],
  redirect_uris: [],
};

export async function introspect(issuer: string, token: string): Promise<{ active: boolean; [k: string]: unknown }> {
  const response = await fetch(`${issuer}/token/introspection`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${INTROSPECTOR.client_id}:${INTROSPECTOR.client_secret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ token }),
  });
  if (!response.ok) throw new Error(`introspection answered ${response.status}: ${await response.text()}`);
  return (await response.json()) as { active: boolean };
}

/** A `gatehouse serve` child process. */
export type ServeProcess = SpawnedServe;

/**
 * Starts `gatehouse serve --port 0 --json …` as users run it and resolves once it prints its `listening` line.
 * Fails (with what it printed) if the process exits or does not listen within 30 s.
 */
export function startServe(args: string[], env: Record<string, string | undefined> = {}): Promise<ServeProcess> {
  return spawnServe(['--port', '0', '--json', ...args], { NO_COLOR: '1', ...env });
}

/** An SDK client talking to a `gatehouse proxy …` child process over stdio; its stderr is collected. */
export function proxyClient(args: string[], env: Record<string, string>) {
  const base: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith('GATEHOUSE_')) base[key] = value;
  }
  const stderr: string[] = [];
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, 'proxy', ...args],
    env: { ...base, NO_COLOR: '1', ...env },
    stderr: 'pipe',
  });
  transport.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk.toString('utf8')));
  const client = new Client({ name: 'proxy-test', version: '1.0.0' });
  return { client, transport, stderr };
}

/** Counts what a demo stack's authorization server does: dynamic registrations and completed authorizations. */
export function countLogins(stack: DemoStack): { registrations: number; authorizations: number } {
  const counts = { registrations: 0, authorizations: 0 };
  stack.authorizationServer.provider.on('registration_create.success', () => counts.registrations++);
  stack.authorizationServer.provider.on('authorization.success', () => counts.authorizations++);
  return counts;
}

/**
 * The two stderr lines of a failed command, `gatehouse <command>: <message>` and `fix: <hint>`, after checking
 * the exit code and that nothing else was printed there.
 */
export function failureLines(result: CliResult, command: string, status: number): { message: string; fix: string } {
  expect(result.status, result.stderr).toBe(status);
  const [first, second, ...rest] = result.stderr.trimEnd().split('\n');
  expect(rest, result.stderr).toEqual([]);
  expect(first).toMatch(new RegExp(`^gatehouse ${command}: `));
  expect(second).toMatch(/^fix: /);
  return { message: first!.slice(`gatehouse ${command}: `.length), fix: second!.slice('fix: '.length) };
}

/**
 * For a describe block: an open server ({@link startOpenServer}) and a temporary store, started before its tests
 * and closed after them. Read them inside the tests (`servers.open.mcpUrl`).
 */
export function withOpenServer(): {
  open: Awaited<ReturnType<typeof startOpenServer>>;
  store: Awaited<ReturnType<typeof tempStore>>;
} {
  const servers = {} as ReturnType<typeof withOpenServer>;
  beforeAll(async () => {
    [servers.open, servers.store] = await Promise.all([startOpenServer(), tempStore()]);
  });
  afterAll(async () => {
    await Promise.all([servers.open?.close(), servers.store?.cleanup()]);
  });
  return servers;
}

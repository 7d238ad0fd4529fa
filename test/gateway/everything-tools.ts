// Calling every tool server-everything lists, whichever client does the calling (the SDK client directly, through
// mcp-remote, the Gatehouse Client): arguments from each tool's input schema, and what each answer must contain.
import type { Client as SdkClient } from '@modelcontextprotocol/client';
import { expect } from 'vitest';

export type ToolSchema = { properties?: Record<string, Record<string, unknown>>; required?: string[] };

/** What a client sent back to the server's requests, for the checks below. */
export const SAMPLED_ANSWER = 'a sampled answer';
export const ELICITED_NAME = 'Ada Lovelace';
export const ROOT_URI = 'file:///srv/gateway-root';

/** Arguments a tool accepts, filled from its input schema: required properties only, first enum value. */
export function argumentsFor(schema: ToolSchema): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  for (const key of schema.required ?? []) {
    const property = schema.properties?.[key] ?? {};
    if (Array.isArray(property['enum'])) args[key] = property['enum'][0];
    else if (property['type'] === 'number' || property['type'] === 'integer') args[key] = 2;
    else if (property['type'] === 'boolean') args[key] = true;
    else if (property['format'] === 'uri') args[key] = 'https://example.com/consent';
    else args[key] = 'gateway';
  }
  return args;
}

/** Arguments that the schema alone does not pick well (a valid data URI; a short operation). */
const OVERRIDES: Record<string, Record<string, unknown>> = {
  'gzip-file-as-resource': { name: 'hello.txt.gz', data: 'data:text/plain;base64,aGVsbG8gZ2F0ZXdheQ==' },
  'trigger-long-running-operation': { duration: 1, steps: 2 },
};

const text = (result: unknown) => JSON.stringify(result);

/**
 * What the answers of the tools offered to a client with sampling, elicitation and roots must contain (the client
 * answering with {@link SAMPLED_ANSWER}, {@link ELICITED_NAME} and {@link ROOT_URI}).
 */
export const EXPECTED: Record<string, (result: unknown) => void> = {
  echo: (r) => expect(text(r)).toContain('Echo: gateway'),
  'get-sum': (r) => expect(text(r)).toContain('4'),
  'trigger-sampling-request': (r) => expect(text(r)).toContain(SAMPLED_ANSWER),
  'trigger-elicitation-request': (r) => expect(text(r)).toContain(ELICITED_NAME),
  'trigger-url-elicitation': (r) => expect(text(r)).toMatch(/accept/i),
  'get-roots-list': (r) => expect(text(r)).toContain(ROOT_URI),
  'gzip-file-as-resource': (r) => expect(text(r)).toContain('hello.txt.gz'),
  'get-structured-content': (r) => expect(r).toHaveProperty('structuredContent.temperature'),
  'get-tiny-image': (r) => expect(text(r)).toContain('"type":"image"'),
};

interface ListedTool {
  name: string;
  inputSchema: unknown;
  execution?: { taskSupport?: string } | undefined;
}

/**
 * Calls every tool in `tools` (but task-only ones) with arguments from its schema, checks each answer is no error
 * and what {@link EXPECTED} says, and that every tool of {@link EXPECTED} was among them. Returns the names called.
 */
export async function callEveryTool(
  tools: ListedTool[],
  call: (name: string, args: Record<string, unknown>) => Promise<{ isError?: boolean | undefined; content?: unknown }>,
): Promise<string[]> {
  const called: string[] = [];
  for (const tool of tools) {
    if (tool.execution?.taskSupport === 'required') continue; // task tools are called with a task
    const result = await call(tool.name, OVERRIDES[tool.name] ?? argumentsFor(tool.inputSchema as ToolSchema));
    expect(result.isError ?? false, `${tool.name}: ${text(result.content)}`).toBe(false);
    EXPECTED[tool.name]?.(result);
    called.push(tool.name);
  }
  for (const name of Object.keys(EXPECTED)) expect(called).toContain(name);
  expect(called.length).toBeGreaterThanOrEqual(15);
  return called;
}

export type Received = { method: string; params: Record<string, unknown> };

/** SDK client capabilities for every server-to-client request server-everything makes. */
export const CAPABILITIES = {
  capabilities: { sampling: {}, elicitation: { form: {}, url: {} }, roots: { listChanged: true } },
};

/**
 * Makes an SDK client answer sampling, elicitation (form and URL) and roots requests, and records them and the
 * log and resource-update notifications it receives.
 */
export function answerServerRequests(client: SdkClient): { requests: Received[]; notifications: Received[] } {
  const requests: Received[] = [];
  const notifications: Received[] = [];
  client.setRequestHandler('sampling/createMessage', async (request) => {
    requests.push(request as Received);
    return { model: 'test-model', role: 'assistant', content: { type: 'text', text: SAMPLED_ANSWER } };
  });
  client.setRequestHandler('elicitation/create', async (request) => {
    requests.push(request as Received);
    return request.params.mode === 'url'
      ? { action: 'accept' }
      : { action: 'accept', content: { name: ELICITED_NAME, check: true } };
  });
  client.setRequestHandler('roots/list', async (request) => {
    requests.push(request as Received);
    return { roots: [{ uri: ROOT_URI, name: 'the root' }] };
  });
  for (const method of ['notifications/message', 'notifications/resources/updated'] as const) {
    client.setNotificationHandler(method, (notification) => {
      notifications.push(notification as Received);
    });
  }
  return { requests, notifications };
}

/**
 * An SDK client calls every tool while answering the server's requests (see {@link answerServerRequests}): each
 * server-to-client request is made exactly once; then the two toggles the loop switched on are switched off again.
 */
export async function callEveryToolAnsweringRequests(client: SdkClient, requests: Received[]): Promise<void> {
  const { tools } = await client.listTools();
  await callEveryTool(tools, (name, args) => client.callTool({ name, arguments: args }));
  expect(requests.map((r) => r.method).sort()).toEqual([
    'elicitation/create',
    'elicitation/create',
    'roots/list',
    'sampling/createMessage',
  ]);
  await client.callTool({ name: 'toggle-simulated-logging', arguments: {} });
  await client.callTool({ name: 'toggle-subscriber-updates', arguments: {} });
}

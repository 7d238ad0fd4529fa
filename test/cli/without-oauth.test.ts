import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoStack, startDemoStack } from '../../src/testing/demo-stack.js';
import { type CliResult, cli, countLogins, failureLines, tempStore } from './helpers.js';

// docs/cli.md, connection options: `--no-auth` sends no token and never logs in; an `Authorization` header replaces
// OAuth. Against a protected server both fail with a 401 whose message and fix name the flag, not library options.

/** A failure with exit code 3 whose lines name neither the SDK's handshake nor the library's options. */
function failure(result: CliResult, command: string): { message: string; fix: string } {
  const lines = failureLines(result, command, 3);
  expect(lines.message).not.toMatch(/Version negotiation/);
  expect(lines.fix).not.toMatch(/auth: 'oauth'/);
  return lines;
}

describe('tools, call and ping without OAuth', () => {
  let stack: DemoStack;
  let counts: ReturnType<typeof countLogins>;
  beforeAll(async () => {
    stack = await startDemoStack();
    counts = countLogins(stack);
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('--no-auth never logs in, even with $GATEHOUSE_LOGIN, and says to leave it out', { timeout: 60_000 }, async () => {
    const store = await tempStore();
    try {
      const env = { GATEHOUSE_STORE: store.dir, GATEHOUSE_LOGIN: 'demo:demo' };
      const [tools, call, ping] = await Promise.all([
        cli(['tools', stack.mcpUrl, '--no-auth'], env),
        cli(['call', stack.mcpUrl, 'whoami', '--no-auth'], env),
        cli(['ping', stack.mcpUrl, '--no-auth', '--json'], env),
      ]);
      for (const [result, command] of [
        [tools, 'tools'],
        [call, 'call'],
        [ping, 'ping'],
      ] as const) {
        const { message, fix } = failure(result, command);
        expect(message).toBe(`${stack.mcpUrl} requires authorization (HTTP 401), and --no-auth sends no token`);
        expect(fix).toContain('leave out --no-auth');
        expect(fix).toContain(`\`gatehouse login ${stack.mcpUrl}\``);
        expect(result.stdout).toBe('');
      }
      expect(counts).toEqual({ registrations: 0, authorizations: 0 });
      expect(JSON.parse((await cli(['status', '--json'], env)).stdout)).toEqual([]);
    } finally {
      await store.cleanup();
    }
  });

  it('an Authorization header replaces OAuth: a valid token works with no login; a refused one names the header', {
    timeout: 60_000,
  }, async () => {
    const [own, empty] = await Promise.all([tempStore(), tempStore()]);
    try {
      const token = await cli(['token', stack.mcpUrl, '--login', 'demo:demo'], { GATEHOUSE_STORE: own.dir });
      expect(token.status, token.stderr).toBe(0);
      const before = { ...counts };
      const env = { GATEHOUSE_STORE: empty.dir, GATEHOUSE_LOGIN: 'demo:demo' };
      const header = `Authorization: Bearer ${token.stdout.trim()}`;
      const call = await cli(['call', stack.mcpUrl, 'whoami', '--json', '--header', header], env);
      expect(call.status, call.stderr).toBe(0);
      expect(JSON.parse(call.stdout).structuredContent).toMatchObject({ subject: 'demo' });
      expect(counts).toEqual(before);
      expect(JSON.parse((await cli(['status', '--json'], env)).stdout)).toEqual([]);

      const refused = await cli(['tools', stack.mcpUrl, '--header', 'authorization: Bearer not-a-token'], env);
      const { message, fix } = failure(refused, 'tools');
      expect(message).toBe(`${stack.mcpUrl} refused the Authorization header given with --header (HTTP 401)`);
      expect(fix).toContain('--header "Authorization: …"');
      expect(counts).toEqual(before);
    } finally {
      await Promise.all([own.cleanup(), empty.cleanup()]);
    }
  });
});

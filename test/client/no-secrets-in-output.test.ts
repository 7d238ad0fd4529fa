// The client's security defaults (README.md, docs/login.md): no secret in logs. A login, a refresh, a login with
// a wrong password and a refused bearer token, each through OAuth/Client against a real authorization server and
// protected MCP server, print nothing and raise no error that carries a token, a refresh token or a password.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Client, OAuth } from '../../src/client/index.js';
import { type OAuthTestStack, startOAuthTestStack } from './oauth-helpers.js';

let stack: OAuthTestStack;
beforeAll(async () => {
  stack = await startOAuthTestStack();
});
afterAll(async () => {
  await stack?.close();
});

/** Runs `fn`, returning everything written to stdout, stderr and the console meanwhile, and what it threw. */
async function captured(fn: () => Promise<unknown>): Promise<string> {
  const out: string[] = [];
  const record = (...args: unknown[]) =>
    void out.push(
      args
        .map((a) =>
          a instanceof Error ? `${a.stack} ${JSON.stringify(a)}` : typeof a === 'string' ? a : JSON.stringify(a),
        )
        .join(' '),
    );
  const write = (chunk: unknown) => {
    record(String(chunk));
    return true;
  };
  const spies = [
    ...(['log', 'info', 'warn', 'error', 'debug'] as const).map((m) => vi.spyOn(console, m).mockImplementation(record)),
    vi.spyOn(process.stdout, 'write').mockImplementation(write),
    vi.spyOn(process.stderr, 'write').mockImplementation(write),
  ];
  try {
    await fn().catch((error: unknown) => {
      const e = error as { hint?: string; cause?: unknown };
      record(error, e.hint ?? '', e.cause instanceof Error ? e.cause : '');
    });
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
  return out.join('\n');
}

describe('no secret in output or errors', () => {
  it('a login and a refresh print no token; a wrong password and a refused token are not echoed', async () => {
    const tokenStorage = new Map();
    const login = { username: stack.username, password: stack.password };
    const oauth = new OAuth({ mcpUrl: stack.mcpUrl, login, tokenStorage });
    const options = { mcpUrl: stack.mcpUrl, login, tokenStorage };
    let output = await captured(async () => {
      await using client = new Client(stack.mcpUrl, { auth: oauth });
      await client.callTool('whoami');
    });
    const first = (await oauth.tokens())!;
    output += await captured(() => new OAuth({ ...options, refreshSkewSeconds: 7200 }).authorize());
    const refreshed = (await new OAuth(options).tokens())!;
    expect(refreshed.access_token).not.toBe(first.access_token);
    const secrets = [first.access_token, first.refresh_token!, refreshed.access_token, refreshed.refresh_token!];

    const password = 'wrong-password-7f3a9c';
    output += await captured(() =>
      new OAuth({ mcpUrl: stack.mcpUrl, tokenStorage: new Map(), login: { username: 'demo', password } }).authorize(),
    );
    const bearer = 'refused-bearer-token-5d1e2b';
    output += await captured(async () => {
      await using client = new Client(stack.mcpUrl, { auth: bearer });
      await client.callTool('whoami');
    });
    expect(output).toMatch(/password|credentials|sign in|login/i); // the failures did say something...
    for (const secret of [...secrets, password, bearer]) expect(output).not.toContain(secret); // ...but no secret
  });
});

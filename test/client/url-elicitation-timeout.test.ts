// docs/client.md, "Logs, progress, and requests from the server": after the user accepted a URL elicitation
// (-32042), the Client waits for the server's notifications/elicitation/complete at most `urlElicitationTimeout`
// ms, then throws UrlElicitationRequiredError (url, elicitations, a hint naming the page) without sending the
// request again. Through the public Client, on an SDK server in memory whose tool always asks for a page.
import { McpServer, UrlElicitationRequiredError as SdkUrlElicitationRequiredError } from '@modelcontextprotocol/server';
import { describe, expect, it } from 'vitest';
import { Client, UrlElicitationRequiredError } from '../../src/client/index.js';

const PAGE = 'https://link.example.com/connect/github';

/** A server whose `repos` tool needs a page the user has not completed; `complete` says when it is done. */
function linkingServer(calls: { count: number }, completeAfterMs?: number) {
  return () => {
    const server = new McpServer({ name: 'linking', version: '1.0.0' });
    let linked = false;
    server.registerTool('repos', { description: 'needs a linked account' }, async () => {
      calls.count++;
      if (linked) return { content: [{ type: 'text', text: '["gatehouse"]' }] };
      const elicitationId = `link-${calls.count}`;
      if (completeAfterMs !== undefined) {
        const notify = server.server.createElicitationCompletionNotifier(elicitationId);
        setTimeout(() => {
          linked = true;
          void notify();
        }, completeAfterMs);
      }
      throw new SdkUrlElicitationRequiredError(
        [{ mode: 'url', elicitationId, url: PAGE, message: 'Connect your GitHub account' }],
        'GitHub is not linked',
      );
    });
    return server;
  };
}

describe('urlElicitationTimeout', () => {
  it('accepted but never completed: UrlElicitationRequiredError once the timeout passes, the call not sent again', async () => {
    const calls = { count: 0 };
    const offered: string[] = [];
    await using client = new Client(linkingServer(calls), {
      urlElicitationTimeout: 400,
      elicitationHandler: async (params) => {
        if (params.mode === 'url') offered.push(params.url);
        return { action: 'accept' };
      },
    });
    await client.connect();
    const started = Date.now();
    const error = await client.callTool('repos').catch((e: unknown) => e);
    const elapsed = Date.now() - started;
    expect(error).toBeInstanceOf(UrlElicitationRequiredError);
    const required = error as UrlElicitationRequiredError;
    expect(required.code).toBe('ERR_URL_ELICITATION_REQUIRED');
    expect(required.url).toBe(PAGE);
    expect(required.elicitations).toEqual([
      { url: PAGE, message: 'Connect your GitHub account', elicitationId: 'link-1' },
    ]);
    expect(required.hint).toContain(PAGE);
    expect(offered).toEqual([PAGE]);
    expect(elapsed).toBeGreaterThanOrEqual(390);
    expect(elapsed).toBeLessThan(3_000);
    expect(calls.count).toBe(1);
    // The connection stays usable.
    await expect(client.ping()).resolves.toBeUndefined();
  });

  it('completed within the timeout: the call is sent again once and goes through', async () => {
    const calls = { count: 0 };
    await using client = new Client(linkingServer(calls, 100), {
      urlElicitationTimeout: 10_000,
      elicitationHandler: async () => ({ action: 'accept' }),
    });
    const started = Date.now();
    const { data } = await client.callTool<string[]>('repos');
    expect(data).toEqual(['gatehouse']);
    expect(calls.count).toBe(2);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

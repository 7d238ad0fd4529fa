import { request } from 'node:http';
import { describe, expect, it } from 'vitest';
import { assertOpenableUrl, openBrowser, type SpawnLike } from '../../src/client/browser.js';
import { startCallbackServer } from '../../src/client/callback-server.js';
import { AuthenticationError, CallbackTimeoutError } from '../../src/client/errors.js';

/** GET with full control of the Host header (fetch does not allow setting it). */
function get(
  host: '127.0.0.1' | '::1',
  port: number,
  path: string,
  hostHeader?: string,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host, port, path, method: 'GET', headers: { host: hostHeader ?? `localhost:${port}` } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('callback server', () => {
  it('listens on 127.0.0.1 and ::1 with one random port and returns the code with a success page', async () => {
    const server = await startCallbackServer();
    try {
      expect(server.redirectUri).toBe(`http://localhost:${server.port}/callback`);
      const waiting = server.waitForCallback('s1');
      const page = await get('::1', server.port, '/callback?code=abc&state=s1&iss=https%3A%2F%2Fas');
      expect(page.status).toBe(200);
      expect(page.headers['x-frame-options']).toBe('DENY');
      expect(page.body).toContain('Logged in');
      const result = await waiting;
      expect(result).toMatchObject({ code: 'abc', state: 's1', iss: 'https://as' });

      const second = server.waitForCallback('s2');
      expect((await get('127.0.0.1', server.port, '/callback?code=def&state=s2')).status).toBe(200);
      expect((await second).code).toBe('def');
    } finally {
      await server.close();
    }
  });

  it('escapes every value on the error page (XSS vectors)', async () => {
    const server = await startCallbackServer();
    try {
      const vectors = [
        '<script>alert(1)</script>',
        '"><img src=x onerror=alert(1)>',
        "'><svg onload=alert(1)>",
        'javascript:alert(1)',
        '</code></p><iframe src=//evil>',
      ];
      for (const [i, vector] of vectors.entries()) {
        const state = `s${i}`;
        const waiting = server.waitForCallback(state);
        const query = new URLSearchParams({ error: vector, error_description: vector, state });
        const page = await get('127.0.0.1', server.port, `/callback?${query}`);
        expect(page.status).toBe(400);
        expect(page.headers['x-frame-options']).toBe('DENY');
        expect(page.headers['content-security-policy']).toContain("default-src 'none'");
        expect(page.body).not.toMatch(/<script|<img|<svg|<iframe/i);
        if (/[<>"']/.test(vector)) expect(page.body).not.toContain(vector);
        expect(page.body).toContain(
          vector
            .replace(/&/g, '&amp;')
            .replace(/</g, '&lt;')
            .replace(/>/g, '&gt;')
            .replace(/"/g, '&quot;')
            .replace(/'/g, '&#39;'),
        );
        expect((await waiting).error).toBe(vector);
      }
      const denied = server.waitForCallback('d');
      const page = await get('127.0.0.1', server.port, '/callback?error=access_denied&state=d');
      expect(page.status).toBe(403);
      expect(page.body).toContain('Access denied');
      expect((await denied).error).toBe('access_denied');
    } finally {
      await server.close();
    }
  });

  it('answers a wrong state and a wrong Host header with an error page and keeps waiting for the right callback', async () => {
    const server = await startCallbackServer();
    try {
      const waiting = server.waitForCallback('expected-state');
      let settled = false;
      void waiting.finally(() => {
        settled = true;
      });
      const rebinding = await get('127.0.0.1', server.port, '/callback?code=x&state=expected-state', 'evil.example');
      expect(rebinding.status).toBe(421);
      const forged = await get('127.0.0.1', server.port, '/callback?code=x&state=forged');
      expect(forged.status).toBe(400);
      expect((await get('127.0.0.1', server.port, '/callback?code=x')).status).toBe(400);
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(settled).toBe(false);
      const right = await get('127.0.0.1', server.port, '/callback?code=good&state=expected-state');
      expect(right.status).toBe(200);
      expect((await waiting).code).toBe('good');
    } finally {
      await server.close();
    }
  });

  it('raises CallbackTimeoutError when no callback arrives in time', async () => {
    const server = await startCallbackServer();
    try {
      const error = await server.waitForCallback('s', 50).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CallbackTimeoutError);
      expect((error as CallbackTimeoutError).code).toBe('ERR_CALLBACK_TIMEOUT');
      expect((error as CallbackTimeoutError).hint).toMatch(/timeoutMs/);
    } finally {
      await server.close();
    }
  });

  it('says which fixed port is taken', async () => {
    const first = await startCallbackServer();
    try {
      const error = await startCallbackServer({ port: first.port }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AuthenticationError);
      expect((error as AuthenticationError).message).toContain(String(first.port));
      expect((error as AuthenticationError).code).toBe('ERR_CALLBACK_PORT');
    } finally {
      await first.close();
    }
  });
});

describe('openBrowser', () => {
  function fakeSpawn() {
    const calls: Array<{ command: string; args: readonly string[]; shell: unknown }> = [];
    const spawn: SpawnLike = (command, args, options) => {
      calls.push({ command, args, shell: options.shell });
      return { unref() {}, on: () => undefined };
    };
    return { calls, spawn };
  }

  it('opens http and https URLs with an argument array and shell: false', async () => {
    const { calls, spawn } = fakeSpawn();
    await openBrowser('https://auth.example.com/authorize?client_id=a&state=b', { spawn, platform: 'linux' });
    await openBrowser('http://127.0.0.1:9/authorize?x=1', { spawn, platform: 'darwin' });
    await openBrowser('https://auth.example.com/authorize?a=1&b=2', { spawn, platform: 'win32' });
    expect(calls).toEqual([
      { command: 'xdg-open', args: ['https://auth.example.com/authorize?client_id=a&state=b'], shell: false },
      { command: 'open', args: ['http://127.0.0.1:9/authorize?x=1'], shell: false },
      {
        command: 'rundll32',
        args: ['url.dll,FileProtocolHandler', 'https://auth.example.com/authorize?a=1&b=2'],
        shell: false,
      },
    ]);
  });

  it('never opens file:, javascript: or shell-metacharacter URLs', async () => {
    const { calls, spawn } = fakeSpawn();
    const unsafe = [
      'file:///etc/passwd',
      'javascript:alert(1)',
      'data:text/html,<script>alert(1)</script>',
      'vscode://x/y',
      'https://evil.example/$(touch /tmp/pwned)',
      'https://evil.example/`id`',
      'https://evil.example/a;rm -rf ~',
      'https://evil.example/a|calc',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell expansion is the point.
      'https://evil.example/?q=${IFS}',
      "https://evil.example/'quoted'",
      'https://user:pass@evil.example/',
      'not a url',
    ];
    for (const url of unsafe) {
      const error = await openBrowser(url, { spawn }).catch((e: unknown) => e);
      expect(error, url).toBeInstanceOf(AuthenticationError);
      expect((error as AuthenticationError).code).toBe('ERR_UNSAFE_URL');
      expect(() => assertOpenableUrl(url)).toThrow(AuthenticationError);
    }
    expect(calls).toEqual([]);
  });
});

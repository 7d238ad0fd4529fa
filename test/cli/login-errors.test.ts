import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser } from '../authorization-server/helpers.js';
import { temporaryDirectory } from '../client/oauth-helpers.js';
import {
  CAUSES,
  CONSENT_DENIED,
  FIXED_REDIRECT_CLIENT,
  type LoginFailures,
  REDIRECT_MISMATCH,
  startLoginFailures,
} from '../helpers/login-failures.js';
import { type CliResult, cli, failureLines } from './helpers.js';

// The CLI as a process: a failed `login` or `tools` prints one line naming the cause and one `fix:` line.
let servers: LoginFailures;
const home = await temporaryDirectory('cli-login-errors');
beforeAll(async () => {
  servers = await startLoginFailures();
});
afterAll(async () => {
  await servers?.close();
  await home.remove();
});

const env = { GATEHOUSE_STORE: join(home.path, 'store'), GATEHOUSE_KEYCHAIN: '0' };

const lines = (result: CliResult, command: string) => failureLines(result, command, 1);

describe('gatehouse login and tools name the cause of a failed login', () => {
  for (const cause of CAUSES) {
    it(cause.name, { timeout: 90_000 }, async () => {
      const url = cause.url(servers);
      const login = await cli(['login', url, '--login', 'demo:demo'], env);
      const tools = await cli(['tools', url, '--login', 'demo:demo'], env);
      for (const [result, command] of [
        [login, 'login'],
        [tools, 'tools'],
      ] as const) {
        const { message, fix } = lines(result, command);
        expect(message).toMatch(cause.message(url));
        expect(fix).toMatch(cause.hint);
        if (cause.doctor) expect(fix).toContain(`\`gatehouse doctor ${url.replace(/\/$/, '')}\``);
        expect(message).not.toMatch(/fetch failed|Version negotiation|log in again/i);
      }
    });
  }

  it('a redirect URI the authorization server does not know', { timeout: 60_000 }, async () => {
    const result = await cli(
      ['login', servers.restricted.mcpUrl, '--login', 'demo:demo', '--client-id', FIXED_REDIRECT_CLIENT],
      env,
    );
    // The SDK may warn first (a pre-registered client carries no issuer stamp): the failure is the last two lines.
    expect(result.status, result.stderr).toBe(1);
    const [message, fix] = result.stderr.trimEnd().split('\n').slice(-2);
    expect(message).toMatch(/^gatehouse login: /);
    expect(message).toMatch(REDIRECT_MISMATCH.message);
    expect(fix).toMatch(/^fix: /);
    expect(fix).toMatch(REDIRECT_MISMATCH.hint);
  });

  it('the user denies consent in the browser', { timeout: 60_000 }, async () => {
    // The system opener (`xdg-open`) is a script that logs the URL; "the user" logs in there and presses Deny.
    const bin = join(home.path, 'bin');
    const opened = join(home.path, 'opened.log');
    await mkdir(bin, { recursive: true });
    await writeFile(join(bin, 'xdg-open'), '#!/bin/sh\nprintf "%s\\n" "$1" >> "$OPENED_LOG"\n');
    await chmod(join(bin, 'xdg-open'), 0o755);
    let denied = false;
    const user = setInterval(async () => {
      const line = (await readFile(opened, 'utf8').catch(() => '')).split('\n')[0];
      if (!line || denied) return;
      denied = true;
      const url = new URL(line);
      const { callback } = await new Browser().authorize(url, url.searchParams.get('redirect_uri')!, {
        credentials: { username: 'demo', password: 'demo' },
        decision: 'deny',
      });
      if (callback) await (await fetch(callback)).text();
    }, 50);
    try {
      const result = await cli(['login', servers.healthy.mcpUrl], {
        ...env,
        PATH: `${bin}:${process.env['PATH']}`,
        OPENED_LOG: opened,
        // A desktop session: without one the CLI would take the device flow instead of the browser.
        DISPLAY: ':0',
      });
      expect(denied).toBe(true);
      // The login prints where it opened the browser first; the failure is the last two lines.
      const tail = result.stderr.trimEnd().split('\n').slice(-2);
      expect(result.status, result.stderr).toBe(1);
      expect(tail[0]).toMatch(/^gatehouse login: /);
      expect(tail[0]).toMatch(CONSENT_DENIED.message);
      expect(tail[1]).toMatch(/^fix: /);
      expect(tail[1]).toMatch(CONSENT_DENIED.hint);
    } finally {
      clearInterval(user);
    }
  });

  it("a port fetch refuses to connect to (6000, on the Fetch standard's blocked list)", {
    timeout: 60_000,
  }, async () => {
    const url = 'http://127.0.0.1:6000/mcp';
    for (const command of ['login', 'tools'] as const) {
      const { message, fix } = lines(await cli([command, url, '--login', 'demo:demo'], env), command);
      expect(message).toMatch(
        /fetch refuses port 6000 of 127\.0\.0\.1: it is on the Fetch standard's list of blocked ports/,
      );
      expect(fix).toMatch(/Run the server on another port/);
    }
  });
});

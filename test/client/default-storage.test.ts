import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, headlessAuthorize, OAuth } from '../../src/client/index.js';
import { defaultTokenStore, fileStore, TOKEN_KEY_FILE, TokenStorage } from '../../src/storage/index.js';
import { cli } from '../cli/helpers.js';
import { type OAuthTestStack, startOAuthTestStack, temporaryDirectory } from './oauth-helpers.js';

// `auth: 'oauth'` and the CLI as users run them: the system opener is `xdg-open`, here a script on PATH that
// writes the URL to a log; "the user" (a poller below) logs in by posting the forms and following the redirect.
let stack: OAuthTestStack;
const home = await temporaryDirectory('default-storage');
const bin = join(home.path, 'bin');
const log = join(home.path, 'opened.log');
const saved = {
  PATH: process.env['PATH'],
  GATEHOUSE_STORE: process.env['GATEHOUSE_STORE'],
  OPENED_LOG: process.env['OPENED_LOG'],
  GATEHOUSE_KEYCHAIN: process.env['GATEHOUSE_KEYCHAIN'],
  DISPLAY: process.env['DISPLAY'],
};
let handled = 0;
let user: NodeJS.Timeout;

async function opened(): Promise<string[]> {
  return (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean);
}

beforeAll(async () => {
  stack = await startOAuthTestStack();
  await mkdir(bin);
  await writeFile(join(bin, 'xdg-open'), '#!/bin/sh\nprintf "%s\\n" "$1" >> "$OPENED_LOG"\n');
  await chmod(join(bin, 'xdg-open'), 0o755);
  process.env['PATH'] = `${bin}:${saved.PATH}`;
  process.env['OPENED_LOG'] = log;
  // A desktop session, where the opener shows a browser (without one the login would use the device flow).
  process.env['DISPLAY'] = ':0';
  process.env['GATEHOUSE_KEYCHAIN'] = '0';
  let busy = false;
  user = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      for (const line of (await opened()).slice(handled)) {
        handled++;
        const url = new URL(line);
        const final = await headlessAuthorize(url, url.searchParams.get('redirect_uri')!, {
          username: 'demo',
          password: 'demo',
        });
        await (await fetch(final)).text();
      }
    } finally {
      busy = false;
    }
  }, 50);
});
afterAll(async () => {
  clearInterval(user);
  for (const [name, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  await stack.close();
  await home.remove();
});

const registrations = () => stack.asRequests.filter((r) => r.startsWith('POST /reg')).length;
// Whether a keychain answers differs between processes on a machine without a desktop session (so the key would
// end up in different places): these tests keep the key in the 0600 file, in every process.
const env = (store: string) => ({
  GATEHOUSE_STORE: store,
  GATEHOUSE_KEYCHAIN: '0',
  PATH: process.env['PATH'],
  OPENED_LOG: log,
});

/** Every record file of a store directory, as text. */
async function recordFiles(directory: string): Promise<string[]> {
  const texts: string[] = [];
  for (const name of await readdir(directory, { recursive: true })) {
    if (name.endsWith('.json')) texts.push(await readFile(join(directory, name), 'utf8'));
  }
  return texts;
}

describe("auth: 'oauth' and the CLI share one encrypted credential store", () => {
  it('keeps one credential per Client: close() and reconnect open no browser and register nothing', async () => {
    const store = join(home.path, 'library-first');
    process.env['GATEHOUSE_STORE'] = store;
    const opens = (await opened()).length;
    const registered = registrations();
    const client = new Client(stack.mcpUrl, { auth: 'oauth' });
    expect((await client.callTool<{ subject: string }>('whoami')).data.subject).toBe('demo');
    expect((await opened()).length).toBe(opens + 1);
    expect(registrations()).toBe(registered + 1);
    for (let i = 0; i < 2; i++) {
      await client.close();
      await client.connect();
      expect((await client.callTool<{ subject: string }>('whoami')).data.subject).toBe('demo');
    }
    await client.close();
    expect((await opened()).length).toBe(opens + 1);
    expect(registrations()).toBe(registered + 1);

    // Encrypted at rest: no token or registration in the record files; the key in a 0600 file (no keychain here).
    const files = await recordFiles(store);
    expect(files.length).toBeGreaterThan(0);
    for (const text of files) expect(text).not.toMatch(/access_token|refresh_token|client_id/);
    expect((await stat(join(store, TOKEN_KEY_FILE))).mode & 0o777).toBe(0o600);

    // Library → CLI: the CLI finds the login and uses it, without a browser.
    const tools = await cli(['tools', stack.mcpUrl, '--allow-http'], env(store));
    expect(tools.stderr).not.toMatch(/Open this URL/);
    expect(tools.status).toBe(0);
    expect(tools.stdout).toContain('whoami');
    expect((await opened()).length).toBe(opens + 1);
    const status = await cli(['status'], env(store));
    expect(status.status).toBe(0);
    expect(status.stdout).toContain(stack.mcpUrl);
    expect(status.stderr).toContain(`Credentials: encrypted files in ${store}, key in ${join(store, TOKEN_KEY_FILE)}`);
  });

  it('CLI → library: a `gatehouse login` is reused by auth: oauth (no browser, no registration)', async () => {
    const store = join(home.path, 'cli-first');
    const opens = (await opened()).length;
    const login = await cli(['login', stack.mcpUrl, '--allow-http'], env(store));
    expect(login.status, login.stderr).toBe(0);
    expect((await opened()).length).toBe(opens + 1);
    const registered = registrations();
    process.env['GATEHOUSE_STORE'] = store;
    await using client = new Client(stack.mcpUrl, { auth: 'oauth' });
    expect((await client.callTool<{ subject: string }>('whoami')).data.subject).toBe('demo');
    expect((await opened()).length).toBe(opens + 1);
    expect(registrations()).toBe(registered);
  });

  it('new OAuth() without tokenStorage uses the same default store; memory only when asked', async () => {
    const store = join(home.path, 'oauth-default');
    process.env['GATEHOUSE_STORE'] = store;
    const login = { username: 'demo', password: 'demo' };
    await new OAuth({ mcpUrl: stack.mcpUrl, login }).authorize();
    const files = await recordFiles(store);
    expect(files.length).toBeGreaterThan(0);
    for (const text of files) expect(text).not.toMatch(/access_token|refresh_token|client_id/);
    // Another OAuth (another program) finds the login; so does the CLI.
    expect((await new OAuth({ mcpUrl: stack.mcpUrl }).tokens())?.access_token).toBeTruthy();
    const status = await cli(['status', '--json'], env(store));
    expect(JSON.parse(status.stdout)).toEqual([expect.objectContaining({ server: stack.mcpUrl, state: 'valid' })]);

    const untouched = join(home.path, 'oauth-memory');
    process.env['GATEHOUSE_STORE'] = untouched;
    const memory = new OAuth({ mcpUrl: stack.mcpUrl, login, tokenStorage: 'memory' });
    await memory.authorize();
    expect((await memory.tokens())?.access_token).toBeTruthy();
    await expect(readdir(untouched)).rejects.toThrow(/ENOENT/);
    expect(await new OAuth({ mcpUrl: stack.mcpUrl }).tokens()).toBeUndefined();
  });

  it('a plaintext store written the old way is encrypted on first use and still read', async () => {
    const store = join(home.path, 'plaintext');
    const old = new TokenStorage(fileStore({ directory: store }));
    await old.saveTokens('https://mcp.example.com/mcp', {
      access_token: 'old-plaintext-access-token',
      token_type: 'Bearer',
      expires_in: 3600,
      refresh_token: 'old-plaintext-refresh-token',
    });
    await old.saveClient('https://mcp.example.com/mcp', { client_id: 'old-client' });
    expect((await recordFiles(store)).join('\n')).toContain('old-plaintext-access-token');

    const status = await cli(['status', '--json'], env(store));
    expect(status.status, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toEqual([expect.objectContaining({ server: 'https://mcp.example.com/mcp' })]);
    const after = (await recordFiles(store)).join('\n');
    expect(after).not.toContain('old-plaintext');
    const storage = new TokenStorage(defaultTokenStore({ directory: store }));
    expect((await storage.getTokens('https://mcp.example.com/mcp'))?.refresh_token).toBe('old-plaintext-refresh-token');
    expect((await storage.getClient('https://mcp.example.com/mcp'))?.client_id).toBe('old-client');
  });
});

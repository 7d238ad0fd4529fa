import { execFileSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOKEN_KEY_FILE } from '../../src/storage/index.js';
import { type OAuthTestStack, startOAuthTestStack, temporaryDirectory } from '../client/oauth-helpers.js';
import { type SecretService, startSecretService } from '../helpers/secret-service.js';
import { cli } from './helpers.js';

// The default token store where an OS keychain answers: a real Secret Service (gnome-keyring on a private D-Bus
// session). Fails loudly where dbus-daemon or gnome-keyring-daemon is missing.
let secrets: SecretService;
let stack: OAuthTestStack;
const home = await temporaryDirectory('keychain-store');
beforeAll(async () => {
  [secrets, stack] = await Promise.all([startSecretService(), startOAuthTestStack()]);
});
afterAll(async () => {
  await Promise.all([secrets?.stop(), stack?.close()]);
  await home.remove();
});

describe('the default token store with an OS keychain', () => {
  it('keeps the key in the keychain, writes no key file, says so in status, and stores only ciphertext', {
    timeout: 90_000,
  }, async () => {
    const store = join(home.path, 'store');
    const env = { GATEHOUSE_STORE: store, DBUS_SESSION_BUS_ADDRESS: secrets.address };
    const login = await cli(['login', stack.mcpUrl, '--login', 'demo:demo'], env);
    expect(login.status, login.stderr).toBe(0);

    // token-store.key names the keychain entry; it holds no key.
    const marker = (await readFile(join(store, TOKEN_KEY_FILE), 'utf8')).trim();
    expect(marker).toBe(`keychain:token-store-key:${store}`);
    // The key is in the Secret Service, under service "gatehouse".
    const entry = execFileSync('secret-tool', ['lookup', 'service', 'gatehouse', 'username', marker.slice(9)], {
      env: { ...process.env, DBUS_SESSION_BUS_ADDRESS: secrets.address },
      encoding: 'utf8',
    });
    expect(entry.length).toBeGreaterThan(20);

    const status = await cli(['status'], env);
    expect(status.status, status.stderr).toBe(0);
    expect(status.stdout).toContain(stack.mcpUrl);
    expect(status.stderr).toContain(`Credentials: encrypted files in ${store}, key in the OS keychain`);

    // Another process (the CLI again) reads it back through the keychain.
    const token = await cli(['token', stack.mcpUrl], env);
    expect(token.status, token.stderr).toBe(0);
    expect(token.stdout.trim().split('.').length).toBe(3);

    // Each record file's value is a JWE compact serialisation: no token, no registration in clear.
    const records: string[] = [];
    for (const name of await readdir(store, { recursive: true })) {
      if (name.endsWith('.json')) records.push(await readFile(join(store, name), 'utf8'));
    }
    expect(records.length).toBeGreaterThan(0);
    for (const text of records) {
      expect(text).not.toMatch(/access_token|refresh_token|client_id/);
      expect(text).not.toContain(token.stdout.trim());
      expect((JSON.parse(text) as { value: unknown }).value).toMatch(/^[\w-]+\.[\w-]*\.[\w-]+\.[\w-]+\.[\w-]+$/);
    }
  });
});

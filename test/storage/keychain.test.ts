import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keychainStore } from '../../src/storage/index.js';
import { buildStorageForChildren, temporaryDirectory, uniqueId } from './helpers.js';
import { storeSuite } from './suite.js';

/**
 * On Linux the keychain is the Secret Service over D-Bus. This file starts a private session bus and an unlocked
 * gnome-keyring on it (apt-get install dbus gnome-keyring), so the test talks to a real Secret Service. Elsewhere
 * it uses the OS keychain as it is.
 */
const started: ChildProcess[] = [];
const cleanups: Array<() => Promise<void>> = [];
const originalBus = process.env['DBUS_SESSION_BUS_ADDRESS'];

async function startSecretService(): Promise<void> {
  // A fresh keyring directory, so the login keyring is created (and unlocked) with our password.
  const home = await temporaryDirectory('keyring');
  cleanups.push(home.remove);
  const bus = spawn('dbus-daemon', ['--session', '--nofork', '--print-address=1'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  started.push(bus);
  const address = await new Promise<string>((resolve, reject) => {
    bus.once('error', reject);
    bus.stdout!.once('data', (chunk: Buffer) => resolve(chunk.toString().trim()));
  });
  process.env['DBUS_SESSION_BUS_ADDRESS'] = address;
  const keyring = spawn('gnome-keyring-daemon', ['--foreground', '--unlock', '--components=secrets'], {
    stdio: ['pipe', 'ignore', 'ignore'],
    env: { ...process.env, DBUS_SESSION_BUS_ADDRESS: address, HOME: home.path, XDG_DATA_HOME: home.path },
  });
  started.push(keyring);
  keyring.stdin!.end('test-login-password');
  // Wait until the Secret Service name is owned on the bus.
  for (let i = 0; i < 100; i++) {
    try {
      const names = execFileSync(
        'dbus-send',
        [
          '--session',
          '--print-reply',
          '--dest=org.freedesktop.DBus',
          '/org/freedesktop/DBus',
          'org.freedesktop.DBus.ListNames',
        ],
        { env: process.env, encoding: 'utf8' },
      );
      if (names.includes('org.freedesktop.secrets')) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('gnome-keyring did not register org.freedesktop.secrets');
}

beforeAll(async () => {
  if (process.platform === 'linux') await startSecretService();
});
afterAll(async () => {
  for (const child of started.reverse()) child.kill('SIGTERM');
  for (const cleanup of cleanups) await cleanup();
  if (originalBus === undefined) delete process.env['DBUS_SESSION_BUS_ADDRESS'];
  else process.env['DBUS_SESSION_BUS_ADDRESS'] = originalBus;
});

const service = uniqueId('gatehouse-test');
storeSuite('OS keychain (Secret Service)', (namespace) => keychainStore({ service, namespace }));

describe('keychain without a keychain service', () => {
  // In a child process: the native binding keeps its D-Bus connection for the life of a process.
  it.runIf(process.platform === 'linux')('rejects with KeychainUnavailableError and a hint', async () => {
    const modulePath = await buildStorageForChildren();
    const script = `
      const { keychainStore } = await import(${JSON.stringify(pathToFileURL(modulePath).href)});
      const error = await keychainStore({ service: 'gatehouse-none' }).set('k', 'v').catch((e) => e);
      console.log(JSON.stringify({ name: error?.name, code: error?.code, hint: error?.hint }));`;
    const output = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, DBUS_SESSION_BUS_ADDRESS: 'unix:path=/nonexistent/gatehouse-no-bus' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    const result = JSON.parse(output.trim().split('\n').pop()!);
    expect(result).toMatchObject({ name: 'KeychainUnavailableError', code: 'ERR_STORAGE_KEYCHAIN_UNAVAILABLE' });
    expect(result.hint).toMatch(/Secret Service/);
  });
});

import { execFileSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keychainStore } from '../../src/storage/index.js';
import { type SecretService, startSecretService } from '../helpers/secret-service.js';
import { buildStorageForChildren, uniqueId } from './helpers.js';
import { storeSuite } from './suite.js';

// On Linux the keychain is the Secret Service over D-Bus: a private session bus and gnome-keyring (see
// startSecretService). Elsewhere the OS keychain as it is.
let secretService: SecretService | undefined;
const originalBus = process.env['DBUS_SESSION_BUS_ADDRESS'];
beforeAll(async () => {
  if (process.platform === 'linux') {
    secretService = await startSecretService();
    process.env['DBUS_SESSION_BUS_ADDRESS'] = secretService.address;
  }
});
afterAll(async () => {
  await secretService?.stop();
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

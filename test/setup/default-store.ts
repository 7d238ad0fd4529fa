import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

// `new OAuth()` and `auth: 'oauth'` store credentials in the default token store: in tests, a fresh directory per
// test file (never the real home directory, never shared between parallel files), its key in a 0600 file (whether
// a keychain answers differs between processes here). Tests that need the keychain set GATEHOUSE_KEYCHAIN themselves.
const saved = { store: process.env['GATEHOUSE_STORE'], keychain: process.env['GATEHOUSE_KEYCHAIN'] };
const directory = mkdtempSync(join(tmpdir(), 'gatehouse-test-store-'));
process.env['GATEHOUSE_STORE'] = directory;
process.env['GATEHOUSE_KEYCHAIN'] = '0';

afterAll(() => {
  for (const [name, value] of [
    ['GATEHOUSE_STORE', saved.store],
    ['GATEHOUSE_KEYCHAIN', saved.keychain],
  ] as const) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  rmSync(directory, { recursive: true, force: true });
});

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/authorization-server/serve.js';
import { startGateway } from '../../src/gateway/index.js';
import { generateEncryptionKey } from '../../src/storage/encrypted.js';
import { cleanup, tempDir } from './helpers.js';

describe('startGateway: the runtime env, not process.env', () => {
  afterAll(cleanup);

  it('seals the embedded store with GATEHOUSE_STORE_KEY from runtime.env, and writes no key file', async () => {
    expect(process.env['GATEHOUSE_STORE_KEY']).toBeUndefined();
    const dataDir = await tempDir();
    const key = generateEncryptionKey();
    const gateway = await startGateway(
      { port: 0, superuser: 'admin', mcpServers: { api: { command: 'true' } } },
      { env: { GATEHOUSE_SUPERUSER_PASSWORD: 'a long password', GATEHOUSE_STORE_KEY: key }, dataDir },
    );
    await gateway.close();
    expect(existsSync(join(dataDir, 'store.key'))).toBe(false);
    // The store opens with that key, and refuses another one, naming the cause.
    const store = await openStore('sqlite:', dataDir, { GATEHOUSE_STORE_KEY: key });
    await store.close();
    await expect(openStore('sqlite:', dataDir, { GATEHOUSE_STORE_KEY: generateEncryptionKey() })).rejects.toThrow(
      /another at-rest key/,
    );
  });
});

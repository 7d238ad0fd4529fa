import KeyvPostgres from '@keyv/postgres';
import KeyvRedis from '@keyv/redis';
import Keyv from 'keyv';
import { describe, expect, it } from 'vitest';
import {
  dynamoStore,
  isKeyv,
  postgresStore,
  redisStore,
  TokenStorage,
  toKeyValueStore,
} from '../../src/storage/index.js';
import { dynamoClientConfig, POSTGRES_URL, REDIS_URL, startDynalite, uniqueId } from './helpers.js';
import { storeSuite } from './suite.js';

const run = uniqueId('kv');

storeSuite('redis', (namespace) => redisStore(REDIS_URL, { prefix: `gatehouse-test:${run}:`, namespace }));

async function dropTable(table: string): Promise<void> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  await client.query(`DROP TABLE IF EXISTS ${table}`);
  await client.end();
}

storeSuite('postgres', (namespace) => postgresStore(POSTGRES_URL, { table: `${run}_pg`, namespace }), {
  teardown: () => dropTable(`${run}_pg, ${run}_pg_lease`),
});

const dynalite = await startDynalite();
storeSuite(
  'dynamodb (dynalite)',
  (namespace) =>
    dynamoStore({ tableName: `${run}_dyn`, namespace, clientConfig: dynamoClientConfig(dynalite.endpoint) }),
  // DynamoDB TTLs are whole seconds, rounded up so nothing expires early.
  { ttlSlackMs: 1000, teardown: () => dynalite.close() },
);

// Any Keyv instance plugs in as it is: the seam is structural.
storeSuite('Keyv 5 + @keyv/redis', (namespace) => {
  const store = new KeyvRedis(REDIS_URL);
  const keyv = new Keyv(store, { namespace: `gatehouse-test:${run}:${namespace}`, useKeyPrefix: false });
  store.namespace = `gatehouse-test:${run}:${namespace}`;
  return Object.assign(toKeyValueStore(keyv), { close: () => keyv.disconnect() });
});

storeSuite(
  'Keyv 5 + @keyv/postgres',
  (namespace) => {
    const keyv = new Keyv(new KeyvPostgres({ uri: POSTGRES_URL, table: `${run}_keyv`, keySize: 2048 }), { namespace });
    // @keyv/postgres shares one pool per URI: the first disconnect ends it, later ones throw.
    return Object.assign(toKeyValueStore(keyv), { close: () => keyv.disconnect().catch(() => {}) });
  },
  { teardown: () => dropTable(`${run}_keyv`) },
);

storeSuite('bare @keyv/redis adapter (no Keyv around it)', (namespace) => {
  const adapter = new KeyvRedis(REDIS_URL, { namespace: `gatehouse-test:${run}:bare:${namespace}` });
  return Object.assign(toKeyValueStore(adapter), { close: () => adapter.disconnect() });
});

describe('the seam', () => {
  it('recognises Keyv instances and wraps bare adapters', async () => {
    const keyv = new Keyv();
    expect(isKeyv(keyv)).toBe(true);
    expect(toKeyValueStore(keyv)).toBe(keyv);
    const adapter = new KeyvRedis(REDIS_URL);
    expect(isKeyv(adapter)).toBe(false);
    expect(toKeyValueStore(adapter)).not.toBe(adapter);
    await adapter.disconnect();
  });

  it('TokenStorage works over a Keyv instance', async () => {
    const keyv = new Keyv(new KeyvRedis(REDIS_URL), { namespace: `gatehouse-test:${run}:tokens`, useKeyPrefix: false });
    (keyv.store as KeyvRedis<unknown>).namespace = `gatehouse-test:${run}:tokens`;
    const storage = new TokenStorage(keyv);
    await storage.saveTokens('https://mcp.example.com', {
      access_token: 'at',
      token_type: 'Bearer',
      refresh_token: 'rt',
    });
    expect(await storage.getTokens('https://mcp.example.com/')).toMatchObject({
      access_token: 'at',
      refresh_token: 'rt',
    });
    await keyv.clear();
    await keyv.disconnect();
  });

  it('fails loudly when the service is down', async () => {
    const store = postgresStore('postgresql://postgres@127.0.0.1:1/test', { table: `${run}_down` });
    await expect(store.get('k')).rejects.toThrow(/ECONNREFUSED|connect/);
    await store.close();
  });
});

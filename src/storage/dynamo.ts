import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { brand, checkNamespace, type GatehouseStore, isTtl, loadOptional, toJson } from './types.js';

/** Options of {@link dynamoStore}. */
export interface DynamoStoreOptions {
  /** Table name. Default `gatehouse_kv`. Partition key `ns` (S), sort key `k` (S), TTL attribute `expires_at`. */
  tableName?: string;
  /** Default `default`. */
  namespace?: string;
  /** Create the table (on-demand billing) when it does not exist. Default `true`. */
  createTable?: boolean;
  /**
   * AWS SDK client settings (`DynamoDBClientConfig`): `region`, `endpoint`, `credentials`, ... Typed loosely so the
   * optional peer's types stay out of Gatehouse's public types.
   */
  clientConfig?: { region?: string; endpoint?: string; [setting: string]: unknown };
  /** Use this `DynamoDBClient` instead of creating one (it is then not destroyed by `close()`). */
  client?: { send(command: never): Promise<unknown>; destroy(): void };
}

type Dynamo = typeof import('@aws-sdk/client-dynamodb');

/**
 * A key-value store in Amazon DynamoDB (through `@aws-sdk/client-dynamodb`, installed separately). One item per key
 * (`ns`, `k`, JSON text in `v`); DynamoDB's TTL purges expired items eventually and reads hide them at once.
 * Unlike `@keyv/dynamo`, entries written without a TTL never expire (that adapter silently gives them six hours).
 * Limits: 1 KB keys, 400 KB items.
 *
 * @example
 * ```ts
 * import { dynamoStore, TokenStorage } from 'gatehouse/storage';
 *
 * const storage = new TokenStorage(dynamoStore({ tableName: 'mcp-tokens', clientConfig: { region: 'eu-west-1' } }));
 * ```
 */
export function dynamoStore(options: DynamoStoreOptions = {}): GatehouseStore {
  const TableName = options.tableName ?? 'gatehouse_kv';
  const ns = checkNamespace(options.namespace ?? 'default');
  let opened: Promise<{ sdk: Dynamo; client: DynamoDBClient }> | undefined;

  const open = () => {
    opened ??= (async () => {
      const sdk = await loadOptional('@aws-sdk/client-dynamodb', 'DynamoDB', () => import('@aws-sdk/client-dynamodb'));
      const client =
        (options.client as DynamoDBClient | undefined) ?? new sdk.DynamoDBClient(options.clientConfig ?? {});
      if (options.createTable ?? true) await ensureTable(sdk, client, TableName);
      return { sdk, client };
    })().catch((error: unknown) => {
      opened = undefined;
      throw error;
    });
    return opened;
  };

  return brand<GatehouseStore>({
    kind: 'dynamodb',
    async get(key) {
      const { sdk, client } = await open();
      const { Item } = await client.send(
        new sdk.GetItemCommand({ TableName, Key: { ns: { S: ns }, k: { S: key } }, ConsistentRead: true }),
      );
      if (!Item?.['v']?.S) return undefined;
      const expiresAt = Item['expires_at']?.N;
      if (expiresAt !== undefined && Number(expiresAt) * 1000 <= Date.now()) return undefined;
      return JSON.parse(Item['v'].S);
    },
    async set(key, value, ttlMs) {
      const { sdk, client } = await open();
      const Item: Record<string, { S: string } | { N: string }> = {
        ns: { S: ns },
        k: { S: key },
        v: { S: toJson(value) },
      };
      // DynamoDB TTL is in whole seconds; round up so an entry never disappears early.
      if (isTtl(ttlMs)) Item['expires_at'] = { N: String(Math.ceil((Date.now() + ttlMs) / 1000)) };
      await client.send(new sdk.PutItemCommand({ TableName, Item }));
    },
    async delete(key) {
      const { sdk, client } = await open();
      const { Attributes } = await client.send(
        new sdk.DeleteItemCommand({ TableName, Key: { ns: { S: ns }, k: { S: key } }, ReturnValues: 'ALL_OLD' }),
      );
      return Attributes !== undefined;
    },
    async clear() {
      const { sdk, client } = await open();
      let ExclusiveStartKey: Record<string, import('@aws-sdk/client-dynamodb').AttributeValue> | undefined;
      do {
        const page = await client.send(
          new sdk.QueryCommand({
            TableName,
            KeyConditionExpression: 'ns = :ns',
            ExpressionAttributeValues: { ':ns': { S: ns } },
            ProjectionExpression: 'k',
            ExclusiveStartKey,
          }),
        );
        const keys = (page.Items ?? []).map((item) => item['k']?.S).filter((k): k is string => k !== undefined);
        for (let i = 0; i < keys.length; i += 25) {
          await batchDelete(sdk, client, TableName, ns, keys.slice(i, i + 25));
        }
        ExclusiveStartKey = page.LastEvaluatedKey;
      } while (ExclusiveStartKey);
    },
    async close() {
      const o = opened;
      opened = undefined;
      if (o && !options.client) (await o).client.destroy();
    },
  });
}

async function batchDelete(
  sdk: Dynamo,
  client: DynamoDBClient,
  table: string,
  ns: string,
  keys: string[],
): Promise<void> {
  let requests = keys.map((k) => ({ DeleteRequest: { Key: { ns: { S: ns }, k: { S: k } } } }));
  for (let attempt = 0; requests.length > 0; attempt++) {
    const { UnprocessedItems } = await client.send(
      new sdk.BatchWriteItemCommand({ RequestItems: { [table]: requests } }),
    );
    requests = (UnprocessedItems?.[table] ?? []) as typeof requests;
    if (requests.length > 0) await new Promise((resolve) => setTimeout(resolve, Math.min(50 * 2 ** attempt, 1000)));
  }
}

async function ensureTable(sdk: Dynamo, client: DynamoDBClient, TableName: string): Promise<void> {
  try {
    await client.send(new sdk.DescribeTableCommand({ TableName }));
    return;
  } catch (error) {
    if (!(error instanceof sdk.ResourceNotFoundException)) throw error;
  }
  try {
    await client.send(
      new sdk.CreateTableCommand({
        TableName,
        KeySchema: [
          { AttributeName: 'ns', KeyType: 'HASH' },
          { AttributeName: 'k', KeyType: 'RANGE' },
        ],
        AttributeDefinitions: [
          { AttributeName: 'ns', AttributeType: 'S' },
          { AttributeName: 'k', AttributeType: 'S' },
        ],
        BillingMode: 'PAY_PER_REQUEST',
      }),
    );
  } catch (error) {
    // Another instance created it first.
    if (!(error instanceof sdk.ResourceInUseException)) throw error;
  }
  await sdk.waitUntilTableExists({ client, maxWaitTime: 60, minDelay: 1 }, { TableName });
  try {
    await client.send(
      new sdk.UpdateTimeToLiveCommand({
        TableName,
        TimeToLiveSpecification: { AttributeName: 'expires_at', Enabled: true },
      }),
    );
  } catch {
    // Best effort: emulators (dynalite) lack TTL, and reads hide expired items anyway.
  }
}

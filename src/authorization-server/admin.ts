import type { AdapterPayload } from 'oidc-provider';
import type { OidcAdapterFactory } from '../storage/oidc/common.js';
import type { OidcAdapterOptions } from '../storage/oidc/factory.js';
import { KEYS_MODEL, rotateKeys } from './keys.js';
import { ServeConfigError } from './serve.js';

/** One stored entry, as `gatehouse admin … list` shows it. */
export interface StoredEntry {
  id: string;
  payload: AdapterPayload;
}

const TABLE = 'gatehouse_oidc';
const REDIS_PREFIX = 'gatehouse:oidc:';

/**
 * Lists the live entries of one oidc-provider model (`Client`, `Grant`, …) straight from the backend: the
 * adapter interface has no listing, so this reads the tables/keys of `gatehouse/storage`'s oidc adapters.
 */
export async function listEntries(options: OidcAdapterOptions, model: string): Promise<StoredEntry[]> {
  switch (options.backend) {
    case 'memory':
      throw new ServeConfigError('the memory store lives inside a running server and cannot be administered', {
        code: 'ERR_SERVE_CONFIG',
        hint: 'Point --store at the SQLite file, Redis or PostgreSQL the server uses.',
      });
    case 'sqlite': {
      const { openSqlite } = await import('../storage/sqlite-driver.js');
      const db = await openSqlite(options.path);
      try {
        const rows = db
          .prepare(
            `SELECT id, payload FROM ${options.table ?? TABLE} WHERE model = ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY id`,
          )
          .all(model, Date.now()) as Array<{ id: string; payload: string }>;
        return rows.map((r) => ({ id: r.id, payload: JSON.parse(r.payload) as AdapterPayload }));
      } finally {
        db.close();
      }
    }
    case 'postgres': {
      const { openPgPool } = await import('../storage/postgres.js');
      const pool = options.pool ?? (await openPgPool(options.url ?? '', options.poolConfig));
      try {
        const { rows } = await pool.query<{ id: string; payload: AdapterPayload }>(
          `SELECT id, payload FROM ${options.table ?? TABLE} WHERE model = $1 AND (expires_at IS NULL OR expires_at > now()) ORDER BY id`,
          [model],
        );
        return rows;
      } finally {
        if (!options.pool) await pool.end();
      }
    }
    case 'redis': {
      const { connectRedis, escapeRedisGlob } = await import('../storage/redis.js');
      const client = options.client ?? (await connectRedis(options.url ?? 'redis://127.0.0.1:6379'));
      const prefix = `${options.prefix ?? REDIS_PREFIX}${model}:`;
      try {
        const entries: StoredEntry[] = [];
        let cursor: string | number = '0';
        do {
          const page: { cursor: string | number; keys: string[] } = await client.scan(String(cursor), {
            MATCH: `${escapeRedisGlob(prefix)}*`,
            COUNT: 500,
          });
          cursor = page.cursor;
          for (const key of page.keys) {
            const [payload] = (await client.eval("return redis.call('HMGET', KEYS[1], 'payload')", {
              keys: [key],
              arguments: [],
            })) as Array<string | null>;
            if (payload) entries.push({ id: key.slice(prefix.length), payload: JSON.parse(payload) as AdapterPayload });
          }
        } while (String(cursor) !== '0');
        return entries.sort((a, b) => a.id.localeCompare(b.id));
      } finally {
        if (!options.client) await (client.close?.() ?? client.quit?.());
      }
    }
  }
}

/** Deletes a dynamically registered client and revokes every grant it holds. Returns how many grants went. */
export async function revokeClient(
  store: OidcAdapterFactory,
  options: OidcAdapterOptions,
  clientId: string,
): Promise<{ found: boolean; grants: number }> {
  const client = await store('Client').find(clientId);
  const grants = (await listEntries(options, 'Grant')).filter((g) => g.payload['clientId'] === clientId);
  for (const grant of grants) await revokeGrant(store, grant.id);
  if (client) await store('Client').destroy(clientId);
  return { found: client !== undefined, grants: grants.length };
}

/** Revokes a grant: its tokens and codes, then the grant itself. */
export async function revokeGrant(store: OidcAdapterFactory, grantId: string): Promise<boolean> {
  const grant = await store('Grant').find(grantId);
  await store('AccessToken').revokeByGrantId(grantId);
  await store('Grant').destroy(grantId);
  return grant !== undefined;
}

/** Adds a new signing key to the store (servers sign with it after their next start). */
export async function rotateStoredKeys(store: OidcAdapterFactory): Promise<{ kid: string; kids: string[] }> {
  return rotateKeys(store(KEYS_MODEL));
}

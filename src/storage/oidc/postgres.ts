import { randomUUID } from 'node:crypto';
import type { Pool, PoolConfig } from 'pg';
import { openPgPool, withAdvisoryLock, withSchemaLock } from '../postgres.js';
import { sqlIdentifier } from '../sqlite.js';
import { AtRest, type AtRestOptions, FORMAT_MARKER, type LegacyEntry } from './at-rest.js';
import {
  type Adapter,
  type AdapterPayload,
  alreadyConsumed,
  answerEntry,
  type Broadcast,
  type ConsumeEntry,
  checkTopic,
  FORMAT_LEVEL,
  FormatLevel,
  formatLevelOf,
  guarded,
  type OidcAdapterCommonOptions,
  type OidcAdapterFactory,
  purgeTimer,
  rewriteLegacy,
  type UpsertEntry,
  upsertOnceOpened,
  withKeptAnswer,
} from './common.js';

/** Options of {@link postgresOidcAdapter}. Give `url` or `pool`. */
export interface PostgresOidcAdapterOptions extends OidcAdapterCommonOptions, AtRestOptions {
  url?: string;
  /** An existing pool (not closed by `close()`). */
  pool?: Pool;
  poolConfig?: PoolConfig;
  /** Table name. Default `gatehouse_oidc`. */
  table?: string;
}

/** Expiry and consumption use the database clock, so instances with skewed clocks agree. */
const LIVE = '(expires_at IS NULL OR expires_at > now())';
// The old layout kept the payload as a JSON object; a sealed payload is a JSON string.
const LEGACY = `jsonb_typeof(payload) = 'object'`;

class PostgresBackend {
  readonly pool: Promise<Pool>;

  constructor(
    readonly table: string,
    readonly atRest: AtRest,
    options: PostgresOidcAdapterOptions,
  ) {
    this.pool = (async () => {
      const pool = options.pool ?? (await openPgPool(options.url ?? '', options.poolConfig));
      await withSchemaLock(
        pool,
        table,
        `CREATE TABLE IF NOT EXISTS ${table} (
          model text NOT NULL,
          id text NOT NULL,
          payload jsonb NOT NULL,
          grant_id text,
          uid text,
          user_code text,
          expires_at timestamptz,
          consumed_at timestamptz,
          PRIMARY KEY (model, id));
        CREATE INDEX IF NOT EXISTS ${table}_grant ON ${table} (grant_id) WHERE grant_id IS NOT NULL;
        CREATE INDEX IF NOT EXISTS ${table}_uid ON ${table} (model, uid) WHERE uid IS NOT NULL;
        CREATE INDEX IF NOT EXISTS ${table}_user_code ON ${table} (model, user_code) WHERE user_code IS NOT NULL;
        CREATE INDEX IF NOT EXISTS ${table}_expires ON ${table} (expires_at) WHERE expires_at IS NOT NULL;
        ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS answer text;
        ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS answer_expires_at timestamptz;
        CREATE INDEX IF NOT EXISTS ${table}_answer ON ${table} (answer_expires_at) WHERE answer IS NOT NULL;`,
      );
      return pool;
    })();
    this.pool.catch(() => {});
  }

  /** Runs a query with the store deadline; an unreachable database becomes `StoreUnavailableError`. */
  query<R extends object = Record<string, unknown>>(sql: string, params: unknown[]) {
    return guarded(
      'postgres',
      this.pool.then((pool) => pool.query<R>(sql, params)),
    );
  }

  async purge(): Promise<number> {
    // Kept answers go when their window closes, not with the (long-lived) consumed token.
    await this.query(
      `UPDATE ${this.table} SET answer = NULL, answer_expires_at = NULL
       WHERE answer IS NOT NULL AND answer_expires_at <= now()`,
      [],
    );
    return (await this.query(`DELETE FROM ${this.table} WHERE expires_at <= now()`, [])).rowCount ?? 0;
  }

  /**
   * Writes entries in one statement: one round trip, all or none. A consumed artifact stays consumed. With
   * `consume`, the same statement first consumes that entry (the compare-and-set of {@link PostgresOidcAdapter.consume})
   * and writes only if it did.
   */
  async upsertMany(entries: readonly UpsertEntry[], consume?: ConsumeEntry): Promise<void> {
    // Below format level 3 an answer is an entry of its own, where instances of the previous version look.
    const answer = consume?.answer && this.level.current() ? consume.answer : undefined;
    if (consume?.answer && !answer) entries = [...entries, answerEntry(consume.answer)];
    // One row per key (the last write wins, as sequential upserts would): a statement may not touch a row twice.
    const rows = new Map<string, unknown[]>();
    for (const { model, id, payload, expiresIn } of entries) {
      const row = this.atRest.row(model, id, payload);
      rows.set(`${model}\0${row.key}`, [
        model,
        row.key,
        row.sealed,
        row.grant,
        row.uid,
        row.userCode,
        typeof expiresIn === 'number' ? expiresIn : null,
        typeof payload.consumed === 'number' ? payload.consumed : null,
      ]);
    }
    if (rows.size === 0 && !consume) return;
    const params = [...rows.values()].flat();
    const values = [...rows.values()].map((_, row) => {
      const $ = (column: number) => `$${row * 8 + column}`;
      return `(${$(1)}, ${$(2)}, to_jsonb(${$(3)}::text), ${$(4)}, ${$(5)}, ${$(6)},
         CASE WHEN ${$(7)}::float8 IS NULL THEN NULL ELSE now() + ${$(7)}::float8 * interval '1 second' END,
         CASE WHEN ${$(8)}::float8 IS NULL THEN NULL ELSE to_timestamp(${$(8)}::float8) END)`;
    });
    const t = this.table;
    const upsert = (source: string) =>
      `INSERT INTO ${t} (model, id, payload, grant_id, uid, user_code, expires_at, consumed_at)
       ${source}
       ON CONFLICT (model, id) DO UPDATE SET payload = excluded.payload, grant_id = excluded.grant_id,
         uid = excluded.uid, user_code = excluded.user_code, expires_at = excluded.expires_at,
         consumed_at = COALESCE(${t}.consumed_at, excluded.consumed_at)`;
    if (!consume) {
      await this.query(upsert(`VALUES ${values.join(', ')}`), params);
      return;
    }
    // The UPDATE's compare-and-set as in consume(); the INSERT sees its RETURNING rows and writes only after a win.
    const at = params.length;
    const key = this.atRest.lookup(consume.model, consume.id);
    const kept = answer
      ? `, answer = $${at + 3}, answer_expires_at = now() + $${at + 4}::float8 * interval '1 second'`
      : '';
    const consumed = `consumed AS (UPDATE ${t} SET consumed_at = now()${kept}
        WHERE model = $${at + 1} AND id = $${at + 2} AND consumed_at IS NULL AND ${LIVE} RETURNING 1)`;
    const written =
      rows.size === 0
        ? ''
        : `, written AS (${upsert(`SELECT * FROM (VALUES ${values.join(', ')}) AS v WHERE EXISTS (SELECT 1 FROM consumed)`)} RETURNING 1)`;
    const { rows: result } = await this.query<{ won: number }>(
      `WITH ${consumed}${written} SELECT (SELECT count(*) FROM consumed)::int AS won`,
      [...params, consume.model, key, ...(answer ? [answer.sealed, answer.expiresIn] : [])],
    );
    if (result[0]?.won === 1) return;
    const { rows: live } = await this.query(`SELECT 1 FROM ${t} WHERE model = $1 AND id = $2 AND ${LIVE}`, [
      consume.model,
      key,
    ]);
    return alreadyConsumed(consume.model, live.length > 0 ? 'consumed' : 'missing');
  }

  /** The store's format level, from its marker (read in the background now and then: see {@link FormatLevel}). */
  readonly level = new FormatLevel(() => this.readLevel());

  async readLevel(): Promise<number> {
    const lookup = this.atRest.lookup(FORMAT_MARKER.model, FORMAT_MARKER.id);
    const { rows } = await this.query<{ payload: string }>(
      `SELECT payload #>> '{}' AS payload FROM ${this.table} WHERE model = $1 AND id = $2`,
      [FORMAT_MARKER.model, lookup],
    );
    return rows[0] ? formatLevelOf(this.atRest.open(lookup, rows[0].payload).payload) : 2;
  }

  /** Raises the format marker to {@link FORMAT_LEVEL} (`gatehouse admin store upgrade`). */
  async upgrade(adapter: (model: string) => Adapter): Promise<{ from: number; to: number }> {
    const from = await this.readLevel();
    if (from < FORMAT_LEVEL) {
      await adapter(FORMAT_MARKER.model).upsert(FORMAT_MARKER.id, { format: FORMAT_LEVEL } as never);
    }
    const to = Math.max(from, FORMAT_LEVEL);
    this.level.set(to);
    return { from, to };
  }

  /** Migrates a table of the old clear layout once (under an advisory lock), then checks this instance's key. */
  async migrate(adapter: (model: string) => Adapter): Promise<void> {
    const pool = await this.pool;
    const markerKey = this.atRest.lookup(FORMAT_MARKER.model, FORMAT_MARKER.id);
    const readMarker = async () =>
      (
        await pool.query<{ payload: string }>(
          `SELECT payload #>> '{}' AS payload FROM ${this.table} WHERE model = $1 AND id = $2`,
          [FORMAT_MARKER.model, markerKey],
        )
      ).rows[0];
    let marker = await readMarker();
    if (!marker) {
      await withAdvisoryLock(pool, `${this.table}:migrate`, async (client) => {
        if (await readMarker()) return;
        const { rows } = await client.query<{
          model: string;
          id: string;
          payload: AdapterPayload;
          expires_in: number | null;
          consumed: number | null;
        }>(
          `SELECT model, id, payload, floor(extract(epoch FROM expires_at - now()))::float8 AS expires_in,
             floor(extract(epoch FROM consumed_at))::float8 AS consumed
           FROM ${this.table} WHERE ${LEGACY}`,
        );
        const legacy = rows.map(
          (row): LegacyEntry => ({
            model: row.model,
            id: row.id,
            payload: row.payload,
            ...(row.expires_in === null ? {} : { expiresIn: row.expires_in }),
            ...(row.consumed === null ? {} : { consumed: row.consumed }),
          }),
        );
        await rewriteLegacy(adapter, legacy);
        await client.query(`DELETE FROM ${this.table} WHERE ${LEGACY}`);
        // A store this version creates (or brings from the 0.1 layout) starts at the current format level.
        await adapter(FORMAT_MARKER.model).upsert(FORMAT_MARKER.id, { format: FORMAT_LEVEL } as never);
      });
      marker = await readMarker();
    }
    this.atRest.checkMarker('postgres', markerKey, marker!.payload);
    this.level.set(formatLevelOf(this.atRest.open(markerKey, marker!.payload).payload));
  }
}

interface Row {
  id: string;
  payload: string;
  consumed: number | null;
  answer: string | null;
}

/** oidc-provider adapter over PostgreSQL (`pg`); any number of instances may share the table. */
export class PostgresOidcAdapter implements Adapter {
  constructor(
    readonly model: string,
    private readonly backend: PostgresBackend,
  ) {}

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    await this.backend.upsertMany([{ model: this.model, id, payload, expiresIn }]);
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    return this.#findBy('id', this.backend.atRest.lookup(this.model, id));
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return this.#findBy('uid', this.backend.atRest.index('uid', uid)!);
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return this.#findBy('user_code', this.backend.atRest.index('userCode', userCode)!);
  }

  async #findBy(column: 'id' | 'uid' | 'user_code', value: string): Promise<AdapterPayload | undefined> {
    const { rows } = await this.backend.query<Row>(
      `SELECT id, payload #>> '{}' AS payload, floor(extract(epoch FROM consumed_at))::float8 AS consumed,
         CASE WHEN answer_expires_at > now() THEN answer END AS answer
       FROM ${this.backend.table} WHERE model = $1 AND ${column} = $2 AND ${LIVE} LIMIT 1`,
      [this.model, value],
    );
    const row = rows[0];
    if (!row) return undefined;
    const { payload } = this.backend.atRest.open(row.id, row.payload);
    if (row.consumed !== null) payload.consumed = row.consumed;
    return withKeptAnswer(payload, row.answer);
  }

  async consume(id: string): Promise<void> {
    const key = this.backend.atRest.lookup(this.model, id);
    // Compare-and-set. Under READ COMMITTED a concurrent UPDATE of the same row waits for the first to commit,
    // then re-checks `consumed_at IS NULL` on the new row version and matches nothing: exactly one winner.
    const result = await this.backend.query(
      `UPDATE ${this.backend.table} SET consumed_at = now() WHERE model = $1 AND id = $2 AND consumed_at IS NULL AND ${LIVE}`,
      [this.model, key],
    );
    if (result.rowCount === 1) return;
    const { rows } = await this.backend.query(
      `SELECT 1 FROM ${this.backend.table} WHERE model = $1 AND id = $2 AND ${LIVE}`,
      [this.model, key],
    );
    return alreadyConsumed(this.model, rows.length > 0 ? 'consumed' : 'missing');
  }

  async destroy(id: string): Promise<void> {
    await this.backend.query(`DELETE FROM ${this.backend.table} WHERE model = $1 AND id = $2`, [
      this.model,
      this.backend.atRest.lookup(this.model, id),
    ]);
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    await this.backend.query(`DELETE FROM ${this.backend.table} WHERE grant_id = $1`, [
      this.backend.atRest.index('grant', grantId),
    ]);
  }
}

/**
 * An oidc-provider `adapter` over PostgreSQL, for several authorization-server instances sharing one database.
 * Entries are looked up by a hash of their id and their payloads are sealed with `encryptionKeys` (the same on every
 * instance); a table of the old clear layout is migrated by `ready()`.
 *
 * @example
 * ```ts
 * import Provider from 'oidc-provider';
 * import { postgresOidcAdapter } from 'gatehouse/storage';
 *
 * const adapter = postgresOidcAdapter({ url: process.env.DATABASE_URL, encryptionKeys: [process.env.GATEHOUSE_STORE_KEY!] });
 * await adapter.ready();
 * const provider = new Provider('https://auth.example.com', { adapter });
 * ```
 */
export function postgresOidcAdapter(options: PostgresOidcAdapterOptions): OidcAdapterFactory {
  const backend = new PostgresBackend(
    sqlIdentifier(options.table ?? 'gatehouse_oidc'),
    new AtRest(options.encryptionKeys ?? []),
    options,
  );
  const adapter = (model: string): Adapter => new PostgresOidcAdapter(model, backend);
  const migrated = backend.migrate(adapter);
  migrated.catch(() => {});
  const timer = purgeTimer(options.purgeIntervalMs, () => backend.purge(), options.onError ?? (() => {}));
  return Object.assign(adapter, {
    ready: () => migrated,
    purgeExpired: () => backend.purge(),
    close: async () => {
      if (timer) clearInterval(timer);
      if (!options.pool) await (await backend.pool.catch(() => undefined))?.end();
    },
    list: async (model: string) => {
      const { rows } = await backend.query<{ id: string; payload: string }>(
        `SELECT id, payload #>> '{}' AS payload FROM ${backend.table} WHERE model = $1 AND ${LIVE} AND NOT ${LEGACY}`,
        [model],
      );
      return rows.map((row) => backend.atRest.open(row.id, row.payload)).sort((a, b) => a.id.localeCompare(b.id));
    },
    rekey: async () => {
      await migrated;
      const { rows } = await backend.query<{ model: string; id: string; payload: string }>(
        `SELECT model, id, payload #>> '{}' AS payload FROM ${backend.table} WHERE NOT ${LEGACY}`,
        [],
      );
      let changed = 0;
      for (const row of rows) {
        const resealed = backend.atRest.reseal(row.id, row.payload);
        if (resealed === undefined) continue;
        await backend.query(`UPDATE ${backend.table} SET payload = to_jsonb($1::text) WHERE model = $2 AND id = $3`, [
          resealed,
          row.model,
          row.id,
        ]);
        changed++;
      }
      return changed;
    },
    upsertMany: upsertOnceOpened(migrated, (entries, consume) => backend.upsertMany(entries, consume)),
    broadcast: (topic: string, onmessage: (value: AdapterPayload) => void) =>
      listen(backend, adapter, topic, onmessage),
    upgrade: async () => {
      await migrated;
      return backend.upgrade(adapter);
    },
  });
}

/** The model a broadcast value too large for `NOTIFY` is stored under, for {@link BROADCAST_STORED_SECONDS}. */
export const BROADCAST_MODEL = 'GatehouseBroadcast';
const BROADCAST_STORED_SECONDS = 60;
/** PostgreSQL refuses a `NOTIFY` payload of 8000 bytes or more; sealed values up to this size are sent in it. */
const NOTIFY_MAX_BYTES = 7900;

/**
 * A topic over `LISTEN`/`NOTIFY` on a connection of its own (the pool's settings), held while subscribed and opened
 * again (every half second) when it drops; what is notified meanwhile is lost, as with any broadcast. A sealed value
 * too large for a notification is stored (sealed, as any entry) for a minute and its key notified, itself sealed.
 */
async function listen(
  backend: PostgresBackend,
  adapter: (model: string) => Adapter,
  topic: string,
  onmessage: (value: AdapterPayload) => void,
): Promise<Broadcast> {
  const channel = `${backend.table}_broadcast_${checkTopic(topic)}`.slice(0, 63);
  const pool = await backend.pool;
  let closed = false;
  let client: import('pg').Client | undefined;
  let retry: NodeJS.Timeout | undefined;
  const heard = async (sealed: string) => {
    const { id, payload } = backend.atRest.open(channel, sealed);
    if (id === 'value') return onmessage(payload);
    const stored = typeof payload['key'] === 'string' ? await adapter(BROADCAST_MODEL).find(payload['key']) : undefined;
    if (stored) onmessage(stored);
  };
  const again = () => {
    if (!closed) retry = setTimeout(() => void connect().catch(again), 500);
  };
  const connect = async (): Promise<void> => {
    // A client of its own with the pool's settings, not one of the pool's: a pool.connect() after an outage may
    // wait behind the pool's queue, and a held LISTEN connection would take a query connection away for good.
    const Client = (pool as unknown as { Client: typeof import('pg').Client }).Client;
    const connection = new Client(pool.options);
    let released = false;
    const drop = () => {
      if (released) return;
      released = true;
      if (client === connection) client = undefined;
      connection.end().catch(() => {});
    };
    const lost = () => {
      if (released) return;
      drop();
      again();
    };
    connection.on('error', lost);
    connection.on('end', lost);
    connection.on('notification', (notification) => {
      // Values that do not open (another at-rest key, tampered) are dropped, as are stored ones gone meanwhile.
      if (notification.channel === channel && notification.payload) heard(notification.payload).catch(() => {});
    });
    try {
      await connection.connect();
      await connection.query(`LISTEN "${channel}"`);
    } catch (error) {
      drop();
      throw error;
    }
    if (closed) drop();
    else client = connection;
  };
  await connect();
  const notify = (sealed: string) => backend.query('SELECT pg_notify($1, $2)', [channel, sealed]);
  return {
    publish: async (value) => {
      const sealed = backend.atRest.seal(channel, 'value', value);
      if (Buffer.byteLength(sealed) <= NOTIFY_MAX_BYTES) {
        await notify(sealed);
        return;
      }
      const key = randomUUID();
      await adapter(BROADCAST_MODEL).upsert(key, value, BROADCAST_STORED_SECONDS);
      await notify(backend.atRest.seal(channel, 'stored', { key }));
    },
    close: async () => {
      closed = true;
      clearTimeout(retry);
      const connection = client;
      client = undefined;
      if (!connection) return;
      await connection.end().catch(() => {});
    },
  };
}

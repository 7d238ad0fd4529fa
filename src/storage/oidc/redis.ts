import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { StorageConfigError } from '../errors.js';
import { connectRedis, escapeRedisGlob, type RedisClientLike } from '../redis.js';
import { AtRest, type AtRestOptions, FORMAT_MARKER, type LegacyEntry } from './at-rest.js';
import {
  type Adapter,
  type AdapterPayload,
  alreadyConsumed,
  answerEntry,
  type Broadcast,
  type ConsumeEntry,
  checkTopic,
  epochSeconds,
  FORMAT_LEVEL,
  FormatLevel,
  formatLevelOf,
  GRANTABLE,
  guarded,
  indexesOf,
  type OidcAdapterCommonOptions,
  type OidcAdapterFactory,
  PrefetchedEntries,
  rewriteLegacy,
  type UpsertEntry,
  upsertOnceOpened,
  withKeptAnswer,
} from './common.js';

/** Options of {@link redisOidcAdapter}. Give `url` or a connected `client`. */
export interface RedisOidcAdapterOptions extends OidcAdapterCommonOptions, AtRestOptions {
  url?: string;
  /** A connected node-redis v5 client (not closed by `close()`). */
  client?: RedisClientLike;
  /** Prefix of every key. Default `gatehouse:oidc:`. For Redis Cluster use a hash tag, e.g. `{gatehouse}:`. */
  prefix?: string;
}

// Keys live under `<prefix>v2:` (the old clear layout used `<prefix>` directly): entries `e:<model>:<hash of id>`,
// grant sets `g:<hash>`, session-uid and user-code indexes `u:<hash>` and `c:<model>:<hash>` (their value is the
// entry's hash), the format marker `format`, and (format level 3) `a:<hash>`, the grace answer kept for the
// consumed refresh token `e:RefreshToken:<hash>`: a string of its own only because Redis 7.0 cannot expire one
// field of a hash, and the answer must go when its window closes, not with the long-lived consumed token. It is
// written by the script that consumes the token and read by the one that reads it.
//
// Each entry is a hash: `payload` (sealed) and, once redeemed, `consumed`. Keeping `consumed` in its own field lets
// Redis set it atomically (HSETNX) without decoding JSON in Lua.
//
// One script call writes any number of entries, atomically (a token request's writes cost one round trip), after
// consuming one entry first when asked to (a rotation: the old refresh token is redeemed and its successor stored
// by one script, so both happen or neither).
// KEYS[1], ARGV[1]: the entry to consume ('' if none) and the consumed time
// KEYS[2], ARGV[2], ARGV[3]: the answer to keep with it (format level 3; '' if none), its sealed text and ms to live
// KEYS, six per entry after that: entry, grant set, uid key, user-code key ('' if none), and the Grant's entry and
// the session's uid key this entry belongs to ('' if none)
// ARGV, four per entry after that: payload, ttl ms ('' = none), entry hash (the index value), consumed ('' = none)
// A token keeps the keys of its Grant and of its session's uid index in its `grant` and `session` fields:
// FIND_WITH_GRANT reads all three at once.
// Returns 1 when written; 0 (already consumed) or -1 (no such entry) when the consume failed and nothing was written.
//
// Every redis.call costs Redis more than the command itself (arguments copied between Lua and Redis, the reply
// converted back), and Redis shares the machine's cores with the server: an entry is one HSET of all its fields,
// and a grant set that several entries join (a refresh token and its access token) is read and extended once, to
// the longest time to live among them (or kept without one when one of them has none), as entry by entry would.
const UPSERT = `
if KEYS[1] ~= '' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
  if redis.call('HSETNX', KEYS[1], 'consumed', ARGV[1]) == 0 then return 0 end
  if KEYS[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3]) end
end
local sets, setOrder = {}, {}
for i = 0, (#KEYS - 2) / 6 - 1 do
  local key, grantKey, uidKey, userCodeKey = KEYS[i * 6 + 3], KEYS[i * 6 + 4], KEYS[i * 6 + 5], KEYS[i * 6 + 6]
  local grantEntry, sessionKey = KEYS[i * 6 + 7], KEYS[i * 6 + 8]
  local payload, ttl, id, consumed = ARGV[i * 4 + 4], ARGV[i * 4 + 5], ARGV[i * 4 + 6], ARGV[i * 4 + 7]
  local fields = {'payload', payload}
  if grantEntry ~= '' then fields[#fields + 1] = 'grant'; fields[#fields + 1] = grantEntry end
  if sessionKey ~= '' then fields[#fields + 1] = 'session'; fields[#fields + 1] = sessionKey end
  redis.call('HSET', key, unpack(fields))
  if consumed ~= '' then redis.call('HSETNX', key, 'consumed', consumed) end
  if ttl == '' then redis.call('PERSIST', key) else redis.call('PEXPIRE', key, ttl) end
  if grantKey ~= '' then
    local set = sets[grantKey]
    if not set then
      set = {members = {}, ttl = 0}
      sets[grantKey] = set
      setOrder[#setOrder + 1] = grantKey
    end
    set.members[#set.members + 1] = key
    if ttl == '' then set.ttl = -1 elseif set.ttl >= 0 and tonumber(ttl) > set.ttl then set.ttl = tonumber(ttl) end
  end
  if uidKey ~= '' then
    if ttl == '' then redis.call('SET', uidKey, id) else redis.call('SET', uidKey, id, 'PX', ttl) end
  end
  if userCodeKey ~= '' then
    if ttl == '' then redis.call('SET', userCodeKey, id) else redis.call('SET', userCodeKey, id, 'PX', ttl) end
  end
end
for _, grantKey in ipairs(setOrder) do
  local set = sets[grantKey]
  -- -2: no set yet (SADD creates it without a time to live), -1: kept without one, else ms left
  local current = redis.call('PTTL', grantKey)
  redis.call('SADD', grantKey, unpack(set.members))
  if set.ttl < 0 then
    if current >= 0 then redis.call('PERSIST', grantKey) end
  elseif current == -2 or (current >= 0 and current < set.ttl) then
    redis.call('PEXPIRE', grantKey, set.ttl)
  end
end
return 1`;

// 1: this call consumed it; 0: already consumed; -1: no such entry (expired or revoked).
const CONSUME = `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HSETNX', KEYS[1], 'consumed', ARGV[1])`;

const REVOKE = `
local members = redis.call('SMEMBERS', KEYS[1])
for _, member in ipairs(members) do redis.call('DEL', member) end
redis.call('DEL', KEYS[1])
return #members`;

const FIND = `
local fields = redis.call('HMGET', KEYS[1], 'payload', 'consumed')
return fields`;

// A token and, when it names them, its Grant's entry and its session (same hash slot under a hash-tagged prefix):
// oidc-provider's refresh grant reads all three, one round trip instead of four. ARGV[1]: the session entries' key
// prefix. KEYS[2] (refresh tokens): where a consumed one's answer is kept. Returns payload, consumed, then grant
// key, payload, consumed, then session uid key, hash, payload, consumed, then the kept answer (false where none).
const FIND_WITH_GRANT = `
local fields = redis.call('HMGET', KEYS[1], 'payload', 'consumed', 'grant', 'session')
local out = {fields[1], fields[2], false, false, false, false, false, false, false, false}
if not fields[1] then return out end
if fields[2] and KEYS[2] then out[10] = redis.call('GET', KEYS[2]) end
if fields[3] then
  local grant = redis.call('HMGET', fields[3], 'payload', 'consumed')
  out[3], out[4], out[5] = fields[3], grant[1], grant[2]
end
if fields[4] then
  local lookup = redis.call('GET', fields[4])
  if lookup then
    local session = redis.call('HMGET', ARGV[1] .. lookup, 'payload', 'consumed')
    out[6], out[7], out[8], out[9] = fields[4], lookup, session[1], session[2]
  end
end
return out`;

// findByUid and findByUserCode: the index and the entry it names, one round trip. ARGV[1]: the entries' key prefix.
const FIND_BY_INDEX = `
local lookup = redis.call('GET', KEYS[1])
if not lookup then return {false, false, false} end
local fields = redis.call('HMGET', ARGV[1] .. lookup, 'payload', 'consumed')
return {lookup, fields[1], fields[2]}`;

// Reads one key of the old layout: its type, time to live, and (for an entry) payload and consumed.
const READ_LEGACY = `
local kind = redis.call('TYPE', KEYS[1])['ok']
local ttl = redis.call('PTTL', KEYS[1])
if kind ~= 'hash' then return {kind, ttl, false, false} end
local fields = redis.call('HMGET', KEYS[1], 'payload', 'consumed')
return {kind, ttl, fields[1], fields[2]}`;

class RedisBackend {
  readonly client: Promise<RedisClientLike>;
  /** `<prefix>v2:` */
  readonly space: string;

  constructor(
    readonly prefix: string,
    readonly atRest: AtRest,
    options: RedisOidcAdapterOptions,
  ) {
    this.space = `${prefix}v2:`;
    this.client = options.client
      ? Promise.resolve(options.client)
      : connectRedis(options.url ?? 'redis://127.0.0.1:6379');
    this.client.catch(() => {});
  }

  /** Runs a command with the store deadline; an unreachable Redis becomes `StoreUnavailableError`. */
  call<T>(command: (client: RedisClientLike) => Promise<T>): Promise<T> {
    return guarded('redis', this.client.then(command));
  }

  readonly #digests = new Map<string, string>();

  /**
   * Runs a script by its SHA-1 (`EVALSHA`: Redis neither receives nor hashes the text again), sending the text only
   * when Redis does not know it yet (after a restart or `SCRIPT FLUSH`), or with a client that has no `evalSha`.
   */
  eval(script: string, keys: string[], args: string[]): Promise<unknown> {
    return this.call(async (client) => {
      if (!client.evalSha) return client.eval(script, { keys, arguments: args });
      let digest = this.#digests.get(script);
      if (!digest) {
        digest = createHash('sha1').update(script).digest('hex');
        this.#digests.set(script, digest);
      }
      try {
        return await client.evalSha(digest, { keys, arguments: args });
      } catch (error) {
        if (!String((error as Error)?.message).startsWith('NOSCRIPT')) throw error;
        return client.eval(script, { keys, arguments: args });
      }
    });
  }

  /** The keys and arguments of one entry in an {@link UPSERT} call. */
  upsertArguments(model: string, id: string, payload: AdapterPayload, expiresIn?: number): [string[], string[]] {
    const { grantId, uid, userCode } = indexesOf(model, payload);
    const { atRest, space } = this;
    const lookup = atRest.lookup(model, id);
    return [
      [
        this.entryKey(model, lookup),
        grantId ? `${space}g:${atRest.index('grant', grantId)}` : '',
        uid ? `${space}u:${atRest.index('uid', uid)}` : '',
        userCode ? `${space}c:${model}:${atRest.index('userCode', userCode)}` : '',
        grantId ? this.entryKey('Grant', atRest.lookup('Grant', grantId)) : '',
        GRANTABLE.has(model) && typeof payload.sessionUid === 'string'
          ? `${space}u:${atRest.index('uid', payload.sessionUid)}`
          : '',
      ],
      [
        atRest.seal(lookup, id, payload),
        typeof expiresIn === 'number' ? String(Math.max(1, Math.ceil(expiresIn * 1000))) : '',
        lookup,
        typeof payload.consumed === 'number' ? String(payload.consumed) : '',
      ],
    ];
  }

  async upsertMany(entries: readonly UpsertEntry[], consume?: ConsumeEntry): Promise<void> {
    if (entries.length === 0 && !consume) return;
    const changed: string[] = [];
    const consumed = consume && this.atRest.lookup(consume.model, consume.id);
    // Below format level 3 an answer is an entry of its own, where instances of the previous version look.
    const answer = consume?.answer && this.level.current() ? consume.answer : undefined;
    if (consume?.answer && !answer) entries = [...entries, answerEntry(consume.answer)];
    const keys = [consume ? this.entryKey(consume.model, consumed!) : '', answer ? this.answerKey(consumed!) : ''];
    const args = [
      consume ? String(epochSeconds()) : '',
      answer?.sealed ?? '',
      answer ? String(Math.max(1, Math.ceil(answer.expiresIn * 1000))) : '',
    ];
    for (const { model, id, payload, expiresIn } of entries) {
      const [entryKeys, entryArgs] = this.upsertArguments(model, id, payload, expiresIn);
      if (model === 'Grant') changed.push(entryKeys[0]!);
      if (model === 'Session' && entryKeys[2]) changed.push(entryKeys[2]);
      keys.push(...entryKeys);
      args.push(...entryArgs);
    }
    const result = Number(await this.eval(UPSERT, keys, args));
    // After the write: a read answered before it may have prefetched the old value meanwhile.
    for (const key of changed) this.forget(key);
    if (result !== 1 && consume) return alreadyConsumed(consume.model, result === 0 ? 'consumed' : 'missing');
  }

  /** Entries read together with a token (FIND_WITH_GRANT): a Grant by its entry key, a session by its uid key. */
  readonly prefetched = new PrefetchedEntries<{ sealed: string; consumed: string | null }>();

  forget(key: string): void {
    this.prefetched.forget(key);
  }

  entryKey(model: string, lookup: string): string {
    return `${this.space}e:${model}:${lookup}`;
  }

  /** Where the answer kept for the consumed refresh token of this lookup lives (format level 3). */
  answerKey(lookup: string): string {
    return `${this.space}a:${lookup}`;
  }

  /** The store's format level, from its marker (read in the background now and then: see {@link FormatLevel}). */
  readonly level = new FormatLevel(() => this.readLevel());

  async readLevel(): Promise<number> {
    const marker = await (await this.client).get(`${this.space}format`);
    if (typeof marker !== 'string') return 2;
    return formatLevelOf(this.atRest.open(this.atRest.lookup(FORMAT_MARKER.model, FORMAT_MARKER.id), marker).payload);
  }

  /** Raises the format marker to {@link FORMAT_LEVEL} (`gatehouse admin store upgrade`). */
  async upgrade(): Promise<{ from: number; to: number }> {
    const from = await this.readLevel();
    if (from < FORMAT_LEVEL) {
      const lookup = this.atRest.lookup(FORMAT_MARKER.model, FORMAT_MARKER.id);
      const marker = this.atRest.seal(lookup, FORMAT_MARKER.id, { format: FORMAT_LEVEL } as never);
      await (await this.client).set(`${this.space}format`, marker);
    }
    const to = Math.max(from, FORMAT_LEVEL);
    this.level.set(to);
    return { from, to };
  }

  /** Every key matching `pattern` (a glob, already escaped). */
  async scan(pattern: string): Promise<string[]> {
    const client = await this.client;
    const keys: string[] = [];
    let cursor = '0';
    do {
      const page = await client.scan(cursor, { MATCH: pattern, COUNT: 500 });
      cursor = String(page.cursor);
      keys.push(...page.keys);
    } while (cursor !== '0');
    return keys;
  }

  /**
   * Migrates keys of the old clear layout once (one instance does it, under a lock key; the others wait for the
   * marker), then checks that this instance's key opens the store.
   */
  async migrate(adapter: (model: string) => Adapter): Promise<void> {
    const client = await this.client;
    const markerKey = `${this.space}format`;
    const markerLookup = this.atRest.lookup(FORMAT_MARKER.model, FORMAT_MARKER.id);
    let marker = await client.get(markerKey);
    if (typeof marker !== 'string') {
      const lock = `${this.space}migrating`;
      if ((await client.set(lock, '1', { NX: true, PX: 60_000 })) === 'OK') {
        try {
          const legacyKeys = (await this.scan(`${escapeRedisGlob(this.prefix)}*`)).filter(
            (key) => !key.startsWith(this.space),
          );
          const entries: LegacyEntry[] = [];
          for (const key of legacyKeys) {
            const [kind, ttl, payload, consumed] = (await client.eval(READ_LEGACY, { keys: [key], arguments: [] })) as [
              string,
              number,
              string | null,
              string | null,
            ];
            const rest = key.slice(this.prefix.length);
            const colon = rest.indexOf(':');
            if (kind !== 'hash' || typeof payload !== 'string' || colon <= 0) continue;
            entries.push({
              model: rest.slice(0, colon),
              id: rest.slice(colon + 1),
              payload: JSON.parse(payload) as AdapterPayload,
              ...(ttl > 0 ? { expiresIn: Math.max(1, Math.floor(ttl / 1000)) } : {}),
              ...(typeof consumed === 'string' ? { consumed: Number(consumed) } : {}),
            });
          }
          await rewriteLegacy(adapter, entries);
          for (let i = 0; i < legacyKeys.length; i += 500) await client.del(legacyKeys.slice(i, i + 500));
          // A store this version creates (or brings from the 0.1 layout) starts at the current format level.
          const current = { format: FORMAT_LEVEL } as never;
          await client.set(markerKey, this.atRest.seal(markerLookup, FORMAT_MARKER.id, current));
        } finally {
          await client.del(lock);
        }
      } else {
        for (let waited = 0; waited < 60_000 && typeof marker !== 'string'; waited += 100) {
          await sleep(100);
          marker = await client.get(markerKey);
        }
      }
      marker = await client.get(markerKey);
    }
    if (typeof marker !== 'string') throw new Error(`the redis store at ${this.prefix} was not migrated in time`);
    this.atRest.checkMarker('redis', markerLookup, marker);
    this.level.set(formatLevelOf(this.atRest.open(markerLookup, marker).payload));
  }
}

/** oidc-provider adapter over Redis (node-redis v5); any number of instances may share it. */
export class RedisOidcAdapter implements Adapter {
  constructor(
    readonly model: string,
    private readonly backend: RedisBackend,
  ) {}

  #key(id: string): { lookup: string; key: string } {
    const lookup = this.backend.atRest.lookup(this.model, id);
    return { lookup, key: this.backend.entryKey(this.model, lookup) };
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    await this.backend.upsertMany([{ model: this.model, id, payload, ...(expiresIn !== undefined && { expiresIn }) }]);
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    return this.#findByLookup(this.backend.atRest.lookup(this.model, id));
  }

  async #findByLookup(lookup: string): Promise<AdapterPayload | undefined> {
    const { backend } = this;
    const key = backend.entryKey(this.model, lookup);
    const prefetched = this.model === 'Grant' ? backend.prefetched.take(key)?.value : undefined;
    if (prefetched) return this.#opened(lookup, prefetched.sealed, prefetched.consumed);
    // A token's read brings its Grant along: oidc-provider reads that next (refresh and code grants, introspection).
    if (!GRANTABLE.has(this.model)) {
      const [sealed, consumed] = (await backend.eval(FIND, [key], [])) as [string | null, string | null];
      return typeof sealed === 'string' ? this.#opened(lookup, sealed, consumed) : undefined;
    }
    const keys = this.model === 'RefreshToken' ? [key, backend.answerKey(lookup)] : [key];
    const found = (await backend.eval(FIND_WITH_GRANT, keys, [backend.entryKey('Session', '')])) as Array<
      string | null
    >;
    const [sealed, consumed, grantKey, grantSealed, grantConsumed] = found;
    const [sessionKey, sessionLookup, sessionSealed, sessionConsumed, answer] = found.slice(5);
    if (typeof sealed !== 'string') return undefined;
    if (typeof grantKey === 'string' && typeof grantSealed === 'string') {
      backend.prefetched.put(grantKey, { sealed: grantSealed, consumed: grantConsumed ?? null });
    }
    if (typeof sessionKey === 'string' && typeof sessionLookup === 'string' && typeof sessionSealed === 'string') {
      backend.prefetched.put(sessionKey, { sealed: sessionSealed, consumed: sessionConsumed ?? null }, sessionLookup);
    }
    return withKeptAnswer(this.#opened(lookup, sealed, consumed ?? null), answer);
  }

  #opened(lookup: string, sealed: string, consumed: string | null): AdapterPayload {
    const { payload } = this.backend.atRest.open(lookup, sealed);
    if (typeof consumed === 'string') payload.consumed = Number(consumed);
    return payload;
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return this.#findByIndex(`${this.backend.space}u:${this.backend.atRest.index('uid', uid)}`);
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return this.#findByIndex(`${this.backend.space}c:${this.model}:${this.backend.atRest.index('userCode', userCode)}`);
  }

  async #findByIndex(indexKey: string): Promise<AdapterPayload | undefined> {
    const prefetched = this.backend.prefetched.take(indexKey);
    if (prefetched?.lookup) return this.#opened(prefetched.lookup, prefetched.value.sealed, prefetched.value.consumed);
    const [lookup, sealed, consumed] = (await this.backend.eval(
      FIND_BY_INDEX,
      [indexKey],
      [this.backend.entryKey(this.model, '')],
    )) as [string | null, string | null, string | null];
    return typeof lookup === 'string' && typeof sealed === 'string'
      ? this.#opened(lookup, sealed, consumed)
      : undefined;
  }

  async consume(id: string): Promise<void> {
    const result = Number(await this.backend.eval(CONSUME, [this.#key(id).key], [String(epochSeconds())]));
    if (result === 1) return;
    return alreadyConsumed(this.model, result === 0 ? 'consumed' : 'missing');
  }

  async destroy(id: string): Promise<void> {
    const { key, lookup } = this.#key(id);
    await this.backend.call((client) => client.del(key));
    this.backend.forget(key);
    this.backend.forget(lookup);
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    await this.backend.eval(REVOKE, [`${this.backend.space}g:${this.backend.atRest.index('grant', grantId)}`], []);
    this.backend.forget(this.backend.entryKey('Grant', this.backend.atRest.lookup('Grant', grantId)));
  }
}

/**
 * An oidc-provider `adapter` over Redis, for several authorization-server instances sharing one Redis. Entries
 * expire through Redis TTLs, so there is no purge job. Keys are hashes of the ids and values are sealed with
 * `encryptionKeys` (the same on every instance); keys of the old clear layout are migrated by `ready()`.
 *
 * @example
 * ```ts
 * import Provider from 'oidc-provider';
 * import { redisOidcAdapter } from 'gatehouse/storage';
 *
 * const adapter = redisOidcAdapter({ url: 'redis://localhost:6379', encryptionKeys: [process.env.GATEHOUSE_STORE_KEY!] });
 * await adapter.ready();
 * const provider = new Provider('https://auth.example.com', { adapter });
 * ```
 */
export function redisOidcAdapter(options: RedisOidcAdapterOptions): OidcAdapterFactory {
  const backend = new RedisBackend(
    options.prefix ?? 'gatehouse:oidc:',
    new AtRest(options.encryptionKeys ?? []),
    options,
  );
  const adapter = (model: string): Adapter => new RedisOidcAdapter(model, backend);
  const migrated = backend.migrate(adapter);
  migrated.catch(() => {});
  return Object.assign(adapter, {
    ready: () => migrated,
    purgeExpired: async () => 0,
    close: async () => {
      if (options.client) return;
      const client = await backend.client.catch(() => undefined);
      await (client?.close ?? client?.quit)?.call(client);
    },
    list: async (model: string) => {
      const prefix = `${backend.space}e:${model}:`;
      const entries: Array<{ id: string; payload: AdapterPayload }> = [];
      for (const key of await backend.scan(`${escapeRedisGlob(prefix)}*`)) {
        const [sealed] = (await backend.eval(FIND, [key], [])) as [string | null];
        if (typeof sealed === 'string') entries.push(backend.atRest.open(key.slice(prefix.length), sealed));
      }
      return entries.sort((a, b) => a.id.localeCompare(b.id));
    },
    rekey: async () => {
      await migrated;
      const client = await backend.client;
      let changed = 0;
      const markerKey = `${backend.space}format`;
      const marker = await client.get(markerKey);
      const markerLookup = backend.atRest.lookup(FORMAT_MARKER.model, FORMAT_MARKER.id);
      const resealedMarker = typeof marker === 'string' ? backend.atRest.reseal(markerLookup, marker) : undefined;
      if (resealedMarker) {
        await client.set(markerKey, resealedMarker, { KEEPTTL: true });
        changed++;
      }
      const entryPrefix = `${backend.space}e:`;
      for (const key of await backend.scan(`${escapeRedisGlob(entryPrefix)}*`)) {
        const [sealed] = (await backend.eval(FIND, [key], [])) as [string | null];
        const lookup = key.slice(key.lastIndexOf(':') + 1);
        const resealed = typeof sealed === 'string' ? backend.atRest.reseal(lookup, sealed) : undefined;
        if (resealed === undefined) continue;
        await backend.eval("return redis.call('HSET', KEYS[1], 'payload', ARGV[1])", [key], [resealed]);
        changed++;
      }
      return changed;
    },
    upsertMany: upsertOnceOpened(migrated, (entries, consume) => backend.upsertMany(entries, consume)),
    broadcast: async (topic: string, onmessage: (value: AdapterPayload) => void): Promise<Broadcast> => {
      const channel = `${backend.space}broadcast:${checkTopic(topic)}`;
      const client = await backend.client;
      if (!client.publish || !client.duplicate) {
        throw new StorageConfigError('broadcasts need a node-redis client (publish and duplicate)');
      }
      // A subscribed connection can run no other command: a duplicate of the store's, which node-redis
      // resubscribes after a reconnection.
      const subscriber = client.duplicate();
      subscriber.on('error', () => {});
      await subscriber.connect();
      await subscriber.subscribe(channel, (message) => {
        let opened: AdapterPayload;
        try {
          opened = backend.atRest.open(channel, message).payload;
        } catch {
          return; // sealed with a key this instance does not have, or not a sealed value at all
        }
        onmessage(opened);
      });
      return {
        publish: async (value) => {
          await backend.call((c) => c.publish!(channel, backend.atRest.seal(channel, topic, value)));
        },
        close: async () => {
          await (subscriber.close ?? subscriber.quit)?.call(subscriber);
        },
      };
    },
    upgrade: async () => {
      await migrated;
      return backend.upgrade();
    },
  });
}

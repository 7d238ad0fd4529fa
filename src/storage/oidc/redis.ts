import { connectRedis, type RedisClientLike } from '../redis.js';
import {
  type Adapter,
  type AdapterPayload,
  alreadyConsumed,
  epochSeconds,
  guarded,
  indexesOf,
  type OidcAdapterCommonOptions,
  type OidcAdapterFactory,
} from './common.js';

/** Options of {@link redisOidcAdapter}. Give `url` or a connected `client`. */
export interface RedisOidcAdapterOptions extends OidcAdapterCommonOptions {
  url?: string;
  /** A connected node-redis v5 client (not closed by `close()`). */
  client?: RedisClientLike;
  /** Prefix of every key. Default `gatehouse:oidc:`. For Redis Cluster use a hash tag, e.g. `{gatehouse}:`. */
  prefix?: string;
}

// Each entry is a hash: `payload` (JSON) and, once redeemed, `consumed`. Keeping `consumed` in its own field lets
// Redis set it atomically (HSETNX) without decoding JSON in Lua.
//
// KEYS: entry, grant set ('' if none), uid key ('' if none), user-code key ('' if none)
// ARGV: payload, ttl ms ('' = none), id, consumed ('' = none)
const UPSERT = `
local key, grantKey, uidKey, userCodeKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local payload, ttl, id, consumed = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
redis.call('HSET', key, 'payload', payload)
if consumed ~= '' then redis.call('HSETNX', key, 'consumed', consumed) end
if ttl == '' then redis.call('PERSIST', key) else redis.call('PEXPIRE', key, ttl) end
if grantKey ~= '' then
  local existed = redis.call('EXISTS', grantKey)
  redis.call('SADD', grantKey, key)
  if ttl == '' then
    redis.call('PERSIST', grantKey)
  else
    local current = redis.call('PTTL', grantKey)
    if existed == 0 or (current >= 0 and current < tonumber(ttl)) then redis.call('PEXPIRE', grantKey, ttl) end
  end
end
for _, indexKey in ipairs({uidKey, userCodeKey}) do
  if indexKey ~= '' then
    if ttl == '' then redis.call('SET', indexKey, id) else redis.call('SET', indexKey, id, 'PX', ttl) end
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

class RedisBackend {
  readonly client: Promise<RedisClientLike>;

  constructor(
    readonly prefix: string,
    options: RedisOidcAdapterOptions,
  ) {
    this.client = options.client
      ? Promise.resolve(options.client)
      : connectRedis(options.url ?? 'redis://127.0.0.1:6379');
    this.client.catch(() => {});
  }

  /** Runs a command with the store deadline; an unreachable Redis becomes `StoreUnavailableError`. */
  call<T>(command: (client: RedisClientLike) => Promise<T>): Promise<T> {
    return guarded('redis', this.client.then(command));
  }

  eval(script: string, keys: string[], args: string[]): Promise<unknown> {
    return this.call((client) => client.eval(script, { keys, arguments: args }));
  }
}

/** oidc-provider adapter over Redis (node-redis v5); any number of instances may share it. */
export class RedisOidcAdapter implements Adapter {
  constructor(
    readonly model: string,
    private readonly backend: RedisBackend,
  ) {}

  #key(id: string): string {
    return `${this.backend.prefix}${this.model}:${id}`;
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    const { grantId, uid, userCode } = indexesOf(this.model, payload);
    const p = this.backend.prefix;
    await this.backend.eval(
      UPSERT,
      [
        this.#key(id),
        grantId ? `${p}grant:${grantId}` : '',
        uid ? `${p}uid:${uid}` : '',
        userCode ? `${p}userCode:${this.model}:${userCode}` : '',
      ],
      [
        JSON.stringify(payload),
        typeof expiresIn === 'number' ? String(Math.max(1, Math.ceil(expiresIn * 1000))) : '',
        id,
        typeof payload.consumed === 'number' ? String(payload.consumed) : '',
      ],
    );
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    const [json, consumed] = (await this.backend.eval(FIND, [this.#key(id)], [])) as [string | null, string | null];
    if (typeof json !== 'string') return undefined;
    const payload = JSON.parse(json) as AdapterPayload;
    if (typeof consumed === 'string') payload.consumed = Number(consumed);
    return payload;
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return this.#findByIndex(`${this.backend.prefix}uid:${uid}`);
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return this.#findByIndex(`${this.backend.prefix}userCode:${this.model}:${userCode}`);
  }

  async #findByIndex(indexKey: string): Promise<AdapterPayload | undefined> {
    const id = await this.backend.call((client) => client.get(indexKey));
    return typeof id === 'string' ? this.find(id) : undefined;
  }

  async consume(id: string): Promise<void> {
    const result = Number(await this.backend.eval(CONSUME, [this.#key(id)], [String(epochSeconds())]));
    if (result === 1) return;
    return alreadyConsumed(this.model, result === 0 ? 'consumed' : 'missing');
  }

  async destroy(id: string): Promise<void> {
    await this.backend.call((client) => client.del(this.#key(id)));
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    await this.backend.eval(REVOKE, [`${this.backend.prefix}grant:${grantId}`], []);
  }
}

/**
 * An oidc-provider `adapter` over Redis, for several authorization-server instances sharing one Redis. Entries
 * expire through Redis TTLs, so there is no purge job.
 *
 * @example
 * ```ts
 * import Provider from 'oidc-provider';
 * import { redisOidcAdapter } from 'gatehouse/storage';
 *
 * const adapter = redisOidcAdapter({ url: 'redis://localhost:6379' });
 * await adapter.ready();
 * const provider = new Provider('https://auth.example.com', { adapter });
 * ```
 */
export function redisOidcAdapter(options: RedisOidcAdapterOptions): OidcAdapterFactory {
  const backend = new RedisBackend(options.prefix ?? 'gatehouse:oidc:', options);
  return Object.assign((model: string): Adapter => new RedisOidcAdapter(model, backend), {
    ready: async () => {
      await backend.client;
    },
    purgeExpired: async () => 0,
    close: async () => {
      if (options.client) return;
      const client = await backend.client.catch(() => undefined);
      await (client?.close ?? client?.quit)?.call(client);
    },
  });
}

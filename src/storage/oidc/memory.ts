import {
  type Adapter,
  type AdapterPayload,
  alreadyConsumed,
  type ConsumeEntry,
  epochSeconds,
  FORMAT_LEVEL,
  indexesOf,
  type KeptAnswer,
  type OidcAdapterCommonOptions,
  type OidcAdapterFactory,
  purgeTimer,
  type UpsertEntry,
  withKeptAnswer,
} from './common.js';

interface Entry {
  model: string;
  id: string;
  json: string;
  consumed?: number;
  expiresAt?: number;
  grantId?: string;
  uid?: string;
  userCode?: string;
  /** The answer kept with this consumed entry (format level 3), until `answerExpiresAt`. */
  answer?: string;
  answerExpiresAt?: number;
}

/** Shared state of one in-memory backend. */
class MemoryBackend {
  readonly entries = new Map<string, Entry>();
  #lastSweep = Date.now();

  /** Drops expired entries at most once a second, on writes: memory stays bounded even without the purge timer. */
  sweep(): void {
    const now = Date.now();
    if (now - this.#lastSweep < 1000) return;
    this.#lastSweep = now;
    this.purge();
  }

  live(key: string): Entry | undefined {
    const entry = this.entries.get(key);
    if (entry?.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  purge(): number {
    const now = Date.now();
    let n = 0;
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt !== undefined && entry.expiresAt <= now) {
        this.entries.delete(key);
        n++;
      }
    }
    return n;
  }
}

function payloadOf(entry: Entry | undefined): AdapterPayload | undefined {
  if (!entry) return undefined;
  const payload = JSON.parse(entry.json) as AdapterPayload;
  if (entry.consumed !== undefined) payload.consumed = entry.consumed;
  return withKeptAnswer(payload, (entry.answerExpiresAt ?? 0) > Date.now() ? entry.answer : undefined);
}

/**
 * oidc-provider adapter over process memory, with the same semantics as the shared backends (atomic `consume`,
 * JSON copies). For tests and single-instance development only: nothing survives a restart.
 */
export class MemoryOidcAdapter implements Adapter {
  constructor(
    readonly model: string,
    private readonly backend: MemoryBackend = new MemoryBackend(),
  ) {}

  #key(id: string): string {
    return `${this.model}:${id}`;
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    this.write(id, payload, expiresIn);
  }

  /** {@link upsert} without a promise, so that several writes happen with no await between them. */
  write(id: string, payload: AdapterPayload, expiresIn?: number): void {
    this.backend.sweep();
    const previous = this.backend.live(this.#key(id));
    const consumed = typeof payload.consumed === 'number' ? payload.consumed : previous?.consumed;
    this.backend.entries.set(this.#key(id), {
      model: this.model,
      id,
      json: JSON.stringify(payload),
      ...(consumed === undefined ? {} : { consumed }),
      ...(previous?.answer !== undefined && { answer: previous.answer, answerExpiresAt: previous.answerExpiresAt }),
      ...(typeof expiresIn === 'number' ? { expiresAt: Date.now() + expiresIn * 1000 } : {}),
      ...indexesOf(this.model, payload),
    });
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    return payloadOf(this.backend.live(this.#key(id)));
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return this.#findBy((entry) => entry.uid === uid);
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return this.#findBy((entry) => entry.userCode === userCode);
  }

  #findBy(match: (entry: Entry) => boolean): AdapterPayload | undefined {
    for (const [key, entry] of this.backend.entries) {
      if (entry.model === this.model && match(entry)) return payloadOf(this.backend.live(key));
    }
    return undefined;
  }

  async consume(id: string): Promise<void> {
    const lost = this.consumeNow(id);
    if (lost) return alreadyConsumed(this.model, lost);
  }

  /** Checks and marks with no await in between (atomic within the process); undefined when this call consumed it. */
  consumeNow(id: string, answer?: KeptAnswer): 'consumed' | 'missing' | undefined {
    const entry = this.backend.live(this.#key(id));
    if (!entry) return 'missing';
    if (entry.consumed !== undefined) return 'consumed';
    entry.consumed = epochSeconds();
    if (answer) {
      entry.answer = answer.sealed;
      entry.answerExpiresAt = Date.now() + answer.expiresIn * 1000;
    }
    return undefined;
  }

  async destroy(id: string): Promise<void> {
    this.backend.entries.delete(this.#key(id));
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    for (const [key, entry] of this.backend.entries) if (entry.grantId === grantId) this.backend.entries.delete(key);
  }
}

/**
 * An oidc-provider `adapter` keeping everything in this process.
 *
 * @example
 * ```ts
 * import Provider from 'oidc-provider';
 * import { memoryOidcAdapter } from 'gatehouse/storage';
 *
 * const provider = new Provider('http://localhost:3000', { adapter: memoryOidcAdapter() });
 * ```
 */
export function memoryOidcAdapter(options: OidcAdapterCommonOptions = {}): OidcAdapterFactory {
  const backend = new MemoryBackend();
  const timer = purgeTimer(options.purgeIntervalMs, async () => backend.purge(), options.onError ?? (() => {}));
  return Object.assign((model: string): Adapter => new MemoryOidcAdapter(model, backend), {
    ready: async () => {},
    purgeExpired: async () => backend.purge(),
    close: async () => {
      if (timer) clearInterval(timer);
    },
    list: async (model: string) => {
      backend.purge();
      return [...backend.entries.values()]
        .filter((entry) => entry.model === model)
        .map((entry) => ({ id: entry.id, payload: payloadOf(entry)! }))
        .sort((a, b) => a.id.localeCompare(b.id));
    },
    // Process memory is not at rest: nothing is sealed, nothing to re-seal.
    rekey: async () => 0,
    // Nothing outlives the process: always the current layout.
    upgrade: async () => ({ from: FORMAT_LEVEL, to: FORMAT_LEVEL }),
    // No await between the writes: no other request sees some of them without the rest.
    upsertMany: async (entries: readonly UpsertEntry[], consume?: ConsumeEntry) => {
      const lost = consume && new MemoryOidcAdapter(consume.model, backend).consumeNow(consume.id, consume.answer);
      if (lost) return alreadyConsumed(consume.model, lost);
      for (const { model, id, payload, expiresIn } of entries) {
        new MemoryOidcAdapter(model, backend).write(id, payload, expiresIn);
      }
    },
  });
}

import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { AdapterPayload, Broadcast } from '../storage/oidc/common.js';
import type { Message } from './client-transport.js';
import type { GatewaySession } from './session.js';

/** The store topic the gateway instances relay client answers on. */
export const ANSWER_TOPIC = 'mcp_answers';

/** Milliseconds an instance waits for the instance that asked to confirm a relayed answer. */
export const RELAY_WAIT_MS = 2000;
/** Milliseconds between repeats of a relayed answer not confirmed yet. */
const REPUBLISH_MS = 250;

/** A client's answer, relayed to whichever instance holds the request it answers. */
interface Relayed {
  kind: 'answer';
  /** This relay's id, which the confirmation names. */
  relay: string;
  session: string;
  upstream: string;
  /** The subject of the token that carried the answer (the session's owner, checked where it arrived). */
  subject: string;
  message: Message;
}

/** A message of the upstream outside any call, for the instance with the client's `GET` stream of the session. */
interface Streamed {
  kind: 'message';
  session: string;
  upstream: string;
  subject: string;
  message: Message;
}

/** The instance that asked took the answer. */
interface Confirmed {
  kind: 'taken';
  relay: string;
}

/** Options of {@link AnswerRelay}. */
export interface AnswerRelayOptions {
  /** This instance's sessions, by id. */
  sessions: Map<string, GatewaySession>;
  waitMs?: number;
  logger?: Logger;
}

/**
 * Client answers to server-to-client requests (sampling, elicitation, roots) that a load balancer sent to an instance
 * other than the one whose session asked. The answer crosses the shared store, sealed with the at-rest key (Redis
 * pub/sub, PostgreSQL `LISTEN`/`NOTIFY`); only the instance whose session of the same id, upstream and subject awaits
 * that request id takes it, passes it upstream and confirms; the instance the answer reached waits for that, at most
 * {@link RELAY_WAIT_MS}. Messages of an upstream session outside any call that its instance has no `GET` stream
 * for go the same way, unconfirmed, to the instance where the client has that stream open ({@link stream}).
 *
 * Internal to `startGateway`, with a Redis or PostgreSQL store.
 */
export class AnswerRelay {
  readonly #sessions: Map<string, GatewaySession>;
  readonly #waitMs: number;
  readonly #logger: Logger | undefined;
  readonly #waiting = new Map<string, () => void>();
  readonly #taken = new Set<string>();
  #topic: Broadcast | undefined;

  constructor(options: AnswerRelayOptions) {
    this.#sessions = options.sessions;
    this.#waitMs = options.waitMs ?? RELAY_WAIT_MS;
    this.#logger = options.logger;
  }

  get waitMs(): number {
    return this.#waitMs;
  }

  /** Subscribes to the store's answer topic. */
  async start(
    broadcast: (topic: string, onmessage: (value: AdapterPayload) => void) => Promise<Broadcast>,
  ): Promise<void> {
    this.#topic = await broadcast(ANSWER_TOPIC, (value) =>
      this.#heard(value as unknown as Relayed | Confirmed | Streamed),
    );
  }

  async close(): Promise<void> {
    await this.#topic?.close();
    this.#topic = undefined;
  }

  /**
   * Relays one answer of session `session` (upstream `upstream`, owned by `subject`); resolves true once the
   * instance that asked confirmed it took it, false when none did within the wait. Rejects when the store does
   * (`StoreUnavailableError`).
   */
  async relay(session: string, upstream: string, subject: string, message: Message): Promise<boolean> {
    if (!this.#topic) return false;
    const relay = randomUUID();
    let timer: NodeJS.Timeout | undefined;
    const confirmed = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), this.#waitMs);
      this.#waiting.set(relay, () => resolve(true));
    });
    const relayed = { kind: 'answer', relay, session, upstream, subject, message } satisfies Relayed;
    const topic = this.#topic;
    // Published again until confirmed: a subscriber reconnecting to the store (after an outage) misses what was
    // published meanwhile. The instance that took it confirms a repeat without taking it twice.
    const again = setInterval(() => {
      topic.publish(relayed as unknown as AdapterPayload).catch(() => {});
    }, REPUBLISH_MS);
    try {
      await topic.publish(relayed as unknown as AdapterPayload);
      return await confirmed;
    } finally {
      clearTimeout(timer);
      clearInterval(again);
      this.#waiting.delete(relay);
    }
  }

  /**
   * Sends a message of session `session`'s upstream that this instance has no `GET` stream for to the instances
   * that may have it; whichever holds the session, for that owner and upstream, with the stream open writes it
   * there. Not confirmed: a notification nobody can take is dropped, as on one instance.
   */
  stream(session: GatewaySession, message: Message): void {
    if (!this.#topic || !session.sessionId) return;
    const streamed: Streamed = {
      kind: 'message',
      session: session.sessionId,
      upstream: session.options.upstream,
      subject: session.subject,
      message,
    };
    this.#topic.publish(streamed as unknown as AdapterPayload).catch((error: unknown) => {
      this.#logger?.warn(
        { session: session.sessionId, err: (error as Error).message },
        'could not relay an mcp message',
      );
    });
  }

  #heard(value: Relayed | Confirmed | Streamed): void {
    if (value.kind === 'taken') {
      this.#waiting.get(value.relay)?.();
      return;
    }
    if (value.kind !== 'answer' && value.kind !== 'message') return;
    const session = this.#sessions.get(value.session);
    // Only the session's holder, for its owner and upstream, takes what is relayed.
    if (!session || session.subject !== value.subject || session.options.upstream !== value.upstream) return;
    if (value.kind === 'answer' && this.#taken.has(value.relay)) {
      this.#confirm(value);
      return;
    }
    if (value.kind === 'message') {
      // Onto this instance's GET stream, if the client has it open here (never relayed again from here).
      if (value.message.method !== undefined) session.toStream(value.message);
      return;
    }
    const method = session.answer(value.message);
    if (method === undefined) return;
    this.#logger?.info(
      { session: value.session, upstream: value.upstream, subject: value.subject, id: value.message.id, method },
      'mcp answer relayed',
    );
    // The relays taken lately, to confirm a repeat (bounded: a repeat comes within the wait).
    if (this.#taken.size >= 1024) this.#taken.clear();
    this.#taken.add(value.relay);
    this.#confirm(value);
  }

  #confirm(value: Relayed): void {
    const confirmation: Confirmed = { kind: 'taken', relay: value.relay };
    this.#topic?.publish(confirmation as unknown as AdapterPayload).catch((error: unknown) => {
      this.#logger?.warn(
        { session: value.session, err: (error as Error).message },
        'could not confirm a relayed mcp answer',
      );
    });
  }
}

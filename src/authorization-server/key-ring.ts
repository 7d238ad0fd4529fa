import type { Adapter } from 'oidc-provider';
import type { Logger } from 'pino';
import {
  DEFAULT_ACTIVATION_SECONDS,
  KEYS_ID,
  type KeySet,
  type KeyStatus,
  keySetAt,
  loadOrCreateStoredKeys,
  readStoredKeys,
  rotateKeys,
  type StoredKeys,
} from './keys.js';

/** How often a server reads the key set again by default, in seconds: a rotation reaches it this soon. */
export const DEFAULT_KEY_REFRESH_SECONDS = 5;

/** The keys a running server uses, kept current with the store and with the clock. */
export interface KeyRing {
  /**
   * The keys to use now. Cheap (a clock comparison): called on every request, so that a key activates (or is
   * dropped) at its time on every instance, not at the next refresh.
   */
  current(): KeySet;
  /** The state of every published signing key. */
  statuses(): KeyStatus[];
  /** Called (synchronously, from {@link current} or a refresh) whenever the keys in use change. */
  onChange(listener: (keys: KeySet) => void): void;
  /** Stops the refresh (and the scheduled rotation). */
  close(): void;
}

/** Options of {@link openKeyRing}. */
export interface KeyRingOptions {
  /** The longest lifetime of a token this server signs, in seconds: a retired key stays published that long. */
  retention: number;
  /** Seconds between reads of the stored keys. Default {@link DEFAULT_KEY_REFRESH_SECONDS}. */
  refreshSeconds?: number;
  /** Rotate the keys this often (seconds): one instance per period does it, by claiming the rotation in the store. */
  rotateEverySeconds?: number;
  /** Seconds between a scheduled rotation and the moment its keys sign. Default {@link DEFAULT_ACTIVATION_SECONDS}. */
  activateIn?: number;
  logger?: Logger;
}

/** A key ring over fixed keys (given in the options): nothing to refresh. */
export function fixedKeyRing(keys: KeySet): KeyRing {
  return { current: () => keys, statuses: () => [], onChange: () => {}, close: () => {} };
}

/**
 * Opens the key ring of the store (creating the first keys if there are none) and keeps it current: the stored keys
 * are read again every `refreshSeconds`, so a rotation made by `gatehouse admin keys rotate` or another instance is
 * published here within that time, without a restart.
 */
export async function openKeyRing(adapter: Adapter, options: KeyRingOptions): Promise<KeyRing> {
  const listeners: Array<(keys: KeySet) => void> = [];
  let stored: StoredKeys = await loadOrCreateStoredKeys(adapter);
  let raw = JSON.stringify(stored);
  let view = keySetAt(stored, options.retention);
  let fingerprint = fingerprintOf(view.keys);

  const recompute = () => {
    view = keySetAt(stored, options.retention);
    const next = fingerprintOf(view.keys);
    if (next === fingerprint) return;
    fingerprint = next;
    options.logger?.info(
      { keys: view.statuses.map((s) => ({ kid: s.kid, alg: s.alg, state: s.state })) },
      'signing keys changed',
    );
    for (const listener of listeners) listener(view.keys);
  };

  const refresh = async () => {
    const found = await adapter.find(KEYS_ID);
    const text = JSON.stringify(found);
    if (text === raw) return;
    const read = readStoredKeys(found);
    if (!read) return; // deleted or damaged: keep serving with the keys in use
    raw = text;
    stored = read;
    recompute();
  };

  const rotateEvery = options.rotateEverySeconds;
  const activateIn = options.activateIn ?? DEFAULT_ACTIVATION_SECONDS;
  // The next generation is due `rotateEvery` after the newest one activated; it is written `activateIn` earlier.
  const rotateIfDue = async () => {
    if (rotateEvery === undefined) return;
    const newest = stored.signing.reduce((a, b) => (b.activatesAt > a.activatesAt ? b : a));
    if (Date.now() / 1000 < newest.activatesAt + rotateEvery - activateIn) return;
    // One winner among the instances that saw the same newest key: a compare-and-set on a claim record.
    const claim = `rotation:${newest.jwk.kid}`;
    await adapter.upsert(claim, { kind: 'KeyRotationClaim' } as never, Math.max(60, Math.ceil(rotateEvery)));
    try {
      await adapter.consume(claim);
    } catch {
      return; // another instance rotates
    }
    const { kids, activatesAt } = await rotateKeys(adapter, { activateIn });
    options.logger?.info({ kids, activatesAt }, 'signing keys rotated (scheduled)');
    await refresh();
  };

  // Ticks fall on multiples of the interval in wall-clock time, on every instance alike: instances that find a
  // scheduled rotation due find it at the same moment, and the claim (not luck in timing) picks the one that writes.
  const interval = (options.refreshSeconds ?? DEFAULT_KEY_REFRESH_SECONDS) * 1000;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const schedule = () => {
    if (closed) return;
    timer = setTimeout(tick, interval - (Date.now() % interval));
    timer.unref();
  };
  const tick = () => {
    refresh()
      .then(rotateIfDue)
      .catch((error: unknown) => {
        options.logger?.warn({ err: { message: (error as Error)?.message } }, 'reading the signing keys failed');
      })
      .finally(schedule);
  };
  schedule();

  return {
    current() {
      if (Date.now() / 1000 >= view.changesAt) recompute();
      return view.keys;
    },
    statuses: () => view.statuses,
    onChange(listener) {
      listeners.push(listener);
    },
    close() {
      closed = true;
      clearTimeout(timer);
    },
  };
}

function fingerprintOf(keys: KeySet): string {
  return JSON.stringify([keys.signing.map((k) => k.kid), keys.cookies.map((c) => c.slice(0, 8))]);
}

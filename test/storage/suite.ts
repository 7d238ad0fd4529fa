import { afterAll, describe, expect, it } from 'vitest';
import type { KeyValueStore } from '../../src/storage/index.js';
import { sleep } from './helpers.js';

export interface SuiteOptions {
  /** Extra wait after a TTL elapses, for backends with coarse expiry (DynamoDB rounds up to whole seconds). */
  ttlSlackMs?: number;
  /** Called once after the suite, e.g. to close connections. */
  teardown?: () => Promise<void>;
}

type Closable = KeyValueStore & { close?: () => Promise<void> };

/**
 * The one suite every backend runs (like py-key-value's base store tests). `make(namespace)` returns a store in
 * that namespace; two namespaces on one backend must not see each other.
 */
export function storeSuite(
  name: string,
  make: (namespace: string) => Closable | Promise<Closable>,
  options: SuiteOptions = {},
) {
  describe(`store contract: ${name}`, () => {
    const opened: Closable[] = [];
    let counter = 0;
    const fresh = async (namespace = `ns${++counter}`) => {
      const store = await make(namespace);
      opened.push(store);
      return store;
    };

    afterAll(async () => {
      for (const store of opened) {
        await store.clear?.();
        await store.close?.();
      }
      await options.teardown?.();
    });

    it('returns undefined for a missing key', async () => {
      const store = await fresh();
      expect(await store.get('missing')).toBeUndefined();
    });

    it('round-trips JSON values of every shape', async () => {
      const store = await fresh();
      const values: Record<string, unknown> = {
        object: { access_token: 'at', nested: { list: [1, 'two', { three: true }] }, n: 1.5 },
        array: ['a', 1, false],
        string: 'plain text',
        number: 42,
        boolean: true,
        empty: {},
      };
      for (const [key, value] of Object.entries(values)) await store.set(key, value);
      for (const [key, value] of Object.entries(values)) expect(await store.get(key)).toEqual(value);
    });

    it('overwrites and deletes', async () => {
      const store = await fresh();
      await store.set('k', { v: 1 });
      await store.set('k', { v: 2 });
      expect(await store.get('k')).toEqual({ v: 2 });
      expect(await store.delete('k')).toBeTruthy();
      expect(await store.get('k')).toBeUndefined();
      expect(await store.delete('k')).toBeFalsy();
    });

    it('expires entries after their TTL and keeps entries without one', async () => {
      const store = await fresh();
      await store.set('short', 'gone soon', 300);
      await store.set('forever', 'stays');
      await store.set('long', 'stays too', 60_000);
      expect(await store.get('short')).toBe('gone soon');
      await sleep(450 + (options.ttlSlackMs ?? 0));
      expect(await store.get('short')).toBeUndefined();
      expect(await store.get('forever')).toBe('stays');
      expect(await store.get('long')).toBe('stays too');
    });

    it('handles unicode and long keys and values', async () => {
      const store = await fresh();
      const unicodeKey = 'clé:ключ:鍵:🔑:https://mcp.example.com/mcp?q=ü';
      const longKey = `https://mcp.example.com/${'a'.repeat(1000)}`.slice(0, 1000);
      await store.set(unicodeKey, { text: 'héllo 🌍 مرحبا' });
      await store.set(longKey, { big: 'x'.repeat(64 * 1024) });
      expect(await store.get(unicodeKey)).toEqual({ text: 'héllo 🌍 مرحبا' });
      expect(((await store.get(longKey)) as { big: string }).big).toHaveLength(64 * 1024);
      // A key differing only in case or in a character the file store would sanitise is a different key.
      await store.set('Case/Key', 1);
      await store.set('case_key', 2);
      expect(await store.get('Case/Key')).toBe(1);
      expect(await store.get('case_key')).toBe(2);
    });

    it('keeps namespaces apart, and clear() empties only its own', async () => {
      const a = await fresh();
      const b = await fresh();
      await a.set('shared', 'from a');
      await b.set('shared', 'from b');
      await a.set('only-a', 1);
      expect(await a.get('shared')).toBe('from a');
      expect(await b.get('shared')).toBe('from b');
      expect(await b.get('only-a')).toBeUndefined();
      await a.clear?.();
      expect(await a.get('shared')).toBeUndefined();
      expect(await a.get('only-a')).toBeUndefined();
      expect(await b.get('shared')).toBe('from b');
    });

    it('survives concurrent writers', async () => {
      const store = await fresh();
      const keys = Array.from({ length: 60 }, (_, i) => `token-${i}`);
      await Promise.all(keys.map((key, i) => store.set(key, { i })));
      const values = await Promise.all(keys.map((key) => store.get(key)));
      expect(values).toEqual(keys.map((_, i) => ({ i })));
      // Racing writes to one key leave one complete value, never a mix or nothing.
      await Promise.all(
        Array.from({ length: 20 }, (_, i) => store.set('contended', { writer: i, pad: 'p'.repeat(1000) })),
      );
      const final = (await store.get('contended')) as { writer: number; pad: string };
      expect(final.writer).toBeGreaterThanOrEqual(0);
      expect(final.writer).toBeLessThan(20);
      expect(final.pad).toHaveLength(1000);
    });
  });
}

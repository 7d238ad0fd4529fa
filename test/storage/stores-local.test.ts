import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileStore, fromMap, memoryStore, sqliteStore, toKeyValueStore } from '../../src/storage/index.js';
import { temporaryDirectory } from './helpers.js';
import { storeSuite } from './suite.js';

const dir = await temporaryDirectory('stores');
afterAll(() => dir.remove());

storeSuite('memory', (namespace) => memoryStore({ namespace }));

// A bare Map has no namespaces: each namespace gets its own map, as a user would do.
storeSuite('Map via toKeyValueStore', () => toKeyValueStore(new Map<string, unknown>()));

storeSuite('file', (namespace) => fileStore({ directory: dir.path, namespace }));

storeSuite('sqlite', (namespace) => sqliteStore(join(dir.path, 'kv.db'), { namespace }));

describe('file store on disk', () => {
  let directory: string;
  beforeAll(async () => {
    const store = fileStore({ directory: join(dir.path, 'perm'), namespace: 'tokens' });
    await store.set('https://mcp.example.com/mcp', { access_token: 'at' });
    directory = store.directory;
  });

  it('uses mode 0700 for the directory and 0600 for files, and writes readable JSON', async () => {
    expect((await stat(directory)).mode & 0o777).toBe(0o700);
    const files = await readdir(directory);
    expect(files).toHaveLength(1);
    const file = join(directory, files[0]!);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(files[0]).toMatch(/^https_mcp\.example\.com_mcp\.[0-9a-f]{32}\.json$/);
    const record = JSON.parse(await readFile(file, 'utf8'));
    expect(record).toMatchObject({ key: 'https://mcp.example.com/mcp', value: { access_token: 'at' } });
  });

  it('leaves no temporary or lock files after writes', async () => {
    const store = fileStore({ directory: join(dir.path, 'perm'), namespace: 'tokens' });
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.set('k', i)));
    await store.update!('counter', (n) => ((n as number | undefined) ?? 0) + 1);
    expect((await readdir(directory)).filter((f) => !f.endsWith('.json'))).toEqual([]);
  });

  it('update() serialises read-modify-write in one process', async () => {
    const store = fileStore({ directory: join(dir.path, 'perm'), namespace: 'updates' });
    await Promise.all(
      Array.from({ length: 50 }, () => store.update!('n', (n) => ((n as number | undefined) ?? 0) + 1)),
    );
    expect(await store.get('n')).toBe(50);
  });

  it('reports a damaged record as a RecordFormatError', async () => {
    const store = fileStore({ directory: join(dir.path, 'perm'), namespace: 'damaged' });
    await store.set('k', 1);
    const [name] = await readdir(store.directory);
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(store.directory, name!), '{"key": "k", "val');
    await expect(store.get('k')).rejects.toMatchObject({
      name: 'RecordFormatError',
      code: 'ERR_STORAGE_RECORD_FORMAT',
    });
  });
});

describe('memory store', () => {
  it('copies values so callers cannot mutate what is stored', async () => {
    const store = memoryStore();
    const value = { a: 1 };
    await store.set('k', value);
    value.a = 2;
    expect(await store.get('k')).toEqual({ a: 1 });
  });

  it('fromMap wraps a Map with TTLs', async () => {
    const map = new Map();
    const store = fromMap(map);
    await store.set('k', 'v', 1);
    await new Promise((r) => setTimeout(r, 5));
    expect(await store.get('k')).toBeUndefined();
    expect(map.size).toBe(0);
  });
});

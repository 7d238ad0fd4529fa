import { type ChildProcess, spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { fileStore } from '../../src/storage/index.js';
import { buildStorageForChildren, temporaryDirectory } from './helpers.js';

const dir = await temporaryDirectory('multiprocess');
afterAll(() => dir.remove());

const WRITERS = 4;
const COUNT = 1000;
const KILL_AFTER = 300;
const fixture = new URL('./fixtures/file-writer.mjs', import.meta.url).pathname;

interface Writer {
  child: ChildProcess;
  completed: string[];
  increments: number;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

it('4 processes write 1,000 tokens each to one file store; one is SIGKILLed midway; nothing completed is lost', async () => {
  const modulePath = await buildStorageForChildren();
  const started = Date.now();
  const writers: Writer[] = Array.from({ length: WRITERS }, (_, id) => {
    const child = spawn(process.execPath, [fixture, modulePath, dir.path, String(id), String(COUNT)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const writer: Writer = {
      child,
      completed: [],
      increments: 0,
      exit: new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))),
    };
    let buffer = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      buffer += chunk;
      let newline = buffer.indexOf('\n');
      while (newline >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (line.startsWith('set ')) writer.completed.push(line.slice(4));
        else if (line === 'inc') writer.increments++;
        if (id === 0 && writer.completed.length === KILL_AFTER && !child.killed) child.kill('SIGKILL');
        newline = buffer.indexOf('\n');
      }
    });
    return writer;
  });

  const exits = await Promise.all(writers.map((w) => w.exit));
  const elapsed = Date.now() - started;
  expect(exits[0]).toEqual({ code: null, signal: 'SIGKILL' });
  for (const exit of exits.slice(1)) expect(exit).toEqual({ code: 0, signal: null });
  expect(writers[0]!.completed.length).toBeGreaterThanOrEqual(KILL_AFTER);
  expect(writers[0]!.completed.length).toBeLessThan(COUNT);

  // Every record file parses.
  const store = fileStore({ directory: dir.path, namespace: 'multiprocess' });
  const names = (await readdir(store.directory)).filter((n) => n.endsWith('.json'));
  const records = await Promise.all(
    names.map(async (n) => JSON.parse(await readFile(join(store.directory, n), 'utf8'))),
  );
  expect(records.length).toBeGreaterThanOrEqual(3 * COUNT + KILL_AFTER);

  // Every key whose write completed is present, with its value.
  for (const [id, writer] of writers.entries()) {
    for (const key of writer.completed) {
      const i = Number(key.slice(key.lastIndexOf('-') + 1));
      expect(await store.get(key)).toEqual({
        access_token: `at-${id}-${i}`,
        token_type: 'Bearer',
        expires_at: 2_000_000_000,
      });
    }
  }

  // No lost update on the shared counter: at least every reported increment, at most one more (the killed
  // process may have written its last increment without reporting it).
  const reported = writers.reduce((sum, w) => sum + w.increments, 0);
  const counter = (await store.get('counter')) as number;
  expect(counter).toBeGreaterThanOrEqual(reported);
  expect(counter).toBeLessThanOrEqual(reported + 1);

  // A lock left behind by the killed process does not block anyone: update() still goes through at once.
  const t = Date.now();
  await store.update!('counter', (n) => (n as number) + 1);
  // (A lock judged only by age would block for staleLockMs = 30 s.)
  expect(Date.now() - t).toBeLessThan(5_000);
  console.info(`multiprocess file store: ${records.length} records, counter ${counter}, ${elapsed} ms`);
}, 90_000);

// docs/storage.md, "The file store": a per-key lock file makes writes safe across processes; a lock left by a killed
// process is taken over at once (its pid is gone) or after `staleLockMs` when its owner is on another host. The
// client's credential lock (docs/client.md, "Shared token stores") is the same lock file, so a login is not held up
// by a lock its dead owner left behind. Each case plants the lock file another process would have left and drives
// the public API: `fileStore().update()`, and a `Client` logging in with `lockDirectory`.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, OAuth } from '../../src/client/index.js';
import { LockTimeoutError } from '../../src/storage/errors.js';
import { fileNameForKey, fileStore } from '../../src/storage/file.js';
import { type OAuthTestStack, startOAuthTestStack } from '../client/oauth-helpers.js';
import { temporaryDirectory } from './helpers.js';

const dir = await temporaryDirectory('file-lock-stale');
afterAll(() => dir.remove());

/** A pid no process has here: a child that ran and was reaped. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', '0']);
  return child.pid!;
}

/** Plants the lock file an owner would leave, `ageMs` old. */
async function plantLock(path: string, owner: { pid: number; host: string }, ageMs = 0): Promise<void> {
  await writeFile(path, JSON.stringify({ ...owner, token: 'left-behind', createdAt: Date.now() - ageMs }), {
    mode: 0o600,
  });
  const then = new Date(Date.now() - ageMs);
  await utimes(path, then, then);
}

/** How long `update()` took to get the key's lock (and write), or the error it gave up with. */
async function timedUpdate(store: ReturnType<typeof fileStore>, key: string) {
  const started = Date.now();
  try {
    await store.update!(key, (n) => ((n as number | undefined) ?? 0) + 1);
    return { ms: Date.now() - started, error: undefined };
  } catch (error) {
    return { ms: Date.now() - started, error };
  }
}

describe('fileStore: a lock another process left behind', () => {
  let n = 0;
  /** A fresh namespace and key, and the path of that key's lock file. */
  const setup = async (options: { staleLockMs?: number; lockTimeoutMs?: number }) => {
    const namespace = `case-${n++}`;
    const store = fileStore({ directory: dir.path, namespace, ...options });
    await store.set('counter', 0);
    return { store, lock: join(dir.path, namespace, `${fileNameForKey('counter')}.lock`) };
  };

  it('this host, pid gone: taken over at once, however long staleLockMs is', async () => {
    const { store, lock } = await setup({ staleLockMs: 600_000, lockTimeoutMs: 20_000 });
    await plantLock(lock, { pid: deadPid(), host: hostname() });
    const { ms, error } = await timedUpdate(store, 'counter');
    expect(error).toBeUndefined();
    expect(ms).toBeLessThan(1_000);
    expect(await store.get('counter')).toBe(1);
  });

  it('this host, owner alive: never taken over before staleLockMs; the writer gives up with LockTimeoutError', async () => {
    const { store, lock } = await setup({ staleLockMs: 600_000, lockTimeoutMs: 400 });
    const alive = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
    try {
      await plantLock(lock, { pid: alive.pid!, host: hostname() });
      const { ms, error } = await timedUpdate(store, 'counter');
      expect(error).toBeInstanceOf(LockTimeoutError);
      expect((error as LockTimeoutError).code).toBe('ERR_STORAGE_LOCK_TIMEOUT');
      expect(ms).toBeGreaterThanOrEqual(400);
      expect(await store.get('counter')).toBe(0);
    } finally {
      alive.kill('SIGKILL');
    }
  });

  it('another host, whose pid means nothing here: not judged by pid — waited for until staleLockMs, then taken over', async () => {
    const { store, lock } = await setup({ staleLockMs: 800, lockTimeoutMs: 20_000 });
    // A pid that is dead on this machine: on the owner's host it may well be alive.
    await plantLock(lock, { pid: deadPid(), host: 'elsewhere.example.internal' });
    const { ms, error } = await timedUpdate(store, 'counter');
    expect(error).toBeUndefined();
    expect(ms).toBeGreaterThanOrEqual(700);
    expect(ms).toBeLessThan(5_000);
    expect(await store.get('counter')).toBe(1);
  });

  it('another host, the lock already older than staleLockMs: taken over at once', async () => {
    const { store, lock } = await setup({ staleLockMs: 30_000, lockTimeoutMs: 20_000 });
    await plantLock(lock, { pid: process.pid, host: 'elsewhere.example.internal' }, 60_000);
    const { ms, error } = await timedUpdate(store, 'counter');
    expect(error).toBeUndefined();
    expect(ms).toBeLessThan(1_000);
  });

  it('another host, a fresh lock and the default staleLockMs (30 s): the writer times out, the lock stays', async () => {
    const { store, lock } = await setup({ lockTimeoutMs: 400 });
    await plantLock(lock, { pid: deadPid(), host: 'elsewhere.example.internal' });
    const { error } = await timedUpdate(store, 'counter');
    expect(error).toBeInstanceOf(LockTimeoutError);
    expect(JSON.parse(await readFile(lock, 'utf8'))).toMatchObject({ token: 'left-behind' });
  });
});

describe('the credential lock of a Client login', () => {
  let stack: OAuthTestStack;
  beforeAll(async () => {
    stack = await startOAuthTestStack();
  });
  afterAll(() => stack?.close());

  /** The lock file the login of `oauth` takes for the stack's MCP server. */
  const credentialLock = (oauth: OAuth, directory: string) =>
    join(
      directory,
      `${createHash('sha256').update(oauth.storage.keyFor(stack.mcpUrl), 'utf8').digest('hex').slice(0, 40)}.lock`,
    );

  const loginWith = async (plant: (lock: string) => Promise<void>) => {
    const directory = join(dir.path, `locks-${Math.random().toString(36).slice(2)}`);
    await mkdir(directory, { recursive: true, mode: 0o700 });
    const oauth = new OAuth({
      mcpUrl: stack.mcpUrl,
      login: { username: 'demo', password: 'demo' },
      tokenStorage: 'memory',
      lockDirectory: directory,
    });
    await plant(credentialLock(oauth, directory));
    await using client = new Client(stack.mcpUrl, { auth: oauth });
    const started = Date.now();
    await client.callTool('whoami');
    return Date.now() - started;
  };

  it('a lock left by a process of this host that died: the login goes through at once', async () => {
    const ms = await loginWith((lock) => plantLock(lock, { pid: deadPid(), host: hostname() }));
    expect(ms).toBeLessThan(5_000);
  });

  it('a lock left on another host, older than the stale limit (15 min): the login goes through at once', async () => {
    const ms = await loginWith((lock) =>
      plantLock(lock, { pid: deadPid(), host: 'elsewhere.example.internal' }, 16 * 60_000),
    );
    expect(ms).toBeLessThan(5_000);
  });
});

// Group commit of the SQLite write path (src/storage/group-commit.ts): the writes of one event-loop turn share one
// transaction, a write is acknowledged only once committed, a bad write fails alone, reads see committed data only,
// and what was acknowledged survives a SIGKILL of the process.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateEncryptionKey } from '../../src/storage/encrypted.js';
import { GroupCommit } from '../../src/storage/group-commit.js';
import { sqliteOidcAdapter } from '../../src/storage/index.js';
import { openSqlite, type SqliteDatabase } from '../../src/storage/sqlite-driver.js';
import { buildStorageForChildren, temporaryDirectory } from './helpers.js';

const dir = await temporaryDirectory('group-commit');
afterAll(() => dir.remove());
let files = 0;

/** A real connection to a fresh file with a table `t`, whose BEGIN / COMMIT / ROLLBACK are counted. */
async function counted() {
  const path = join(dir.path, `db-${files++}.db`);
  const raw = await openSqlite(path);
  raw.exec('CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)');
  const counts = { begin: 0, commit: 0, rollback: 0 };
  const db: SqliteDatabase = {
    exec(sql) {
      if (sql.startsWith('BEGIN')) counts.begin++;
      if (sql === 'COMMIT') counts.commit++;
      if (sql === 'ROLLBACK') counts.rollback++;
      raw.exec(sql);
    },
    prepare: (sql) => raw.prepare(sql),
    close: () => raw.close(),
  };
  const keys = () => (raw.prepare('SELECT k FROM t ORDER BY k').all() as Array<{ k: string }>).map((r) => r.k);
  return { path, db, counts, keys };
}

const insert =
  (key: string, value = 1) =>
  (db: SqliteDatabase) =>
    Number(db.prepare('INSERT INTO t (k, v) VALUES (?, ?)').run(key, value).changes);

describe('GroupCommit', () => {
  it('runs the writes of one turn in one transaction, and awaited writes each in their own', async () => {
    const { db, counts, keys } = await counted();
    const commits = new GroupCommit(db);
    const names = Array.from({ length: 20 }, (_, i) => `k${String(i).padStart(2, '0')}`);
    expect(await Promise.all(names.map((name) => commits.run(insert(name))))).toEqual(names.map(() => 1));
    expect(counts).toEqual({ begin: 1, commit: 1, rollback: 0 });
    expect(commits.stats).toEqual({ commits: 1, writes: 20 });
    for (const name of ['x1', 'x2', 'x3']) await commits.run(insert(name));
    expect(counts).toEqual({ begin: 4, commit: 4, rollback: 0 });
    expect(keys()).toEqual([...names, 'x1', 'x2', 'x3']);
    db.close();
  });

  it('acknowledges a write only once another connection can read it', async () => {
    const { path, db } = await counted();
    const other = await openSqlite(path);
    const seen = () => other.prepare('SELECT v FROM t WHERE k = ?').get('a') as { v: number } | undefined;
    const commits = new GroupCommit(db);
    const write = commits.run(insert('a', 7)).then(() => seen());
    expect(seen()).toBeUndefined();
    expect(await write).toEqual({ v: 7 });
    other.close();
    db.close();
  });

  it('rolls back a batch with a failing write and runs each write alone: only the bad one rejects', async () => {
    const { db, counts, keys } = await counted();
    const commits = new GroupCommit(db);
    await commits.run(insert('taken'));
    const results = await Promise.allSettled([
      commits.run(insert('a')),
      commits.run(insert('b')),
      // Writes a row, then fails: neither its row nor anything of the others' first run may stay.
      commits.run((d) => {
        insert('partial')(d);
        return insert('taken')(d);
      }),
      commits.run(insert('c')),
      commits.run(insert('d')),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(String((results[2] as PromiseRejectedResult).reason)).toMatch(/UNIQUE constraint failed/);
    expect(keys()).toEqual(['a', 'b', 'c', 'd', 'taken']);
    // The first write, the failed batch, then the five alone.
    expect(counts).toEqual({ begin: 7, commit: 5, rollback: 2 });
    expect(commits.stats).toEqual({ commits: 5, writes: 5 });
    db.close();
  });

  it('rejects the whole batch when its transaction cannot start, and commits the next one', async () => {
    const { path, db, keys } = await counted();
    db.exec('PRAGMA busy_timeout = 0');
    const other = await openSqlite(path);
    other.exec('BEGIN IMMEDIATE');
    const commits = new GroupCommit(db);
    const results = await Promise.allSettled([commits.run(insert('a')), commits.run(insert('b'))]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(String((results[0] as PromiseRejectedResult).reason)).toMatch(/locked|busy/i);
    other.exec('ROLLBACK');
    await commits.run(insert('c'));
    expect(keys()).toEqual(['c']);
    other.close();
    db.close();
  });
});

describe('the SQLite oidc adapter on group commit', () => {
  const open = () =>
    sqliteOidcAdapter({
      path: join(dir.path, `adapter-${files++}.db`),
      encryptionKeys: [generateEncryptionKey()],
      purgeIntervalMs: false,
    });

  it('reads see committed writes only: after an awaited write, and not before its commit', async () => {
    const adapter = open();
    await adapter.ready();
    const tokens = adapter('AccessToken');
    const write = tokens.upsert('t1', { jti: 't1' } as never, 60);
    expect(await tokens.find('t1')).toBeUndefined();
    await write;
    expect(await tokens.find('t1')).toMatchObject({ jti: 't1' });
    await adapter.close();
  });

  it('a rotation that lost its consume fails alone in a shared batch; the others are stored', async () => {
    const adapter = open();
    await adapter.ready();
    await adapter('RefreshToken').upsert('old', { jti: 'old', grantId: 'g' } as never, 60);
    const entry = (id: string) => ({ model: 'RefreshToken', id, payload: { jti: id, grantId: 'g' } as never });
    const results = await Promise.allSettled([
      adapter.upsertMany([entry('winner')], { model: 'RefreshToken', id: 'old' }),
      adapter.upsertMany([entry('loser')], { model: 'RefreshToken', id: 'old' }),
      adapter.upsertMany([entry('other')]),
      adapter('AccessToken').destroy('nothing'),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    const reason = (results[1] as PromiseRejectedResult).reason as { error: string; error_detail: string };
    expect([reason.error, reason.error_detail]).toEqual(['invalid_grant', 'refresh token already consumed']);
    const refresh = adapter('RefreshToken');
    expect(await refresh.find('winner')).toMatchObject({ jti: 'winner' });
    expect(await refresh.find('loser')).toBeUndefined();
    expect(await refresh.find('other')).toMatchObject({ jti: 'other' });
    expect(await refresh.find('old')).toMatchObject({ consumed: expect.any(Number) });
    await adapter.close();
  });

  it('keeps every acknowledged write when the process is SIGKILLed mid-stream', { timeout: 60_000 }, async () => {
    const modulePath = await buildStorageForChildren();
    const path = join(dir.path, 'killed.db');
    const key = generateEncryptionKey();
    const fixture = new URL('./fixtures/sqlite-acked-writer.mjs', import.meta.url).pathname;
    const child = spawn(process.execPath, [fixture, modulePath, path, key], { stdio: ['ignore', 'pipe', 'inherit'] });
    const acked: string[] = [];
    const exit = new Promise<NodeJS.Signals | null>((resolve) =>
      child.once('exit', (_code, signal) => resolve(signal)),
    );
    let buffer = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffer += chunk;
      const lines = buffer.split('\n');
      buffer = lines.pop()!;
      for (const line of lines) if (line.startsWith('acked ')) acked.push(line.slice(6));
      if (acked.length >= 500 && !child.killed) child.kill('SIGKILL');
    });
    expect(await exit).toBe('SIGKILL');
    expect(acked.length).toBeGreaterThanOrEqual(500);
    const adapter = sqliteOidcAdapter({ path, encryptionKeys: [key], purgeIntervalMs: false });
    await adapter.ready();
    const stored = new Set((await adapter.list('AccessToken')).map((entry) => entry.id));
    expect(acked.filter((id) => !stored.has(id))).toEqual([]);
    await adapter.close();
  });
});

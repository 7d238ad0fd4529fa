// Round trips of one refresh-token grant on Redis, through `gatehouse serve`: MONITOR on a private redis-server
// sees every command the server sends. A regression (a second read of a row, a write split into several calls, an
// extra EXPIRE) changes these counts; timing is never asserted.
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from '@redis/client';
import { afterAll, expect, it } from 'vitest';
import { login, refresh } from './flows.js';
import { sleep, startPrivateRedis, startServe } from './services.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

it('a refresh costs three round trips (client, token with its grant and session, one write)', {
  timeout: 60_000,
}, async () => {
  const redis = await startPrivateRedis();
  cleanups.push(() => redis.destroy());
  const serve = await startServe(['--store', `${redis.url}/?prefix=rt:`], {
    GATEHOUSE_DATA_DIR: mkdtempSync(join(tmpdir(), 'gatehouse-rt-')),
    GATEHOUSE_STORE_KEY: randomBytes(32).toString('base64url'),
  });
  cleanups.push(() => serve.stop());
  const session = await login(serve.url);
  // The first refresh warms the server (scripts loaded); the second is the one counted.
  const first = await refresh(serve.url, session, session.refreshToken);
  expect(first.status).toBe(200);
  const monitor = createClient({ url: redis.url });
  await monitor.connect();
  cleanups.push(() => monitor.close());
  const lines: string[] = [];
  await monitor.monitor((line) => lines.push(line));
  await sleep(100);
  const second = await refresh(serve.url, session, first.body['refresh_token']!);
  expect(second.status).toBe(200);
  await sleep(300);
  // Each command the server sent, with what its script ran. The key ring's own reread of the signing keys (every
  // 5 s on the wall clock, whatever the requests) is no part of the refresh: a slow run's window can span one.
  const commands: Array<{ line: string; inScript: string[] }> = [];
  for (const line of lines) {
    if (!line.includes('[0 lua]')) commands.push({ line, inScript: [] });
    else commands.at(-1)?.inScript.push(line);
  }
  const refreshing = commands.filter(({ line }) => !line.includes(':e:GatehouseKeys:'));
  const name = (line: string) => /"(\w+)"/.exec(line)?.[1];
  const sent = refreshing.map(({ line }) => name(line));
  const inScripts = refreshing.flatMap(({ inScript }) => inScript.map(name));
  // The dynamically registered client, the token read with its Grant and session, the rotation written at once.
  expect(sent).toEqual(['EVALSHA', 'EVALSHA', 'EVALSHA']);
  // Inside the scripts: 1 (client) + 4 (token, Grant, session index, session) + the write: consume (2) and the
  // grace answer kept beside the consumed token (one SET: format level 3, a new store's), two entries (refresh and
  // access token, HSET + PEXPIRE each), the grant set read, extended and given its new lifetime once (3).
  expect(inScripts).toHaveLength(1 + 4 + 3 + 4 + 3);
  expect(inScripts.filter((command) => command === 'SET')).toHaveLength(1);
  expect(inScripts.filter((command) => command === 'PTTL')).toHaveLength(1);
  expect(inScripts.filter((command) => command === 'SADD')).toHaveLength(1);
});

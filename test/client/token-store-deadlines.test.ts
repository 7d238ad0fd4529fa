// docs/storage.md and docs/client.md: a Redis or PostgreSQL token store that cannot answer is an error, never a
// hang. Each case drives the real `Client` (OAuth with a headless login) against a real authorization server and
// MCP server, with its tokens in a store that is stopped, paused (SIGSTOP) or silent, and asserts a typed
// `StoreUnavailableError` within a bounded time — and that the client works again once the store is back.
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, OAuth } from '../../src/client/index.js';
import { StoreUnavailableError } from '../../src/storage/errors.js';
import { postgresStore } from '../../src/storage/postgres.js';
import { redisStore } from '../../src/storage/redis.js';
import { TokenStorage } from '../../src/storage/tokens.js';
import type { GatehouseStore } from '../../src/storage/types.js';
import { freePort, type PrivateStore, startPrivateRedis } from '../stores/services.js';
import { type OAuthTestStack, startOAuthTestStack, temporaryDirectory } from './oauth-helpers.js';

const login = { username: 'demo', password: 'demo' };
/** The store deadline (1.5 s) plus room for a loaded machine; far below "forever". */
const BOUND_MS = 5_000;
let stack: OAuthTestStack;
let redis: PrivateStore & { pause(): void; resume(): void };
const locks = await temporaryDirectory('token-store-deadlines-locks');
const stores: GatehouseStore[] = [];

beforeAll(async () => {
  [stack, redis] = await Promise.all([startOAuthTestStack(), startPrivateRedis()]);
});
afterAll(async () => {
  await Promise.all(stores.map((store) => store.close?.().catch(() => {})));
  await Promise.all([stack?.close(), redis?.destroy(), locks.remove()]);
});

const clientOn = (store: GatehouseStore) => {
  stores.push(store);
  const oauth = new OAuth({ login, tokenStorage: new TokenStorage(store), lockDirectory: locks.path });
  return new Client(stack.mcpUrl, { auth: oauth, connectTimeout: 30_000, timeout: 30_000 });
};

/** The call's error and how long it took to come; the call must not outlive `BOUND_MS`. */
async function failure(call: () => Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise((resolve) => {
    timer = setTimeout(() => resolve(new Error(`still waiting after ${BOUND_MS * 2} ms: a hang`)), BOUND_MS * 2);
  });
  try {
    const error = await Promise.race([
      call().then(
        () => new Error('the call succeeded'),
        (e: unknown) => e,
      ),
      hung,
    ]);
    return { error, ms: Date.now() - started };
  } finally {
    clearTimeout(timer);
  }
}

/** The StoreUnavailableError the error is, or carries as a cause. */
function storeError(error: unknown): StoreUnavailableError | undefined {
  for (let e = error; e instanceof Error; e = e.cause) if (e instanceof StoreUnavailableError) return e;
  return undefined;
}

function expectStoreUnavailable({ error, ms }: { error: unknown; ms: number }, store: string) {
  const typed = storeError(error);
  expect(typed, String((error as Error)?.stack ?? error)).toBeInstanceOf(StoreUnavailableError);
  expect(typed!.code).toBe('ERR_STORAGE_UNAVAILABLE');
  expect(typed!.message).toContain(store);
  expect(ms).toBeLessThan(BOUND_MS);
}

describe('a Redis token store', () => {
  it('stopped: the login fails with StoreUnavailableError at once, and works once Redis is back', async () => {
    await redis.stop();
    let running = false;
    try {
      await using client = clientOn(redisStore(redis.url, { prefix: `deadlines:${process.pid}:stopped:` }));
      expectStoreUnavailable(await failure(() => client.callTool('whoami')), 'redis');
      await redis.start();
      running = true;
      await expect(client.callTool('whoami')).resolves.toMatchObject({ isError: false });
    } finally {
      if (!running) await redis.start();
    }
  });

  it('paused (SIGSTOP) after a login: a client reading those tokens fails within the deadline, then works after SIGCONT', async () => {
    const store = redisStore(redis.url, { prefix: `deadlines:${process.pid}:paused:` });
    await using first = clientOn(store);
    await first.callTool('whoami');
    redis.pause();
    try {
      // Another client on the same store (another process, in real life) has to read the tokens.
      await using second = clientOn(store);
      expectStoreUnavailable(await failure(() => second.callTool('whoami')), 'redis');
    } finally {
      redis.resume();
    }
    await using third = clientOn(store);
    await expect(third.callTool('whoami')).resolves.toMatchObject({ isError: false });
    expect(stack.grants['authorization_code']).toBeGreaterThan(0);
  });

  it('paused (SIGSTOP) when a refresh is due: the call goes through on the old token within the deadline', async () => {
    const events: Array<{ type: string; error?: unknown }> = [];
    const store = redisStore(redis.url, { prefix: `deadlines:${process.pid}:refresh:` });
    stores.push(store);
    // A skew longer than the token's life: every request wants a refresh first.
    const oauth = new OAuth({
      login,
      tokenStorage: new TokenStorage(store),
      lockDirectory: locks.path,
      refreshSkewSeconds: 365 * 24 * 3600,
      onEvent: (event) => events.push(event),
    });
    await using client = new Client(stack.mcpUrl, { auth: oauth, timeout: 30_000 });
    await client.callTool('whoami');
    redis.pause();
    const started = Date.now();
    try {
      await expect(client.callTool('whoami')).resolves.toMatchObject({ isError: false });
    } finally {
      redis.resume();
    }
    expect(Date.now() - started).toBeLessThan(BOUND_MS);
    const failed = events.find((event) => event.type === 'refresh-failed');
    expect(storeError(failed?.error), String(failed?.error)).toBeInstanceOf(StoreUnavailableError);
  });

  it('paused (SIGSTOP) before the first connection: the login fails within the deadline', async () => {
    redis.pause();
    try {
      await using client = clientOn(redisStore(redis.url, { prefix: `deadlines:${process.pid}:paused-first:` }));
      expectStoreUnavailable(await failure(() => client.callTool('whoami')), 'redis');
    } finally {
      redis.resume();
    }
  });
});

describe('a PostgreSQL token store', () => {
  it('unreachable (nothing listens on its port): StoreUnavailableError at once', async () => {
    const url = `postgresql://postgres@127.0.0.1:${await freePort()}/postgres`;
    await using client = clientOn(postgresStore(url, { table: `deadlines_${process.pid}` }));
    expectStoreUnavailable(await failure(() => client.callTool('whoami')), 'postgres');
  });

  it('silent (accepts the connection, never answers): StoreUnavailableError within the deadline', async () => {
    const sockets = new Set<Socket>();
    const silent: Server = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = silent.address() as { port: number };
      const url = `postgresql://postgres@127.0.0.1:${port}/postgres`;
      await using client = clientOn(
        postgresStore(url, { table: `deadlines_${process.pid}`, poolConfig: { connectionTimeoutMillis: 60_000 } }),
      );
      expectStoreUnavailable(await failure(() => client.callTool('whoami')), 'postgres');
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});

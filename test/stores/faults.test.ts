// Store faults, through real `gatehouse serve` processes on a private Redis and a private PostgreSQL cluster that
// the test stops and restarts mid-traffic. The promises (docs/authorization-server.md, "Store outages"): the
// server never exits; during an outage every request is answered within 2 s with 503 temporarily_unavailable and
// Retry-After; service resumes within 5 s of the store's return without a restart; nothing acknowledged before the
// outage is lost; an unreachable store at start is one clear line and a non-zero exit within 10 s; /healthz stays
// 200 while /readyz answers 503 during the outage ("Running several instances", Readiness).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { login, refresh } from './flows.js';
import {
  freePort,
  type PrivateStore,
  type ServeProcess,
  serveFailure,
  sleep,
  startPrivatePostgres,
  startPrivateRedis,
  startServe,
} from './services.js';

const OUTAGE_ANSWER_MS = 2000;
const RESUME_MS = 5000;
const START_FAILURE_MS = 10_000;

interface Probe {
  status: number;
  ms: number;
  retryAfter: string | null;
  body: Record<string, unknown>;
}

/** A token request that needs the store (client lookup, then the refresh token): 400 invalid_grant when healthy. */
async function probe(url: string, clientId: string, clientSecret: string): Promise<Probe> {
  const started = performance.now();
  const response = await fetch(`${url}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: 'no-such-refresh-token',
      client_id: clientId,
      client_secret: clientSecret,
    }),
    signal: AbortSignal.timeout(10_000),
  });
  const body = (await response.json()) as Record<string, unknown>;
  return {
    status: response.status,
    ms: performance.now() - started,
    retryAfter: response.headers.get('retry-after'),
    body,
  };
}

/** `GET /healthz` or `/readyz`: status, JSON body and how long it took. */
async function health(url: string, path: string) {
  const started = performance.now();
  const response = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(10_000) });
  const body = (await response.json()) as Record<string, unknown>;
  return { status: response.status, body, ms: performance.now() - started };
}

/** Sends probes back to back (4 at a time) until stopped; collects every answer with when it was sent. */
function traffic(url: string, clientId: string, clientSecret: string) {
  const answers: Array<Probe & { sent: number }> = [];
  let running = true;
  const loops = Array.from({ length: 4 }, async () => {
    while (running) {
      const sent = Date.now();
      answers.push({ ...(await probe(url, clientId, clientSecret)), sent });
      await sleep(20);
    }
  });
  return {
    answers,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

function expectOutageAnswers(answers: Probe[]) {
  expect(answers.length).toBeGreaterThan(0);
  for (const answer of answers) {
    expect(answer.status).toBe(503);
    expect(answer.body['error']).toBe('temporarily_unavailable');
    expect(Number(answer.retryAfter)).toBeGreaterThan(0);
    expect(answer.ms).toBeLessThan(OUTAGE_ANSWER_MS);
  }
}

async function outageCycle(
  store: PrivateStore & { pause?: () => void; resume?: () => void },
  storeUrl: string,
): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-faults-'));
  const server: ServeProcess = await startServe(['--store', storeUrl], { GATEHOUSE_DATA_DIR: dataDir });
  try {
    const session = await login(server.url);
    // Acknowledged before the outage: a rotation (its new refresh token must survive).
    const rotated = await refresh(server.url, session, session.refreshToken);
    expect(rotated.status).toBe(200);
    const survivor = rotated.body['refresh_token']!;
    expect((await probe(server.url, session.clientId, session.clientSecret)).status).toBe(400);

    const load = traffic(server.url, session.clientId, session.clientSecret);
    await sleep(200);
    await store.stop();
    const down = Date.now();
    await sleep(2500);
    // The requests sent once the store was gone. One sent before may have been served by the store before it
    // stopped, its answer read a while later on a loaded machine: not a request during the outage.
    const duringOutage = load.answers.filter((a) => a.sent >= down);
    // Liveness stays up; readiness says the store is missing, within its 2 s store check.
    const [live, ready] = await Promise.all([health(server.url, '/healthz'), health(server.url, '/readyz')]);
    await store.start();
    const back = Date.now();
    let resumedAt: number | undefined;
    while (Date.now() - back < RESUME_MS + 2000) {
      const answer = await probe(server.url, session.clientId, session.clientSecret);
      if (answer.status === 400) {
        resumedAt = Date.now();
        break;
      }
      await sleep(50);
    }
    await load.stop();

    expectOutageAnswers(duringOutage);
    expect(live).toMatchObject({ status: 200, body: { status: 'ok' } });
    expect(ready).toMatchObject({ status: 503, body: { status: 'unavailable' } });
    expect(['timeout', 'unreachable']).toContain(ready.body['store']);
    expect(ready.ms).toBeLessThan(OUTAGE_ANSWER_MS + 500);
    expect(await health(server.url, '/readyz')).toMatchObject({ status: 200, body: { status: 'ready', keys: 'ok' } });
    expect(resumedAt, 'service did not resume').toBeDefined();
    expect(resumedAt! - back).toBeLessThan(RESUME_MS);
    // Every answer across the whole run came quickly: never a hang.
    for (const answer of load.answers) expect(answer.ms).toBeLessThan(OUTAGE_ANSWER_MS);

    if (store.pause && store.resume) {
      // A store that accepts connections but does not answer (stopped process): 503 by the deadline, not a hang.
      store.pause();
      const stalled = await Promise.all([1, 2, 3].map(() => probe(server.url, session.clientId, session.clientSecret)));
      store.resume();
      expectOutageAnswers(stalled);
    }

    const after = await refresh(server.url, session, survivor);
    expect(after.status, JSON.stringify(after.body)).toBe(200);
    expect(server.child.exitCode).toBeNull();
    expect(server.stderr()).not.toMatch(/Unhandled|Connection terminated/);
  } finally {
    await server.stop();
  }
}

describe('store faults under gatehouse serve', () => {
  const stores: PrivateStore[] = [];
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.destroy()));
  });

  it('rides out a Redis outage and a stalled Redis', { timeout: 120_000 }, async () => {
    const redis = await startPrivateRedis();
    stores.push(redis);
    await outageCycle(redis, `${redis.url}?prefix=faults:`);
  });

  it('rides out a PostgreSQL restart', { timeout: 120_000 }, async () => {
    const postgres = await startPrivatePostgres();
    stores.push(postgres);
    await outageCycle(postgres, postgres.url);
  });

  it('exits with one clear line when the store is unreachable at start', { timeout: 60_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-faults-'));
    const closed = await freePort();
    for (const url of [`redis://127.0.0.1:${closed}`, `postgres://postgres@127.0.0.1:${closed}/gatehouse`]) {
      const result = await serveFailure(['--store', url], { GATEHOUSE_DATA_DIR: dataDir });
      expect(result.code).not.toBe(0);
      expect(result.code).not.toBeNull();
      expect(result.ms).toBeLessThan(START_FAILURE_MS);
      const first = result.stderr.split('\n')[0]!;
      expect(first).toContain(url.split(':')[0]!);
      expect(first).toContain(`127.0.0.1:${closed}`);
      expect(first).toMatch(/cannot (open|reach)/);
    }
  });
});

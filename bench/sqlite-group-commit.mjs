// Benchmark: the SQLite oidc adapter's write path alone, without HTTP: what one refresh-token rotation writes
// (consume the old token keeping the grace answer with it, store the new refresh token and the access token's record,
// through `upsertMany`) at CONCURRENCY rotations in flight. With group commit (src/storage/group-commit.ts) the rotations
// issued in one event-loop turn share a transaction; at concurrency 1 each has its own.
//
//   npm run build && node bench/sqlite-group-commit.mjs
//
// Settings: BENCH_ROUNDS (6), BENCH_ROTATIONS (2000 per subject and round), BENCH_CONCURRENCY (`1,8`),
// BENCH_BASE=DIR (another built checkout, e.g. the commit before a change: its adapter runs as `@base` beside this
// one in every round). Each subject runs in its own process on its own file, the order rotated by one each round;
// per round the process's CPU time (user + system, every thread, so the checkpoint worker too) per rotation.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const ROTATIONS = Number(process.env.BENCH_ROTATIONS ?? 2000);
const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? '1,8').split(',').map(Number);
const BASE_DIR = process.env.BENCH_BASE;

if (process.argv[2] === 'child') {
  const [, , , dist, path, concurrency, rotations] = process.argv;
  const { sqliteOidcAdapter } = await import(join(dist, 'storage/index.js'));
  const adapter = sqliteOidcAdapter({ path, encryptionKeys: [randomBytes(32)], purgeIntervalMs: false });
  await adapter.ready();
  const grantId = randomBytes(16).toString('base64url');
  await adapter('Grant').upsert(grantId, { accountId: 'user', clientId: 'client' }, 3600);
  const id = () => randomBytes(32).toString('base64url');
  // Sizes as a refresh grant writes them: about 1.5–2.5 KB sealed per row.
  const token = () => ({
    accountId: 'user',
    clientId: 'client',
    grantId,
    sessionUid: 'uid',
    jti: id(),
    scope: 'openid offline_access mcp:tools',
    resource: 'http://127.0.0.1:8000/mcp',
    iat: 1,
    exp: 2,
    claims: 'x'.repeat(500),
  });
  const chains = await Promise.all(
    Array.from({ length: Number(concurrency) }, async () => {
      const first = id();
      await adapter('RefreshToken').upsert(first, token(), 86400);
      return first;
    }),
  );
  // The grace answer (sealed by the caller, about 1.6 KB): kept with the consumed token by an adapter that knows
  // format level 3 (it has `upgrade`; a new store is at that level), else an entry of its own as before.
  const keeps = typeof adapter.upgrade === 'function';
  const rotate = async (chain) => {
    const next = id();
    const answer = { sealed: 'y'.repeat(1600), expiresIn: 10, legacyId: id() };
    await adapter.upsertMany(
      [
        { model: 'RefreshToken', id: next, payload: token(), expiresIn: 86400 },
        { model: 'AccessToken', id: id(), payload: token(), expiresIn: 3600 },
        ...(keeps
          ? []
          : [
              {
                model: 'GatehouseRefreshGrace',
                id: answer.legacyId,
                payload: { sealed: answer.sealed },
                expiresIn: 10,
              },
            ]),
      ],
      { model: 'RefreshToken', id: chains[chain], ...(keeps && { answer }) },
    );
    chains[chain] = next;
  };
  const run = async (count) => {
    await Promise.all(
      chains.map(async (_, chain) => {
        for (let i = chain; i < count; i += chains.length) await rotate(chain);
      }),
    );
  };
  await run(Math.min(500, Number(rotations))); // warm-up
  const cpu = process.cpuUsage();
  const started = performance.now();
  await run(Number(rotations));
  const used = process.cpuUsage(cpu);
  process.stdout.write(
    JSON.stringify({
      cpu: (used.user + used.system) / Number(rotations),
      wall: ((performance.now() - started) * 1000) / Number(rotations),
    }),
  );
  await adapter.close();
  process.exit(0);
}

const here = fileURLToPath(new URL('..', import.meta.url));
const subjects = [
  { name: 'this checkout', dist: join(here, 'dist') },
  ...(BASE_DIR ? [{ name: 'base', dist: join(BASE_DIR, 'dist') }] : []),
];
const work = mkdtempSync(join(tmpdir(), 'gatehouse-bench-gc-'));
const results = new Map();
console.log(
  `load average at start ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);
try {
  for (let round = 0; round < ROUNDS; round++) {
    const order = subjects.flatMap((s) => CONCURRENCY.map((c) => ({ ...s, concurrency: c })));
    const rotated = [...order.slice(round % order.length), ...order.slice(0, round % order.length)];
    for (const subject of rotated) {
      const path = join(work, `${round}-${subject.name.replace(/\W/g, '')}-${subject.concurrency}.db`);
      const out = execFileSync(
        process.execPath,
        [fileURLToPath(import.meta.url), 'child', subject.dist, path, String(subject.concurrency), String(ROTATIONS)],
        { encoding: 'utf8' },
      );
      const key = `${subject.name}, concurrency ${subject.concurrency}`;
      if (!results.has(key)) results.set(key, []);
      results.get(key).push(JSON.parse(out));
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};
const cell = (values) =>
  `${median(values).toFixed(0).padStart(6)} ${`${Math.min(...values).toFixed(0)}–${Math.max(...values).toFixed(0)}`.padStart(11)}`;
console.log(`\nrotation writes through upsertMany, ${ROUNDS} rounds × ${ROTATIONS} rotations, order rotated`);
console.log(`${'subject'.padEnd(34)}  CPU µs/rotation   (min–max)   wall µs/rotation   (min–max)`);
for (const [key, runs] of results) {
  console.log(`${key.padEnd(34)}  ${cell(runs.map((r) => r.cpu))}       ${cell(runs.map((r) => r.wall))}`);
}
console.log(
  `\nload average at end ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Real services on this machine; tests fail (never skip) when one is down. */
export const REDIS_URL = process.env['GATEHOUSE_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
export const POSTGRES_URL = process.env['GATEHOUSE_TEST_POSTGRES_URL'] ?? 'postgresql://postgres@127.0.0.1:5432/test';

/** Unique per test file run, usable in table names and key prefixes, so parallel files never collide. */
export function uniqueId(label: string): string {
  return `${label}_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
}

/** Removes what a test left on the shared Redis and PostgreSQL: keys under `redisPrefix`, and `tables`. */
export async function removeFromServices(remove: { redisPrefix: string; tables: string[] }): Promise<void> {
  const { createClient } = await import('@redis/client');
  const redis = createClient({ url: REDIS_URL });
  await redis.connect();
  for await (const keys of redis.scanIterator({ MATCH: `${remove.redisPrefix}*`, COUNT: 500 })) {
    if (keys.length > 0) await redis.del(keys);
  }
  await redis.close();
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  await client.query(`DROP TABLE IF EXISTS ${remove.tables.join(', ')}`);
  await client.end();
}

export async function temporaryDirectory(label: string): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `gatehouse-${label}-`));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts dynalite (DynamoDB emulator) on loopback. */
export async function startDynalite(): Promise<{ endpoint: string; close: () => Promise<void> }> {
  const { default: dynalite } = await import('dynalite');
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export const dynamoClientConfig = (endpoint: string) => ({
  endpoint,
  region: 'us-east-1',
  credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
});

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
let built: Promise<string> | undefined;

/**
 * Transpiles src/storage (and the shared errors it imports) to plain JS for child processes: `node` cannot run
 * TypeScript on Node 20. Type checking is `tsc`'s job elsewhere; this only strips types (about a second). Output goes
 * under node_modules/.cache so packages still resolve from it.
 */
export function buildStorageForChildren(): Promise<string> {
  built ??= (async () => {
    const ts = (await import('typescript')).default;
    const relatives = [
      ...(await readdir(join(repo, 'src', 'storage'), { recursive: true }))
        .filter((f) => f.endsWith('.ts'))
        .map((f) => join('storage', f)),
      join('oauth', 'errors.ts'),
    ].sort();
    const sources = await Promise.all(relatives.map((r) => readFile(join(repo, 'src', r), 'utf8')));
    // Content-addressed: parallel test files share one build, and a changed source gets a new one.
    const hash = createHash('sha256')
      .update(JSON.stringify([relatives, sources]))
      .digest('hex')
      .slice(0, 16);
    const cache = join(repo, 'node_modules', '.cache');
    const out = join(cache, `gatehouse-storage-fixture-${hash}`);
    const entry = join(out, 'storage', 'index.js');
    if (existsSync(entry)) return entry;
    const staging = `${out}.${process.pid}.tmp`;
    for (const [i, relative] of relatives.entries()) {
      const { outputText } = ts.transpileModule(sources[i]!, {
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
        fileName: relative,
      });
      const target = join(staging, relative.replace(/\.ts$/, '.js'));
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, outputText);
    }
    await rename(staging, out).catch(() => rm(staging, { recursive: true, force: true }));
    // Drop builds of older sources.
    for (const name of await readdir(cache)) {
      if (name.startsWith('gatehouse-storage-fixture-') && !name.startsWith(`gatehouse-storage-fixture-${hash}`)) {
        const path = join(cache, name);
        if (Date.now() - (await stat(path)).mtimeMs > 60_000) await rm(path, { recursive: true, force: true });
      }
    }
    return entry;
  })();
  return built;
}

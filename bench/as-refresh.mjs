// Benchmark: refresh-token grant throughput of the Gatehouse authorization server on SQLite and on Redis, next to
// plain oidc-provider on its built-in memory adapter, side by side in one run, with server CPU time per request.
//
//   npm run bench:as             (builds dist/ first)
//   node bench/as-refresh.mjs    (after npm run build)
//
// Every server runs in its own child process so process.cpuUsage() there counts server work only; this process
// generates the load: CHAINS concurrent refresh chains (each request rotates the token and uses the new one next).
// Rounds alternate between the servers so machine drift hits all alike. Bounded: ROUNDS × REQUESTS per server.
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 600);
const CHAINS = Number(process.env.BENCH_CHAINS ?? 8);
const WARMUP = 100;
const RESOURCE = 'http://127.0.0.1:8000/mcp';
const CLIENT = {
  client_id: 'bench-client',
  application_type: 'native',
  token_endpoint_auth_method: 'none',
  grant_types: ['authorization_code', 'refresh_token'],
  redirect_uris: ['http://127.0.0.1/callback'],
};

if (process.argv[2] === '--server') await server(process.argv[3]);
else await main();

async function server(kind) {
  const { createServer } = await import('node:http');
  let provider;
  let close = async () => {};
  const issuer = 'http://127.0.0.1';
  if (kind === 'oidc-provider/memory') {
    const { default: Provider, errors } = await import('oidc-provider');
    const { exportJWK, generateKeyPair } = await import('jose');
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    provider = new Provider(issuer, {
      clients: [CLIENT],
      jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: 'k1', alg: 'ES256', use: 'sig' }] },
      scopes: ['openid', 'offline_access', 'mcp:tools'],
      pkce: { required: () => true },
      clientDefaults: { id_token_signed_response_alg: 'ES256' },
      rotateRefreshToken: true,
      findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
      features: {
        devInteractions: { enabled: false },
        resourceIndicators: {
          enabled: true,
          defaultResource: async (_ctx, _client, oneOf) => {
            if (oneOf) return oneOf;
            throw new errors.InvalidTarget();
          },
          useGrantedResource: async () => true,
          getResourceServerInfo: async (_ctx, indicator) => ({
            scope: 'mcp:tools',
            audience: indicator,
            accessTokenTTL: 3600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          }),
        },
      },
    });
  } else {
    const { createAuthorizationServer, staticUsers } = await import('../dist/authorization-server/index.js');
    const { oidcAdapterFactory, generateEncryptionKey } = await import('../dist/storage/index.js');
    const encryptionKeys = [generateEncryptionKey()];
    const adapter =
      kind === 'gatehouse/memory'
        ? oidcAdapterFactory({ backend: 'memory' })
        : kind === 'gatehouse/sqlite'
          ? oidcAdapterFactory({
              backend: 'sqlite',
              path: join(mkdtempSync(join(tmpdir(), 'gh-bench-')), 'as.db'),
              encryptionKeys,
            })
          : oidcAdapterFactory({
              backend: 'redis',
              url: 'redis://127.0.0.1:6379',
              prefix: `gatehouse-bench-${randomBytes(4).toString('hex')}:`,
              encryptionKeys,
            });
    await adapter.ready();
    const as = await createAuthorizationServer({
      issuer,
      authenticator: await staticUsers({ bench: randomBytes(8).toString('hex') }),
      resources: [{ resource: RESOURCE, scopes: ['mcp:tools'] }],
      clients: [CLIENT],
      adapter,
      refreshTokenGraceSeconds: Number(process.env.BENCH_GRACE ?? 5),
    });
    provider = as.provider;
    close = () => adapter.close();
  }
  const http = createServer(provider.callback());
  await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));

  const mint = async (count) => {
    const client = await provider.Client.find(CLIENT.client_id);
    const tokens = [];
    for (let i = 0; i < count; i++) {
      const grant = new provider.Grant({ accountId: 'bench', clientId: CLIENT.client_id });
      grant.addOIDCScope('offline_access');
      grant.addResourceScope(RESOURCE, 'mcp:tools');
      const grantId = await grant.save();
      const rt = new provider.RefreshToken({
        accountId: 'bench',
        client,
        grantId,
        scope: 'offline_access mcp:tools',
        resource: RESOURCE,
        gty: 'authorization_code',
      });
      tokens.push(await rt.save());
    }
    return tokens;
  };
  process.on('message', async (message) => {
    if (message.type === 'mint') process.send({ type: 'minted', tokens: await mint(message.count) });
    if (message.type === 'cpu') process.send({ type: 'cpu', usage: process.cpuUsage() });
    if (message.type === 'stop') {
      http.close();
      await close();
      process.exit(0);
    }
  });
  process.send({ type: 'ready', port: http.address().port });
}

function call(child, message, replyType) {
  return new Promise((resolve) => {
    const onMessage = (reply) => {
      if (reply.type === replyType) {
        child.off('message', onMessage);
        resolve(reply);
      }
    };
    child.on('message', onMessage);
    child.send(message);
  });
}

async function start(kind) {
  const child = fork(fileURLToPath(import.meta.url), ['--server', kind], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const { port } = await new Promise((resolve) => child.once('message', resolve));
  const { tokens } = await call(child, { type: 'mint', count: CHAINS }, 'minted');
  return { kind, child, url: `http://127.0.0.1:${port}/token`, tokens, requests: 0, ms: 0, cpuUs: 0 };
}

async function refreshOnce(target, chain) {
  const response = await fetch(target.url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: target.tokens[chain],
      client_id: CLIENT.client_id,
      resource: RESOURCE,
    }),
  });
  const body = await response.json();
  if (response.status !== 200) throw new Error(`${target.kind}: ${response.status} ${JSON.stringify(body)}`);
  target.tokens[chain] = body.refresh_token;
}

async function load(target, count) {
  let next = 0;
  await Promise.all(
    Array.from({ length: CHAINS }, async (_, chain) => {
      while (next < count) {
        next++;
        await refreshOnce(target, chain);
      }
    }),
  );
}

async function main() {
  const kinds = ['oidc-provider/memory', ...(process.env.BENCH_KINDS ?? 'gatehouse/sqlite,gatehouse/redis').split(',')];
  const targets = [];
  for (const kind of kinds) targets.push(await start(kind));
  for (const t of targets) await load(t, WARMUP);
  for (let round = 0; round < ROUNDS; round++) {
    for (const t of targets) {
      const cpuBefore = (await call(t.child, { type: 'cpu' }, 'cpu')).usage;
      const started = performance.now();
      await load(t, REQUESTS);
      t.ms += performance.now() - started;
      const cpuAfter = (await call(t.child, { type: 'cpu' }, 'cpu')).usage;
      t.cpuUs += cpuAfter.user - cpuBefore.user + cpuAfter.system - cpuBefore.system;
      t.requests += REQUESTS;
    }
  }
  for (const t of targets) t.child.send({ type: 'stop' });
  const base = targets[0];
  const rate = (t) => (t.requests / t.ms) * 1000;
  console.log(
    `refresh_token grant, ${CHAINS} concurrent chains, ${ROUNDS} rounds × ${REQUESTS} requests per server (node ${process.version})`,
  );
  console.log('server                   req/s    × baseline   server CPU ms/req');
  for (const t of targets) {
    console.log(
      `${t.kind.padEnd(24)} ${rate(t).toFixed(0).padStart(6)}    ${(rate(t) / rate(base)).toFixed(2).padStart(6)}      ${(
        t.cpuUs / 1000 / t.requests
      ).toFixed(3)}`,
    );
  }
}

import { refreshAuthorization } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OAuth } from '../../src/client/index.js';
import { fileStore, memoryStore, TokenStorage } from '../../src/storage/index.js';
import {
  buildClientForChildren,
  type Child,
  type InteropStack,
  startChild,
  startInteropStack,
  temporaryDirectory,
} from './helpers.js';

// Note 01 (refresh races) and note 06 (many instances, many logins), against a real Gatehouse AS whose refresh
// tokens rotate. The grace window is off, as in oidc-provider's default: a spent refresh token revokes the grant.
let stack: InteropStack;
let src: string;
const locks = await temporaryDirectory('interop-locks');
const CHILD = new URL('./fixtures/oauth-child.mjs', import.meta.url);
beforeAll(async () => {
  stack = await startInteropStack({ accessTokenTtl: 3600, refreshTokenGraceSeconds: 0 });
  src = await buildClientForChildren();
}, 180_000);
afterAll(async () => {
  await stack.close();
  await locks.remove();
});

const count = (type: string) => stack.grants[type] ?? 0;
const login = { username: 'demo', password: 'demo' };

describe('note 01: refresh races', () => {
  it('note 01: provoked — two parallel refreshes of one rotating token: the loser gets invalid_grant', async () => {
    const oauth = new OAuth({ mcpUrl: stack.mcpUrl, tokenStorage: new Map(), login, lockDirectory: locks.path });
    await oauth.authorize();
    const tokens = (await oauth.tokens())!;
    const metadata = await (await fetch(`${stack.issuer}/.well-known/oauth-authorization-server`)).json();
    const client = (await oauth.clientInformation())!;
    // What an SDK client without de-duplication does: both requests spend the same refresh token.
    const spend = () =>
      refreshAuthorization(stack.issuer, {
        metadata,
        clientInformation: client,
        refreshToken: tokens.refresh_token!,
        resource: new URL(stack.mcpUrl),
      });
    const results = await Promise.allSettled([spend(), spend()]);
    const failed = results.filter((r) => r.status === 'rejected');
    expect(failed.length).toBeGreaterThanOrEqual(1);
    expect(String((failed[0] as PromiseRejectedResult).reason)).toMatch(/invalid_grant|grant/i);
  });

  it('note 01: a loser never deletes the winner’s fresh tokens (deleted only if still the failed ones)', async () => {
    const storage = new TokenStorage(memoryStore());
    const oauth = new OAuth({ mcpUrl: stack.mcpUrl, tokenStorage: storage, login, lockDirectory: locks.path });
    await oauth.authorize();
    const seen = await oauth.tokens({ issuer: stack.issuer }); // what the SDK's auth() got before it failed
    // Meanwhile another process refreshed and stored new tokens.
    await storage.update(stack.mcpUrl, (r) => ({
      ...r!,
      tokens: { ...r!.tokens!, access_token: 'winner', refresh_token: 'winner-refresh' },
    }));
    expect(seen?.refresh_token).not.toBe('winner-refresh');
    await oauth.invalidateCredentials('tokens'); // the SDK's reaction to invalid_grant
    expect((await storage.getTokens(stack.mcpUrl))?.refresh_token).toBe('winner-refresh');
  });

  it('note 01: 3 processes × 50 concurrent calls on one file store, across two expiries → 2 refreshes, 0 failures, 0 logins', {
    timeout: 180_000,
  }, async () => {
    const dir = await temporaryDirectory('interop-race');
    const children: Child[] = [];
    try {
      const storage = new TokenStorage(fileStore({ directory: dir.path }));
      const first = new OAuth({ mcpUrl: stack.mcpUrl, tokenStorage: storage, login, lockDirectory: locks.path });
      await first.authorize();
      const refreshes = count('refresh_token');
      const logins = count('authorization_code');
      for (let i = 0; i < 3; i++) children.push(startChild(CHILD, [src, dir.path, stack.mcpUrl, locks.path]));
      // Each expiry: every child's clock moves to 30 s before the access token expires (inside the 60 s skew).
      for (const phase of [1, 2]) {
        const offset = phase * (3600 - 30) * 1000;
        for (const child of children) child.send(`go ${offset} 50`);
        const reports = await Promise.all(children.map((c) => c.next()));
        for (const report of reports) expect(report).toMatchObject({ ok: 50, failed: 0 });
        expect(count('refresh_token') - refreshes, `after expiry ${phase}`).toBe(phase);
      }
      expect(count('refresh_token') - refreshes).toBe(2);
      expect(count('authorization_code') - logins).toBe(0);
    } finally {
      for (const child of children) child.send('exit');
      await Promise.all(children.map((c) => c.exited));
      await dir.remove();
    }
  });
});

describe('note 06: many instances of one server', () => {
  it('note 06: eight processes started at once with an empty store → one registration, one login, all get its tokens', {
    timeout: 180_000,
  }, async () => {
    const dir = await temporaryDirectory('interop-eight');
    const children: Child[] = [];
    try {
      const logins = count('authorization_code');
      const registrations = stack.asRequests.filter((r) => r.startsWith('POST /reg')).length;
      const authorizations = stack.asRequests.filter((r) => r.startsWith('GET /auth?')).length;
      for (let i = 0; i < 8; i++) children.push(startChild(CHILD, [src, dir.path, stack.mcpUrl, locks.path]));
      for (const child of children) child.send('login');
      const reports = await Promise.all(children.map((c) => c.next()));
      // Without the lock each would register, open its own login and overwrite the others' PKCE verifier.
      expect(count('authorization_code') - logins).toBe(1);
      expect(stack.asRequests.filter((r) => r.startsWith('POST /reg')).length - registrations).toBe(1);
      expect(stack.asRequests.filter((r) => r.startsWith('GET /auth?')).length - authorizations).toBe(1);
      expect(new Set(reports.map((r) => r['access_token'])).size).toBe(1);
    } finally {
      for (const child of children) child.send('exit');
      await Promise.all(children.map((c) => c.exited));
      await dir.remove();
    }
  });
});

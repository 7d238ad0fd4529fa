// The refresh-token grace window under concurrency, as the store tests check it on every backend and format.
import { expect } from 'vitest';
import { login, refresh } from './flows.js';
import { type ServeProcess, sleep } from './services.js';

/**
 * `concurrent` refreshes of one refresh token spread over `servers` give no error and one new pair (every answer
 * carries the same new tokens); presenting the old token again after the window still revokes the whole family.
 */
export async function raceOneToken(servers: ServeProcess[], concurrent: number, graceSeconds: number): Promise<void> {
  const session = await login(servers[0]!.url);
  const answers = await Promise.all(
    Array.from({ length: concurrent }, (_, i) =>
      refresh(servers[i % servers.length]!.url, session, session.refreshToken),
    ),
  );
  const failures = answers.filter((a) => a.status !== 200).map((a) => `${a.status} ${JSON.stringify(a.body)}`);
  expect(failures).toEqual([]);
  const newTokens = new Set(answers.map((a) => a.body['refresh_token']));
  expect(newTokens.size).toBe(1);
  expect(new Set(answers.map((a) => a.body['access_token'])).size).toBe(1);
  const [newToken] = [...newTokens] as [string];
  expect(newToken).not.toBe(session.refreshToken);

  // After the window the old token is reuse: refused, and the family (the new token too) is revoked.
  await sleep((graceSeconds + 1) * 1000);
  const reuse = await refresh(servers[servers.length - 1]!.url, session, session.refreshToken);
  expect(reuse.status).toBe(400);
  expect(reuse.body['error']).toBe('invalid_grant');
  const family = await refresh(servers[0]!.url, session, newToken);
  expect(family.status).toBe(400);
  expect(family.body['error']).toBe('invalid_grant');
}

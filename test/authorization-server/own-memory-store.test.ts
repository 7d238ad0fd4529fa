import { afterEach, describe, expect, it, vi } from 'vitest';
import { createAuthorizationServer, staticUsers } from '../../src/authorization-server/index.js';
import type { OidcAdapterFactory } from '../../src/storage/oidc/common.js';

describe('createAuthorizationServer() without an adapter', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('its own memory store deletes expired entries while idle (purge timer), and is closed with the server', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'] });
    const as = await createAuthorizationServer({
      issuer: 'http://127.0.0.1:9',
      authenticator: await staticUsers({ alice: 'wonderland' }),
      resources: [{ resource: 'http://127.0.0.1:8123/mcp', scopes: ['mcp:tools'] }],
    });
    await as.adapter('AccessToken').upsert('short-lived', { grantId: 'g' }, 1);
    // Idle: no read or write touches the store; only the timer can delete the entry.
    vi.advanceTimersByTime(61_000);
    await Promise.resolve();
    expect(await (as.adapter as OidcAdapterFactory).purgeExpired()).toBe(0);

    await as.close();
    // Closed: its timer is gone, so an entry that expires now stays until something sweeps.
    await as.adapter('AccessToken').upsert('after-close', { grantId: 'g' }, 1);
    vi.advanceTimersByTime(61_000);
    await Promise.resolve();
    expect(await (as.adapter as OidcAdapterFactory).purgeExpired()).toBe(1);
  });
});

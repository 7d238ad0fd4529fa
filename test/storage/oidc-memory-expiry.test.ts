import { describe, expect, it } from 'vitest';
import { memoryOidcAdapter } from '../../src/storage/oidc/memory.js';

describe('memory oidc adapter', () => {
  it('drops expired entries on later writes, without a purge timer (refresh rotation stays bounded)', async () => {
    const factory = memoryOidcAdapter({ purgeIntervalMs: false });
    const tokens = factory('RefreshToken');
    for (let i = 0; i < 200; i++) await tokens.upsert(`rotated-${i}`, { grantId: 'g', jti: `rotated-${i}` }, 1);
    await tokens.upsert('long-lived', { grantId: 'g' }, 3600);
    await new Promise((r) => setTimeout(r, 1100));
    // The next rotation's write sweeps: nothing expired is left for an explicit purge to find.
    await tokens.upsert('next', { grantId: 'g' }, 3600);
    expect(await factory.purgeExpired()).toBe(0);
    expect(await tokens.find('rotated-0')).toBeUndefined();
    expect(await tokens.find('long-lived')).toBeDefined();
    expect(await tokens.find('next')).toBeDefined();
    await factory.close();
  });

  it('still finds nothing expired on read before any write sweeps', async () => {
    const factory = memoryOidcAdapter({ purgeIntervalMs: false });
    const codes = factory('AuthorizationCode');
    await codes.upsert('c', { grantId: 'g' }, 1);
    await new Promise((r) => setTimeout(r, 1100));
    expect(await codes.find('c')).toBeUndefined();
    await factory.close();
  });
});

import { createHash, hkdfSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { keyFor } from '../../src/authorization-server/refresh-grace.js';
import { openValue, sealingKey, sealValue } from '../../src/storage/encrypted.js';

// Instances of two releases share a store during a rolling upgrade: a grace answer one seals, the other must open.
describe('the grace answer of a rotated refresh token', () => {
  it('is kept under the id and sealed with the key of the previous release (HKDF-SHA256 of the token)', () => {
    for (let i = 0; i < 20; i++) {
      const token = randomBytes(32).toString('base64url');
      const previous = sealingKey(new Uint8Array(hkdfSync('sha256', token, 'gatehouse', 'refresh-grace-v1', 32)));
      const { id, key } = keyFor(token);
      expect(id).toBe(createHash('sha256').update(token).digest('base64url'));
      expect(Buffer.from(key.bytes).equals(Buffer.from(previous.bytes))).toBe(true);
      const body = { access_token: `at-${i}`, refresh_token: `rt-${i}` };
      expect(openValue([key], 'refresh-grace', sealValue(previous, 'refresh-grace', body))).toEqual(body);
      expect(openValue([previous], 'refresh-grace', sealValue(key, 'refresh-grace', body))).toEqual(body);
    }
  });
});

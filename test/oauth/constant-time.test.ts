import { describe, expect, it } from 'vitest';
import { constantTimeEqual } from '../../src/oauth/constant-time.js';

describe('constantTimeEqual', () => {
  it('is true only for the same string, whatever the lengths', () => {
    expect(constantTimeEqual('state-123', 'state-123')).toBe(true);
    expect(constantTimeEqual('', '')).toBe(true);
    expect(constantTimeEqual('state-123', 'state-124')).toBe(false);
    expect(constantTimeEqual('state-123', 'state-1234')).toBe(false);
    expect(constantTimeEqual('state', '')).toBe(false);
    // Compared as UTF-8: a look-alike in another normalisation is another secret.
    expect(constantTimeEqual('caf\u00e9', 'cafe\u0301')).toBe(false);
  });
});

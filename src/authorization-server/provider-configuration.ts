import type { Configuration } from 'oidc-provider';

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype;

/**
 * Merges extra oidc-provider configuration into Gatehouse's: objects merge key by key at every depth, so adding
 * `features: { userinfo: { enabled: true } }` keeps registration, introspection, revocation, CIMD and resource
 * indicators; anything else (arrays, functions, values) replaces. oidc-provider's development login pages stay off
 * whatever the extra configuration says: they accept any user.
 */
export function mergeProviderConfiguration(base: Configuration, extra: Configuration | undefined): Configuration {
  const merged = deepMerge(base as Record<string, unknown>, (extra ?? {}) as Record<string, unknown>) as Configuration;
  merged.features = { ...merged.features, devInteractions: { enabled: false } };
  return merged;
}

function deepMerge(base: Record<string, unknown>, extra: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(extra)) {
    if (key === '__proto__' || key === 'constructor' || key === 'prototype') continue;
    const current = out[key];
    out[key] = isPlainObject(current) && isPlainObject(value) ? deepMerge(current, value) : value;
  }
  return out;
}

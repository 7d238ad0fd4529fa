import type { AdapterPayload } from 'oidc-provider';
import type { OidcAdapterFactory } from '../storage/oidc/common.js';
import {
  KEYS_ID,
  KEYS_MODEL,
  type KeyStatus,
  keyStatuses,
  longestTokenLifetime,
  type RotateKeysOptions,
  readStoredKeys,
  rotateKeys,
} from './keys.js';
import { type ServeConfig, ServeConfigError, type StoreLocation } from './serve.js';

/** One stored entry, as `gatehouse admin … list` shows it. */
export interface StoredEntry {
  id: string;
  payload: AdapterPayload;
}

/** Refuses the memory store, which lives inside a running server and cannot be administered from outside. */
export function assertAdministrable(location: StoreLocation): void {
  if (location.backend === 'memory') {
    throw new ServeConfigError('the memory store lives inside a running server and cannot be administered', {
      code: 'ERR_SERVE_CONFIG',
      hint: 'Point --store at the SQLite file, Redis or PostgreSQL the server uses.',
    });
  }
}

/** Lists the live entries of one oidc-provider model (`Client`, `Grant`, …), opened with the store's keys. */
export async function listEntries(store: OidcAdapterFactory, model: string): Promise<StoredEntry[]> {
  return store.list(model);
}

/** Deletes a dynamically registered client and revokes every grant it holds. Returns how many grants went. */
export async function revokeClient(
  store: OidcAdapterFactory,
  clientId: string,
): Promise<{ found: boolean; grants: number }> {
  const client = await store('Client').find(clientId);
  const grants = (await listEntries(store, 'Grant')).filter((g) => g.payload['clientId'] === clientId);
  for (const grant of grants) await revokeGrant(store, grant.id);
  if (client) await store('Client').destroy(clientId);
  return { found: client !== undefined, grants: grants.length };
}

/** Revokes a grant: its tokens and codes, then the grant itself. */
export async function revokeGrant(store: OidcAdapterFactory, grantId: string): Promise<boolean> {
  const grant = await store('Grant').find(grantId);
  await store('AccessToken').revokeByGrantId(grantId);
  await store('Grant').destroy(grantId);
  return grant !== undefined;
}

/**
 * Adds a new generation of signing keys to the store: every running server publishes it within seconds and signs with
 * it from its activation time on (see `rotateKeys`).
 */
export async function rotateStoredKeys(
  store: OidcAdapterFactory,
  options: RotateKeysOptions = {},
): Promise<{ kid: string; kids: string[]; activatesAt: number }> {
  return rotateKeys(store(KEYS_MODEL), options);
}

/**
 * The signing keys in the store and their state now. When a retiring key leaves the JWKS depends on the longest token
 * lifetime, read from `config` as `gatehouse serve` reads it (resources' `accessTokenTtl`, `providerConfiguration.ttl`).
 */
export async function listStoredKeys(store: OidcAdapterFactory, config: ServeConfig = {}): Promise<KeyStatus[]> {
  const stored = readStoredKeys(await store(KEYS_MODEL).find(KEYS_ID));
  if (!stored) return [];
  const ttl = (config.providerConfiguration as { ttl?: Record<string, unknown> } | undefined)?.ttl;
  return keyStatuses(stored, longestTokenLifetime(config.resources ?? [], ttl));
}

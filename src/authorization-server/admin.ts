import type { AdapterPayload } from 'oidc-provider';
import type { OidcAdapterFactory } from '../storage/oidc/common.js';
import { KEYS_MODEL, rotateKeys } from './keys.js';
import { ServeConfigError, type StoreLocation } from './serve.js';

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

/** Adds a new signing key to the store (servers sign with it after their next start). */
export async function rotateStoredKeys(store: OidcAdapterFactory): Promise<{ kid: string; kids: string[] }> {
  return rotateKeys(store(KEYS_MODEL));
}

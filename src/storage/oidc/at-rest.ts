import { createHash } from 'node:crypto';
import { type EncryptionKey, openValue, type SealingKey, sealedKid, sealingKey, sealValue } from '../encrypted.js';
import { DecryptionError, StorageConfigError } from '../errors.js';
import { type AdapterPayload, indexesOf } from './common.js';

const hashed = (model: string, id: string): string =>
  createHash('sha256').update(model).update('\0').update(id).digest('base64url');

/**
 * How the oidc adapters keep entries at rest: a store dump shows no token, code, secret or key.
 *
 * - **Lookup by hash**: an entry's row key is SHA-256 of its model and id (the id of a token *is* the token). Ids
 *   are random 256-bit values, so the hash cannot be reversed; it does not depend on the encryption key, so the key
 *   rotates without moving rows. Secondary indexes (grant, session uid, user code) are hashed the same way.
 * - **Sealed payloads**: the payload (and the id, for listing) is sealed with the at-rest key by
 *   `encrypted.ts` (JWE `dir`/`A256GCM`), bound to the row key so a payload copied to another row does not open.
 */
export class AtRest {
  readonly #keys: SealingKey[];

  constructor(keys: readonly EncryptionKey[]) {
    if (keys.length === 0) {
      throw new StorageConfigError(
        'The store needs an at-rest encryption key.',
        'Pass encryptionKeys: [generateEncryptionKey()] (keep the key: without it the store cannot be read).',
      );
    }
    this.#keys = keys.map(sealingKey);
  }

  /** The key new values are sealed with. */
  get kid(): string {
    return this.#keys[0]!.kid;
  }

  /** The row key of an entry. */
  lookup(model: string, id: string): string {
    return model === 'Grant' ? this.#remembered(model, id) : hashed(model, id);
  }

  /** The stored form of a secondary-index value (`grant`, `uid`, `userCode`). */
  index(kind: string, value: string | undefined): string | undefined {
    if (value === undefined) return undefined;
    return kind === 'userCode' ? hashed(`index:${kind}`, value) : this.#remembered(`index:${kind}`, value);
  }

  // A grant id or session uid is hashed for every token of the grant, several times per token request (index
  // values, the Grant's row key): the hashes of the recent ones are kept. Token ids and user codes are not kept.
  readonly #hashes = new Map<string, string>();

  #remembered(model: string, id: string): string {
    const name = `${model}\0${id}`;
    let hash = this.#hashes.get(name);
    if (hash === undefined) {
      hash = hashed(model, id);
      if (this.#hashes.size >= 4096) this.#hashes.clear();
      this.#hashes.set(name, hash);
    }
    return hash;
  }

  /** What a backend stores for an entry: its row key, sealed payload and hashed index values (null when none). */
  row(
    model: string,
    id: string,
    payload: AdapterPayload,
  ): { key: string; sealed: string; grant: string | null; uid: string | null; userCode: string | null } {
    const { grantId, uid, userCode } = indexesOf(model, payload);
    const key = this.lookup(model, id);
    return {
      key,
      sealed: this.seal(key, id, payload),
      grant: this.index('grant', grantId) ?? null,
      uid: this.index('uid', uid) ?? null,
      userCode: this.index('userCode', userCode) ?? null,
    };
  }

  seal(lookup: string, id: string, payload: AdapterPayload): string {
    return sealValue(this.#keys[0]!, lookup, { id, payload });
  }

  open(lookup: string, sealed: string): { id: string; payload: AdapterPayload } {
    return openValue(this.#keys, lookup, sealed) as { id: string; payload: AdapterPayload };
  }

  /** The value sealed with the current key, or undefined when it already is. */
  reseal(lookup: string, sealed: string): string | undefined {
    if (sealedKid(sealed) === this.kid) return undefined;
    const { id, payload } = this.open(lookup, sealed);
    return this.seal(lookup, id, payload);
  }

  /**
   * Opens the store's format marker (sealed like any entry), explaining what to do when this instance's key
   * cannot: every instance sharing a store must use the same at-rest key.
   */
  checkMarker(store: string, lookup: string, sealed: string): void {
    try {
      this.open(lookup, sealed);
    } catch (error) {
      if (!(error instanceof DecryptionError)) throw error;
      throw new StorageConfigError(
        `the ${store} store was encrypted with another at-rest key (key id ${sealedKid(sealed) || 'unknown'}; this instance has ${this.#keys.map((k) => k.kid).join(', ')})`,
        'Give every instance the same key: GATEHOUSE_STORE_KEY, or the same store.key file (docs: "Data at rest").',
      );
    }
  }
}

/** Model name and id of the format marker each store carries once it holds the hashed, sealed layout. */
export const FORMAT_MARKER = { model: 'GatehouseStoreFormat', id: 'v2' } as const;

/** An entry of the layout before hashing and sealing (Gatehouse 0.1), read by a backend's migration. */
export interface LegacyEntry {
  model: string;
  id: string;
  payload: AdapterPayload;
  /** Seconds left, or undefined for no expiry. */
  expiresIn?: number;
  consumed?: number;
}

/** Options every persistent oidc backend takes for data at rest. */
export interface AtRestOptions {
  /**
   * The at-rest keys (32 bytes, or base64url text), newest first: payloads are sealed with the first and opened
   * with whichever matches, so a key rotates by listing the new one first and running `rekey()`. Every instance
   * sharing a store must have the same keys.
   */
  encryptionKeys: readonly EncryptionKey[];
}

import type Provider from 'oidc-provider';
import initializeKeystore from 'oidc-provider/lib/helpers/initialize_keystore.js';
import type { KeySet } from './keys.js';

/**
 * Puts `keys` into a running oidc-provider: the signing keys into its keystore and JWKS, the cookie keys into its
 * cookie signer.
 *
 * oidc-provider takes `jwks` only at construction and keeps the keystore in private state. Two ways exist to change
 * it on a live server: build a new Provider, or run its own keystore initialiser again on the existing one. A new
 * Provider would lose what lives in the old one (hooks installed on it, its client cache, in-flight interactions'
 * references) and every piece of Gatehouse holding it would have to follow. Re-running the initialiser validates the
 * keys exactly as the constructor does and swaps the keystore and the published JWKS each in one assignment: a request
 * sees the old set or the new one, never a partial one. oidc-provider reads both on every use (`keystore.selectForSign`
 * at each token, the JWKS at each `/jwks`), and signs with the first key of an algorithm: {@link KeySet} lists the
 * active key of each algorithm first. Koa reads `provider.keys` for each request's cookies.
 */
export function applyProviderKeys(provider: Provider, keys: KeySet): void {
  initializeKeystore.call(provider, { keys: keys.signing });
  provider.keys = keys.cookies;
}

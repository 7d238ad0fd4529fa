import { errors } from 'oidc-provider';

/**
 * `invalid_grant` with the reason in `error_description`. oidc-provider's own `InvalidGrant` answers the fixed
 * "grant request is invalid" and keeps the reason out of the answer; a client (and the user reading its error)
 * needs to know which of the grant's inputs was refused.
 */
export const invalidGrant = (description: string): Error =>
  new errors.CustomOIDCProviderError('invalid_grant', description);

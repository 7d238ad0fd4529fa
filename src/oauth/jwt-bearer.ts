/**
 * The JWT-bearer grant (RFC 7523 §2.1) and the identity assertion authorization grant (ID-JAG,
 * draft-ietf-oauth-identity-assertion-authz-grant; MCP's enterprise-managed authorization, SEP-990): the identifiers
 * used on the wire.
 */

/** The `grant_type` of a JWT-bearer token request (RFC 7523 §2.1). */
export const JWT_BEARER_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

/** The JOSE `typ` header of an identity assertion authorization grant. */
export const ID_JAG_JWT_TYPE = 'oauth-id-jag+jwt';

/** The RFC 8693 token type an IdP issues an ID-JAG as (`requested_token_type` / `issued_token_type`). */
export const ID_JAG_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id-jag';

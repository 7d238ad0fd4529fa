/**
 * Metadata documents: RFC 9728 protected-resource metadata and RFC 8414 / OpenID authorization-server metadata.
 * One schema each, used by the client to validate what it discovers and by the servers to build what they serve.
 */
import { z } from 'zod';
import { GatehouseError } from './errors.js';

const url = z.string().url();

/** RFC 9728 §2 protected-resource metadata. Unknown members are kept. */
export const ProtectedResourceMetadataSchema = z.looseObject({
  resource: url,
  authorization_servers: z.array(url).optional(),
  jwks_uri: url.optional(),
  scopes_supported: z.array(z.string()).optional(),
  bearer_methods_supported: z.array(z.string()).optional(),
  resource_signing_alg_values_supported: z.array(z.string()).optional(),
  resource_name: z.string().optional(),
  resource_documentation: url.optional(),
  resource_policy_uri: url.optional(),
  resource_tos_uri: url.optional(),
  tls_client_certificate_bound_access_tokens: z.boolean().optional(),
  authorization_details_types_supported: z.array(z.string()).optional(),
  dpop_signing_alg_values_supported: z.array(z.string()).optional(),
  dpop_bound_access_tokens_required: z.boolean().optional(),
});
export type ProtectedResourceMetadata = z.infer<typeof ProtectedResourceMetadataSchema>;

/** RFC 8414 §2 authorization-server metadata, with the OpenID and MCP-relevant extensions. */
export const AuthorizationServerMetadataSchema = z.looseObject({
  issuer: url,
  authorization_endpoint: url.optional(),
  token_endpoint: url.optional(),
  jwks_uri: url.optional(),
  registration_endpoint: url.optional(),
  scopes_supported: z.array(z.string()).optional(),
  response_types_supported: z.array(z.string()).optional(),
  response_modes_supported: z.array(z.string()).optional(),
  grant_types_supported: z.array(z.string()).optional(),
  token_endpoint_auth_methods_supported: z.array(z.string()).optional(),
  token_endpoint_auth_signing_alg_values_supported: z.array(z.string()).optional(),
  revocation_endpoint: url.optional(),
  revocation_endpoint_auth_methods_supported: z.array(z.string()).optional(),
  introspection_endpoint: url.optional(),
  introspection_endpoint_auth_methods_supported: z.array(z.string()).optional(),
  code_challenge_methods_supported: z.array(z.string()).optional(),
  authorization_response_iss_parameter_supported: z.boolean().optional(),
  client_id_metadata_document_supported: z.boolean().optional(),
  dpop_signing_alg_values_supported: z.array(z.string()).optional(),
  userinfo_endpoint: url.optional(),
  device_authorization_endpoint: url.optional(),
});
export type AuthorizationServerMetadata = z.infer<typeof AuthorizationServerMetadataSchema>;

/** Thrown when a metadata document does not parse or does not match its schema. */
export class InvalidMetadataError extends GatehouseError {
  constructor(
    readonly documentUrl: string,
    detail: string,
  ) {
    super(`Invalid metadata at ${documentUrl}: ${detail}`, {
      code: 'ERR_INVALID_METADATA',
      hint: 'The server publishes a malformed metadata document; its operator has to fix it.',
    });
  }
}

function parseWith<T>(schema: z.ZodType<T>, body: unknown, documentUrl: string): T {
  const result = schema.safeParse(body);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new InvalidMetadataError(documentUrl, `${issue?.path.join('.') || '(root)'}: ${issue?.message}`);
  }
  return result.data;
}

/** Validates a protected-resource metadata document. */
export function parseProtectedResourceMetadata(body: unknown, documentUrl: string): ProtectedResourceMetadata {
  return parseWith(ProtectedResourceMetadataSchema, body, documentUrl);
}

/** Validates an authorization-server metadata document. */
export function parseAuthorizationServerMetadata(body: unknown, documentUrl: string): AuthorizationServerMetadata {
  return parseWith(AuthorizationServerMetadataSchema, body, documentUrl);
}

/**
 * Splits a list of scopes written by a person or sent by a server that separates them with commas (GitHub):
 * spaces, commas, or both. OAuth itself separates scopes with single spaces (RFC 6749 §3.3), and no scope
 * contains a comma or a space, so this reading never changes a well-formed value.
 *
 * @example
 * ```ts
 * import { splitScopes } from 'gatehouse/oauth';
 *
 * splitScopes('mcp:tools mcp:admin'); // ['mcp:tools', 'mcp:admin']
 * splitScopes('mcp:tools,mcp:admin'); // ['mcp:tools', 'mcp:admin']
 * ```
 */
export function splitScopes(value: string): string[] {
  return value.split(/[\s,]+/).filter(Boolean);
}

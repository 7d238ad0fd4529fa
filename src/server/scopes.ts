import type { ScopeChallengeHandler } from '@modelcontextprotocol/server';

/**
 * Which scopes a scope implies, e.g. `{ admin: ['read', 'write'], write: ['read'] }`. Implication is transitive;
 * cycles are harmless.
 */
export type ScopeHierarchy = Readonly<Record<string, readonly string[]>>;

/**
 * The scopes a token effectively holds: its own, plus every scope they imply through `hierarchy`.
 *
 * @example
 * ```ts
 * import { expandScopes } from 'gatehouse/server';
 *
 * expandScopes(['admin'], { admin: ['write'], write: ['read'] }); // Set { 'admin', 'write', 'read' }
 * ```
 */
export function expandScopes(granted: Iterable<string>, hierarchy?: ScopeHierarchy): Set<string> {
  const out = new Set(granted);
  if (!hierarchy) return out;
  const queue = [...out];
  for (let scope = queue.pop(); scope !== undefined; scope = queue.pop()) {
    for (const implied of hierarchy[scope] ?? []) {
      if (!out.has(implied)) {
        out.add(implied);
        queue.push(implied);
      }
    }
  }
  return out;
}

/**
 * The required scopes a token lacks, honouring `hierarchy`. Empty means the token may proceed.
 *
 * @example
 * ```ts
 * import { missingScopes } from 'gatehouse/server';
 *
 * missingScopes(['admin'], ['read'], { admin: ['read'] }); // []
 * missingScopes(['read'], ['read', 'write']);              // ['write']
 * ```
 */
export function missingScopes(
  granted: Iterable<string>,
  required: Iterable<string>,
  hierarchy?: ScopeHierarchy,
): string[] {
  const effective = expandScopes(granted, hierarchy);
  return [...new Set(required)].filter((scope) => !effective.has(scope));
}

/**
 * A `scopeChallenge` for the SDK's `registerTool` / `registerResource` / `registerPrompt` that honours a scope
 * hierarchy and, when a scope is missing, challenges for every scope the operation needs (the server-wide
 * `alsoRequired` plus this operation's), so a client can step up in one round trip.
 *
 * @example
 * ```ts
 * import { requireScopes } from 'gatehouse/server';
 *
 * server.registerTool(
 *   'delete_repo',
 *   { description: 'Deletes a repository', scopeChallenge: requireScopes(['repo:delete'], { hierarchy: { admin: ['repo:delete'] } }) },
 *   async () => ({ content: [{ type: 'text', text: 'deleted' }] }),
 * );
 * ```
 */
export function requireScopes(
  scopes: readonly string[],
  options: { hierarchy?: ScopeHierarchy; alsoRequired?: readonly string[] } = {},
): ScopeChallengeHandler {
  const needed = [...new Set([...(options.alsoRequired ?? []), ...scopes])];
  if (needed.length === 0) throw new TypeError('requireScopes: give at least one scope');
  return ({ authInfo }) => {
    if (!authInfo) return undefined; // the authentication gate answers unauthenticated requests
    if (missingScopes(authInfo.scopes, needed, options.hierarchy).length === 0) return undefined;
    return { scopes: needed as [string, ...string[]] };
  };
}

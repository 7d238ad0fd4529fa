/**
 * `WWW-Authenticate` parsing and formatting (RFC 9110 §11.6.1, RFC 6750 §3, RFC 9728 §5.1).
 */

/** One challenge: its scheme and its auth-params (names lower-cased). */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
  /** A token68 value, for schemes that use one instead of params. */
  token68?: string;
}

const TOKEN = /[!#$%&'*+.^_`|~0-9A-Za-z-]+/y;
const TOKEN68 = /[A-Za-z0-9\-._~+/]+=*/y;
const WS = /[ \t]*/y;

function match(re: RegExp, input: string, at: number): string | undefined {
  re.lastIndex = at;
  const m = re.exec(input);
  return m ? m[0] : undefined;
}

/**
 * Parses every challenge in a `WWW-Authenticate` header value. Malformed trailing input is ignored rather than
 * thrown: a client reading a challenge wants whatever it can get.
 *
 * @example
 * ```ts
 * import { parseWwwAuthenticate } from 'gatehouse/oauth';
 *
 * const [bearer] = parseWwwAuthenticate(
 *   'Bearer resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/mcp", scope="read"',
 * );
 * bearer.params.resource_metadata; // 'https://api.example.com/.well-known/oauth-protected-resource/mcp'
 * ```
 */
export function parseWwwAuthenticate(header: string | null | undefined): Challenge[] {
  const challenges: Challenge[] = [];
  if (!header) return challenges;
  const input = header;
  let i = 0;
  const skip = () => {
    i += match(WS, input, i)?.length ?? 0;
  };
  const skipCommas = () => {
    skip();
    while (input[i] === ',') {
      i++;
      skip();
    }
  };
  skipCommas();
  while (i < input.length) {
    const scheme = match(TOKEN, input, i);
    if (!scheme) break;
    i += scheme.length;
    const challenge: Challenge = { scheme, params: {} };
    challenges.push(challenge);
    skip();
    // token68 form: a token68 not followed by '='-param syntax.
    const t68 = match(TOKEN68, input, i);
    if (t68) {
      const after = i + t68.length;
      const rest = input.slice(after).trimStart();
      const looksLikeParam = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+\s*=/.test(input.slice(i)) && !t68.endsWith('=');
      if (!looksLikeParam && (rest === '' || rest.startsWith(','))) {
        challenge.token68 = t68;
        i = after;
        skipCommas();
        continue;
      }
    }
    // auth-param list; stops at the start of the next challenge (a token followed by a space and no '=').
    for (;;) {
      skip();
      const name = match(TOKEN, input, i);
      if (!name) break;
      let j = i + name.length;
      j += match(WS, input, j)?.length ?? 0;
      if (input[j] !== '=') break; // next challenge's scheme
      j++;
      j += match(WS, input, j)?.length ?? 0;
      let value: string;
      if (input[j] === '"') {
        j++;
        let out = '';
        while (j < input.length && input[j] !== '"') {
          if (input[j] === '\\' && j + 1 < input.length) j++;
          out += input[j];
          j++;
        }
        j++; // closing quote
        value = out;
      } else {
        const tok = match(TOKEN, input, j) ?? '';
        j += tok.length;
        value = tok;
      }
      challenge.params[name.toLowerCase()] = value;
      i = j;
      skip();
      if (input[i] === ',') {
        i++;
        continue;
      }
      break;
    }
    skipCommas();
  }
  return challenges;
}

/** The first `Bearer` challenge of a header, if any. */
export function findBearerChallenge(header: string | null | undefined): Challenge | undefined {
  return parseWwwAuthenticate(header).find((c) => c.scheme.toLowerCase() === 'bearer');
}

function quote(value: string): string {
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/**
 * Formats one challenge. Values are always quoted, which every auth-param allows; `undefined` values are skipped.
 *
 * @example
 * ```ts
 * import { formatWwwAuthenticate } from 'gatehouse/oauth';
 *
 * formatWwwAuthenticate('Bearer', { error: 'insufficient_scope', scope: 'read write' });
 * // 'Bearer error="insufficient_scope", scope="read write"'
 * ```
 */
export function formatWwwAuthenticate(scheme: string, params: Record<string, string | undefined>): string {
  const parts = Object.entries(params)
    .filter((entry): entry is [string, string] => entry[1] !== undefined)
    .map(([name, value]) => `${name}=${quote(value)}`);
  return parts.length ? `${scheme} ${parts.join(', ')}` : scheme;
}

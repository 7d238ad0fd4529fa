/**
 * Turns `node:util` parseArgs errors into messages that name the fix ("unknown option --scopes; did you mean
 * --scope?") instead of the parser's text. The options a command knows are the ones its usage text documents, so
 * a suggestion never names an option the help does not explain.
 */

/** Edit distance (insertions, deletions, substitutions), for "did you mean" on short option and command names. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** The candidate closest to `word`, if it is close enough to be a typo (or `word` is a prefix of it). */
export function nearest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of candidates) {
    const distance = candidate.startsWith(word) && word.length >= 3 ? 0.5 : editDistance(word, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(word.length / 4)) ? best : undefined;
}

/** Every `--option` a usage text mentions. */
export function optionsIn(usage: string): Set<string> {
  return new Set(usage.match(/--[a-z][a-z0-9-]*/g) ?? []);
}

/** Whether an error is one of parseArgs' (`ERR_PARSE_ARGS_*`). */
export function isParseError(error: unknown): error is Error & { code: string } {
  return error instanceof TypeError && (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true;
}

/** The message for a parseArgs error, in the CLI's words. */
export function explainParseError(error: Error & { code: string }, usage: string): string {
  const quoted = /'([^']+)'/.exec(error.message)?.[1] ?? '';
  if (error.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const option = quoted.split('=')[0]!;
    const guess = option.startsWith('--') ? nearest(option, optionsIn(usage)) : undefined;
    return `unknown option ${option}${guess ? `; did you mean ${guess}?` : ''}`;
  }
  if (error.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    const option = quoted.split(' ')[0]!;
    return /argument missing/.test(error.message)
      ? `${option} needs a value`
      : `${option} takes no value (write ${option}, not ${option}=…)`;
  }
  if (error.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') return `unexpected argument ${JSON.stringify(quoted)}`;
  return error.message;
}

/**
 * The shape of one `gatehouse` command. Each command is a module `src/cli/commands/<name>.ts` whose default
 * export is a {@link Command}; `main` loads only the module of the command being run, so `gatehouse token` never
 * loads oidc-provider.
 */
export interface Command {
  /** One line for `gatehouse help`. */
  summary: string;
  /** Full usage text for `gatehouse <name> --help`. */
  usage: string;
  /** Runs the command; resolves to the exit code. Throw {@link UsageError} for bad arguments. */
  run(args: string[]): Promise<number>;
}

/**
 * Bad command-line input: exit code 2, the message and a fix hint printed. The hint defaults to pointing at the
 * command's `--help`; give one when the fix is more precise than that (the right form of a flag's value).
 */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * Exit codes of every command: 0 success, 1 the command failed, 2 bad usage, 3 a login is needed (no credential
 * for the server, or it expired and cannot be refreshed), 4 the tool ran and reported an error (`call`),
 * 130 interrupted (Ctrl-C while waiting for the browser).
 */
export const EXIT = { ok: 0, failure: 1, usage: 2, loginNeeded: 3, toolError: 4, interrupted: 130 } as const;

/** The exit codes as `gatehouse help` prints them. */
export const EXIT_CODES_HELP =
  'Exit codes: 0 success, 1 the command failed, 2 bad usage, 3 a login is needed, 4 the tool reported an error, 130 interrupted.';

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

/** Bad command-line input: exit code 2, the message and a fix hint printed. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Documented exit codes. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

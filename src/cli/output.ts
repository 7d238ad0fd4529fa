/**
 * Terminal output of the CLI: results on stdout, progress and errors on stderr, colours only on a TTY (and never
 * with `NO_COLOR`), and a spinner on stderr while waiting for something — only when stderr is a TTY.
 */
import { appendFileSync } from 'node:fs';
import { EXIT } from './command.js';

/**
 * Whether a stream gets ANSI colours: only a TTY, never with `NO_COLOR` set to anything but the empty string
 * (no-color.org), never on a `dumb` terminal.
 */
export function colourEnabled(
  stream: Pick<NodeJS.WriteStream, 'isTTY'>,
  env: NodeJS.ProcessEnv = process.env,
): boolean {
  if (env['NO_COLOR'] !== undefined && env['NO_COLOR'] !== '') return false;
  return stream.isTTY === true && env['TERM'] !== 'dumb';
}

const CODES = { bold: [1, 22], dim: [2, 22], red: [31, 39], green: [32, 39], yellow: [33, 39], cyan: [36, 39] };
export type Style = keyof typeof CODES;

/** Paints text with ANSI codes, or returns it unchanged when colours are off. */
export type Paint = (style: Style, text: string) => string;

export function painter(enabled: boolean): Paint {
  return (style, text) => {
    if (!enabled) return text;
    const [open, close] = CODES[style];
    return `\u001b[${open}m${text}\u001b[${close}m`;
  };
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/** A spinner on stderr; does nothing when stderr is not a TTY (scripts, CI, pipes). */
export interface Spinner {
  /** Starts (or relabels) the spinner. */
  start(text: string): void;
  /** Stops it and erases its line; prints `final` in its place when given. */
  stop(final?: string): void;
}

export function spinner(stream: NodeJS.WriteStream = process.stderr, paint: Paint = painter(false)): Spinner {
  let timer: NodeJS.Timeout | undefined;
  let label = '';
  let frame = 0;
  // Ctrl-C while spinning: give the cursor back before exiting (130, as shells report SIGINT).
  const onSigint = () => {
    stop();
    stream.write('Cancelled.\n');
    process.exit(EXIT.interrupted);
  };
  const stop = (final?: string) => {
    if (timer) {
      clearInterval(timer);
      timer = undefined;
      process.off('SIGINT', onSigint);
      stream.write('\r\u001b[2K\u001b[?25h');
    }
    if (final) stream.write(`${final}\n`);
  };
  const draw = () => {
    stream.write(`\r\u001b[2K${paint('cyan', FRAMES[frame % FRAMES.length]!)} ${label}`);
    frame++;
  };
  return {
    start(text) {
      label = text;
      if (stream.isTTY !== true) return;
      if (!timer) {
        stream.write('\u001b[?25l'); // hide the cursor
        timer = setInterval(draw, 80);
        timer.unref();
        process.once('SIGINT', onSigint);
      }
      draw();
    },
    stop,
  };
}

/** What a command prints with. */
export interface Output {
  readonly json: boolean;
  readonly verbose: boolean;
  /** Colours for stdout. */
  readonly paint: Paint;
  /** Colours for stderr. */
  readonly paintErr: Paint;
  /** A result line on stdout. */
  print(text: string): void;
  /** A JSON document on stdout. */
  printJson(value: unknown): void;
  /** A progress or status line on stderr (never mixed into stdout, so `--json` output stays parseable). */
  note(text: string): void;
  /** A line on stderr only with `--verbose`. */
  debug(text: string): void;
  readonly spinner: Spinner;
}

/**
 * Removes what must never reach a log file: values of secret query and form parameters, bearer and basic
 * credentials, JWTs, and JSON token fields. The debug log is for sharing in a bug report.
 */
export function redactSecrets(text: string): string {
  return text
    .replace(
      /([?&](?:code|code_verifier|access_token|refresh_token|id_token|client_secret|password|token|subject_token|assertion)=)[^&\s]*/gi,
      '$1[redacted]',
    )
    .replace(/\b(Bearer|Basic|DPoP)\s+[A-Za-z0-9._~+/=-]+/g, '$1 [redacted]')
    .replace(/eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g, '[redacted JWT]')
    .replace(
      /("(?:access_token|refresh_token|id_token|client_secret|password|code_verifier)"\s*:\s*)"[^"]*"/g,
      '$1"[redacted]"',
    );
}

export function createOutput(options: { json?: boolean; verbose?: boolean; debugLog?: string } = {}): Output {
  const log = options.debugLog;
  const toLog = (text: string) => {
    // Synchronous: the log must be complete when the process exits, even on an error.
    if (log) appendFileSync(log, `${new Date().toISOString()} ${redactSecrets(text)}\n`, { mode: 0o600 });
  };
  const paint = painter(colourEnabled(process.stdout));
  const paintErr = painter(colourEnabled(process.stderr));
  const spin = spinner(process.stderr, paintErr);
  return {
    json: options.json === true,
    verbose: options.verbose === true,
    paint,
    paintErr,
    print: (text) => {
      process.stdout.write(`${text}\n`);
    },
    printJson: (value) => {
      process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    },
    note: (text) => {
      process.stderr.write(`${text}\n`);
      toLog(text);
    },
    debug: (text) => {
      if (options.verbose) process.stderr.write(`${paintErr('dim', text)}\n`);
      toLog(text);
    },
    spinner: spin,
  };
}

/** Formats a duration in seconds as `59 s`, `12 min`, `3 h 5 min`, `2 d 4 h`. */
export function formatDuration(seconds: number): string {
  // Floor, never round: 59:59.6 left is "59 min", not "1 h" (time left is never overstated).
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  const join = (big: number, bigUnit: string, small: number, smallUnit: string) =>
    small === 0 ? `${big} ${bigUnit}` : `${big} ${bigUnit} ${small} ${smallUnit}`;
  if (s < 86_400) return join(Math.floor(s / 3600), 'h', Math.floor((s % 3600) / 60), 'min');
  return join(Math.floor(s / 86_400), 'd', Math.floor((s % 86_400) / 3600), 'h');
}

/** Left-aligned columns. */
export function table(rows: string[][], visibleLength: (s: string) => number = stripAnsiLength): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, visibleLength(cell));
    });
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell + ' '.repeat((widths[i] ?? 0) - visibleLength(cell))))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function stripAnsiLength(text: string): number {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escape sequences
  return text.replace(/\u001b\[[0-9;?]*[a-zA-Z]/g, '').length;
}

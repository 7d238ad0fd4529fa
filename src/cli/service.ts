import type { Logger } from 'pino';
import { UsageError } from './command.js';

/** The `--log-level` values of the long-running commands (`serve`, `gateway`). */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Checks a `--log-level` value. */
export function parseLogLevel(value: string | undefined): LogLevel | undefined {
  if (value !== undefined && !(LOG_LEVELS as readonly string[]).includes(value)) {
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  }
  return value as LogLevel | undefined;
}

/** The JSON logger of a long-running command, on stdout; secrets under the usual names are redacted. */
export async function serviceLogger(service: string, level: LogLevel = 'info'): Promise<Logger> {
  const { pino } = await import('pino');
  const secrets = ['password', 'client_secret', 'token', 'access_token', 'refresh_token', 'authorization'];
  return pino({
    level,
    base: { service },
    redact: { paths: secrets.flatMap((name) => [name, `*.${name}`]), censor: '[redacted]' },
  });
}

/** Resolves once SIGINT or SIGTERM arrived and `close()` finished. */
export function runUntilSignal(close: () => Promise<void>, logger: Logger): Promise<number> {
  return new Promise((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      logger.info('shutting down');
      close().then(
        () => resolve(0),
        () => resolve(0),
      );
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

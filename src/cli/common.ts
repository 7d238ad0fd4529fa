import type { OAuth, OAuthOptions } from '../client/oauth.js';
import { GatehouseError } from '../oauth/errors.js';
import { isLoopbackUrl } from '../oauth/resource-uri.js';
import { splitScopes } from '../oauth/scopes.js';
import { canonicalServer, isAccessTokenExpired, type StoredTokens } from '../storage/tokens.js';
import { EXIT, UsageError } from './command.js';
import { createOutput, type Output } from './output.js';
import type { CliStore, StoredRecord } from './store-option.js';

/** The exit codes (defined once, in `command.ts`). */
export const CLI_EXIT = EXIT;

/** The environment variable holding `user:password` for a headless login, when `--login` is absent. */
export const LOGIN_ENV = 'GATEHOUSE_LOGIN';

/** Options every command takes. */
export const GLOBAL_OPTIONS = {
  store: { type: 'string' },
  json: { type: 'boolean' },
  verbose: { type: 'boolean' },
} as const;

/** Options of the commands that may log in. */
export const AUTH_OPTIONS = {
  login: { type: 'string' },
  scope: { type: 'string' },
  'client-id': { type: 'string' },
  'client-secret': { type: 'string' },
  'client-metadata-url': { type: 'string' },
  'callback-port': { type: 'string' },
  'no-browser': { type: 'boolean' },
  device: { type: 'boolean' },
  'allow-http': { type: 'boolean' },
  'client-info': { type: 'string' },
  resource: { type: 'string' },
  'no-resource': { type: 'boolean' },
  'login-timeout': { type: 'string' },
  'debug-log': { type: 'string' },
} as const;

export const GLOBAL_USAGE = `Global options:
  --store DIR           where tokens live (default: $GATEHOUSE_STORE, else the platform data directory,
                        ~/.local/share/gatehouse on Linux)
  --json                machine-readable output on stdout
  --verbose             every HTTP request of the OAuth flow, and error causes, on stderr`;

export const AUTH_USAGE = `Login options (used when a login is needed):
  --login USER:PASSWORD log in headlessly by posting the authorization server's login form
                        (or set $GATEHOUSE_LOGIN); for tests and automation
  --no-browser          print the login URL instead of opening a browser
  --device              log in with a code entered on any device (RFC 8628 device flow); also used
                        automatically when no browser can be opened here (SSH, no DISPLAY) and the
                        authorization server offers it. With --json the code is a JSON line on stdout
  --scope "A B"         scopes to request, separated by spaces or commas (default: what the server asks for)
  --client-id ID        a pre-registered client (skips dynamic registration)
  --client-secret S     its secret, for a confidential client
  --client-metadata-url URL  an https URL of this client's metadata document (CIMD)
  --callback-port N     fixed port of the loopback redirect URI http://localhost:N/callback
  --client-info JSON|@FILE  static client information, e.g. '{"client_id":"…","client_secret":"…"}' (or a
                        file holding it); as --client-id / --client-secret, plus a loopback redirect URI's port
  --resource URL        the resource (RFC 8707) to ask tokens for, instead of the server's metadata resource
  --no-resource         send no resource parameter (for authorization servers that refuse it, e.g. Entra ID)
  --login-timeout SECONDS  how long to wait for the browser login (default 300)
  --debug-log FILE      append a debug log (HTTP requests of the OAuth flow, proxy events) to FILE; secrets and
                        tokens are never written
  --allow-http          allow plain http to a non-loopback server (tokens travel unencrypted)`;

/** A failure with its fix and exit code; printed as `gatehouse <cmd>: message` + `fix: hint`. */
export class CliError extends GatehouseError {
  readonly exitCode: number;
  constructor(message: string, options: { hint: string; code?: string; exitCode?: number; cause?: unknown }) {
    super(message, { code: options.code ?? 'ERR_CLI', hint: options.hint, cause: options.cause });
    this.exitCode = options.exitCode ?? CLI_EXIT.failure;
  }
}

/** No usable credential for a server: exit code 3. */
export function loginNeeded(server: string, why: string): CliError {
  return new CliError(`${why}: ${server}`, {
    code: 'ERR_LOGIN_NEEDED',
    hint: `run \`gatehouse login ${server}\` (or pass --login USER:PASSWORD for a headless login)`,
    exitCode: CLI_EXIT.loginNeeded,
  });
}

/** Checks an MCP server URL: http(s), and https unless on loopback or `--allow-http`. Returns it canonical. */
export function serverUrl(value: string | undefined, allowHttp = false): string {
  if (value === undefined) throw new UsageError('expected the MCP server URL, e.g. https://mcp.example.com/mcp');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`${JSON.stringify(value)} is not a URL; expected e.g. https://mcp.example.com/mcp`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`${url.href} must be an http or https URL`);
  }
  if (url.protocol === 'http:' && !isLoopbackUrl(url) && !allowHttp) {
    throw new UsageError(
      `refusing plain http to ${url.host}: tokens would travel unencrypted; use https, or pass --allow-http if you must`,
    );
  }
  return canonicalServer(url);
}

/** Parses `user:password` (the password may contain colons). */
export function parseLogin(value: string | undefined): { username: string; password: string } | undefined {
  if (value === undefined || value === '') return undefined;
  const colon = value.indexOf(':');
  if (colon <= 0) throw new UsageError('--login (or $GATEHOUSE_LOGIN) must be USER:PASSWORD');
  return { username: value.slice(0, colon), password: value.slice(colon + 1) };
}

export interface AuthFlags {
  login?: string;
  scope?: string;
  'client-id'?: string;
  'client-secret'?: string;
  'client-metadata-url'?: string;
  'callback-port'?: string;
  'no-browser'?: boolean;
  device?: boolean;
  'client-info'?: string;
  resource?: string;
  'no-resource'?: boolean;
  'login-timeout'?: string;
}

/** Static client information (`--client-info`), as mcp-remote's `--static-oauth-client-info` takes it. */
interface ClientInfo {
  client_id: string;
  client_secret?: string;
  redirect_uris?: string[];
}

/** Reads `--client-info '{"client_id": …}'` or `--client-info @file.json`. */
export async function readClientInfo(value: string): Promise<ClientInfo> {
  let text = value;
  if (value.startsWith('@')) {
    const { readFile } = await import('node:fs/promises');
    try {
      text = await readFile(value.slice(1), 'utf8');
    } catch (error) {
      throw new UsageError(`--client-info ${value}: cannot read the file: ${(error as Error).message}`);
    }
  }
  let info: unknown;
  try {
    info = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`--client-info is not valid JSON: ${(error as Error).message}`);
  }
  const record = info as Partial<ClientInfo> | null;
  if (typeof record?.client_id !== 'string' || record.client_id === '') {
    throw new UsageError('--client-info must be a JSON object with a "client_id", e.g. \'{"client_id":"my-app"}\'');
  }
  if (record.client_secret !== undefined && typeof record.client_secret !== 'string') {
    throw new UsageError('--client-info: "client_secret" must be a string');
  }
  if (record.redirect_uris !== undefined && !Array.isArray(record.redirect_uris)) {
    throw new UsageError('--client-info: "redirect_uris" must be an array of URLs');
  }
  return record as ClientInfo;
}

/** The port of the first loopback `http://…:PORT/…` redirect URI, which the callback server must listen on. */
function loopbackPort(redirectUris: string[] | undefined): number | undefined {
  for (const uri of redirectUris ?? []) {
    const url = URL.parse(uri);
    if (url?.protocol === 'http:' && url.port && isLoopbackUrl(url)) return Number(url.port);
  }
  return undefined;
}

/** `--login-timeout SECONDS` in milliseconds, or undefined for the default. */
export function loginTimeoutMs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const seconds = Number(value);
  if (!(seconds > 0)) throw new UsageError('--login-timeout must be a positive number of seconds');
  return seconds * 1000;
}

/**
 * When a login may start: `always` (login, proxy), `interactive` (only with `--login` or a terminal on stderr),
 * `never` (token: fail with exit code 3 and say to run `gatehouse login`).
 */
export type LoginPolicy = 'always' | 'interactive' | 'never';

/** Builds the `OAuth` of a command from its flags, with progress on stderr and the spinner while waiting. */
export async function makeOAuth(
  mcpUrl: string,
  flags: AuthFlags,
  context: {
    out: Output;
    store: CliStore;
    policy: LoginPolicy;
    clientName?: string;
    /** `--header` values: sent with the flow's requests to the MCP server's origin (metadata), never to the AS. */
    headers?: Record<string, string>;
  },
): Promise<OAuth> {
  const { OAuth } = await import('../client/oauth.js');
  const { clientFetch } = await import('../client/network.js');
  const { out, policy } = context;
  const login = parseLogin(flags.login ?? process.env[LOGIN_ENV]);
  let callbackPort: number | undefined;
  if (flags['callback-port'] !== undefined) {
    callbackPort = Number(flags['callback-port']);
    if (!Number.isInteger(callbackPort) || callbackPort < 1 || callbackPort > 65535) {
      throw new UsageError('--callback-port must be an integer between 1 and 65535');
    }
  }
  if (flags['client-secret'] && !flags['client-id']) throw new UsageError('--client-secret needs --client-id');
  const info = flags['client-info'] === undefined ? undefined : await readClientInfo(flags['client-info']);
  if (info && flags['client-id']) throw new UsageError('give --client-info or --client-id, not both');
  callbackPort ??= loopbackPort(info?.redirect_uris);
  if (flags.device && (login !== undefined || flags['no-browser'])) {
    throw new UsageError('--device is a login of its own: give it without --login or --no-browser');
  }
  if (flags.resource !== undefined && flags['no-resource']) throw new UsageError('give --resource or --no-resource');
  if (flags.resource !== undefined) serverUrl(flags.resource, true); // a URL, checked like a server's
  const timeoutMs = loginTimeoutMs(flags['login-timeout']);
  const metadataUrl = flags['client-metadata-url'];
  if (metadataUrl !== undefined && !/^https:\/\/[^/]+\/./.test(metadataUrl)) {
    throw new UsageError('--client-metadata-url must be an https URL with a path (the client ID metadata document)');
  }
  const mayLogIn =
    policy === 'always' || login !== undefined || (policy === 'interactive' && process.stderr.isTTY === true);
  const options: OAuthOptions = {
    mcpUrl,
    clientName: context.clientName ?? 'Gatehouse CLI',
    tokenStorage: context.store.storage,
    scopes: flags.scope === undefined ? undefined : splitScopes(flags.scope).join(' '),
    clientId: info?.client_id ?? flags['client-id'],
    clientSecret: info?.client_secret ?? flags['client-secret'],
    ...(flags['no-resource'] ? { resource: false as const } : {}),
    ...(flags.resource !== undefined ? { resource: flags.resource } : {}),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    clientMetadataUrl: metadataUrl,
    callbackPort,
    login,
    // The device flow when asked for; else when no browser opens here, unless the URL is to be printed.
    device: !mayLogIn ? false : flags.device ? true : login || flags['no-browser'] ? false : 'auto',
    onDeviceCode: (prompt) => {
      if (out.json) {
        process.stdout.write(
          `${JSON.stringify({
            verification_uri: prompt.verificationUri,
            ...(prompt.verificationUriComplete && { verification_uri_complete: prompt.verificationUriComplete }),
            user_code: prompt.userCode,
            expires_in: prompt.expiresIn,
          })}\n`,
        );
      }
      out.note(
        `To log in to ${mcpUrl}, open ${prompt.verificationUri} on any device and enter the code\n\n` +
          `    ${out.paintErr('bold', prompt.userCode)}\n` +
          (prompt.verificationUriComplete ? `\n  (or open ${prompt.verificationUriComplete})\n` : ''),
      );
      out.spinner.start(`Waiting for the approval… ${out.paintErr('dim', '(Ctrl-C to cancel)')}`);
    },
    ...(context.headers ? { fetch: withHeadersFor(mcpUrl, context.headers, clientFetch) } : {}),
    onEvent: (event) => {
      if (event.type === 'http') out.debug(`  ${event.method} ${event.url} → ${event.status}`);
      else if (event.type === 'refreshed') out.debug('  refreshed the access token');
      else if (event.type === 'refresh-failed') out.debug(`  the refresh failed: ${String(event.error)}`);
      else if (event.type === 'authorized') out.spinner.stop();
    },
  };
  if (!login) {
    options.redirectHandler = async (url) => {
      if (!mayLogIn) throw loginNeeded(mcpUrl, 'Not logged in (or the login expired)');
      const { assertOpenableUrl, openBrowser } = await import('../client/browser.js');
      const safe = assertOpenableUrl(url);
      if (flags['no-browser']) {
        out.note(`Open this URL in a browser to log in to ${mcpUrl}:\n\n  ${safe.href}\n`);
      } else {
        try {
          await openBrowser(safe);
          out.note(`Opened the browser to log in to ${mcpUrl}. If it did not open, visit:\n\n  ${safe.href}\n`);
        } catch (error) {
          // OAuth switches to the device flow where the server offers it, else prints the URL.
          if (options.device === 'auto') throw error;
          out.note(`Could not open a browser. Open this URL to log in to ${mcpUrl}:\n\n  ${safe.href}\n`);
        }
      }
      out.spinner.start(`Waiting for the login in the browser… ${out.paintErr('dim', '(Ctrl-C to cancel)')}`);
    };
  }
  pendingLogins.push({ store: context.store, server: mcpUrl });
  return new OAuth(options);
}

/** A `fetch` adding `headers` to requests for `serverUrl`'s origin only: the authorization server never sees them. */
function withHeadersFor(serverUrl: string, headers: Record<string, string>, base: typeof fetch): typeof fetch {
  const origin = new URL(serverUrl).origin;
  return (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    if (url.origin !== origin) return base(input, init);
    const merged = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
    for (const [name, value] of Object.entries(headers)) if (!merged.has(name)) merged.set(name, value);
    return base(input, { ...init, headers: merged });
  };
}

/** Servers a command may have started a login to: on failure, what that login left half-done is removed. */
const pendingLogins: Array<{ store: CliStore; server: string }> = [];

/**
 * After a failed command: deletes the records a login left without tokens (a dynamic registration, cached
 * discovery), so `status` never shows a "registered, not logged in" server nobody logged in to. Checked under
 * the credential lock, so a login another process finished meanwhile is kept.
 */
async function forgetIncompleteLogins(): Promise<void> {
  const { withCredentialLock } = await import('../client/credential-lock.js');
  for (const { store, server } of pendingLogins.splice(0)) {
    await withCredentialLock(store.storage.keyFor(server), async () => {
      const record = await store.storage.read(server).catch(() => undefined);
      if (record && !record.tokens) await store.storage.delete(server);
    }).catch(() => {});
  }
}

/** What one JWT says, without verifying it (for display only). */
export function decodeJwt(token: string | undefined): Record<string, unknown> | undefined {
  const parts = token?.split('.');
  if (parts?.length !== 3) return undefined;
  try {
    const payload = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as unknown;
    return typeof payload === 'object' && payload !== null ? (payload as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** One credential as `status` shows it. */
export interface CredentialSummary {
  server: string;
  issuer: string | null;
  subject: string | null;
  scopes: string[];
  /** ISO time the access token expires, or null when the server did not say. */
  expiresAt: string | null;
  expired: boolean;
  refreshable: boolean;
  clientId: string | null;
  /** `valid`, `expired` (refreshable), `login needed`, or `registered` (a registration but no tokens). */
  state: 'valid' | 'expired' | 'login-needed' | 'registered';
}

export function summarize(record: StoredRecord, now: number = Date.now()): CredentialSummary {
  const tokens: StoredTokens | undefined = record.tokens;
  const claims = decodeJwt(tokens?.access_token) ?? {};
  const idClaims = decodeJwt(tokens?.id_token) ?? {};
  const issuer =
    (typeof tokens?.['issuer'] === 'string' ? tokens['issuer'] : undefined) ??
    record.discovery?.authorizationServerMetadata?.issuer ??
    (typeof claims['iss'] === 'string' ? claims['iss'] : undefined) ??
    (typeof record.client?.['issuer'] === 'string' ? (record.client['issuer'] as string) : undefined) ??
    null;
  const subject =
    (typeof claims['sub'] === 'string' ? claims['sub'] : undefined) ??
    (typeof idClaims['sub'] === 'string' ? idClaims['sub'] : undefined) ??
    null;
  const scope = tokens?.scope ?? (typeof claims['scope'] === 'string' ? claims['scope'] : '');
  const expired = tokens ? isAccessTokenExpired(tokens, { now, skewSeconds: 0 }) : true;
  const refreshExpired =
    tokens?.refresh_token_expires_at !== undefined && tokens.refresh_token_expires_at <= Math.floor(now / 1000);
  const refreshable = Boolean(tokens?.refresh_token) && !refreshExpired;
  let state: CredentialSummary['state'];
  if (!tokens) state = 'registered';
  else if (!expired) state = 'valid';
  else state = refreshable ? 'expired' : 'login-needed';
  return {
    server: record.server,
    issuer,
    subject,
    scopes: scope.split(/\s+/).filter(Boolean),
    expiresAt: tokens?.expires_at === undefined ? null : new Date(tokens.expires_at * 1000).toISOString(),
    expired,
    refreshable,
    clientId: record.client?.client_id ?? null,
    state,
  };
}

/**
 * Runs a command body: prints a failure as `gatehouse <name>: message` and `fix: …` (with the cause under
 * `--verbose`) and returns its exit code. Usage errors go on to `main`, which prints them with exit code 2.
 */
export async function runCommand(
  name: string,
  args: { json?: boolean; verbose?: boolean; 'debug-log'?: string },
  body: (out: Output) => Promise<number>,
): Promise<number> {
  const out = createOutput({ ...args, debugLog: args['debug-log'] });
  out.debug(`gatehouse ${name}`);
  try {
    return await body(out);
  } catch (error) {
    out.spinner.stop();
    await forgetIncompleteLogins();
    if (error instanceof UsageError) throw error;
    const { message, hint, exitCode } = describeError(error);
    process.stderr.write(`${out.paintErr('red', `gatehouse ${name}:`)} ${message}\n`);
    process.stderr.write(`${out.paintErr('bold', 'fix:')} ${hint}\n`);
    if (args.verbose) writeErrorCauses(error, (text) => out.paintErr('dim', text));
    return exitCode;
  } finally {
    out.spinner.stop();
  }
}

/** `--verbose`: the stack of an error and of each of its causes, on stderr. */
export function writeErrorCauses(error: unknown, paint: (text: string) => string = (text) => text): void {
  for (let cause: unknown = error; cause instanceof Error; cause = cause.cause) {
    process.stderr.write(`${paint(cause.stack ?? String(cause))}\n`);
  }
}

/** Hints of the client library that name its options, and what the same fix is called on the command line. */
const CLI_WORDS: Array<[RegExp, string]> = [
  [/the username and password given as `login`/, 'check the USER:PASSWORD given with --login (or $GATEHOUSE_LOGIN)'],
];

/** A library hint in the CLI's words: its flags instead of the `OAuth` options they set. */
export function inCliWords(hint: string): string {
  return CLI_WORDS.find(([library]) => library.test(hint))?.[1] ?? hint;
}

/** The message, fix and exit code of any error, including the ones other parts throw without a hint. */
export function describeError(error: unknown): { message: string; hint: string; exitCode: number } {
  let found: unknown = error;
  // A login-needed error may arrive wrapped by the transport or the client.
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof CliError) {
      found = e;
      break;
    }
  }
  if (found instanceof CliError) return { message: found.message, hint: found.hint!, exitCode: found.exitCode };
  const message = error instanceof Error ? error.message : String(error);
  // The client's hint names its `timeout` option in milliseconds; here the knob is --timeout, in seconds.
  if (
    error instanceof GatehouseError &&
    error.code === 'ERR_TIMEOUT' &&
    (error as { method?: string }).method !== 'connect'
  ) {
    return {
      message,
      hint: 'the server may be slow or stuck: pass a larger --timeout SECONDS (default 60)',
      exitCode: CLI_EXIT.failure,
    };
  }
  if (error instanceof GatehouseError && error.hint) {
    const loginCodes = ['ERR_UNAUTHORIZED', 'ERR_REFRESH_FAILED', 'ERR_FORBIDDEN'];
    const exitCode = loginCodes.includes(error.code) ? CLI_EXIT.loginNeeded : CLI_EXIT.failure;
    return { message, hint: inCliWords(error.hint), exitCode };
  }
  const code = (error as { code?: unknown } | undefined)?.code;
  if (code === 'EACCES' || code === 'EPERM') {
    return { message, hint: 'check the permissions of the --store directory', exitCode: CLI_EXIT.failure };
  }
  return {
    message,
    hint: 'run the command again with --verbose to see the cause; `gatehouse doctor <url>` checks the server',
    exitCode: CLI_EXIT.failure,
  };
}

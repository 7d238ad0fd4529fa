import { spawn as nodeSpawn } from 'node:child_process';
import { AuthenticationError } from './errors.js';

/** The `spawn` subset {@link openBrowser} uses; tests pass a fake. */
export type SpawnLike = (
  command: string,
  args: readonly string[],
  options: { shell: false; stdio: 'ignore'; detached: boolean; windowsHide: boolean },
) => { unref(): void; on(event: 'error', listener: (error: Error) => void): unknown };

/** Options of {@link openBrowser}. */
export interface OpenBrowserOptions {
  /** Platform whose opener is used. Default `process.platform`. */
  platform?: NodeJS.Platform;
  /** Replaces `child_process.spawn`, for tests. */
  spawn?: SpawnLike;
}

// Characters a shell would interpret. The URL never reaches a shell, but one of these in an authorization URL
// means something upstream is hostile or broken (CVE-2025-6514 began with such a URL), so we refuse it outright.
// `&` is absent on purpose: every query string has it, and spawn passes it through as plain text.
// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point.
const SHELL_METACHARACTERS = /[\s`$;|<>(){}\\'"!^\u0000-\u001f\u007f]/;

/**
 * Checks that `url` may be opened in a browser: an absolute `http:` or `https:` URL without credentials and
 * without shell metacharacters. Returns the normalised URL; throws an {@link AuthenticationError} otherwise.
 */
export function assertOpenableUrl(url: string | URL): URL {
  let parsed: URL;
  try {
    parsed = new URL(String(url));
  } catch (error) {
    throw new AuthenticationError('Refusing to open an invalid URL in the browser', {
      code: 'ERR_UNSAFE_URL',
      hint: 'The authorization server published a malformed authorization endpoint.',
      cause: error,
    });
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new AuthenticationError(`Refusing to open a ${parsed.protocol} URL in the browser`, {
      code: 'ERR_UNSAFE_URL',
      hint: 'Only http: and https: authorization URLs are opened; check the authorization server metadata.',
    });
  }
  // Test what was given as well as the normalised form: the URL parser percent-encodes some of them (`%60`).
  if (
    parsed.username ||
    parsed.password ||
    SHELL_METACHARACTERS.test(String(url)) ||
    SHELL_METACHARACTERS.test(parsed.href)
  ) {
    throw new AuthenticationError('Refusing to open an authorization URL containing credentials or shell characters', {
      code: 'ERR_UNSAFE_URL',
      hint: 'Open the URL yourself if you trust it, or check the authorization server metadata.',
    });
  }
  return parsed;
}

/**
 * Opens `url` in the user's browser with the platform opener (`open`, `xdg-open`, or `rundll32` on Windows, which
 * unlike `cmd /c start` involves no shell). The URL is one argument of an argument array, with `shell: false`.
 * Throws {@link AuthenticationError} for anything but a plain `http:`/`https:` URL.
 *
 * @example
 * ```ts
 * import { openBrowser } from 'gatehouse/client';
 *
 * await openBrowser('https://auth.example.com/authorize?client_id=abc');
 * ```
 */
export async function openBrowser(url: string | URL, options: OpenBrowserOptions = {}): Promise<void> {
  const target = assertOpenableUrl(url).href;
  const platform = options.platform ?? process.platform;
  const [command, args]: [string, string[]] =
    platform === 'darwin'
      ? ['open', [target]]
      : platform === 'win32'
        ? ['rundll32', ['url.dll,FileProtocolHandler', target]]
        : ['xdg-open', [target]];
  const spawn = options.spawn ?? (nodeSpawn as unknown as SpawnLike);
  await new Promise<void>((resolve, reject) => {
    const child = spawn(command, args, { shell: false, stdio: 'ignore', detached: true, windowsHide: true });
    child.on('error', (error) =>
      reject(
        new AuthenticationError(`Could not start ${command} to open the browser`, {
          code: 'ERR_BROWSER',
          hint: 'Open the printed URL yourself, or pass redirectHandler / login to OAuth.',
          cause: error,
        }),
      ),
    );
    child.unref();
    // spawn reports a missing executable asynchronously; give it a tick before declaring success.
    setImmediate(resolve);
  });
}

/**
 * Whether this process can show the user a browser: not in an SSH session (`SSH_CONNECTION`, `SSH_CLIENT`,
 * `SSH_TTY`: the browser would open on the remote machine, or nowhere), and on Linux and the BSDs only with a
 * graphical session (`DISPLAY` or `WAYLAND_DISPLAY`). macOS and Windows outside SSH always have one. An opener
 * that fails to start is the third case; {@link openBrowser} reports that itself.
 *
 * @example
 * ```ts
 * import { canOpenBrowser } from 'gatehouse/client';
 *
 * canOpenBrowser({ SSH_CONNECTION: '10.0.0.2 51234 10.0.0.5 22' }, 'linux'); // false
 * ```
 */
export function canOpenBrowser(
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
): boolean {
  if (env['SSH_CONNECTION'] || env['SSH_CLIENT'] || env['SSH_TTY']) return false;
  if (platform === 'darwin' || platform === 'win32') return true;
  return Boolean(env['DISPLAY'] || env['WAYLAND_DISPLAY']);
}

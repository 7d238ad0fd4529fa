import { AuthenticationError } from './errors.js';
import { clientFetch } from './network.js';

/** Credentials for logging in without a browser, by posting the authorization server's login form. */
export interface LoginCredentials {
  username: string;
  password: string;
}

interface HtmlForm {
  action: string;
  method: string;
  fields: Array<{ name: string; value: string; type: string; checked: boolean }>;
  buttons: Array<{ name: string; value: string }>;
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'", apos: "'" };

function decodeEntities(value: string): string {
  return value.replace(/&(amp|lt|gt|quot|#39|apos);/g, (_, name: string) => ENTITIES[name]!);
}

function attributes(tag: string): Record<string, string> {
  const attrs: Record<string, string> = {};
  for (const m of tag.matchAll(/([a-zA-Z_:-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))?/g)) {
    attrs[m[1]!.toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return attrs;
}

/** Finds the forms of an HTML page. Enough for login and consent pages; not a general HTML parser. */
export function parseForms(html: string): HtmlForm[] {
  const forms: HtmlForm[] = [];
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const formAttrs = attributes(m[1]!);
    const body = m[2]!;
    // In document order, as a browser builds the form data set; disabled controls are never submitted.
    const controls = [...body.matchAll(/<(input|select|textarea)\b([^>]*)>(?:([\s\S]*?)<\/\1>)?/gi)];
    const fields: HtmlForm['fields'] = [];
    for (const control of controls) {
      const tag = control[1]!.toLowerCase();
      const a = attributes(control[2]!);
      if ('disabled' in a) continue;
      const name = a['name'] ?? '';
      if (tag === 'textarea') {
        fields.push({ name, value: decodeEntities(control[3] ?? ''), type: 'textarea', checked: false });
      } else if (tag === 'select') {
        const options = [...(control[3] ?? '').matchAll(/<option\b([^>]*)>([^<]*)/gi)].map((o) => {
          const oa = attributes(o[1]!);
          return {
            value: oa['value'] ?? decodeEntities(o[2]!.trim()),
            selected: 'selected' in oa,
            disabled: 'disabled' in oa,
          };
        });
        // The selected option, else the first that is not disabled: what a browser submits by default.
        const chosen = options.find((o) => o.selected) ?? options.find((o) => !o.disabled);
        if (chosen) fields.push({ name, value: chosen.value, type: 'select', checked: false });
      } else {
        const type = (a['type'] ?? 'text').toLowerCase();
        fields.push({
          name,
          value: a['value'] ?? (type === 'checkbox' || type === 'radio' ? 'on' : ''),
          type,
          checked: 'checked' in a,
        });
      }
    }
    const buttons = [...body.matchAll(/<button\b([^>]*)>/gi)]
      .map((button) => attributes(button[1]!))
      .filter((a) => (a['type'] ?? 'submit').toLowerCase() === 'submit')
      .map((a) => ({ name: a['name'] ?? '', value: a['value'] ?? '' }));
    forms.push({
      action: formAttrs['action'] ?? '',
      method: (formAttrs['method'] ?? 'get').toLowerCase(),
      fields: fields.filter((f) => f.name),
      buttons,
    });
  }
  return forms;
}

const APPROVE = /^(approve|allow|accept|consent|yes|confirm|authorize)$/i;

function fillForm(form: HtmlForm, credentials: LoginCredentials): URLSearchParams {
  const body = new URLSearchParams();
  const hasPassword = form.fields.some((f) => f.type === 'password');
  let usernameFilled = false;
  for (const field of form.fields) {
    if (field.type === 'submit' || field.type === 'button' || field.type === 'image') continue;
    if (field.type === 'password') body.set(field.name, credentials.password);
    else if (hasPassword && !usernameFilled && (field.type === 'text' || field.type === 'email')) {
      body.set(field.name, credentials.username);
      usernameFilled = true;
    } else if (field.type === 'checkbox' || field.type === 'radio') {
      // Checked boxes and the checked radio are submitted (every checked box of a name), unchecked ones not.
      if (field.checked) body.append(field.name, field.value);
    } else body.append(field.name, field.value);
  }
  const button = form.buttons.find((b) => APPROVE.test(b.value)) ?? form.buttons[0];
  if (button?.name) body.set(button.name, button.value);
  return body;
}

/** A tiny cookie jar: enough to carry an authorization server's session through one login. */
class CookieJar {
  private readonly cookies = new Map<string, Map<string, string>>();

  store(origin: string, response: Response): void {
    const jar = this.cookies.get(origin) ?? new Map<string, string>();
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const eq = pair!.indexOf('=');
      if (eq > 0) jar.set(pair!.slice(0, eq).trim(), pair!.slice(eq + 1).trim());
    }
    this.cookies.set(origin, jar);
  }

  header(origin: string): string | undefined {
    const jar = this.cookies.get(origin);
    if (!jar?.size) return undefined;
    return [...jar].map(([name, value]) => `${name}=${value}`).join('; ');
  }
}

/**
 * Completes an authorization request without a browser: follows the redirects, submits the login form with the
 * given credentials and approves the consent form, until the authorization server redirects to `redirectUri`.
 * Returns that final redirect URL (carrying `code`, `state` and `iss`, or an `error`).
 *
 * This is seed 004's "auto-login": meant for automation, tests and authorization servers you run yourself.
 */
export async function headlessAuthorize(
  authorizationUrl: URL,
  redirectUri: string,
  credentials: LoginCredentials,
  fetchFn: typeof fetch = clientFetch,
): Promise<URL> {
  const target = new URL(redirectUri);
  const isCallback = (url: URL) => url.origin === target.origin && url.pathname === target.pathname;
  const jar = new CookieJar();
  let request: { url: URL; method: string; body?: URLSearchParams } = { url: authorizationUrl, method: 'GET' };
  let submittedLogin = false;

  for (let step = 0; step < 20; step++) {
    const headers = new Headers({ accept: 'text/html' });
    const cookie = jar.header(request.url.origin);
    if (cookie) headers.set('cookie', cookie);
    if (request.body) headers.set('content-type', 'application/x-www-form-urlencoded');
    const response = await fetchFn(request.url, {
      method: request.method,
      headers,
      body: request.body?.toString(),
      redirect: 'manual',
    });
    jar.store(request.url.origin, response);

    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      const next = new URL(location, request.url);
      if (isCallback(next)) return next;
      request = { url: next, method: 'GET' };
      continue;
    }

    const html = await response.text();
    if (submittedLogin && response.status === 401) {
      throw new AuthenticationError('Automatic login failed: the authorization server refused the credentials', {
        code: 'ERR_LOGIN_FAILED',
        hint: 'Check the username and password given as `login`.',
      });
    }
    const form = parseForms(html).find((f) => f.method === 'post');
    if (!form) {
      const text = decodeEntities(
        html
          .replace(/<(style|script)\b[\s\S]*?<\/\1>/gi, ' ')
          .replace(/<[^>]+>/g, ' ')
          .replace(/\s+/g, ' ')
          .trim(),
      );
      if (response.status === 400 && /redirect_uri|redirect uri/i.test(text)) {
        // The authorization endpoint shows this page instead of redirecting: the redirect URI is not registered.
        throw new AuthenticationError(
          `The authorization server refused the redirect URI ${redirectUri} (HTTP 400): ${text.slice(0, 200)}`,
          {
            code: 'ERR_REDIRECT_URI_MISMATCH',
            hint: `Register ${redirectUri} for this client at the authorization server (it must match exactly), or log in on the port it has registered: pass callbackPort (gatehouse: --callback-port).`,
          },
        );
      }
      throw new AuthenticationError(
        `Automatic login stopped at ${request.url.origin}${request.url.pathname} (HTTP ${response.status}): ${text.slice(0, 200)}`,
        { code: 'ERR_LOGIN_FAILED', hint: 'Log in with a browser instead, or check the authorization server.' },
      );
    }
    if (form.fields.some((f) => f.type === 'password')) submittedLogin = true;
    request = {
      url: new URL(form.action || request.url.href, request.url),
      method: 'POST',
      body: fillForm(form, credentials),
    };
  }
  throw new AuthenticationError('Automatic login did not finish after 20 steps', {
    code: 'ERR_LOGIN_FAILED',
    hint: 'The authorization server keeps redirecting; log in with a browser instead.',
  });
}

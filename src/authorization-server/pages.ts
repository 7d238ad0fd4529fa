/**
 * The login and consent pages: what the user reads before signing in and before granting access. Rendering only —
 * `interactions.ts` decides which page to show and handles the forms. Every value goes through {@link html}, so
 * every value is escaped.
 */
import { html, page, SafeHtml } from './html.js';

/** How the service presents itself on its pages (`gatehouse serve --name … --logo …`). */
export interface Branding {
  /** The service's display name, e.g. "Acme MCP". Default: none (the pages then say "Sign in"). */
  name?: string;
  /** An `https:` (or loopback `http:`, or `data:image/…`) URL of a logo shown above the page's heading. */
  logoUrl?: string;
}

/** A scope as the consent page lists it. */
export interface ScopeView {
  name: string;
  description?: string;
}

/** Descriptions of the scopes every authorization server knows, used when the configuration gives none. */
const STANDARD_SCOPES: Record<string, string> = {
  openid: 'Know your account identifier',
  profile: 'See your name',
  email: 'See your email address',
  offline_access: 'Keep access while you are away, without asking you to sign in again',
};

/** Adds the standard description to a scope the configuration did not describe. */
export function describeScope(scope: ScopeView): ScopeView {
  const description = scope.description ?? STANDARD_SCOPES[scope.name];
  return description === undefined ? scope : { ...scope, description };
}

function brandHeader(branding: Branding): SafeHtml {
  if (!branding.name && !branding.logoUrl) return html``;
  return html`<header class="brand">${branding.logoUrl && html`<img src="${branding.logoUrl}" alt="${branding.name ? `${branding.name} logo` : 'Logo'}" height="40">`}${branding.name && html`<span>${branding.name}</span>`}</header>`;
}

/** What the login page shows. */
export interface LoginView {
  uid: string;
  csrf: string;
  branding: Branding;
  clientName: string;
  /** Upstream identity providers offered as buttons. */
  upstreams: ReadonlyArray<{ name: string; displayName: string }>;
  localLogin: boolean;
  error?: string;
}

/** The login page: which service you sign in to, for which application; upstream buttons and/or the form. */
export function loginPage(view: LoginView): string {
  const { uid, csrf, branding } = view;
  const upstreams = view.upstreams.length
    ? html`<ul class="upstreams">${view.upstreams.map(
        (p) =>
          html`<li><a class="button upstream" href="/interaction/${uid}/upstream/${p.name}">Sign in with ${p.displayName}</a></li>`,
      )}</ul>${view.localLogin && html`<p class="or">or with a username and password:</p>`}`
    : html``;
  const form =
    view.localLogin &&
    html`<form method="post" action="/interaction/${uid}/login" autocomplete="on">
  <input type="hidden" name="csrf" value="${csrf}">
  <label for="username">Username</label>
  <input id="username" name="username" type="text" autocomplete="username" required autofocus>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <button type="submit">Sign in</button>
</form>`;
  return page(
    branding.name ? `Sign in – ${branding.name}` : 'Sign in',
    html`${brandHeader(branding)}
<h1>${branding.name ? `Sign in to ${branding.name}` : 'Sign in'}</h1>
<p>to continue to <strong>${view.clientName}</strong></p>
${view.error && html`<p class="error" role="alert">${view.error}</p>`}
${upstreams}
${form}`,
  );
}

/** The application asking, as the consent and device pages show it. */
export interface ClientView {
  name: string;
  clientId: string;
  /** The client's `client_uri`, when it gave one. */
  uri?: string;
  /** The client_id is the URL of its metadata document (CIMD): the name is what that document claims. */
  metadataDocument: boolean;
}

/** An MCP server (resource) access is asked for, with the scopes asked for it. */
export interface ResourceView {
  uri: string;
  name?: string;
  scopes: ScopeView[];
}

/** What the consent page shows. */
export interface ConsentView {
  uid: string;
  csrf: string;
  branding: Branding;
  client: ClientView;
  /** The MCP servers (resources) the access is for, each with the scopes asked for it. */
  resources: ResourceView[];
  /** Scopes not tied to a resource (`openid`, `offline_access`, …). */
  otherScopes: ScopeView[];
  /**
   * The account signed in, as shown, and where "not you?" leads (the same request, asking for a new sign-in; none
   * in a device sign-in, which has no request to repeat).
   */
  account: { label: string; switchUrl?: string };
  /** Where the browser goes after the decision; none in a device sign-in (the user goes back to the device). */
  redirectHost?: string;
  /** A grant exists and nothing new is asked: confirm it is really this user. */
  approvedBefore: boolean;
}

function scopeList(scopes: ScopeView[]): SafeHtml {
  if (scopes.length === 0) return html`<ul class="scopes"><li>Basic access</li></ul>`;
  return html`<ul class="scopes">${scopes.map(
    (s) =>
      html`<li>${s.description ? html`${s.description} <code>${s.name}</code>` : html`<code>${s.name}</code>`}</li>`,
  )}</ul>`;
}

/** The line under a client's name: its metadata document address (CIMD), or its `client_uri`. */
function clientIdentity(client: ClientView): SafeHtml {
  if (client.metadataDocument) {
    return html`<p class="client-id">Client ID <code>${client.clientId}</code> (the name above is what this document says; check the address)</p>`;
  }
  return client.uri ? html`<p class="client-id">${client.uri}</p>` : html``;
}

/** One section per MCP server asked for, with its scopes. */
function resourceSections(resources: ResourceView[]): SafeHtml[] {
  return resources.map(
    (r) =>
      html`<section class="resource" aria-label="${r.name ?? r.uri}"><h2>${r.name ?? r.uri}</h2>${r.name && html`<p class="uri"><code>${r.uri}</code></p>`}${scopeList(r.scopes)}</section>`,
  );
}

/** The consent page: who asks (the client), for what (servers and scopes), on whose behalf (the account). */
export function consentPage(view: ConsentView): string {
  const { uid, csrf, branding, client } = view;
  const identity = clientIdentity(client);
  const resources = resourceSections(view.resources);
  const asked = view.resources.some((r) => r.scopes.length > 0) || view.otherScopes.length > 0;
  const what =
    view.approvedBefore && !asked
      ? html`<p>You approved <strong>${client.name}</strong> before. Apps on this device can claim its name, so please confirm it is you who started this sign-in.</p>${resources}`
      : html`<p><strong>${client.name}</strong> asks to access ${view.resources.length === 1 ? 'this MCP server' : 'these MCP servers'} as you:</p>${resources}${
          view.otherScopes.length > 0 && html`<h2>And also</h2>${scopeList(view.otherScopes)}`
        }`;
  return page(
    'Authorize access',
    html`${brandHeader(branding)}
<h1>Authorize ${client.name}</h1>
${identity}
<p class="account">Signed in as <strong>${view.account.label}</strong>.${view.account.switchUrl && html` <a href="${view.account.switchUrl}">Not you? Sign in as someone else</a>`}</p>
${what}
${view.redirectHost ? html`<p>After you decide, you will be sent to <strong>${view.redirectHost}</strong>.</p>` : html`<p>After you decide, go back to your device.</p>`}
<form method="post" action="/interaction/${uid}/confirm">
  <input type="hidden" name="csrf" value="${csrf}">
  <button type="submit" name="decision" value="approve">Approve</button>
  <button type="submit" name="decision" value="deny" class="secondary">Deny</button>
</form>`,
  );
}

/** What the device sign-in's code entry page shows (RFC 8628 §3.3). */
export interface UserCodeView {
  /** oidc-provider's form token for the device pages (bound to this browser's session). */
  csrf: string;
  /** Where the form posts: the verification URI. */
  action: string;
  branding: Branding;
  /** The code typed before, shown again with an error; or the one the device's link carried. */
  code?: string;
  error?: string;
  /**
   * The code came in the device's link (`verification_uri_complete`): the page submits itself with
   * {@link SUBMIT_NOW_SCRIPT} (the user compares the code on the confirmation page), or, without scripts, the user
   * presses Continue.
   */
  submitNow?: boolean;
}

/** The one script a page may run: the user-code page submitting the code from the device's link. */
export const SUBMIT_NOW_SCRIPT = 'document.forms[0].submit();';

/** The device sign-in's first page: type the code your device shows. */
export function userCodePage(view: UserCodeView): string {
  const { branding } = view;
  return page(
    branding.name ? `Connect a device – ${branding.name}` : 'Connect a device',
    html`${brandHeader(branding)}
<h1>${branding.name ? `Connect a device to ${branding.name}` : 'Connect a device'}</h1>
<p>${view.submitNow ? 'Continuing with the code from your device…' : 'Enter the code your device or terminal shows.'}</p>
${view.error && html`<p class="error" role="alert" id="code-error">${view.error}</p>`}
<form method="post" action="${view.action}">
  <input type="hidden" name="xsrf" value="${view.csrf}">
  <label for="user_code">Code</label>
  <input id="user_code" name="user_code" type="text" value="${view.code ?? ''}" autocomplete="one-time-code" autocapitalize="characters" spellcheck="false" required autofocus${view.error ? html` aria-invalid="true" aria-describedby="code-error"` : html``}>
  <button type="submit">Continue</button>
</form>${view.submitNow && html`<script>${new SafeHtml(SUBMIT_NOW_SCRIPT)}</script>`}`,
  );
}

/** What the device sign-in's confirmation page shows: who asks, for what, and the code to compare. */
export interface DeviceConfirmView {
  csrf: string;
  action: string;
  branding: Branding;
  /** The code as the device shows it (e.g. `BDWP-HQPK`). */
  userCode: string;
  client: ClientView;
  resources: ResourceView[];
  otherScopes: ScopeView[];
  /** The address the device asked from, for the user to recognise. */
  requestedFrom?: string;
}

/** The device sign-in's confirmation page: the application, the MCP servers and scopes, Continue or Cancel. */
export function deviceConfirmPage(view: DeviceConfirmView): string {
  const { branding, client } = view;
  return page(
    'Connect a device',
    html`${brandHeader(branding)}
<h1>Connect ${client.name}?</h1>
${clientIdentity(client)}
<p>Check that your device shows this code: <strong class="user-code">${view.userCode}</strong></p>
${view.requestedFrom && html`<p class="account">Requested from <code>${view.requestedFrom}</code></p>`}
<p><strong>${client.name}</strong> asks to access ${view.resources.length === 1 ? 'this MCP server' : 'these MCP servers'} as you:</p>
${resourceSections(view.resources)}
${view.otherScopes.length > 0 && html`<h2>And also</h2>${scopeList(view.otherScopes)}`}
<p>If you did not start this on a device of yours, or the codes differ, cancel.</p>
<form method="post" action="${view.action}">
  <input type="hidden" name="xsrf" value="${view.csrf}">
  <input type="hidden" name="user_code" value="${view.userCode}">
  <input type="hidden" name="confirm" value="yes">
  <button type="submit">Continue</button>
  <button type="submit" name="abort" value="yes" class="secondary">Cancel</button>
</form>`,
  );
}

/** How a device sign-in ended, for its last page. */
export interface DeviceResultView {
  branding: Branding;
  outcome: 'approved' | 'denied' | 'failed';
  clientName?: string;
  /** For `failed`: what went wrong. */
  message?: string;
}

/** The device sign-in's last page: go back to the device (signed in, or refused). */
export function deviceResultPage(view: DeviceResultView): string {
  const { branding } = view;
  const [title, text] =
    view.outcome === 'approved'
      ? [
          'Device connected',
          `${view.clientName ?? 'Your device'} is signed in. Go back to your device; you can close this page.`,
        ]
      : view.outcome === 'denied'
        ? ['Access denied', 'Nothing was shared. Your device has been told; you can close this page.']
        : ['Device sign-in failed', view.message ?? 'Start again on your device.'];
  return page(
    title,
    html`${brandHeader(branding)}
<h1>${title}</h1>
<p${view.outcome === 'failed' ? html` class="error" role="alert"` : html``}>${text}</p>`,
  );
}

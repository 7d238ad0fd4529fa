/**
 * The device authorization grant (RFC 8628) on oidc-provider's `deviceFlow`: Gatehouse's pages for the user code,
 * the confirmation and the outcome; `interval` in the device authorization response and `slow_down` for devices
 * polling faster (tracked in the store, so every instance agrees); and the brute-force limit on user codes.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type Provider from 'oidc-provider';
import { type Adapter, type Configuration, type KoaContextWithOIDC, errors as oidcErrors } from 'oidc-provider';
import * as deviceCodeGrant from 'oidc-provider/lib/actions/grants/device_code.js';
import type { Logger } from 'pino';
import { allowingInlineScript, pageHeadersFor } from './html.js';
import { clientView } from './interactions.js';
import {
  type Branding,
  describeScope,
  deviceConfirmPage,
  deviceResultPage,
  type ResourceView,
  type ScopeView,
  SUBMIT_NOW_SCRIPT,
  userCodePage,
} from './pages.js';
import { clientAddress, type TrustProxy, type UserCodeLimiter } from './rate-limit.js';
import { boundGrantHelpers } from './refresh-grace.js';

/** The device authorization grant's settings (`deviceFlow` of the authorization server; `false` turns it off). */
export interface DeviceFlowOptions {
  /** Seconds a device waits between polls (the response's `interval`); a faster poll gets `slow_down`. Default 5. */
  interval?: number;
  /** Seconds a device code and its user code stay valid (`expires_in`). Default 600. */
  expiresIn?: number;
  /**
   * Wrong user codes allowed per client address per window of the login limits (`loginRateLimit.windowSeconds`)
   * before code entry is refused with 429. Default 10.
   */
  userCodeAttempts?: number;
}

/** The store model of the last poll of each pending device code (by hash), for `slow_down`. */
export const DEVICE_POLL_MODEL = 'GatehouseDevicePoll';

/** RFC 8628 §3.5: after `slow_down` the device adds 5 seconds to its interval, for good. */
const SLOW_DOWN_STEP = 5;
/** A poll this much early still counts as on time: timers and networks jitter. */
const EARLY_TOLERANCE_MS = 500;

/** A resource's display name, its scope descriptions and the scopes it offers. */
export type DescribeResource = (
  indicator: string,
) => { name?: string; scopes: Record<string, string>; offered: string[] } | undefined;

type ReRenderName = 'NoCodeError' | 'NotFoundError' | 'ExpiredError' | 'AlreadyUsedError' | 'AbortedError';
const RE_RENDER = new Set<string>(['NoCodeError', 'NotFoundError', 'ExpiredError', 'AlreadyUsedError', 'AbortedError']);

const CODE_ERRORS: Record<Exclude<ReRenderName, 'AbortedError'>, string> = {
  NoCodeError: 'Enter the code your device shows.',
  NotFoundError: 'That code is not valid. Check it against your device and try again.',
  ExpiredError: 'That code has expired. Start again on your device to get a new one.',
  AlreadyUsedError: 'That code was already used. Start again on your device to get a new one.',
};

/** The MCP servers and scopes a device authorization request asks for, grouped as the pages show them. */
export function requestedAccess(
  params: Record<string, unknown>,
  describeResource: DescribeResource,
): { resources: ResourceView[]; otherScopes: ScopeView[] } {
  const scopes = String(params['scope'] ?? '')
    .split(' ')
    .filter(Boolean);
  const indicators = [params['resource']].flat().filter((r): r is string => typeof r === 'string');
  const underServers = new Set<string>();
  const resources = indicators.map((uri) => {
    const described = describeResource(uri);
    const own = scopes.filter((s) => described?.offered.includes(s));
    for (const s of own) underServers.add(s);
    return {
      uri,
      ...(described?.name !== undefined && { name: described.name }),
      scopes: own.map((name) =>
        describeScope({ name, ...(described?.scopes[name] !== undefined && { description: described.scopes[name] }) }),
      ),
    };
  });
  const otherScopes = scopes.filter((s) => !underServers.has(s)).map((name) => describeScope({ name }));
  return { resources, otherScopes };
}

/** oidc-provider's `features.deviceFlow`: enabled, with Gatehouse's pages. */
export function deviceFlowFeature(options: {
  branding: Branding;
  describeResource: DescribeResource;
  limiter: UserCodeLimiter;
  trustProxy: TrustProxy | undefined;
  logger: Logger | undefined;
}): NonNullable<Configuration['features']>['deviceFlow'] {
  const { branding } = options;
  const headers = pageHeadersFor(undefined, branding.logoUrl);
  const render = (ctx: KoaContextWithOIDC, body: string) => {
    for (const [name, value] of Object.entries(headers)) ctx.set(name, value);
    ctx.body = body;
  };
  const formToken = (ctx: KoaContextWithOIDC) => String((ctx.oidc.session?.state as { secret?: string })?.secret);
  return {
    enabled: true,
    async userCodeInputSource(ctx, _form, out, error) {
      const name = (error as { name?: string } | undefined)?.name;
      if (name === 'AbortedError') return render(ctx, deviceResultPage({ branding, outcome: 'denied' }));
      if (error && !RE_RENDER.has(name ?? '')) {
        const message = out?.error_description ?? out?.error ?? 'Something went wrong.';
        return render(ctx, deviceResultPage({ branding, outcome: 'failed', message }));
      }
      if (name === 'NotFoundError') {
        await options.limiter.failure(clientAddress(ctx.req, options.trustProxy));
        options.logger?.info('device sign-in: wrong user code');
      }
      if (name && name !== 'NoCodeError') ctx.status = 400;
      const code = (error as { userCode?: string } | undefined)?.userCode;
      render(
        ctx,
        userCodePage({
          csrf: formToken(ctx),
          action: ctx.oidc.urlFor('code_verification'),
          branding,
          ...(code !== undefined && { code }),
          ...(name !== undefined && { error: CODE_ERRORS[name as keyof typeof CODE_ERRORS] }),
        }),
      );
    },
    async userCodeConfirmSource(ctx, _form, client, deviceInfo, userCode) {
      const params = ((ctx.oidc.entities as { DeviceCode?: { params?: Record<string, unknown> } }).DeviceCode?.params ??
        {}) as Record<string, unknown>;
      const from = (deviceInfo as { ip?: unknown } | undefined)?.ip;
      render(
        ctx,
        deviceConfirmPage({
          csrf: formToken(ctx),
          action: ctx.oidc.urlFor('code_verification'),
          branding,
          userCode,
          client: clientView(client, client.clientId),
          ...requestedAccess(params, options.describeResource),
          ...(typeof from === 'string' && { requestedFrom: from }),
        }),
      );
    },
    async successSource(ctx) {
      const client = ctx.oidc.client;
      render(
        ctx,
        deviceResultPage({ branding, outcome: 'approved', clientName: client?.clientName ?? client?.clientId }),
      );
    },
  };
}

/**
 * The device's link (`verification_uri_complete`, the verification URI with `?user_code=`) opens Gatehouse's
 * user-code page with the code filled in, submitting itself, instead of oidc-provider's unstyled "Submitting
 * Callback" page: the same form post, branded, under the pages' CSP (only this script allowed, by hash), and usable
 * without JavaScript.
 */
export function installDeviceCodeLink(provider: Provider, branding: Branding): void {
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.method !== 'GET' || ctx.status !== 200 || ctx.oidc?.route !== 'code_verification') return;
    const code = (ctx.oidc.params as { user_code?: unknown } | undefined)?.user_code;
    if (typeof code !== 'string' || code === '') return;
    const csrf = (ctx.oidc.session?.state as { secret?: unknown } | undefined)?.secret;
    if (typeof csrf !== 'string') return;
    for (const [name, value] of Object.entries(
      allowingInlineScript(pageHeadersFor(undefined, branding.logoUrl), SUBMIT_NOW_SCRIPT),
    )) {
      ctx.set(name, value);
    }
    ctx.body = userCodePage({ csrf, action: ctx.oidc.urlFor('code_verification'), branding, code, submitNow: true });
  });
}

/**
 * Replaces oidc-provider's `device_code` grant with one that answers `slow_down` (RFC 8628 §3.5) to a device polling
 * sooner than its interval, which then grows by 5 seconds; and adds `interval` to device authorization responses.
 * The last poll of each pending code is kept in the store, so polls spread over instances count together.
 */
export function installDevicePolling(
  provider: Provider,
  adapter: (model: string) => Adapter,
  settings: { interval: number; expiresIn: number },
): void {
  const polls = adapter(DEVICE_POLL_MODEL);
  const helpers = boundGrantHelpers(provider);
  const original = (ctx: KoaContextWithOIDC) => deviceCodeGrant.handler(provider, helpers, ctx);
  provider.registerGrantType(
    deviceCodeGrant.grantType,
    async (ctx: KoaContextWithOIDC) => {
      const deviceCode = ctx.oidc.params?.['device_code'];
      if (typeof deviceCode !== 'string') return original(ctx);
      const key = createHash('sha256').update(deviceCode).digest('base64url');
      const now = Date.now();
      const last = (await polls.find(key)) as { at?: number; interval?: number } | undefined;
      const interval = last?.interval ?? settings.interval;
      if (last?.at !== undefined && now - last.at < interval * 1000 - EARLY_TOLERANCE_MS) {
        const slower = interval + SLOW_DOWN_STEP;
        await polls.upsert(key, { at: now, interval: slower } as never, settings.expiresIn);
        throw new oidcErrors.SlowDown(`poll at most every ${slower} seconds`);
      }
      try {
        await original(ctx);
      } catch (error) {
        // Only a pending code is remembered: nothing is stored for unknown or finished codes.
        if ((error as { error?: string }).error === 'authorization_pending') {
          await polls.upsert(key, { at: now, interval } as never, settings.expiresIn);
        }
        throw error;
      }
      if (last) await polls.destroy(key);
    },
    new Set([...deviceCodeGrant.parameters, 'resource']),
    ['resource'],
  );
  provider.on('device_authorization.success', (_ctx: unknown, body: Record<string, unknown>) => {
    body['interval'] = settings.interval;
  });
}

/**
 * Refuses user-code entry (`POST /device`) from an address over the wrong-code limit, with 429 and `Retry-After`,
 * before the code is looked up. Resolves true when it answered.
 */
export function userCodeGuard(options: {
  limiter: UserCodeLimiter;
  trustProxy: TrustProxy | undefined;
  branding: Branding;
  logger: Logger | undefined;
}): (req: IncomingMessage, res: ServerResponse) => Promise<boolean> {
  return async (req, res) => {
    const wait = await options.limiter.wait(clientAddress(req, options.trustProxy));
    if (wait <= 0) return false;
    options.logger?.warn('device sign-in: user code entry rate limited');
    res.writeHead(429, { ...pageHeadersFor(undefined, options.branding.logoUrl), 'retry-after': String(wait) });
    res.end(
      deviceResultPage({
        branding: options.branding,
        outcome: 'failed',
        message: `Too many wrong codes. Try again in ${wait} seconds.`,
      }),
    );
    return true;
  };
}

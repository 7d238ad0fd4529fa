// oidc-provider's built-in refresh_token grant, reused to add a grace window around it (see refresh-grace.ts).
declare module 'oidc-provider/lib/actions/grants/refresh_token.js' {
  export const handler: (provider: unknown, helpers: unknown, ctx: unknown) => Promise<void>;
  export const parameters: Set<string>;
}
declare module 'oidc-provider/lib/helpers/grants.js' {
  const helpers: Record<string, (...args: unknown[]) => unknown>;
  export = helpers;
}
// oidc-provider's keystore initialiser, run again on a live provider when the signing keys change (provider-keys.ts).
declare module 'oidc-provider/lib/helpers/initialize_keystore.js' {
  export default function initialize(this: unknown, jwks: { keys: unknown[] }): void;
}
// oidc-provider's built-in device_code grant, wrapped to answer slow_down (see device-flow.ts).
declare module 'oidc-provider/lib/actions/grants/device_code.js' {
  export const handler: (provider: unknown, helpers: unknown, ctx: unknown) => Promise<void>;
  export const parameters: Set<string>;
  export const grantType: string;
}

/** The device authorization grant (RFC 8628): the names and the response both sides share. */
import { z } from 'zod';

/** The grant type a device polls the token endpoint with (RFC 8628 §3.4). */
export const DEVICE_CODE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:device_code';

/** RFC 8628 §3.2: the device authorization response. `interval` defaults to 5 seconds. */
export const DeviceAuthorizationResponseSchema = z.looseObject({
  device_code: z.string().min(1),
  user_code: z.string().min(1),
  verification_uri: z.string().url(),
  verification_uri_complete: z.string().url().optional(),
  expires_in: z.number().positive(),
  interval: z.number().positive().optional(),
});
export type DeviceAuthorizationResponse = z.infer<typeof DeviceAuthorizationResponseSchema>;

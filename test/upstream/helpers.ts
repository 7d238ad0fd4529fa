import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import {
  createUpstreamIdentity,
  type UpstreamIdentity,
  type UpstreamIdentityOptions,
} from '../../src/authorization-server/upstream/index.js';
import { headlessAuthorize } from '../../src/client/headless-login.js';
import { generateEncryptionKey } from '../../src/storage/encrypted.js';
import { type MemoryEntry, memoryStore } from '../../src/storage/memory.js';

export const ISSUER = 'http://127.0.0.1:9555';
export const CALLBACK = `${ISSUER}/upstream/callback`;

/** A controllable clock (ms), starting now. */
export function clock() {
  let offset = 0;
  return {
    now: () => Date.now() + offset,
    advance(seconds: number) {
      offset += seconds * 1000;
    },
  };
}

/** Everything a pino logger writes, as text. */
export function captureLogs(): { logger: Logger; text: () => string } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), text: () => lines.join('') };
}

/** An engine over a memory store whose raw (encrypted) entries the test can read. */
export function engine(options: Partial<UpstreamIdentityOptions> & Pick<UpstreamIdentityOptions, 'providers'>) {
  const raw = new Map<string, MemoryEntry>();
  const logs = captureLogs();
  const identity: UpstreamIdentity = createUpstreamIdentity({
    issuer: ISSUER,
    store: memoryStore({ map: raw, namespace: 'upstream' }),
    encryption: { keys: [generateEncryptionKey()] },
    logger: logs.logger,
    ...options,
  });
  return { identity, raw, logs };
}

/** Starts an upstream login for `uid` and drives it headlessly; returns the callback URL. */
export async function upstreamLogin(
  identity: UpstreamIdentity,
  provider: string,
  uid: string,
  credentials = { username: 'octocat', password: 'hunter2' },
  extra: { scopes?: string[]; linkTo?: string } = {},
): Promise<URL> {
  const { authorizationUrl } = await identity.beginUpstreamLogin({ provider, interactionUid: uid, ...extra });
  return headlessAuthorize(new URL(authorizationUrl), identity.callbackUrl, credentials);
}

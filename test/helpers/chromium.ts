import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

/** Debian's Chromium; `bash .ci/run` installs it. */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * Launches Debian's Chromium headless with the flags this machine needs (no sandbox as root, no GPU, no background
 * traffic to a network that is not there). A missing browser fails the test, never skips it.
 */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium`);
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

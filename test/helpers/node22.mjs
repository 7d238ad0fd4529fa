// Node 22 for the few places that need it (the MCP conformance runner; the SQLite tests over node:sqlite), fetched
// through npm only when they run, so the dev install carries no second Node binary. The version is pinned so
// every run uses the same one; npm caches it in ~/.npm/_npx after the first fetch.
import { execFileSync } from 'node:child_process';

export const NODE22_VERSION = '22.23.3';

let cached;

/** Absolute path of a Node 22 binary (downloaded on first use; about 30 s, then about 2 s). */
export function node22() {
  cached ??= execFileSync(
    'npm',
    ['exec', '--yes', '--prefer-offline', `--package=node@${NODE22_VERSION}`, '--', 'node', '-p', 'process.execPath'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  ).trim();
  return cached;
}

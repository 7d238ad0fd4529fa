import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { temporaryDirectory } from '../client/oauth-helpers.js';
import { cli } from './helpers.js';

// docs/cli.md, "install": the file is written whole and renamed into place, keeping its mode — a desktop client's
// configuration often holds API keys in its servers' env, and a 0600 file must not become world-readable.

const home = await temporaryDirectory('cli-install-file');
afterAll(async () => {
  await home.remove();
});

describe('gatehouse install and the configuration file', () => {
  it('keeps the mode of the file it replaces, leaves no temporary file, and keeps the other entries', async () => {
    const env = { HOME: home.path, XDG_CONFIG_HOME: undefined, APPDATA: undefined };
    const dir = join(home.path, '.cursor');
    const file = join(dir, 'mcp.json');
    await mkdir(dir, { recursive: true });
    const other = { command: 'node', args: ['server.mjs'], env: { API_KEY: 'kept-secret' } };
    for (const mode of [0o600, 0o644]) {
      await writeFile(file, JSON.stringify({ mcpServers: { other } }));
      await chmod(file, mode);
      const result = await cli(['install', 'cursor', 'https://mcp.example.com/mcp', '--name', 'example'], env);
      expect(result.status, result.stderr).toBe(0);
      expect((await stat(file)).mode & 0o777).toBe(mode);
      expect(await readdir(dir)).toEqual(['mcp.json']);
      const config = JSON.parse(await readFile(file, 'utf8')) as { mcpServers: Record<string, unknown> };
      expect(config.mcpServers['other']).toEqual(other);
      expect(config.mcpServers['example']).toMatchObject({ command: 'npx' });
    }
  });
});

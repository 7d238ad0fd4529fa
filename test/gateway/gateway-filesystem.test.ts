// server-filesystem from npm behind the gateway, driven by the SDK client: every tool it lists, and its own
// confinement (paths outside the allowed directory, a symlink out of it) still holding through the gateway.
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Client as SdkClient } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cleanup,
  FILESYSTEM,
  type GatewayProcess,
  headlessOAuth,
  sdkClient,
  startGatewayProcess,
  tempDir,
} from './helpers.js';

const text = (result: unknown) => JSON.stringify(result);

describe('gatehouse gateway -- server-filesystem', () => {
  let gateway: GatewayProcess;
  let client: SdkClient;
  let allowed: string;
  let outside: string;
  afterAll(cleanup);

  beforeAll(async () => {
    allowed = await tempDir();
    outside = await tempDir();
    await writeFile(join(allowed, 'a.txt'), 'alpha\nbeta\n');
    await writeFile(join(allowed, 'b.md'), '# b');
    await writeFile(join(allowed, 'pixel.png'), Buffer.from('89504e470d0a1a0a', 'hex'));
    await writeFile(join(outside, 'secret.txt'), 'not for the gateway');
    await symlink(join(outside, 'secret.txt'), join(allowed, 'link-out.txt'));
    gateway = await startGatewayProcess(['--store', 'memory', '--', process.execPath, FILESYSTEM, allowed]);
    const mcpUrl = gateway.mcp['mcp']!;
    client = await sdkClient(mcpUrl, headlessOAuth(mcpUrl, 'admin', gateway.password!));
  }, 60_000);

  const call = (name: string, args: Record<string, unknown>) => client.callTool({ name, arguments: args });

  it('calls every tool it lists', async () => {
    const { tools } = await client.listTools();
    const calls: Record<string, [Record<string, unknown>, (result: unknown) => void]> = {
      list_allowed_directories: [{}, (r) => expect(text(r)).toContain(allowed)],
      read_text_file: [{ path: join(allowed, 'a.txt'), head: 1 }, (r) => expect(text(r)).toContain('alpha')],
      read_file: [{ path: join(allowed, 'a.txt') }, (r) => expect(text(r)).toContain('beta')],
      read_media_file: [{ path: join(allowed, 'pixel.png') }, (r) => expect(text(r)).toContain('image/png')],
      read_multiple_files: [
        { paths: [join(allowed, 'a.txt'), join(allowed, 'b.md')] },
        (r) => expect(text(r)).toMatch(/alpha[\s\S]*# b/),
      ],
      write_file: [{ path: join(allowed, 'c.txt'), content: 'gamma' }, () => {}],
      edit_file: [
        { path: join(allowed, 'a.txt'), edits: [{ oldText: 'beta', newText: 'BETA' }] },
        (r) => expect(text(r)).toContain('+BETA'),
      ],
      create_directory: [{ path: join(allowed, 'sub', 'deeper') }, () => {}],
      list_directory: [{ path: allowed }, (r) => expect(text(r)).toContain('[DIR] sub')],
      list_directory_with_sizes: [{ path: allowed }, (r) => expect(text(r)).toContain('c.txt')],
      directory_tree: [{ path: allowed }, (r) => expect(text(r)).toContain('deeper')],
      move_file: [{ source: join(allowed, 'c.txt'), destination: join(allowed, 'sub', 'c.txt') }, () => {}],
      search_files: [{ path: allowed, pattern: '**/c.txt' }, (r) => expect(text(r)).toContain(join('sub', 'c.txt'))],
      get_file_info: [{ path: join(allowed, 'b.md') }, (r) => expect(text(r)).toMatch(/size/i)],
    };
    for (const tool of tools) {
      const planned = calls[tool.name];
      expect(planned, `no arguments planned for ${tool.name}`).toBeDefined();
      const result = await call(tool.name, planned![0]);
      expect(result.isError ?? false, `${tool.name}: ${text(result.content)}`).toBe(false);
      planned![1](result);
    }
    expect(tools.length).toBeGreaterThanOrEqual(13);
    expect(await readFile(join(allowed, 'a.txt'), 'utf8')).toBe('alpha\nBETA\n');
    expect(await readFile(join(allowed, 'sub', 'c.txt'), 'utf8')).toBe('gamma');
  }, 60_000);

  it('refuses paths outside the allowed directory, and a symlink out of it', async () => {
    const write = await call('write_file', { path: join(outside, 'planted.txt'), content: 'x' });
    expect(write.isError).toBe(true);
    expect(text(write.content)).toMatch(/outside allowed directories|access denied/i);
    await expect(readFile(join(outside, 'planted.txt'))).rejects.toThrow();
    const traversal = await call('read_text_file', { path: join(allowed, '..', 'etc-passwd-ish') });
    expect(traversal.isError).toBe(true);
    const viaLink = await call('read_text_file', { path: join(allowed, 'link-out.txt') });
    expect(viaLink.isError).toBe(true);
    expect(text(viaLink.content)).not.toContain('not for the gateway');
    const list = await call('list_directory', { path: outside });
    expect(list.isError).toBe(true);
    await mkdir(join(allowed, 'still-fine'));
    expect((await call('list_directory', { path: join(allowed, 'still-fine') })).isError ?? false).toBe(false);
  }, 30_000);
});

import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Client, InvalidSourceError, OAuth } from '../../src/client/index.js';
import { resolveSource } from '../../src/client/source.js';
import { createServer } from '../fixtures/servers/everything.mjs';

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/servers/${name}`, import.meta.url));

function errorOf(run: () => unknown): InvalidSourceError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidSourceError);
    return error as InvalidSourceError;
  }
  throw new Error('expected an InvalidSourceError');
}

describe('source inference', () => {
  it('maps URLs to HTTP, /sse paths straight to SSE', () => {
    expect(resolveSource('https://mcp.example.com/mcp')).toMatchObject({
      kind: 'single',
      source: { kind: 'http', transport: 'auto', url: new URL('https://mcp.example.com/mcp') },
    });
    expect(resolveSource(new URL('http://127.0.0.1:9/sse'))).toMatchObject({
      source: { kind: 'http', transport: 'sse' },
    });
    expect(resolveSource({ url: 'http://127.0.0.1:9/mcp', transport: 'sse' })).toMatchObject({
      source: { transport: 'sse' },
    });
    expect(resolveSource({ url: 'http://127.0.0.1:9/sse', transport: 'http' })).toMatchObject({
      source: { transport: 'streamable-http' },
    });
  });

  it('runs .js/.mjs with this Node and .py with Python, with absolute paths', () => {
    expect(resolveSource(fixture('everything.mjs'), { env: { A: '1' }, cwd: '/tmp' })).toEqual({
      kind: 'single',
      source: {
        kind: 'stdio',
        command: process.execPath,
        args: [fixture('everything.mjs')],
        env: { A: '1' },
        cwd: '/tmp',
      },
    });
    expect(resolveSource(fixture('echo.py'))).toMatchObject({
      source: {
        kind: 'stdio',
        command: process.platform === 'win32' ? 'python' : 'python3',
        args: [fixture('echo.py')],
      },
    });
  });

  it('runs .ts with Node type stripping where available, else tsx', () => {
    const resolved = resolveSource(fileURLToPath(import.meta.url));
    const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
    const stripping = major > 22 || (major === 22 && minor >= 6);
    expect(resolved).toMatchObject({
      source: stripping
        ? {
            command: process.execPath,
            args: ['--experimental-strip-types', '--no-warnings', fileURLToPath(import.meta.url)],
          }
        : { command: 'npx', args: ['--no-install', 'tsx', fileURLToPath(import.meta.url)] },
    });
  });

  it('takes commands, in-process servers and mcpServers configurations', () => {
    expect(resolveSource({ command: 'uvx', args: ['weather'] }, { env: { K: 'v' } })).toEqual({
      kind: 'single',
      source: { kind: 'stdio', command: 'uvx', args: ['weather'], env: { K: 'v' }, cwd: undefined },
    });
    const server = createServer();
    expect(resolveSource(server)).toEqual({ kind: 'single', source: { kind: 'memory', server } });
    const multi = resolveSource({
      mcpServers: {
        web: { url: 'https://a.example/mcp', headers: { 'x-key': '1' }, auth: 'token' },
        local: { command: 'node', args: ['s.mjs'], env: { X: '1' } },
      },
    });
    expect(multi.kind).toBe('multi');
    if (multi.kind !== 'multi') return;
    expect(multi.servers.get('web')).toMatchObject({ kind: 'http', headers: { 'x-key': '1' }, auth: 'token' });
    expect(multi.servers.get('local')).toMatchObject({
      kind: 'stdio',
      command: 'node',
      args: ['s.mjs'],
      env: { X: '1' },
    });
  });

  it('lists what is accepted when it cannot tell', () => {
    for (const bad of [42, null, [], { foo: 1 }, '']) {
      const error = errorOf(() => new Client(bad as never));
      expect(error.message).toMatch(/http\(s\) URL.*\.py.*command.*mcpServers/);
      expect(error.code).toBe('ERR_INVALID_SOURCE');
    }
    expect(errorOf(() => new Client('server.rb')).message).toMatch(/\.js, \.mjs, \.cjs, \.ts or \.py/);
    expect(errorOf(() => new Client('ws://127.0.0.1/mcp')).message).toMatch(/Unsupported URL scheme ws:/);
    expect(errorOf(() => new Client('./no/such/server.py')).message).toMatch(/does not exist/);
  });

  it('refuses auth for stdio and in-memory servers, saying what to do instead', () => {
    const stdio = errorOf(() => new Client(fixture('everything.mjs'), { auth: 'token' }));
    expect(stdio.message).toMatch(/stdio/);
    expect(stdio.hint).toMatch(/env/);
    errorOf(() => new Client({ command: 'node', auth: new OAuth() } as never));
    errorOf(
      () => new Client({ mcpServers: { a: { command: 'node', auth: 'oauth' }, b: { url: 'http://x/mcp' } } } as never),
    );
    errorOf(() => new Client(createServer(), { auth: 'oauth' }));
  });

  it('checks mcpServers entries', () => {
    expect(errorOf(() => new Client({ mcpServers: {} })).message).toMatch(/at least one server/);
    expect(errorOf(() => new Client({ mcpServers: { a: { args: [] } } } as never)).message).toMatch(
      /mcpServers\.a has neither url nor command/,
    );
    const ambiguous = errorOf(
      () => new Client({ mcpServers: { a: { url: 'http://a/mcp' }, b: { url: 'http://b/mcp' } } }, { auth: 'x' }),
    );
    expect(ambiguous.hint).toMatch(/each server entry/);
  });
});

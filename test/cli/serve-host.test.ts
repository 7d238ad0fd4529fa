// `gatehouse serve --host`: an http issuer on a non-loopback address is warned about on stderr (tokens over plain
// HTTP), an https issuer (behind a TLS proxy) or a loopback one is not (docs/authorization-server.md, --issuer).
import { afterEach, describe, expect, it } from 'vitest';
import { type ServeProcess, startServeProcess } from '../helpers/serve-process.js';

const RESOURCE = ['--resource', 'http://127.0.0.1:1/mcp=mcp:tools'];
const WARNING = /gatehouse serve: warning: issuer (\S+) is plain http on a non-loopback address/;

describe('gatehouse serve --host and the plain-HTTP warning', () => {
  let running: ServeProcess | undefined;
  afterEach(async () => {
    await running?.close();
    running = undefined;
  });

  it('warns when it listens on every interface with its default http issuer', async () => {
    running = await startServeProcess(['--host', '0.0.0.0', ...RESOURCE]);
    expect(running.url).toMatch(/^http:\/\/0\.0\.0\.0:\d+$/);
    expect(running.stderr()).toMatch(WARNING);
    expect(WARNING.exec(running.stderr())?.[1]).toBe(running.url);
    // It still serves: a warning, not a refusal.
    const metadata = await fetch(
      `${running.url.replace('0.0.0.0', '127.0.0.1')}/.well-known/oauth-authorization-server`,
    );
    expect(metadata.status).toBe(200);
  });

  it('warns for an http issuer on a non-loopback host name', async () => {
    running = await startServeProcess(['--host', '0.0.0.0', '--issuer', 'http://auth.example.test', ...RESOURCE]);
    expect(WARNING.exec(running.stderr())?.[1]).toBe('http://auth.example.test');
  });

  it('does not warn for an https issuer (TLS at a proxy) or on loopback', async () => {
    running = await startServeProcess(['--host', '0.0.0.0', '--issuer', 'https://auth.example.test', ...RESOURCE]);
    expect(running.stderr()).toContain('issuer https://auth.example.test');
    expect(running.stderr()).not.toContain('warning');
    await running.close();
    running = await startServeProcess(RESOURCE);
    expect(running.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(running.stderr()).not.toContain('warning');
  });
});

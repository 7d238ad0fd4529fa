import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { headlessAuthorize } from '../../src/client/index.js';

// An authorization page with every kind of control a login or consent form may carry; the server records what the
// filler submits and redirects to the callback, as an authorization server does.
const PAGE = `<!doctype html><html><body>
<form method="post" action="/login">
  <input type="hidden" name="csrf" value="t0ken">
  <label>User <input type="text" name="user"></label>
  <label>Password <input type="password" name="pass"></label>
  <input type="checkbox" name="remember" checked>
  <input type="checkbox" name="scope" value="mcp:tools" checked>
  <input type="checkbox" name="scope" value="mcp:admin">
  <input type="checkbox" name="scope" value="mcp:read" checked>
  <input type="checkbox" name="newsletter" value="yes">
  <input type="radio" name="duration" value="hour">
  <input type="radio" name="duration" value="day" checked>
  <input type="radio" name="duration" value="forever">
  <select name="tenant"><option value="a">A</option><option value="b" selected>B</option></select>
  <select name="locale"><option disabled>Pick one</option><option>en</option><option>fr</option></select>
  <textarea name="note">hello &amp; welcome</textarea>
  <input type="text" name="ignored" value="x" disabled>
  <button type="submit" name="decision" value="deny">Deny</button>
  <button type="submit" name="decision" value="approve">Approve</button>
</form></body></html>`;

let submitted: URLSearchParams | undefined;
let base = '';
const server = createServer(async (req: IncomingMessage, res) => {
  if (req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
    return;
  }
  let body = '';
  for await (const chunk of req) body += chunk;
  submitted = new URLSearchParams(body);
  res.writeHead(302, { location: 'http://localhost:9/callback?code=c&state=s' }).end();
});
beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

describe('the headless form filler submits forms as a browser would', () => {
  it('sends checked boxes and radios, default option values and text, and nothing unchecked or disabled', async () => {
    const final = await headlessAuthorize(new URL(`${base}/authorize`), 'http://localhost:9/callback', {
      username: 'alice',
      password: 'secret',
    });
    expect(final.searchParams.get('code')).toBe('c');
    expect([...submitted!]).toEqual([
      ['csrf', 't0ken'],
      ['user', 'alice'],
      ['pass', 'secret'],
      ['remember', 'on'],
      ['scope', 'mcp:tools'],
      ['scope', 'mcp:read'],
      ['duration', 'day'],
      ['tenant', 'b'],
      ['locale', 'en'],
      ['note', 'hello & welcome'],
      ['decision', 'approve'],
    ]);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ServeProcess, startServeProcess } from '../helpers/serve-process.js';
import { register } from './helpers.js';

describe('dynamic client registration defaults (gatehouse serve)', () => {
  let as: ServeProcess;
  beforeAll(async () => {
    as = await startServeProcess(['--resource', 'http://127.0.0.1:1/mcp=mcp:tools']);
  }, 60_000);
  afterAll(() => as?.close());

  it('registers a client without token_endpoint_auth_method as a public client, without a secret', async () => {
    const result = await register(as, { redirect_uris: ['http://127.0.0.1:4711/callback'], client_name: 'x' });
    expect(result.status).toBe(201);
    expect(result.body['token_endpoint_auth_method']).toBe('none');
    expect(result.body).not.toHaveProperty('client_secret');
  });

  it('still issues a secret when a confidential method is asked for', async () => {
    const result = await register(as, {
      redirect_uris: ['https://app.example.com/callback'],
      token_endpoint_auth_method: 'client_secret_basic',
    });
    expect(result.status).toBe(201);
    expect(typeof result.body['client_secret']).toBe('string');
  });
});

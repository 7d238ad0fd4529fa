import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import {
  defaultDataDirectory,
  isAccessTokenExpired,
  isClientSecretExpired,
  memoryStore,
  RecordFormatError,
  TOKEN_RECORD_VERSION,
  TokenStorage,
} from '../../src/storage/index.js';
import { sleep } from './helpers.js';

const SERVER = 'https://mcp.example.com/mcp';
const T0 = Date.UTC(2026, 0, 1);

describe('TokenStorage record layout', () => {
  it('stores an absolute expires_at, never only expires_in, and a version inside the record', async () => {
    const store = memoryStore();
    const storage = new TokenStorage(store, { now: () => T0 });
    await storage.saveTokens(SERVER, {
      access_token: 'at',
      token_type: 'Bearer',
      expires_in: 3600,
      refresh_token: 'rt',
    });
    const raw = (await store.get(storage.keyFor(SERVER))) as Record<string, unknown>;
    expect(raw).toMatchObject({
      version: TOKEN_RECORD_VERSION,
      server: SERVER,
      tokens: { expires_at: T0 / 1000 + 3600 },
    });
    expect(raw['tokens']).not.toHaveProperty('expires_in');
    // The version is in the record, not in the key.
    expect(storage.keyFor(SERVER)).toBe(`gatehouse:client:${SERVER}`);
  });

  it('accepts expires_in as a string (quirky servers) and measures from receivedAt', async () => {
    const storage = new TokenStorage(memoryStore());
    const tokens = await storage.saveTokens(
      SERVER,
      { access_token: 'at', token_type: 'Bearer', expires_in: '60' },
      { receivedAt: T0 },
    );
    expect(tokens.expires_at).toBe(T0 / 1000 + 60);
  });

  it('an expired access token does not take the refresh token with it (no storage TTL)', async () => {
    const storage = new TokenStorage(memoryStore());
    await storage.saveTokens(SERVER, { access_token: 'at', token_type: 'Bearer', expires_in: 1, refresh_token: 'rt' });
    await storage.saveClient(SERVER, { client_id: 'c1' });
    await sleep(1100);
    const tokens = await storage.getTokens(SERVER);
    expect(tokens?.refresh_token).toBe('rt');
    expect(isAccessTokenExpired(tokens!, { skewSeconds: 0 })).toBe(true);
    expect(await storage.getClient(SERVER)).toEqual({ client_id: 'c1' });
  });

  it('keeps the previous refresh token when a refresh response omits it (RFC 6749 §6)', async () => {
    const storage = new TokenStorage(memoryStore());
    await storage.saveTokens(SERVER, { access_token: 'at1', token_type: 'Bearer', refresh_token: 'rt1' });
    await storage.saveTokens(SERVER, { access_token: 'at2', token_type: 'Bearer', expires_in: 60 });
    expect(await storage.getTokens(SERVER)).toMatchObject({ access_token: 'at2', refresh_token: 'rt1' });
  });

  it('a client_secret_expires_at in the past does not crash; 0 means never', async () => {
    const storage = new TokenStorage(memoryStore());
    await storage.saveClient(SERVER, { client_id: 'c', client_secret: 's', client_secret_expires_at: 1_000_000 });
    const client = await storage.getClient(SERVER);
    expect(client).toMatchObject({ client_id: 'c' });
    expect(isClientSecretExpired(client!)).toBe(true);
    expect(isClientSecretExpired({ client_id: 'c', client_secret_expires_at: 0 })).toBe(false);
    expect(isClientSecretExpired({ client_id: 'c' })).toBe(false);
    expect(isClientSecretExpired({ client_id: 'c', client_secret_expires_at: Date.now() / 1000 + 60 })).toBe(false);
  });

  it('canonicalises the server URL in the key', async () => {
    const storage = new TokenStorage(memoryStore());
    await storage.saveClient('HTTPS://MCP.Example.com:443/mcp/#frag', { client_id: 'c' });
    expect(await storage.getClient(SERVER)).toEqual({ client_id: 'c' });
  });

  it('deleteTokens keeps the registration; deleteClient drops both', async () => {
    const storage = new TokenStorage(memoryStore());
    await storage.saveClient(SERVER, { client_id: 'c' });
    await storage.saveTokens(SERVER, { access_token: 'at', token_type: 'Bearer' });
    await storage.deleteTokens(SERVER);
    expect(await storage.getTokens(SERVER)).toBeUndefined();
    expect(await storage.getClient(SERVER)).toEqual({ client_id: 'c' });
    await storage.deleteClient(SERVER);
    expect(await storage.read(SERVER)).toBeUndefined();
  });

  it('serialises concurrent updates of one record', async () => {
    const storage = new TokenStorage(memoryStore());
    await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        storage.update(SERVER, (current) => ({
          ...(current ?? { version: TOKEN_RECORD_VERSION, server: SERVER, updated_at: 0 }),
          client: { client_id: 'c', seen: [...(((current?.client?.['seen'] as number[]) ?? []) as number[]), i] },
        })),
      ),
    );
    const seen = (await storage.getClient(SERVER))?.['seen'] as number[];
    expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i));
  });
});

describe('TokenStorage migration', () => {
  it('migrates a version-1 record (relative expires_in + savedAt) on read', async () => {
    const store = memoryStore();
    const storage = new TokenStorage(store);
    await store.set(storage.keyFor(SERVER), {
      tokens: { access_token: 'at', token_type: 'Bearer', expires_in: 3600, refresh_token: 'rt' },
      clientInformation: { client_id: 'c1', client_secret_expires_at: 5 },
      savedAt: T0,
    });
    const record = await storage.read(SERVER);
    expect(record).toMatchObject({
      version: TOKEN_RECORD_VERSION,
      tokens: { access_token: 'at', refresh_token: 'rt', expires_at: T0 / 1000 + 3600 },
      client: { client_id: 'c1' },
    });
    expect(record?.tokens).not.toHaveProperty('expires_in');
    // The next write persists the new version.
    await storage.saveClient(SERVER, { client_id: 'c2' });
    expect(await store.get(storage.keyFor(SERVER))).toMatchObject({
      version: TOKEN_RECORD_VERSION,
      tokens: { refresh_token: 'rt' },
    });
  });

  it('treats a version-1 access token with unknown issue time as expired but keeps the refresh token', async () => {
    const store = memoryStore();
    const storage = new TokenStorage(store);
    await store.set(storage.keyFor(SERVER), {
      version: 1,
      tokens: { access_token: 'at', token_type: 'Bearer', expires_in: 3600, refresh_token: 'rt' },
    });
    const tokens = await storage.getTokens(SERVER);
    expect(tokens?.refresh_token).toBe('rt');
    expect(isAccessTokenExpired(tokens!)).toBe(true);
  });

  it('refuses records from a newer format instead of overwriting them', async () => {
    const store = memoryStore();
    const storage = new TokenStorage(store);
    await store.set(storage.keyFor(SERVER), { version: 99, tokens: {} });
    await expect(storage.read(SERVER)).rejects.toBeInstanceOf(RecordFormatError);
    await expect(storage.saveClient(SERVER, { client_id: 'c' })).rejects.toBeInstanceOf(RecordFormatError);
    expect(await store.get(storage.keyFor(SERVER))).toEqual({ version: 99, tokens: {} });
  });
});

describe('defaults', () => {
  it('warns once that in-memory tokens do not survive a restart', async () => {
    vi.resetModules();
    const { TokenStorage: Fresh } = await import('../../src/storage/tokens.js');
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    new Fresh();
    new Fresh();
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]?.[0])).toMatch(/will not survive a restart/);
    new Fresh(memoryStore());
    expect(warn).toHaveBeenCalledTimes(1);
    warn.mockRestore();
  });

  it('picks the platform data directory', () => {
    const home = '/home/ada';
    expect(defaultDataDirectory({}, 'linux', home)).toBe(join(home, '.local', 'share', 'gatehouse'));
    expect(defaultDataDirectory({ XDG_DATA_HOME: '/data' }, 'linux', home)).toBe(join('/data', 'gatehouse'));
    expect(defaultDataDirectory({ XDG_DATA_HOME: 'relative' }, 'linux', home)).toBe(
      join(home, '.local', 'share', 'gatehouse'),
    );
    expect(defaultDataDirectory({}, 'darwin', home)).toBe(join(home, 'Library', 'Application Support', 'gatehouse'));
    expect(defaultDataDirectory({ APPDATA: 'C:\\Users\\ada\\AppData\\Roaming' }, 'win32', home)).toBe(
      join('C:\\Users\\ada\\AppData\\Roaming', 'gatehouse'),
    );
  });
});

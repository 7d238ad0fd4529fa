import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DecryptionError,
  deriveKey,
  encryptedStore,
  fileStore,
  generateEncryptionKey,
  memoryStore,
  StorageConfigError,
  TokenStorage,
} from '../../src/storage/index.js';
import { temporaryDirectory } from './helpers.js';
import { storeSuite } from './suite.js';

const dir = await temporaryDirectory('enc');
afterAll(() => dir.remove());

const keyA = generateEncryptionKey();
const keyB = generateEncryptionKey();
const SECRET = 'rt-Very-Secret-Refresh-Token-0123456789';

storeSuite('encrypted(memory)', (namespace) => encryptedStore(memoryStore({ namespace }), { keys: [keyA] }));

/** Every byte written under a directory, as one buffer. */
async function bytesUnder(path: string): Promise<Buffer> {
  const names = await readdir(path, { recursive: true });
  const parts = await Promise.all(names.map((n) => readFile(join(path, n)).catch(() => Buffer.alloc(0))));
  return Buffer.concat(parts);
}

describe('encryptedStore', () => {
  it('never stores the plaintext (checked on the bytes on disk)', async () => {
    const inner = fileStore({ directory: dir.path, namespace: 'plain-check' });
    const storage = new TokenStorage(encryptedStore(inner, { keys: [keyA] }));
    await storage.saveTokens('https://mcp.example.com', {
      access_token: 'at-abc',
      token_type: 'Bearer',
      refresh_token: SECRET,
    });
    expect(await storage.getTokens('https://mcp.example.com')).toMatchObject({ refresh_token: SECRET });
    const bytes = await bytesUnder(inner.directory);
    expect(bytes.length).toBeGreaterThan(100);
    for (const needle of [
      SECRET,
      'at-abc',
      Buffer.from(SECRET).toString('base64'),
      Buffer.from(SECRET).toString('base64url'),
    ]) {
      expect(bytes.includes(needle)).toBe(false);
    }
    // What is stored is a JWE with dir/A256GCM.
    const raw = (await inner.get('gatehouse:client:https://mcp.example.com')) as string;
    expect(raw.split('.')).toHaveLength(5);
    expect(JSON.parse(Buffer.from(raw.split('.')[0]!, 'base64url').toString())).toMatchObject({
      alg: 'dir',
      enc: 'A256GCM',
    });
  });

  it('rotates keys: encrypts with the first, decrypts with any', async () => {
    const inner = memoryStore();
    await encryptedStore(inner, { keys: [keyA] }).set('k', { v: 'old' });
    const rotated = encryptedStore(inner, { keys: [keyB, keyA] });
    expect(await rotated.get('k')).toEqual({ v: 'old' });
    await rotated.set('k2', { v: 'new' });
    // The new value is under key B only.
    await expect(encryptedStore(inner, { keys: [keyA] }).get('k2')).rejects.toBeInstanceOf(DecryptionError);
    expect(await encryptedStore(inner, { keys: [keyB] }).get('k2')).toEqual({ v: 'new' });
  });

  it('detects a wrong key, or returns undefined when so configured', async () => {
    const inner = memoryStore();
    await encryptedStore(inner, { keys: [keyA] }).set('k', 'v');
    const wrong = encryptedStore(inner, { keys: [keyB] });
    await expect(wrong.get('k')).rejects.toMatchObject({ name: 'DecryptionError', code: 'ERR_STORAGE_DECRYPTION' });
    expect(await encryptedStore(inner, { keys: [keyB], onDecryptionError: 'undefined' }).get('k')).toBeUndefined();
  });

  it('detects tampering with the ciphertext, the tag, the header, or a value moved to another key', async () => {
    const inner = memoryStore();
    const store = encryptedStore(inner, { keys: [keyA] });
    await store.set('k', { secret: SECRET });
    const jwe = (await inner.get('k')) as string;
    const parts = jwe.split('.');
    const flip = (segment: string) => {
      const bytes = Buffer.from(segment, 'base64url');
      bytes[0] = bytes[0]! ^ 1;
      return bytes.toString('base64url');
    };
    for (const index of [0, 2, 3, 4]) {
      const tampered = parts.map((p, i) => (i === index ? flip(p) : p)).join('.');
      await inner.set('k', tampered);
      await expect(store.get('k')).rejects.toBeInstanceOf(DecryptionError);
    }
    // GCM accepts a prefix of the right tag unless told its length: a 4-byte tag is 2^32 tries from a forgery.
    for (const bytes of [4, 8, 12, 15]) {
      const cut = Buffer.from(parts[4]!, 'base64url').subarray(0, bytes).toString('base64url');
      await inner.set('k', [...parts.slice(0, 4), cut].join('.'));
      await expect(store.get('k')).rejects.toBeInstanceOf(DecryptionError);
    }
    await inner.set('other', jwe);
    await expect(store.get('other')).rejects.toThrow(/another key/);
    await inner.set('plain', { secret: 'not encrypted' });
    await expect(store.get('plain')).rejects.toBeInstanceOf(DecryptionError);
  });

  it('derives keys from a passphrase and salt', async () => {
    const inner = memoryStore();
    const options = { passphrase: 'correct horse battery staple', salt: 'gatehouse-test-salt-0001' };
    await encryptedStore(inner, options).set('k', 'v');
    expect(await encryptedStore(inner, options).get('k')).toBe('v');
    await expect(encryptedStore(inner, { ...options, passphrase: 'wrong horse' }).get('k')).rejects.toBeInstanceOf(
      DecryptionError,
    );
    // A derived key can also be rotated to a raw key.
    const derived = await deriveKey(options.passphrase, options.salt);
    expect(await encryptedStore(inner, { keys: [keyB, derived] }).get('k')).toBe('v');
  });

  it('rejects malformed keys and short salts at construction', () => {
    expect(() => encryptedStore(memoryStore(), { keys: ['too-short'] })).toThrow(StorageConfigError);
    expect(() => encryptedStore(memoryStore(), { keys: [] })).toThrow(StorageConfigError);
    expect(() => encryptedStore(memoryStore(), { passphrase: 'p' })).toThrow(StorageConfigError);
    return expect(deriveKey('p', 'short')).rejects.toThrow(StorageConfigError);
  });

  it('keeps the file store lock for update() through the encryption layer', async () => {
    const store = encryptedStore(fileStore({ directory: dir.path, namespace: 'enc-update' }), { keys: [keyA] });
    await Promise.all(
      Array.from({ length: 20 }, () => store.update!('n', (n) => ((n as number | undefined) ?? 0) + 1)),
    );
    expect(await store.get('n')).toBe(20);
  });

  it('tampering on disk is detected', async () => {
    const inner = fileStore({ directory: dir.path, namespace: 'enc-disk' });
    const store = encryptedStore(inner, { keys: [keyA] });
    await store.set('k', 'v');
    const [name] = await readdir(inner.directory);
    const file = join(inner.directory, name!);
    const record = JSON.parse(await readFile(file, 'utf8'));
    const parts = (record.value as string).split('.');
    parts[3] = `${parts[3]!.slice(0, -2)}${parts[3]!.endsWith('AA') ? 'BB' : 'AA'}`;
    record.value = parts.join('.');
    await writeFile(file, JSON.stringify(record));
    await expect(store.get('k')).rejects.toBeInstanceOf(DecryptionError);
  });
});

describe('the sealing format', () => {
  it('is standard JWE (dir, A256GCM): jose opens what we seal, and we open what jose sealed', async () => {
    const { CompactEncrypt, compactDecrypt } = await import('jose');
    const { openValue, sealingKey, sealValue } = await import('../../src/storage/encrypted.js');
    const key = sealingKey(generateEncryptionKey());
    const sealed = sealValue(key, 'entry', { secret: 'value' });
    const { plaintext, protectedHeader } = await compactDecrypt(sealed, key.bytes);
    expect(protectedHeader).toMatchObject({ alg: 'dir', enc: 'A256GCM', kid: key.kid });
    expect(JSON.parse(new TextDecoder().decode(plaintext))).toEqual({ k: 'entry', v: { secret: 'value' } });
    const byJose = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify({ k: 'entry', v: 42 })))
      .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid: key.kid })
      .encrypt(key.bytes);
    expect(openValue([key], 'entry', byJose)).toBe(42);
    expect(() => openValue([key], 'another-entry', byJose)).toThrow(/written for another key/);
  });
});

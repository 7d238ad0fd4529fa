import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

const scryptAsync = promisify(scrypt) as (password: string, salt: Buffer, keylen: number) => Promise<Buffer>;

/** An authenticated end-user as the authorization server knows them. */
export interface Account {
  /** The stable subject identifier (`sub`). */
  subject: string;
  /** Extra claims, e.g. `name`, `email`. */
  claims?: Record<string, unknown>;
}

/**
 * Checks a username and password. Return the account, or `undefined` for bad credentials (never throw for
 * those: the login page turns `undefined` into a generic "invalid username or password").
 */
export interface Authenticator {
  authenticate(username: string, password: string): Promise<Account | undefined>;
  /** Looks an account up by subject (for token claims). */
  findAccount?(subject: string): Promise<Account | undefined>;
}

/** Hashes a password with scrypt and a random salt: `scrypt$<salt b64url>$<hash b64url>`. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scryptAsync(password, salt, 32);
  return `scrypt$${salt.toString('base64url')}$${hash.toString('base64url')}`;
}

/** Checks a password against {@link hashPassword} output in constant time. */
export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const [scheme, salt, hash] = encoded.split('$');
  if (scheme !== 'scrypt' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64url');
  const actual = await scryptAsync(password, Buffer.from(salt, 'base64url'), expected.length);
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/**
 * An authenticator over a fixed set of users given as `username → password` (hashed at start, never kept in
 * clear). Unknown users still cost one hash, so timing does not reveal which usernames exist.
 *
 * @example
 * ```ts
 * import { staticUsers } from 'gatehouse/authorization-server';
 *
 * const users = await staticUsers({ alice: 'correct horse battery staple' });
 * ```
 */
export async function staticUsers(passwords: Record<string, string>): Promise<Authenticator> {
  const hashes = new Map<string, string>();
  for (const [username, password] of Object.entries(passwords)) hashes.set(username, await hashPassword(password));
  const decoy = await hashPassword(randomBytes(16).toString('hex'));
  return {
    async authenticate(username, password) {
      const ok = await verifyPassword(password, hashes.get(username) ?? decoy);
      return ok && hashes.has(username) ? { subject: username } : undefined;
    },
    async findAccount(subject) {
      return hashes.has(subject) ? { subject } : undefined;
    },
  };
}

import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { GatehouseError } from '../oauth/errors.js';

const scryptAsync = promisify(scrypt) as (password: string, salt: Buffer, keylen: number) => Promise<Buffer>;

/** An authenticated end-user as the authorization server knows them. */
export interface Account {
  /** The stable subject identifier (`sub`). */
  subject: string;
  /** Extra claims, e.g. `name`, `email`. */
  claims?: Record<string, unknown>;
  /**
   * The authentication context class this login reached, for an authenticator that checks more than a password
   * (a second factor, say). Default `urn:gatehouse:acr:password`. It becomes the tokens' `acr`.
   */
  acr?: string;
  /** The authentication methods used (RFC 8176), e.g. `['pwd', 'otp']`. Default `['pwd']`. */
  amr?: string[];
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

/** One entry of a users file. */
export interface UserRecord {
  username: string;
  /** A {@link hashPassword} hash (`scrypt$…`). Never a clear password. */
  passwordHash: string;
  /** The subject (`sub`); default the username. */
  subject?: string;
  /** Extra claims, e.g. `{ "name": "Alice", "email": "alice@example.com" }`. */
  claims?: Record<string, unknown>;
}

/** Thrown when a users file cannot be read or has the wrong shape. */
export class UsersFileError extends GatehouseError {}

/**
 * An authenticator over hashed user records (constant work for unknown users).
 *
 * @example
 * ```ts
 * const users = await hashedUsers([{ username: 'alice', passwordHash: await hashPassword('wonderland') }]);
 * ```
 */
export async function hashedUsers(records: UserRecord[]): Promise<Authenticator> {
  const byName = new Map(records.map((r) => [r.username, r]));
  const bySubject = new Map(records.map((r) => [r.subject ?? r.username, r]));
  const decoy = await hashPassword(randomBytes(16).toString('hex'));
  const account = (r: UserRecord): Account => ({ subject: r.subject ?? r.username, claims: r.claims });
  return {
    async authenticate(username, password) {
      const record = byName.get(username);
      const ok = await verifyPassword(password, record?.passwordHash ?? decoy);
      return ok && record ? account(record) : undefined;
    },
    async findAccount(subject) {
      const record = bySubject.get(subject);
      return record ? account(record) : undefined;
    },
  };
}

/**
 * Reads a users file: JSON `{ "users": [{ "username", "passwordHash", "subject"?, "claims"? }] }`, with hashes
 * made by {@link hashPassword} (`gatehouse admin users hash` prints one).
 *
 * @example
 * ```ts
 * import { usersFile } from 'gatehouse/authorization-server';
 *
 * const authenticator = await usersFile('/etc/gatehouse/users.json');
 * ```
 */
export async function usersFile(path: string): Promise<Authenticator> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (cause) {
    throw new UsersFileError(`Cannot read the users file ${path}: ${(cause as Error).message}`, {
      code: 'ERR_USERS_FILE',
      hint: usersFileHint(cause, path),
      cause,
    });
  }
  const users = (parsed as { users?: unknown })?.users;
  const valid =
    Array.isArray(users) &&
    users.every(
      (u) =>
        typeof u?.username === 'string' && typeof u?.passwordHash === 'string' && u.passwordHash.startsWith('scrypt$'),
    );
  if (!valid) {
    throw new UsersFileError(`The users file ${path} has the wrong shape`, {
      code: 'ERR_USERS_FILE',
      hint: 'Each user needs "username" and "passwordHash" (from `gatehouse admin users hash`); clear passwords are refused.',
    });
  }
  return hashedUsers(users as UserRecord[]);
}

/** A missing or unreadable file is a path or permission problem, not a format one: say which. */
function usersFileHint(cause: unknown, path: string): string {
  const code = (cause as { code?: string }).code;
  if (code === 'ENOENT')
    return `There is no file at ${resolve(path)}: check the path (relative paths start in the current directory).`;
  if (code === 'EACCES') return `Make ${resolve(path)} readable by the user running gatehouse.`;
  if (code === 'EISDIR') return `${resolve(path)} is a directory: give the users file itself.`;
  return 'Give a JSON file {"users":[{"username":"…","passwordHash":"scrypt$…"}]}.';
}

/**
 * Tries each authenticator in turn; the first account wins. For example a superuser plus a users file.
 *
 * @example
 * ```ts
 * const authenticator = anyOf(await staticUsers({ admin: process.env.ADMIN_PASSWORD! }), await usersFile('users.json'));
 * ```
 */
export function anyOf(...authenticators: Authenticator[]): Authenticator {
  return {
    async authenticate(username, password) {
      for (const a of authenticators) {
        const account = await a.authenticate(username, password);
        if (account) return account;
      }
      return undefined;
    },
    async findAccount(subject) {
      for (const a of authenticators) {
        const account = a.findAccount ? await a.findAccount(subject) : undefined;
        if (account) return account;
      }
      return undefined;
    },
  };
}

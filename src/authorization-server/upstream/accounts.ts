import { createHash } from 'node:crypto';
import type { KeyValueStore } from '../../storage/types.js';
import { UpstreamError } from './errors.js';
import type { UpstreamProfile } from './providers.js';

/**
 * Who may sign in through an upstream. Every rule given must pass.
 *
 * @example
 * ```ts
 * const admission: AdmissionRules = {
 *   allowedEmailDomains: ['example.com'],          // a verified address at one of these domains
 *   requiredClaims: { hd: 'example.com', groups: ['mcp-users', 'admins'] }, // any listed value; arrays: any element
 * };
 * ```
 */
export interface AdmissionRules {
  /** The user needs a verified email at one of these domains (exact match, case-insensitive). */
  allowedEmailDomains?: string[];
  /**
   * Claims the upstream must assert. A value (or any of a list of values) must equal the claim, or be an element of
   * it when the claim is an array; a function decides by itself.
   */
  requiredClaims?: Record<
    string,
    string | number | boolean | Array<string | number | boolean> | ((value: unknown) => boolean)
  >;
}

/** One upstream identity bound to a local account. */
export interface LinkedIdentity {
  upstream: string;
  /** The upstream's identifier of the user. */
  upstreamSubject: string;
  username?: string;
  email?: string;
  emailVerified?: boolean;
  linkedAt: number;
  lastLoginAt: number;
}

/** A local account made from upstream identities (for `gatehouse admin users list|show|unlink`). */
export interface UpstreamUser {
  version: 1;
  /** The local subject: the `sub` of the tokens Gatehouse issues. */
  subject: string;
  identities: LinkedIdentity[];
  /** Claims Gatehouse asserts for this account (from the last login). */
  claims: Record<string, unknown>;
  createdAt: number;
  updatedAt: number;
}

/** Checks `profile` against `rules`; returns a user-facing reason when refused. */
export function admissionProblem(profile: UpstreamProfile, rules: AdmissionRules | undefined): string | undefined {
  if (!rules) return undefined;
  if (rules.allowedEmailDomains?.length) {
    const domains = rules.allowedEmailDomains.map((d) => d.toLowerCase().replace(/^@/, ''));
    const email = profile.email?.toLowerCase();
    if (!email || !profile.emailVerified) return 'this service needs a verified email address, and yours is not';
    const domain = email.slice(email.lastIndexOf('@') + 1);
    if (!domains.includes(domain)) return `accounts at ${domain} are not allowed here`;
  }
  for (const [claim, rule] of Object.entries(rules.requiredClaims ?? {})) {
    const value = profile.claims[claim];
    let ok: boolean;
    if (typeof rule === 'function') ok = rule(value);
    else {
      const wanted = Array.isArray(rule) ? rule : [rule];
      const have = Array.isArray(value) ? value : [value];
      ok = have.some((v) => wanted.includes(v as never));
    }
    if (!ok) return `your account lacks the required "${claim}" attribute`;
  }
  return undefined;
}

/** The default local subject of an upstream identity: stable, opaque, and the same on every instance. */
export function defaultSubject(upstream: string, upstreamSubject: string): string {
  return `u_${createHash('sha256').update(`${upstream}\n${upstreamSubject}`).digest('base64url').slice(0, 32)}`;
}

const enc = encodeURIComponent;

/**
 * The accounts of upstream users: a stable local subject per (upstream, upstream subject), optional linking by
 * verified email, an index for listing. Keys: `user:<subject>`, `identity:<upstream>:<upstream subject>`,
 * `email:<address>`, `users`.
 */
export class UpstreamAccounts {
  readonly #store: KeyValueStore;
  readonly #linkByVerifiedEmail: boolean;
  readonly #now: () => number;
  #indexTail: Promise<unknown> = Promise.resolve();

  constructor(store: KeyValueStore, options: { linkByVerifiedEmail?: boolean; now?: () => number } = {}) {
    this.#store = store;
    this.#linkByVerifiedEmail = options.linkByVerifiedEmail ?? false;
    this.#now = options.now ?? Date.now;
  }

  async #get<T>(key: string): Promise<T | undefined> {
    return ((await this.#store.get(key)) ?? undefined) as T | undefined;
  }

  /** The account of `subject`, if any. */
  find(subject: string): Promise<UpstreamUser | undefined> {
    return this.#get<UpstreamUser>(`user:${enc(subject)}`);
  }

  /** The local subject bound to an upstream identity, if any. */
  subjectOf(upstream: string, upstreamSubject: string): Promise<string | undefined> {
    return this.#get<string>(`identity:${upstream}:${enc(upstreamSubject)}`);
  }

  /** Every account, oldest first. */
  async list(): Promise<UpstreamUser[]> {
    const subjects = (await this.#get<string[]>('users')) ?? [];
    const users = await Promise.all(subjects.map((s) => this.find(s)));
    return users.filter((u): u is UpstreamUser => u !== undefined);
  }

  #index(change: (subjects: string[]) => string[]): Promise<void> {
    const run = this.#indexTail.then(async () => {
      const subjects = (await this.#get<string[]>('users')) ?? [];
      await this.#store.set('users', change(subjects));
    });
    this.#indexTail = run.catch(() => undefined);
    return run;
  }

  /**
   * Finds or creates the local account of an upstream identity. With `linkTo`, binds the identity to that account
   * (a signed-in user linking another upstream); with linking by verified email on, a first login whose verified
   * address belongs to an account joins it.
   */
  async resolve(
    upstream: string,
    profile: UpstreamProfile,
    options: { linkTo?: string } = {},
  ): Promise<{ user: UpstreamUser; created: boolean; linked: boolean }> {
    const now = this.#now();
    const bound = await this.subjectOf(upstream, profile.subject);
    const email = profile.email?.toLowerCase();
    if (options.linkTo && bound && bound !== options.linkTo) {
      throw new UpstreamError({
        error: 'access_denied',
        reason: 'identity_conflict',
        description: `this ${upstream} identity is bound to another account`,
        userMessage: `This ${upstream} account is already linked to another user.`,
        upstream,
      });
    }
    let subject = bound ?? options.linkTo;
    let linked = Boolean(options.linkTo && !bound);
    if (!subject && this.#linkByVerifiedEmail && email && profile.emailVerified) {
      subject = await this.#get<string>(`email:${enc(email)}`);
      linked = subject !== undefined;
    }
    subject ??= defaultSubject(upstream, profile.subject);
    const existing = await this.find(subject);
    const identity: LinkedIdentity = {
      upstream,
      upstreamSubject: profile.subject,
      ...(profile.username !== undefined && { username: profile.username }),
      ...(profile.email !== undefined && { email: profile.email }),
      emailVerified: profile.emailVerified === true,
      linkedAt: existing?.identities.find((i) => i.upstream === upstream)?.linkedAt ?? now,
      lastLoginAt: now,
    };
    const claims: Record<string, unknown> = { ...existing?.claims };
    for (const [key, value] of [
      ['email', profile.email],
      ['email_verified', profile.email === undefined ? undefined : profile.emailVerified === true],
      ['name', profile.name],
      ['preferred_username', profile.username],
      ['picture', profile.picture],
    ] as const) {
      if (value !== undefined) claims[key] = value;
    }
    const user: UpstreamUser = {
      version: 1,
      subject,
      identities: [
        ...(existing?.identities ?? []).filter(
          (i) => !(i.upstream === upstream && i.upstreamSubject === profile.subject),
        ),
        identity,
      ],
      claims,
      createdAt: existing?.createdAt ?? now,
      updatedAt: now,
    };
    await this.#store.set(`user:${enc(subject)}`, user);
    await this.#store.set(`identity:${upstream}:${enc(profile.subject)}`, subject);
    if (email && profile.emailVerified && !(await this.#get<string>(`email:${enc(email)}`))) {
      await this.#store.set(`email:${enc(email)}`, subject);
    }
    if (!existing) await this.#index((subjects) => (subjects.includes(subject) ? subjects : [...subjects, subject]));
    return { user, created: !existing, linked };
  }

  /**
   * Removes one upstream identity from an account (`upstream` given), or the whole account. Returns the identities
   * removed, so the caller can delete their tokens.
   */
  async unlink(subject: string, upstream?: string): Promise<LinkedIdentity[]> {
    const user = await this.find(subject);
    if (!user) return [];
    const removed = user.identities.filter((i) => upstream === undefined || i.upstream === upstream);
    for (const identity of removed) {
      await this.#store.delete(`identity:${identity.upstream}:${enc(identity.upstreamSubject)}`);
      if (identity.email && (await this.#get<string>(`email:${enc(identity.email.toLowerCase())}`)) === subject) {
        await this.#store.delete(`email:${enc(identity.email.toLowerCase())}`);
      }
    }
    const remaining = user.identities.filter((i) => !removed.includes(i));
    if (remaining.length === 0) {
      await this.#store.delete(`user:${enc(subject)}`);
      await this.#index((subjects) => subjects.filter((s) => s !== subject));
    } else {
      await this.#store.set(`user:${enc(subject)}`, { ...user, identities: remaining, updatedAt: this.#now() });
    }
    return removed;
  }
}

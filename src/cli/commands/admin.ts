import { parseArgs } from 'node:util';
import { type Command, UsageError } from '../command.js';
import { writeErrorCauses } from '../common.js';

const USAGE = `Usage: gatehouse admin <what> <action> [id] [--store URL] [--config FILE]

Administers the store a \`gatehouse serve\` uses (the same --store / --config; default the SQLite file in the
data directory, $GATEHOUSE_DATA_DIR to change).

  gatehouse admin clients list            registered clients (id, name, redirect URIs)
  gatehouse admin clients revoke ID       delete a registered client and revoke all its grants
  gatehouse admin grants list             live grants (id, user, client, scopes)
  gatehouse admin grants revoke ID        revoke a grant and every token issued under it
  gatehouse admin keys list               signing keys: kid, alg, state (pending, active, retiring),
                                          activation time, and when a retiring key leaves the JWKS
  gatehouse admin keys rotate [--activate-in SECONDS]
                                          add a new RS256 and ES256 key: every running server publishes
                                          them within seconds and signs with them after SECONDS (default
                                          900: resource servers' cached JWKS have expired by then); the
                                          old keys stay published until their last token expires. No restart.
  gatehouse admin store rekey             re-encrypt every entry with the first key of GATEHOUSE_STORE_KEY
                                          (after listing a new at-rest key first; see "Data at rest")
  gatehouse admin store upgrade           raise the store's format to this version's, once every instance
                                          sharing it runs this version (see "Upgrading"); idempotent
  gatehouse admin users hash              read a password on stdin, print a users-file hash
  gatehouse admin users list              upstream accounts (subject, email, linked upstreams)
  gatehouse admin users show SUBJECT      one account, with its upstream identities and claims
  gatehouse admin users unlink SUBJECT [UPSTREAM]
                                          remove one upstream identity (or the whole account) and
                                          delete its stored upstream tokens

The users commands read the upstreams from --config (and GATEHOUSE_UPSTREAM_KEY), as gatehouse serve does.

Output is one JSON object per line (--json is accepted and changes nothing). --verbose prints the causes of
an error on stderr.`;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/**
 * Generated client IDs and subjects are base64url and may start with `-` (`-nX3…`): every argument that is not one of
 * our options (or its value) is passed after `--`, so parseArgs never mistakes an ID for an option.
 */
function idsAsPositionals(args: string[]): string[] {
  const options: string[] = [];
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (arg === '--store' || arg === '--config' || arg === '--activate-in')
      options.push(arg, ...(i + 1 < args.length ? [args[++i]!] : []));
    else if (/^--[a-z]/.test(arg)) options.push(arg);
    else positionals.push(arg);
  }
  return [...options, '--', ...positionals];
}

async function administer(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: idsAsPositionals(args),
    options: {
      store: { type: 'string' },
      config: { type: 'string' },
      'activate-in': { type: 'string' },
      json: { type: 'boolean' },
      verbose: { type: 'boolean' },
    },
    allowPositionals: true,
    strict: true,
  });
  const [what, action, id, ...extra] = positionals;
  const known: Record<string, string[]> = {
    clients: ['list', 'revoke'],
    grants: ['list', 'revoke'],
    keys: ['list', 'rotate'],
    store: ['rekey', 'upgrade'],
    users: ['hash', 'list', 'show', 'unlink'],
  };
  if (!what || !known[what])
    throw new UsageError(`expected clients, grants, keys, store or users, got ${what ?? 'nothing'}`);
  if (!action || !known[what]!.includes(action)) {
    throw new UsageError(`gatehouse admin ${what} takes ${known[what]!.join(' or ')}`);
  }
  const needsId = action === 'revoke' || action === 'show' || action === 'unlink';
  if (needsId && !id) throw new UsageError(`gatehouse admin ${what} ${action} needs an id`);
  const maxExtra = action === 'unlink' ? 1 : 0;
  if (extra.length > maxExtra || (!needsId && id)) throw new UsageError('unexpected extra arguments');
  const activateIn = values['activate-in'];
  if (activateIn !== undefined && !(what === 'keys' && action === 'rotate')) {
    throw new UsageError('--activate-in goes with gatehouse admin keys rotate');
  }
  if (activateIn !== undefined && !/^(0|[1-9][0-9]*)$/.test(activateIn)) {
    throw new UsageError(`--activate-in ${activateIn}: give whole seconds, e.g. --activate-in 900`);
  }

  if (what === 'users' && action !== 'hash') {
    const serve = await import('../../authorization-server/serve.js');
    const file = values.config ? await serve.readServeConfig(values.config) : {};
    const config = { ...file, ...(values.store ? { store: values.store } : {}) };
    if (!config.upstreams?.length) {
      throw new UsageError('no upstreams configured: pass --config with the "upstreams" gatehouse serve uses');
    }
    const built = await serve.buildUpstreamIdentity(config, {
      env: process.env,
      issuer: config.issuer ?? 'http://127.0.0.1:9000',
      dataDir: await serve.serveDataDirectory(),
    });
    const { identity, store } = built!;
    try {
      if (action === 'list') {
        for (const user of await identity.accounts.list()) {
          console.log(
            JSON.stringify({
              subject: user.subject,
              email: user.claims['email'],
              name: user.claims['name'],
              upstreams: user.identities.map((i) => i.upstream),
            }),
          );
        }
        return 0;
      }
      const account = await identity.findAccount(id!);
      if (!account) {
        console.error(`gatehouse admin: no upstream account ${id}\nfix: run \`gatehouse admin users list\``);
        return 1;
      }
      if (action === 'show') {
        console.log(JSON.stringify(account.user));
        return 0;
      }
      const upstreamName = extra[0];
      if (upstreamName && !account.user.identities.some((i) => i.upstream === upstreamName)) {
        console.error(
          `gatehouse admin: ${id} has no ${upstreamName} identity\nfix: linked upstreams: ${account.user.identities.map((i) => i.upstream).join(', ')}`,
        );
        return 1;
      }
      await identity.unlink(id!, upstreamName);
      if (!upstreamName) await identity.deleteForSubject(id!);
      console.log(JSON.stringify({ unlinked: id, upstream: upstreamName ?? 'all' }));
      return 0;
    } finally {
      await store.close();
    }
  }

  if (what === 'users') {
    const { hashPassword } = await import('../../authorization-server/users.js');
    const password = await readStdin();
    if (password.length < 8) throw new UsageError('the password on stdin is shorter than 8 characters');
    console.log(await hashPassword(password));
    return 0;
  }

  const serve = await import('../../authorization-server/serve.js');
  const admin = await import('../../authorization-server/admin.js');
  const file = values.config ? await serve.readServeConfig(values.config) : {};
  const storeUrl = values.store ?? file.store ?? 'sqlite:';
  const dataDir = await serve.serveDataDirectory();
  const options = serve.parseStore(storeUrl, dataDir);
  admin.assertAdministrable(options);
  const store = await serve.openStore(storeUrl, dataDir);
  try {
    if (what === 'store' && action === 'upgrade') {
      const { from, to } = await store.upgrade();
      const message =
        from === to
          ? `the store is already at format ${to}; nothing to do`
          : `the store is now at format ${to} (was ${from}): instances of an earlier version must not use it any more`;
      console.log(JSON.stringify({ format: to, previous: from, message }));
      return 0;
    }
    if (what === 'store') {
      console.log(JSON.stringify({ rekeyed: await store.rekey() }));
      return 0;
    }
    if (what === 'keys' && action === 'list') {
      const iso = (seconds: number | undefined) =>
        seconds === undefined ? undefined : seconds <= 0 ? 'always' : new Date(seconds * 1000).toISOString();
      for (const key of await admin.listStoredKeys(store, file)) {
        console.log(
          JSON.stringify({
            kid: key.kid,
            alg: key.alg,
            state: key.state,
            activates_at: iso(key.activatesAt),
            ...(key.retiredAt !== undefined && { retired_at: iso(key.retiredAt) }),
            ...(key.dropsAt !== undefined && { drops_at: iso(key.dropsAt) }),
          }),
        );
      }
      return 0;
    }
    if (what === 'keys') {
      const rotated = await admin.rotateStoredKeys(store, {
        ...(activateIn !== undefined && { activateIn: Number(activateIn) }),
      });
      const at = new Date(rotated.activatesAt * 1000).toISOString();
      console.log(JSON.stringify({ rotated: rotated.kids, activates_at: at }));
      console.error(
        `Running servers publish the new keys within seconds and sign with them from ${at}; the old keys stay published until their last token has expired. No restart needed.`,
      );
      return 0;
    }
    if (what === 'clients' && action === 'list') {
      for (const { id: clientId, payload } of await admin.listEntries(store, 'Client')) {
        console.log(
          JSON.stringify({
            client_id: clientId,
            client_name: payload['client_name'],
            application_type: payload['application_type'],
            redirect_uris: payload['redirect_uris'],
            grant_types: payload['grant_types'],
          }),
        );
      }
      return 0;
    }
    if (what === 'grants' && action === 'list') {
      for (const { id: grantId, payload } of await admin.listEntries(store, 'Grant')) {
        const resources = payload['resources'] as Record<string, string> | undefined;
        console.log(
          JSON.stringify({
            grant_id: grantId,
            account: payload['accountId'],
            client_id: payload['clientId'],
            scope: payload['openid'] ? (payload['openid'] as { scope?: string }).scope : undefined,
            resources,
            expires_at: payload['exp'],
          }),
        );
      }
      return 0;
    }
    if (what === 'clients') {
      const result = await admin.revokeClient(store, id!);
      if (!result.found && result.grants === 0) {
        console.error(
          `gatehouse admin: no registered client ${id}\nfix: run \`gatehouse admin clients list\` (clients from --config are removed there)`,
        );
        return 1;
      }
      console.log(JSON.stringify({ revoked_client: id, revoked_grants: result.grants }));
      return 0;
    }
    const accountId = ((await store('Grant').find(id!)) as { accountId?: string } | undefined)?.accountId;
    const found = await admin.revokeGrant(store, id!);
    if (!found) {
      console.error(`gatehouse admin: no grant ${id}\nfix: run \`gatehouse admin grants list\``);
      return 1;
    }
    // As the server does on grant.revoked: the user's upstream tokens go too.
    let upstreamTokens: 'deleted' | undefined;
    if (accountId && file.upstreams?.length) {
      const built = await serve.buildUpstreamIdentity(
        { ...file, store: storeUrl },
        { env: process.env, issuer: file.issuer ?? 'http://127.0.0.1:9000', dataDir },
      );
      try {
        await built!.identity.deleteForSubject(accountId);
        upstreamTokens = 'deleted';
      } finally {
        await built!.store.close();
      }
    }
    console.log(JSON.stringify({ revoked_grant: id, ...(upstreamTokens && { upstream_tokens: upstreamTokens }) }));
    return 0;
  } finally {
    await store.close();
  }
}

const command: Command = {
  summary: 'Administer an authorization server store: clients, grants, signing keys, users (hashes, upstream accounts)',
  usage: USAGE,
  async run(args) {
    try {
      return await administer(args);
    } catch (error) {
      if (args.includes('--verbose')) writeErrorCauses(error);
      throw error;
    }
  },
};
export default command;

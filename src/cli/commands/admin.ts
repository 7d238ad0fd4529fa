import { parseArgs } from 'node:util';
import { type Command, UsageError } from '../command.js';

const USAGE = `Usage: gatehouse admin <what> <action> [id] [--store URL] [--config FILE]

Administers the store a \`gatehouse serve\` uses (the same --store / --config; default the SQLite file in the
data directory, $GATEHOUSE_DATA_DIR to change).

  gatehouse admin clients list            registered clients (id, name, redirect URIs)
  gatehouse admin clients revoke ID       delete a registered client and revoke all its grants
  gatehouse admin grants list             live grants (id, user, client, scopes)
  gatehouse admin grants revoke ID        revoke a grant and every token issued under it
  gatehouse admin keys rotate             add a new signing key (servers sign with it after a restart;
                                          the previous keys stay in the JWKS)
  gatehouse admin users hash              read a password on stdin, print a users-file hash

Output is one JSON object per line.`;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

const command: Command = {
  summary: 'Administer an authorization server store: clients, grants, signing keys, user password hashes',
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      options: { store: { type: 'string' }, config: { type: 'string' } },
      allowPositionals: true,
      strict: true,
    });
    const [what, action, id, ...extra] = positionals;
    const known: Record<string, string[]> = {
      clients: ['list', 'revoke'],
      grants: ['list', 'revoke'],
      keys: ['rotate'],
      users: ['hash'],
    };
    if (!what || !known[what])
      throw new UsageError(`expected clients, grants, keys or users, got ${what ?? 'nothing'}`);
    if (!action || !known[what]!.includes(action)) {
      throw new UsageError(`gatehouse admin ${what} takes ${known[what]!.join(' or ')}`);
    }
    if (action === 'revoke' && !id) throw new UsageError(`gatehouse admin ${what} revoke needs an id`);
    if (extra.length || (action !== 'revoke' && id)) throw new UsageError('unexpected extra arguments');

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
    if (options.backend === 'memory') {
      await admin.listEntries(options, 'Client'); // throws the explanation
    }
    const store = await serve.openStore(storeUrl, dataDir);
    try {
      if (what === 'keys') {
        const rotated = await admin.rotateStoredKeys(store);
        console.log(JSON.stringify({ rotated: rotated.kid, published: rotated.kids }));
        console.error('Restart the servers to sign with the new key; tokens signed with older keys keep verifying.');
        return 0;
      }
      if (what === 'clients' && action === 'list') {
        for (const { id: clientId, payload } of await admin.listEntries(options, 'Client')) {
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
        for (const { id: grantId, payload } of await admin.listEntries(options, 'Grant')) {
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
        const result = await admin.revokeClient(store, options, id!);
        if (!result.found && result.grants === 0) {
          console.error(
            `gatehouse admin: no registered client ${id}\nfix: run \`gatehouse admin clients list\` (clients from --config are removed there)`,
          );
          return 1;
        }
        console.log(JSON.stringify({ revoked_client: id, revoked_grants: result.grants }));
        return 0;
      }
      const found = await admin.revokeGrant(store, id!);
      if (!found) {
        console.error(`gatehouse admin: no grant ${id}\nfix: run \`gatehouse admin grants list\``);
        return 1;
      }
      console.log(JSON.stringify({ revoked_grant: id }));
      return 0;
    } finally {
      await store.close();
    }
  },
};
export default command;

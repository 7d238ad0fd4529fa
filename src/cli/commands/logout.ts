import { parseArgs } from 'node:util';
import { clientFetch } from '../../client/network.js';
import { type Command, UsageError } from '../command.js';
import { CLI_EXIT, CliError, decodeJwt, GLOBAL_OPTIONS, GLOBAL_USAGE, runCommand, serverUrl } from '../common.js';
import type { Output } from '../output.js';
import { type CliStore, listRecords, openStore, type StoredRecord } from '../store-option.js';

/** What happened to one token at the revocation endpoint. */
type Revocation = 'revoked' | 'not-revocable' | 'failed' | 'no-endpoint' | 'none';

interface LogoutResult {
  server: string;
  refreshToken: Revocation;
  accessToken: Revocation;
  deleted: boolean;
  detail?: string;
}

async function revocationEndpoint(record: StoredRecord, out: Output): Promise<string | undefined> {
  const known = record.discovery?.authorizationServerMetadata?.revocation_endpoint;
  if (known) return known;
  try {
    const { discoverOAuthServerInfo } = await import('@modelcontextprotocol/client');
    const info = await discoverOAuthServerInfo(record.server, { fetchFn: clientFetch });
    const endpoint = (info.authorizationServerMetadata as { revocation_endpoint?: string } | undefined)
      ?.revocation_endpoint;
    return endpoint;
  } catch (error) {
    out.debug(`  discovery of ${record.server} failed: ${String(error)}`);
    return undefined;
  }
}

/** The authorization server refused the client's authentication (RFC 7009 §2.2.1: `invalid_client`). */
class ClientRefused extends Error {
  constructor(readonly answer: string) {
    super(answer);
  }
}

/**
 * RFC 7009 revocation of one token, authenticated as the client that holds it. Throws {@link ClientRefused} when
 * the authorization server refuses the client's credentials and `strict`.
 */
async function revoke(
  endpoint: string,
  token: string,
  hint: 'refresh_token' | 'access_token',
  client: { client_id: string; client_secret?: string; method?: string; strict: boolean },
  out: Output,
): Promise<Revocation> {
  const body = new URLSearchParams({ token, token_type_hint: hint });
  const headers: Record<string, string> = {
    'content-type': 'application/x-www-form-urlencoded',
    accept: 'application/json',
  };
  if (client.client_secret && client.method !== 'client_secret_post') {
    const encode = (s: string) => encodeURIComponent(s);
    headers['authorization'] =
      `Basic ${Buffer.from(`${encode(client.client_id)}:${encode(client.client_secret)}`).toString('base64')}`;
  } else {
    body.set('client_id', client.client_id);
    if (client.client_secret) body.set('client_secret', client.client_secret);
  }
  let response: Response;
  let text: string;
  try {
    response = await clientFetch(endpoint, { method: 'POST', headers, body, signal: AbortSignal.timeout(10_000) });
    text = await response.text();
  } catch (error) {
    out.debug(`  POST ${endpoint} failed: ${String(error)}`);
    return 'failed';
  }
  out.debug(`  POST ${endpoint} (${hint}) → ${response.status}`);
  if (response.ok) return 'revoked';
  if (/unsupported_token_type/.test(text)) return 'not-revocable';
  out.debug(`  ${text.slice(0, 300)}`);
  if (client.strict && (response.status === 401 || /invalid_client/.test(text))) {
    const answer = JSON.parse(text.startsWith('{') ? text : '{}') as { error?: unknown; error_description?: unknown };
    const error = typeof answer.error === 'string' ? answer.error : `HTTP ${response.status}`;
    const description = typeof answer.error_description === 'string' ? `: ${answer.error_description}` : '';
    throw new ClientRefused(`${error}${description}`);
  }
  return 'failed';
}

interface ClientFlags {
  'client-id'?: string;
  'client-secret'?: string;
}

async function logoutOne(cli: CliStore, record: StoredRecord, flags: ClientFlags, out: Output): Promise<LogoutResult> {
  const { withCredentialLock } = await import('../../client/credential-lock.js');
  // Under the credential lock: no other process refreshes (and stores a new token) while we revoke and delete.
  return withCredentialLock(cli.storage.keyFor(record.server), async () => {
    const current = ((await cli.storage.read(record.server)) as StoredRecord | undefined) ?? record;
    const result: LogoutResult = { server: record.server, refreshToken: 'none', accessToken: 'none', deleted: false };
    const tokens = current.tokens;
    // The client that holds the tokens: stored (dynamic registration), given again, or named in the JWT.
    const claimed = decodeJwt(tokens?.access_token)?.['client_id'];
    const client =
      (flags['client-id'] ? { client_id: flags['client-id'], client_secret: flags['client-secret'] } : undefined) ??
      current.client ??
      (typeof claimed === 'string' ? { client_id: claimed } : undefined);
    if (tokens && client) {
      const endpoint = await revocationEndpoint(current, out);
      const auth = {
        client_id: client.client_id,
        client_secret: client.client_secret,
        method: (client as { token_endpoint_auth_method?: unknown }).token_endpoint_auth_method as string | undefined,
        // A refused secret, or a client named on the command line, is the user's to fix: keep the credential
        // then. A stored public registration the authorization server refuses no longer exists there.
        strict: Boolean(client.client_secret || flags['client-id']),
      };
      if (!endpoint) {
        result.refreshToken = tokens.refresh_token ? 'no-endpoint' : 'none';
        result.accessToken = 'no-endpoint';
      } else {
        try {
          // The refresh token first: revoking it ends the grant, and with it the tokens issued from it.
          if (tokens.refresh_token)
            result.refreshToken = await revoke(endpoint, tokens.refresh_token, 'refresh_token', auth, out);
          result.accessToken = await revoke(endpoint, tokens.access_token, 'access_token', auth, out);
        } catch (error) {
          if (!(error instanceof ClientRefused)) throw error;
          // Nothing is deleted: the grant is still alive, and the stored credential is how to end it.
          throw new CliError(
            `the authorization server refused the client credentials of ${client.client_id} (${error.answer}); ` +
              `nothing was revoked or deleted for ${record.server}`,
            {
              code: 'ERR_CLIENT_REFUSED',
              hint: 'pass --client-id and the right --client-secret of the client the tokens were issued to',
            },
          );
        }
      }
      if (result.accessToken === 'not-revocable' || result.accessToken === 'failed') {
        const exp = decodeJwt(tokens.access_token)?.['exp'];
        const at = typeof exp === 'number' ? exp : tokens.expires_at;
        if (at) result.detail = `the access token stays valid until ${new Date(at * 1000).toISOString()}`;
      }
    }
    await cli.storage.delete(record.server);
    result.deleted = true;
    return result;
  });
}

function describe(result: LogoutResult): string {
  const word: Record<Revocation, string> = {
    revoked: 'revoked',
    'not-revocable': 'cannot be revoked (a self-contained JWT)',
    failed: 'revocation failed',
    'no-endpoint': 'not revoked (the authorization server has no revocation endpoint)',
    none: '',
  };
  const parts: string[] = [];
  if (result.refreshToken !== 'none') parts.push(`refresh token ${word[result.refreshToken]}`);
  if (result.accessToken !== 'none') parts.push(`access token ${word[result.accessToken]}`);
  parts.push('credentials deleted');
  return `${parts.join('; ')}${result.detail ? ` (${result.detail})` : ''}`;
}

const command: Command = {
  summary: 'Revoke the tokens at the authorization server and delete them (one server, or --all)',
  usage: `Usage: gatehouse logout <mcp-url> [options]
       gatehouse logout --all [options]

For each credential: revokes the refresh token and the access token at the authorization server's revocation
endpoint (RFC 7009) where it has one — revoking the refresh token ends the grant — then deletes the tokens, the
client registration and the cached discovery from the store. Self-contained JWT access tokens cannot be revoked:
they stay valid until they expire (the output says until when). The credentials are deleted even when the
authorization server cannot be reached, but not when it refuses the client credentials (invalid_client): then
nothing is deleted and the exit code is 1.

Options:
  --all                 every credential in the store
  --client-id ID        the pre-registered client the tokens were issued to (default: the one login stored)
  --client-secret S     its secret (a confidential client must authenticate to revoke; default: the stored one)
${GLOBAL_USAGE}

Exit codes: 0 logged out (or nothing was stored), 1 failed, 2 bad usage.

Examples:
  gatehouse logout https://mcp.example.com/mcp
  gatehouse logout --all --json`,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        ...GLOBAL_OPTIONS,
        all: { type: 'boolean' },
        'client-id': { type: 'string' },
        'client-secret': { type: 'string' },
      },
    });
    if (values.all ? positionals.length !== 0 : positionals.length !== 1) {
      throw new UsageError('expected exactly one MCP server URL, or --all');
    }
    if (values['client-secret'] && !values['client-id']) throw new UsageError('--client-secret needs --client-id');
    const only = values.all ? undefined : serverUrl(positionals[0], true);
    return runCommand('logout', values, async (out) => {
      const store = openStore(values.store);
      const records = (
        await listRecords(store, (file, error) => {
          out.note(`${out.paintErr('yellow', 'warning:')} skipped ${file}: ${(error as Error).message}`);
          const hint = (error as { hint?: string }).hint;
          if (hint) out.note(`fix: ${hint}`);
        })
      ).filter((r) => only === undefined || r.server === only);
      const results: LogoutResult[] = [];
      const refused: Array<{ server: string; error: CliError }> = [];
      for (const record of records) {
        try {
          results.push(await logoutOne(store, record, values, out));
        } catch (error) {
          // With --all, the other servers are still logged out of.
          if (!(error instanceof CliError && error.code === 'ERR_CLIENT_REFUSED')) throw error;
          refused.push({ server: record.server, error });
        }
      }
      if (values.json) out.printJson(results);
      else if (results.length === 0 && refused.length === 0) {
        out.note(only ? `Not logged in to ${only}; nothing to do.` : 'No credentials stored; nothing to do.');
      } else {
        for (const result of results) {
          const ok = result.refreshToken !== 'failed' && result.accessToken !== 'failed';
          out.print(
            `${ok ? out.paint('green', '✓') : out.paint('yellow', '!')} Logged out of ${result.server}: ${describe(result)}`,
          );
        }
      }
      if (refused.length === 1) throw refused[0]!.error;
      if (refused.length > 1) {
        throw new CliError(
          `the authorization server refused the client credentials; nothing was revoked or deleted for ${refused.map((r) => r.server).join(', ')}`,
          { code: 'ERR_CLIENT_REFUSED', hint: refused[0]!.error.hint! },
        );
      }
      return CLI_EXIT.ok;
    });
  },
};
export default command;

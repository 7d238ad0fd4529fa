import { parseArgs } from 'node:util';
import { isAccessTokenExpired, type StoredTokens } from '../../storage/tokens.js';
import { type Command, UsageError } from '../command.js';
import {
  AUTH_OPTIONS,
  AUTH_USAGE,
  CLI_EXIT,
  GLOBAL_OPTIONS,
  GLOBAL_USAGE,
  LOGIN_ENV,
  loginNeeded,
  makeOAuth,
  runCommand,
  serverUrl,
} from '../common.js';
import { openStore } from '../store-option.js';

const command: Command = {
  summary: 'Print a valid access token for an MCP server (refreshing it if needed), for scripts',
  usage: `Usage: gatehouse token <mcp-url> [options]

Prints the stored access token on stdout, refreshed first if it expires within a minute (one refresh for all
processes sharing the store). Never opens a browser: without a usable credential it exits with code 3 and says
to run \`gatehouse login\` — unless --login USER:PASSWORD (or $GATEHOUSE_LOGIN) is given, which logs in headlessly.

  curl -H "Authorization: Bearer $(gatehouse token https://mcp.example.com/mcp)" …

Options:
  --json                { access_token, token_type, expires_at, expires_in, scope } instead of the bare
                        token; expires_at in seconds since the epoch (null when the server did not say)
${AUTH_USAGE}

${GLOBAL_USAGE}

Exit codes: 0 printed, 1 failed, 2 bad usage, 3 a login is needed.`,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: { ...GLOBAL_OPTIONS, ...AUTH_OPTIONS },
    });
    if (positionals.length !== 1) throw new UsageError('expected exactly one MCP server URL');
    const url = serverUrl(positionals[0], values['allow-http']);
    return runCommand('token', values, async (out) => {
      const store = openStore(values.store);
      const oauth = await makeOAuth(url, values, { out, store, policy: 'never' });
      // oauth.tokens() refreshes a token about to expire; the stored record then has its absolute expiry.
      const stored = async () => {
        await oauth.tokens();
        return (await store.storage.read(url))?.tokens;
      };
      const usable = (t: StoredTokens | undefined): t is StoredTokens =>
        t !== undefined && !isAccessTokenExpired(t, { skewSeconds: 0 });
      let tokens = await stored();
      if (!usable(tokens)) {
        const headless = values.login !== undefined || Boolean(process.env[LOGIN_ENV]);
        if (!headless)
          throw loginNeeded(url, tokens ? 'The credential expired and could not be refreshed' : 'Not logged in');
        await oauth.authorize();
        tokens = await stored();
      }
      if (!usable(tokens)) throw loginNeeded(url, 'No valid access token');
      if (values.json) {
        const { access_token, token_type, expires_at, scope } = tokens;
        out.printJson({
          access_token,
          token_type,
          expires_at: expires_at ?? null,
          expires_in: expires_at === undefined ? null : Math.max(0, expires_at - Math.floor(Date.now() / 1000)),
          scope: scope ?? null,
        });
      } else out.print(tokens.access_token);
      return CLI_EXIT.ok;
    });
  },
};
export default command;

import { parseArgs } from 'node:util';
import { type Command, UsageError } from '../command.js';
import {
  AUTH_OPTIONS,
  AUTH_USAGE,
  CLI_EXIT,
  GLOBAL_OPTIONS,
  GLOBAL_USAGE,
  makeOAuth,
  runCommand,
  serverUrl,
  summarize,
} from '../common.js';
import { parseHeaders } from '../connect.js';
import { formatDuration } from '../output.js';
import { openStore, type StoredRecord } from '../store-option.js';

const command: Command = {
  summary: 'Log in to an MCP server (opens the browser) and store the tokens',
  usage: `Usage: gatehouse login <mcp-url> [options]

Discovers the server's authorization server, registers a client (or uses --client-id / --client-metadata-url),
and logs in: opens the browser and waits on a loopback callback (a spinner shows while it waits, on a terminal),
or with --no-browser prints the URL to open, or with --login USER:PASSWORD posts the login form itself. The tokens
are stored (see --store) for tools, call, token and proxy, and refreshed when they expire.

If a valid credential is already stored, nothing happens; --force logs in again. Several gatehouse processes
(and programs using gatehouse/client with the same store) share one login per server: while one logs in, the
others wait and then use its tokens.

Options:
  --force               log in again even if a valid credential is stored
  --header "Name: value"  an extra HTTP header on the requests to the MCP server (repeatable; \${VAR} is the
                        environment variable VAR); never sent to the authorization server
${AUTH_USAGE}

${GLOBAL_USAGE}

Exit codes: 0 logged in, 1 the login failed (the message says why and what to do), 2 bad usage.

Examples:
  gatehouse login https://mcp.example.com/mcp
  gatehouse login https://mcp.example.com/mcp --no-browser --scope "mcp:tools offline_access"
  gatehouse login --device https://mcp.example.com/mcp     # over SSH: enter the code on your laptop
  GATEHOUSE_LOGIN=demo:demo gatehouse login http://127.0.0.1:8001/mcp --store ./tokens`,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        ...GLOBAL_OPTIONS,
        ...AUTH_OPTIONS,
        force: { type: 'boolean' },
        header: { type: 'string', multiple: true },
      },
    });
    if (positionals.length !== 1) throw new UsageError('expected exactly one MCP server URL');
    const url = serverUrl(positionals[0], values['allow-http']);
    const headers = parseHeaders(values.header);
    return runCommand('login', values, async (out) => {
      const store = openStore(values.store);
      const oauth = await makeOAuth(url, values, { out, store, policy: 'always', headers });
      // Decided under the credential lock: a login that waited for another process's gets its tokens, not a login.
      const outcome = await oauth.authorize({ forceReauthorization: values.force === true });
      const record = (await store.storage.read(url)) as StoredRecord | undefined;
      if (!record?.tokens) throw new Error('the login finished but no tokens were stored');
      const summary = summarize(record);
      const fresh = outcome === 'logged-in';
      if (values.json) {
        out.printJson({ ...summary, loggedIn: true, reused: !fresh, store: store.directory });
        return CLI_EXIT.ok;
      }
      const who = summary.subject ? ` as ${out.paint('bold', summary.subject)}` : '';
      const expires = record.tokens.expires_at
        ? `, expires in ${formatDuration(record.tokens.expires_at - Date.now() / 1000)}`
        : '';
      const refresh = summary.refreshable ? ', refreshable' : ', not refreshable (log in again when it expires)';
      const mark = out.paint('green', '✓');
      out.print(
        fresh
          ? `${mark} Logged in to ${url}${who}`
          : `${mark} Already logged in to ${url}${who} (use --force to log in again)`,
      );
      out.print(
        `  issuer ${summary.issuer ?? '(unknown)'}; scopes ${summary.scopes.join(' ') || '(none)'}${expires}${refresh}`,
      );
      out.debug(`  stored in ${store.directory}`);
      return CLI_EXIT.ok;
    });
  },
};
export default command;

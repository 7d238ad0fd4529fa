import { parseArgs } from 'node:util';
import { clientFetch } from '../../client/network.js';
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
} from '../common.js';
import { parseHeaders } from '../connect.js';
import { openStore } from '../store-option.js';

const command: Command = {
  summary: 'A stdio MCP server that forwards to a remote server with OAuth (for stdio-only desktop clients)',
  usage: `Usage: gatehouse proxy <mcp-url> [options]

Speaks MCP on stdin/stdout and forwards every message, unchanged, to the remote server, adding the stored
access token (refreshed before it expires) and logging in when the server asks for it: in the browser, or with
--login USER:PASSWORD headlessly. Several proxy processes for one server share one login and one refresh: the
first one logs in while the others wait, then they all use its tokens. Logs go to stderr only.

In a desktop client's configuration (Claude Desktop, Cursor, …):

  { "mcpServers": { "example": { "command": "npx",
      "args": ["-y", "gatehouse", "proxy", "https://mcp.example.com/mcp"] } } }

Options:
  --header "Name: value"  an extra HTTP header on every request (repeatable); an Authorization header
                          replaces OAuth; \${VAR} in the value is the environment variable VAR
  --transport MODE        http-first (default: streamable HTTP, falling back to SSE when the server answers
                          404/405), sse-first, http-only, sse-only
  --no-auth               never send a token or log in
  --allow-tool GLOB       only these tools are listed and may be called (repeatable; * and ? wildcards)
  --ignore-tool GLOB      these tools are hidden and refused (repeatable; wins over --allow-tool)
${AUTH_USAGE}

${GLOBAL_USAGE}

Exit codes: 0 the client or the server closed the connection, 1 failed to start, 2 bad usage. Errors while
running are answered to the client as JSON-RPC errors and printed on stderr with their fix.`,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        ...GLOBAL_OPTIONS,
        ...AUTH_OPTIONS,
        header: { type: 'string', multiple: true },
        transport: { type: 'string' },
        'no-auth': { type: 'boolean' },
        'allow-tool': { type: 'string', multiple: true },
        'ignore-tool': { type: 'string', multiple: true },
      },
    });
    if (positionals.length !== 1) throw new UsageError('expected exactly one MCP server URL');
    const url = serverUrl(positionals[0], values['allow-http']);
    const { PROXY_STRATEGIES, runProxy, toolFilter } = await import('../proxy.js');
    const toolAllowed = toolFilter(values['allow-tool'], values['ignore-tool']);
    const strategy = (values.transport ?? 'http-first') as (typeof PROXY_STRATEGIES)[number];
    if (!PROXY_STRATEGIES.includes(strategy)) {
      throw new UsageError(`--transport must be one of ${PROXY_STRATEGIES.join(', ')}`);
    }
    const headers = parseHeaders(values.header);
    const ownAuthorization = Object.keys(headers ?? {}).some((h) => h.toLowerCase() === 'authorization');
    return runCommand('proxy', values, async (out) => {
      const store = openStore(values.store);
      const oauth =
        values['no-auth'] || ownAuthorization
          ? undefined
          : await makeOAuth(url, values, { out, store, policy: 'always', clientName: 'Gatehouse proxy' });
      out.debug(`gatehouse proxy: forwarding stdio to ${url} (${strategy}), tokens in ${store.directory}`);
      await runProxy({
        url: new URL(url),
        strategy,
        headers,
        fetch: oauth?.wrapFetch() ?? clientFetch,
        out,
        ...(toolAllowed && { toolAllowed }),
        ...(oauth === undefined && { withoutOAuth: values['no-auth'] ? '--no-auth' : '--header' }),
      });
      return CLI_EXIT.ok;
    });
  },
};
export default command;

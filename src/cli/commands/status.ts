import { parseArgs } from 'node:util';
import { type Command, UsageError } from '../command.js';
import { CLI_EXIT, GLOBAL_OPTIONS, GLOBAL_USAGE, runCommand, serverUrl, summarize } from '../common.js';
import { formatDuration, table } from '../output.js';
import { listRecords, openStore } from '../store-option.js';

const command: Command = {
  summary: 'Show every stored credential: server, issuer, subject, scopes, expiry, refreshable',
  usage: `Usage: gatehouse status [mcp-url] [options]

Lists the credentials in the store (see --store): for each server the issuer, the subject (the "sub" of the
access token), the scopes, when the access token expires, and whether it can be refreshed. Nothing is sent over
the network. With a URL, shows only that server.

${GLOBAL_USAGE}

Exit codes: 0 listed (with a URL: a usable credential, valid or refreshable, is stored), 1 failed, 2 bad usage,
3 (with a URL) no usable credential: run \`gatehouse login <url>\`.

Examples:
  gatehouse status
  gatehouse status https://mcp.example.com/mcp --json`,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: { ...GLOBAL_OPTIONS, 'allow-http': { type: 'boolean' } },
    });
    if (positionals.length > 1) throw new UsageError('expected at most one MCP server URL');
    const only = positionals[0] === undefined ? undefined : serverUrl(positionals[0], true);
    return runCommand('status', values, async (out) => {
      const store = openStore(values.store);
      const now = Date.now();
      const summaries = (
        await listRecords(store, (file, error) => {
          out.note(`${out.paintErr('yellow', 'warning:')} skipped ${file}: ${(error as Error).message}`);
          const hint = (error as { hint?: string }).hint;
          if (hint) out.note(`fix: ${hint}`);
        })
      )
        .map((record) => summarize(record, now))
        .filter((s) => only === undefined || s.server === only);
      const usable = summaries.some((s) => s.state === 'valid' || s.state === 'expired');
      const code = only !== undefined && !usable ? CLI_EXIT.loginNeeded : CLI_EXIT.ok;
      const where = await store.describe();
      if (values.json) {
        out.printJson(only === undefined ? summaries : (summaries[0] ?? null));
        return code;
      }
      if (summaries.length === 0) {
        out.note(
          only === undefined
            ? `No credentials stored in ${store.directory}.`
            : `Not logged in to ${only} (store: ${store.directory}).`,
        );
        out.note(`${out.paintErr('bold', 'fix:')} run \`gatehouse login ${only ?? '<mcp-url>'}\``);
        out.note(`Credentials: ${where}.`);
        return code;
      }
      const stateText = (s: (typeof summaries)[number]) => {
        if (s.state === 'valid') {
          const left = s.expiresAt ? `valid, ${formatDuration((Date.parse(s.expiresAt) - now) / 1000)} left` : 'valid';
          return out.paint('green', left);
        }
        if (s.state === 'expired') return out.paint('yellow', 'expired, will refresh');
        if (s.state === 'registered') return out.paint('dim', 'registered, not logged in');
        return out.paint('red', 'expired, login needed');
      };
      const rows = [
        ['SERVER', 'SUBJECT', 'ISSUER', 'SCOPES', 'EXPIRES', 'REFRESH', 'STATE'].map((h) => out.paint('bold', h)),
        ...summaries.map((s) => [
          s.server,
          s.subject ?? '-',
          s.issuer ?? '-',
          s.scopes.join(' ') || '-',
          s.expiresAt ?? '-',
          s.refreshable ? 'yes' : 'no',
          stateText(s),
        ]),
      ];
      out.print(table(rows));
      out.note(`Credentials: ${where}.`);
      return code;
    });
  },
};
export default command;

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cli, failureLines, withOpenServer } from './helpers.js';

// Mistakes of a first hour with the CLI (docs/cli.md, call / resources / tools --config): a wrong name or argument
// and a broken mcpServers file each end with one line naming the cause and a fix in terms of the CLI itself.

const EVERYTHING = fileURLToPath(
  new URL('../../node_modules/@modelcontextprotocol/server-everything/dist/index.js', import.meta.url),
);
const STDIO = ['--', process.execPath, EVERYTHING, 'stdio'];

describe('first mistakes with the CLI', () => {
  const servers = withOpenServer();

  it('an unknown tool, resource or prompt: exit 1; invalid arguments: exit 4; each fix names the listing command', {
    timeout: 60_000,
  }, async () => {
    const env = { GATEHOUSE_STORE: servers.store.dir };
    const [tool, args, resource, prompt] = await Promise.all([
      cli(['call', servers.open.mcpUrl, 'ehco', 'text=hi'], env),
      cli(['call', servers.open.mcpUrl, 'echo', 'text=hi', 'n=many'], env),
      // server-everything prints a banner on stderr first: the failure is the last two lines.
      cli(['read', 'demo://nothing-here', ...STDIO], env),
      cli(['prompt', 'no-such-prompt', ...STDIO], env),
    ]);
    const stdio = STDIO.join(' ');
    const cases = [
      [tool, 'call', /\bTool ehco not found/, `\`gatehouse tools ${servers.open.mcpUrl}\``],
      [resource, 'read', /demo:\/\/nothing-here/, `\`gatehouse resources ${stdio}\``],
      [prompt, 'prompt', /no-such-prompt/, `\`gatehouse prompts ${stdio}\``],
    ] as const;
    for (const [result, command, cause, listing] of cases) {
      const tail = { ...result, stderr: result.stderr.trimEnd().split('\n').slice(-2).join('\n') };
      const { message, fix } = failureLines(tail, command, 1);
      expect(message).toMatch(cause);
      expect(fix).toBe(`check the name and arguments against ${listing}`);
      expect(result.stdout).toBe('');
    }
    // Arguments the tool's schema refuses: the SDK server reports them as a tool error (isError), so exit 4.
    const invalid = failureLines(args, 'call', 4);
    expect(invalid.message).toMatch(/^the tool echo reported an error: .*Invalid arguments.*\bn\b/);
    expect(invalid.fix).toBe(`check the arguments against \`gatehouse tools ${servers.open.mcpUrl} --json\``);
  });

  it('tools --config: a server that fails is a warning and the others are listed; a broken file is exit 1 with a fix', {
    timeout: 60_000,
  }, async () => {
    const env = { GATEHOUSE_STORE: servers.store.dir };
    const config = join(servers.store.dir, 'mcp.json');
    await writeFile(
      config,
      JSON.stringify({ mcpServers: { open: { url: servers.open.mcpUrl }, down: { url: 'http://127.0.0.1:1/mcp' } } }),
    );
    const tools = await cli(['tools', '--config', config], env);
    expect(tools.status, tools.stderr).toBe(0);
    expect(tools.stdout).toMatch(/^open_echo\s/m);
    expect(tools.stderr.trimEnd()).toMatch(/^warning: down is unavailable: .*127\.0\.0\.1:1/);
    expect(tools.stderr.trimEnd().split('\n')).toHaveLength(1);

    const files = {
      missing: [join(servers.store.dir, 'nope.json'), null, /cannot read the configuration .*nope\.json/, /--config/],
      invalid: [
        join(servers.store.dir, 'invalid.json'),
        '{ "mcpServers": {',
        /invalid\.json is not valid JSON/,
        /JSON/,
      ],
      shapeless: [join(servers.store.dir, 'empty.json'), '{}', /has no "mcpServers" object/, /"mcpServers"/],
    } as const;
    for (const [file, text, message, fix] of Object.values(files)) {
      if (text !== null) await writeFile(file, text);
      const lines = failureLines(await cli(['tools', '--config', file], env), 'tools', 1);
      expect(lines.message).toMatch(message);
      expect(lines.fix).toMatch(fix);
    }
  });

  it('a malformed login option is bad usage (exit 2) naming the flag', async () => {
    const url = servers.open.mcpUrl;
    const cases: Array<[string[], RegExp]> = [
      [['login', url, '--login', 'no-colon'], /--login \(or \$GATEHOUSE_LOGIN\) must be USER:PASSWORD/],
      [['login', url, '--client-secret', 's'], /--client-secret needs --client-id/],
      [
        ['login', url, '--client-metadata-url', 'http://example.com/client'],
        /--client-metadata-url must be an https URL/,
      ],
      [
        ['login', url, '--client-info', '{"client_secret":"s"}'],
        /--client-info must be a JSON object with a "client_id"/,
      ],
      [
        ['login', url, '--client-info', `@${join(servers.store.dir, 'none.json')}`],
        /--client-info @\S+: cannot read the file/,
      ],
      [['login', url, '--device', '--login', 'a:b'], /--device is a login of its own/],
      [['login', url, '--login-timeout', '0'], /--login-timeout must be a positive number of seconds/],
      [['token', 'ftp://example.com/mcp'], /must be an http or https URL/],
      [['tools', 'http://example.com/mcp'], /refusing plain http to example\.com: tokens would travel unencrypted/],
    ];
    const results = await Promise.all(cases.map(([args]) => cli([...args, '--store', servers.store.dir])));
    results.forEach((result, i) => {
      const [args, message] = cases[i]!;
      const lines = failureLines(result, args[0]!, 2);
      expect(lines.message, args.join(' ')).toMatch(message);
    });
  });
});

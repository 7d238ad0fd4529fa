import { type Command, UsageError } from '../command.js';
import { CLI_EXIT } from '../common.js';
import { CONNECTING_USAGE, runConnected } from '../connect.js';

/** Tool arguments from `'{"a":1}'` or `a=1 b=text c='{"x":[1]}'` (values are JSON when they parse, else strings). */
export function parseToolArguments(items: string[]): Record<string, unknown> {
  if (items.length === 1 && items[0]!.trim().startsWith('{')) {
    let value: unknown;
    try {
      value = JSON.parse(items[0]!);
    } catch (error) {
      throw new UsageError(`the arguments are not valid JSON: ${(error as Error).message}`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new UsageError('the JSON arguments must be an object, e.g. \'{"city": "Oslo"}\'');
    }
    return value as Record<string, unknown>;
  }
  const args: Record<string, unknown> = {};
  for (const item of items) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UsageError(`expected key=value or one JSON object, got ${JSON.stringify(item)}`);
    const raw = item.slice(eq + 1);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      // not JSON: a plain string
    }
    args[item.slice(0, eq)] = value;
  }
  return args;
}

const command: Command = {
  summary: 'Call a tool of an MCP server with the stored credentials',
  usage: `Usage: gatehouse call <mcp-url> <tool> ['{"json": "object"}' | key=value ...] [options]

Calls the tool and prints its result: the text of its content (structured content as JSON), or with --json the
whole result ({ content, structuredContent, isError }). Values of key=value are parsed as JSON when they are JSON
(n=3 is a number, flag=true a boolean, s='"3"' a string) and taken as text otherwise.

If no credential is stored, a login starts when stderr is a terminal or --login is given; otherwise the command
exits with code 3 and says to run \`gatehouse login <url>\`.

${CONNECTING_USAGE}

Exit codes: 0 the tool succeeded, 1 failed (the server refused the request: unknown tool, bad arguments; or it
is unreachable), 2 bad usage, 3 a login is needed, 4 the tool reported an error, its text printed (SDK servers
report arguments that fail the input schema this way).

Examples:
  gatehouse call https://mcp.example.com/mcp whoami
  gatehouse call https://mcp.example.com/mcp forecast city=Oslo days=3
  gatehouse call https://mcp.example.com/mcp forecast '{"city": "Oslo", "days": 3}' --json`,
  async run(args) {
    const arity = {
      min: 1,
      max: Number.POSITIVE_INFINITY,
      what: 'a tool name and its arguments',
      check: (rest: string[]) => void parseToolArguments(rest.slice(1)),
    };
    return runConnected('call', args, arity, async (client, [tool, ...rest], { out, values, server: url }) => {
      const toolArgs = parseToolArguments(rest);
      const result = await client.callTool(tool!, toolArgs, { raiseOnError: false });
      if (values.json) {
        const { content, structuredContent, isError } = result;
        out.printJson({ content, structuredContent, isError });
      } else {
        const texts: string[] = [];
        for (const block of result.content) {
          if (block.type === 'text') texts.push(block.text);
          else texts.push(`[${block.type}${'mimeType' in block ? ` ${String(block.mimeType)}` : ''}]`);
        }
        if (texts.length === 0 && result.structuredContent !== undefined) {
          texts.push(JSON.stringify(result.structuredContent, null, 2));
        }
        if (result.isError) {
          out.note(`${out.paintErr('red', `gatehouse call: the tool ${tool} reported an error:`)} ${texts.join('\n')}`);
          out.note(`${out.paintErr('bold', 'fix:')} check the arguments against \`gatehouse tools ${url} --json\``);
        } else out.print(texts.join('\n'));
      }
      return result.isError ? CLI_EXIT.toolError : CLI_EXIT.ok;
    });
  },
};
export default command;

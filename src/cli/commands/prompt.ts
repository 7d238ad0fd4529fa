import { type Command, UsageError } from '../command.js';
import { CLI_EXIT } from '../common.js';
import { CONNECTING_USAGE, runConnected } from '../connect.js';

/** Prompt arguments are strings (MCP): `key=value`, the value taken as written. */
export function parsePromptArguments(items: string[]): Record<string, string> {
  const args: Record<string, string> = {};
  for (const item of items) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UsageError(`expected key=value, got ${JSON.stringify(item)}`);
    args[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return args;
}

const command: Command = {
  summary: 'Get a prompt of an MCP server, with its arguments',
  usage: `Usage: gatehouse prompt <mcp-url> <name> [key=value …] [options]
       gatehouse prompt <name> [key=value …] [options] -- COMMAND [ARGS…]

Prints the prompt's messages, one "role: text" block each (other content as [image image/png] and the like);
--json prints the whole result ({ description, messages }). Prompt arguments are strings, taken as written.

${CONNECTING_USAGE}

Exit codes: 0 printed, 1 failed (unknown prompt, missing argument, server unreachable), 2 bad usage,
3 a login is needed.`,
  async run(args) {
    const arity = {
      min: 1,
      max: Number.POSITIVE_INFINITY,
      what: 'a prompt name and its key=value arguments',
      check: (rest: string[]) => void parsePromptArguments(rest.slice(1)),
    };
    return runConnected('prompt', args, arity, async (client, [name, ...rest], { out, values }) => {
      const result = await client.getPrompt(name!, parsePromptArguments(rest));
      if (values.json) {
        out.printJson(result);
        return CLI_EXIT.ok;
      }
      for (const message of result.messages) {
        const content = message.content;
        const text =
          content.type === 'text'
            ? content.text
            : `[${content.type}${'mimeType' in content ? ` ${String(content.mimeType)}` : ''}]`;
        out.print(`${out.paint('bold', `${message.role}:`)} ${text}`);
      }
      return CLI_EXIT.ok;
    });
  },
};
export default command;

import { readdirSync, readFileSync } from 'node:fs';
import { GatehouseError } from '../oauth/errors.js';
import { type Command, EXIT, EXIT_CODES_HELP, UsageError } from './command.js';
import { explainParseError, isParseError, nearest } from './parse-errors.js';

const COMMAND_NAME = /^[a-z][a-z-]*$/;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function commandNames(): string[] {
  return readdirSync(new URL('./commands/', import.meta.url))
    .filter((file) => file.endsWith('.js'))
    .map((file) => file.slice(0, -3))
    .sort();
}

async function loadCommand(name: string): Promise<Command | undefined> {
  if (!COMMAND_NAME.test(name) || !commandNames().includes(name)) return undefined;
  return ((await import(`./commands/${name}.js`)) as { default: Command }).default;
}

async function usage(): Promise<string> {
  const lines = ['Usage: gatehouse <command> [options]', '', 'Commands:'];
  for (const name of commandNames()) {
    const command = await loadCommand(name);
    if (command) lines.push(`  ${name.padEnd(12)}${command.summary}`);
  }
  lines.push('', 'gatehouse <command> --help   details of one command', 'gatehouse --version          the version');
  lines.push('', EXIT_CODES_HELP);
  return lines.join('\n');
}

/** Global options a person may put before the command name (`gatehouse --store DIR status`). */
const GLOBAL_FLAGS = new Set(['--json', '--verbose']);
const GLOBAL_VALUES = new Set(['--store']);

/** Moves global options written before the command name to after it, where each command parses them. */
function hoistGlobals(argv: string[]): string[] {
  const globals: string[] = [];
  let i = 0;
  while (i < argv.length) {
    const arg = argv[i]!;
    const [flag] = arg.split('=', 1);
    if (GLOBAL_FLAGS.has(arg)) globals.push(arg);
    else if (GLOBAL_VALUES.has(flag!) && arg.includes('=')) globals.push(arg);
    else if (GLOBAL_VALUES.has(arg) && i + 1 < argv.length) globals.push(arg, argv[++i]!);
    else break;
    i++;
  }
  if (!globals.length || i >= argv.length) return argv;
  return [argv[i]!, ...argv.slice(i + 1), ...globals];
}

/** Runs the CLI and resolves to the exit code (see {@link EXIT}). */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = hoistGlobals(argv);
  if (name === '--version' || name === '-v') {
    console.log(version());
    return EXIT.ok;
  }
  if (!name || name === 'help' || name === '--help' || name === '-h') {
    const topic = name === 'help' ? rest[0] : undefined;
    const command = topic ? await loadCommand(topic) : undefined;
    console.log(command ? command.usage : await usage());
    return name ? EXIT.ok : EXIT.usage;
  }
  const command = await loadCommand(name);
  if (!command) {
    const guess = nearest(name, commandNames());
    const fix = guess ? `did you mean \`gatehouse ${guess}\`? ` : '';
    console.error(`gatehouse: unknown command "${name}"\nfix: ${fix}run \`gatehouse help\` for the list of commands`);
    return EXIT.usage;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(command.usage);
    return EXIT.ok;
  }
  try {
    return await command.run(rest);
  } catch (error) {
    if (error instanceof UsageError || isParseError(error)) {
      const message = isParseError(error) ? explainParseError(error, command.usage) : error.message;
      const hint = (error instanceof UsageError && error.hint) || `see \`gatehouse ${name} --help\``;
      console.error(`gatehouse ${name}: ${message}\nfix: ${hint}`);
      return EXIT.usage;
    }
    throw error;
  }
}

/** The bin entry: runs {@link main}, prints failures with their fix, and sets the exit code. */
export async function run(argv: string[]): Promise<void> {
  try {
    process.exitCode = await main(argv);
  } catch (error) {
    console.error(`gatehouse: ${error instanceof Error ? error.message : String(error)}`);
    if (error instanceof GatehouseError && error.hint) console.error(`fix: ${error.hint}`);
    process.exitCode = EXIT.failure;
  }
}

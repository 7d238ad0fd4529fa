import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cli } from './helpers.js';

// docs/cli.md and the bin agree: its table lists every command there is, each is in `gatehouse help` and has a
// `--help`, and every option of its option tables is in the help of the commands the table is for.

const docs = await readFile(fileURLToPath(new URL('../../docs/cli.md', import.meta.url)), 'utf8');

/** The first-column cells of the table right after `heading` (up to the next blank line). */
function firstColumn(heading: string): string[] {
  const start = docs.indexOf(heading);
  expect(start, heading).toBeGreaterThan(-1);
  const table = docs
    .slice(start)
    .split('\n\n')
    .find((block) => block.startsWith('|'))!;
  return table
    .split('\n')
    .slice(2)
    .map((row) => row.split('|')[1]!.trim());
}

/** The commands the bin has: one module each in src/cli/commands/, sorted. */
async function commandModules(): Promise<string[]> {
  const files = await readdir(fileURLToPath(new URL('../../src/cli/commands/', import.meta.url)));
  return files
    .filter((file) => file.endsWith('.ts'))
    .map((file) => file.slice(0, -3))
    .sort();
}

/** The `--flags` written in backticks in some cells. */
const flagsIn = (cells: string[]) => [...new Set(cells.flatMap((cell) => cell.match(/--[a-z][a-z-]*/g) ?? []))];

describe('docs/cli.md and the gatehouse bin', () => {
  it('every documented command is listed by `gatehouse help` and answers --help with its usage', async () => {
    const commands = firstColumn('| Command | What it does |').flatMap((cell) =>
      [...cell.matchAll(/`([a-z]+)(?=[ `])/g)].map((m) => m[1]!),
    );
    // The table documents every command the bin has, and no other.
    expect([...new Set(commands)].sort()).toEqual(await commandModules());
    const help = await cli(['help']);
    expect(help.status).toBe(0);
    const results = await Promise.all(commands.map((name) => cli([name, '--help'])));
    commands.forEach((name, i) => {
      expect(help.stdout, name).toMatch(new RegExp(`^  ${name}\\s`, 'm'));
      expect(results[i]!.status, name).toBe(0);
      expect(results[i]!.stdout, name).toMatch(new RegExp(`^Usage: gatehouse ${name}\\b`));
    });
  });

  it("README.md's bin row names every command too", async () => {
    const readme = await readFile(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');
    const row = readme.split('\n').find((line) => line.startsWith('| `gatehouse` (bin) |'))!;
    const named = [...row.split('|')[2]!.matchAll(/`([a-z]+)`/g)].map((m) => m[1]!);
    expect(named.sort()).toEqual(await commandModules());
  });

  it('every option of the option tables is in the help of each command the table is for', async () => {
    const tables: Array<[string, string[]]> = [
      [
        '## Login options',
        ['login', 'token', 'proxy', 'tools', 'call', 'resources', 'read', 'prompts', 'prompt', 'ping'],
      ],
      ['Connection options (', ['tools', 'call', 'resources', 'read', 'prompts', 'prompt', 'ping']],
      ['## proxy', ['proxy']],
      ['## Global options', ['login', 'status', 'token', 'logout', 'tools', 'call', 'proxy']],
    ];
    const helps = new Map<string, string>();
    for (const name of new Set(tables.flatMap(([, commands]) => commands))) {
      helps.set(name, (await cli([name, '--help'])).stdout);
    }
    const missing: string[] = [];
    for (const [heading, commands] of tables) {
      const flags = flagsIn(firstColumn(heading));
      expect(flags.length, heading).toBeGreaterThan(2);
      for (const name of commands) {
        for (const flag of flags) {
          if (!new RegExp(`${flag}(?![a-z-])`).test(helps.get(name)!)) missing.push(`${name} ${flag}`);
        }
      }
    }
    expect(missing).toEqual([]);
  });
});

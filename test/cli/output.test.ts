import { describe, expect, it } from 'vitest';
import { colourEnabled, formatDuration, painter, spinner, table } from '../../src/cli/output.js';

function fakeStream(isTTY: boolean) {
  const chunks: string[] = [];
  return {
    isTTY,
    chunks,
    write(chunk: string) {
      chunks.push(chunk);
      return true;
    },
  } as unknown as NodeJS.WriteStream & { chunks: string[] };
}

describe('CLI output', () => {
  it('colours only a TTY, and never with NO_COLOR or TERM=dumb', () => {
    expect(colourEnabled({ isTTY: true }, {})).toBe(true);
    expect(colourEnabled({ isTTY: false }, {})).toBe(false);
    expect(colourEnabled({ isTTY: true }, { NO_COLOR: '1' })).toBe(false);
    expect(colourEnabled({ isTTY: true }, { NO_COLOR: '' })).toBe(true);
    expect(colourEnabled({ isTTY: true }, { TERM: 'dumb' })).toBe(false);
    expect(painter(false)('red', 'x')).toBe('x');
    expect(painter(true)('red', 'x')).toBe('\u001b[31mx\u001b[39m');
  });

  it('draws the spinner only on a TTY', () => {
    const pipe = fakeStream(false);
    const quiet = spinner(pipe);
    quiet.start('Waiting');
    quiet.stop();
    expect(pipe.chunks).toEqual([]);

    const tty = fakeStream(true);
    const spin = spinner(tty);
    spin.start('Waiting');
    spin.stop('done');
    const text = tty.chunks.join('');
    expect(text).toContain('⠋ Waiting');
    expect(text.endsWith('done\n')).toBe(true);
  });

  it('formats durations and tables', () => {
    expect(formatDuration(42)).toBe('42 s');
    expect(formatDuration(59 * 60 + 59)).toBe('59 min');
    expect(formatDuration(3599.6)).toBe('59 min');
    expect(formatDuration(3600)).toBe('1 h');
    expect(formatDuration(3 * 3600 + 5 * 60)).toBe('3 h 5 min');
    expect(formatDuration(2 * 86_400 + 4 * 3600)).toBe('2 d 4 h');
    expect(
      table([
        ['a', 'bb', 'c'],
        ['ccc', 'd', ''],
      ]),
    ).toBe('a    bb  c\nccc  d');
    expect(
      table([
        [painter(true)('bold', 'a'), 'x'],
        ['bbb', 'y'],
      ]),
    ).toBe('\u001b[1ma\u001b[22m    x\nbbb  y');
  });
});

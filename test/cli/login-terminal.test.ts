import { execFile, execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { headlessAuthorize } from '../../src/client/headless-login.js';
import { type DemoStack, startDemoStack } from '../../src/testing/demo-stack.js';
import { BIN, cli, tempStore } from './helpers.js';

const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));
const SOCKET = `gatehouse-cli-test-${process.pid}`;

function hasTmux(): boolean {
  try {
    execFileSync('tmux', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** tmux on a private socket (its own server), run without blocking the servers in this process. */
function tmux(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('tmux', ['-L', SOCKET, ...args], { encoding: 'utf8' }, (error, stdout) =>
      error ? reject(error) : resolve(stdout),
    );
  });
}

/** Polls the pane until `predicate` holds; returns the last capture (wrapped lines joined with -J). */
async function waitForPane(predicate: (text: string) => boolean, timeoutMs = 20_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let text = '';
  while (Date.now() < deadline) {
    text = (await tmux('capture-pane', '-p', '-J', '-t', 'login')).trimEnd();
    if (predicate(text)) return text;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the terminal never showed what was expected; it shows:\n${text}`);
}

describe('gatehouse login in a terminal (tmux)', () => {
  let stack: DemoStack;
  let store: Awaited<ReturnType<typeof tempStore>>;
  beforeAll(async () => {
    // Missing tmux fails the test (never a silent skip): `bash .ci/run` installs it.
    if (!hasTmux()) throw new Error('tmux is not installed: apt-get install -y tmux');
    stack = await startDemoStack();
    store = await tempStore();
  });
  afterAll(async () => {
    await tmux('kill-server').catch(() => {});
    await Promise.all([stack?.close(), store?.cleanup()]);
  });

  it('shows the URL and a spinner while it waits for the browser, then the result', async () => {
    const command = `GATEHOUSE_STORE='${store.dir}' '${process.execPath}' '${BIN}' login ${stack.mcpUrl} --no-browser; echo "exit code $?"; sleep 60`;
    await tmux('new-session', '-d', '-s', 'login', '-x', '120', '-y', '30', command);

    const waiting = await waitForPane((text) => /[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] Waiting for the login in the browser/.test(text));
    await mkdir(ARTIFACTS, { recursive: true });
    await writeFile(new URL('cli-login-waiting.txt', `file://${ARTIFACTS}`), waiting);
    expect(waiting).toContain(`Open this URL in a browser to log in to ${stack.mcpUrl}:`);
    expect(waiting).toContain('(Ctrl-C to cancel)');

    // The spinner turns: a later capture shows another frame.
    const frame = (text: string) => /([⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]) Waiting/.exec(text)?.[1];
    const first = frame(waiting);
    await waitForPane((text) => frame(text) !== undefined && frame(text) !== first, 5_000);

    // Be the browser: log in at the URL the CLI printed, and deliver the redirect to its loopback callback.
    const url = new URL(/(http:\/\/\S+\/auth\?\S+)/.exec(waiting)![1]!);
    const callback = await headlessAuthorize(url, url.searchParams.get('redirect_uri')!, {
      username: stack.username,
      password: stack.password,
    });
    const delivered = await fetch(callback);
    expect(delivered.status).toBe(200);

    const done = await waitForPane((text) => text.includes('exit code'));
    await writeFile(new URL('cli-login-done.txt', `file://${ARTIFACTS}`), done);
    expect(done).toContain(`✓ Logged in to ${stack.mcpUrl} as demo`);
    expect(done).toContain('exit code 0');
    expect(done).not.toMatch(/Waiting for the login/); // the spinner erased its line

    const status = await cli(['status', '--json', '--store', store.dir]);
    expect(JSON.parse(status.stdout)).toEqual([expect.objectContaining({ subject: 'demo', state: 'valid' })]);
  });

  it('colours a terminal, but not with NO_COLOR', async () => {
    const run = `'${process.execPath}' '${BIN}' status --store '${store.dir}'`;
    const capture = async (name: string, command: string) => {
      await tmux('new-window', '-d', '-t', 'login', '-n', name, `${command}; echo "exit code $?"; sleep 60`);
      const deadline = Date.now() + 20_000;
      let text = '';
      while (Date.now() < deadline && !text.includes('exit code')) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        text = await tmux('capture-pane', '-p', '-e', '-J', '-t', `login:${name}`);
      }
      return text;
    };
    const coloured = await capture('colour', run);
    const plain = await capture('plain', `NO_COLOR=1 ${run}`);
    expect(coloured).toContain('\u001b[1mSERVER');
    expect(plain).toContain('SERVER');
    expect(plain).not.toContain('\u001b[');
  });

  it('gives the cursor back and exits 130 on Ctrl-C while waiting', async () => {
    const empty = await tempStore();
    try {
      const command = `GATEHOUSE_STORE='${empty.dir}' '${process.execPath}' '${BIN}' login ${stack.mcpUrl} --no-browser; echo "exit code $?"; sleep 60`;
      await tmux('new-window', '-d', '-t', 'login', '-n', 'cancel', command);
      const pane = async () => (await tmux('capture-pane', '-p', '-J', '-t', 'login:cancel')).trimEnd();
      const until = async (predicate: (text: string) => boolean) => {
        const deadline = Date.now() + 20_000;
        let text = await pane();
        while (!predicate(text) && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          text = await pane();
        }
        return text;
      };
      expect(await until((text) => text.includes('Waiting for the login'))).toContain('Waiting for the login');
      await tmux('send-keys', '-t', 'login:cancel', 'C-c');
      const text = await until((t) => t.includes('exit code'));
      expect(text).toContain('Cancelled.');
      expect(text).toContain('exit code 130');
      const raw = await tmux('capture-pane', '-p', '-e', '-t', 'login:cancel');
      expect(raw).not.toContain('Waiting for the login');
    } finally {
      await empty.cleanup();
    }
  });
});

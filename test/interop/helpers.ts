import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

/** The interop tests run against the same real AS + protected MCP server as the client OAuth tests. */
export {
  buildClientForChildren,
  type OAuthTestStack as InteropStack,
  startOAuthTestStack as startInteropStack,
  temporaryDirectory,
} from '../client/oauth-helpers.js';

/** A child process speaking line-delimited JSON on stdout, driven by lines on stdin. */
export interface Child {
  next(): Promise<Record<string, unknown>>;
  send(line: string): void;
  exited: Promise<number | null>;
  stderr(): string;
}

export function startChild(script: URL, args: string[]): Child {
  const proc = spawn(process.execPath, [script.pathname, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (c) => (err += c));
  const lines = createInterface({ input: proc.stdout });
  const queue: string[] = [];
  const waiting: Array<(line: string) => void> = [];
  lines.on('line', (line) => {
    const w = waiting.shift();
    if (w) w(line);
    else queue.push(line);
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return {
    next: () =>
      new Promise((resolve, reject) => {
        const line = queue.shift();
        if (line !== undefined) return resolve(JSON.parse(line));
        waiting.push((l) => resolve(JSON.parse(l)));
        exited.then((code) => reject(new Error(`child exited (${code}): ${err}`)));
      }),
    send: (line) => proc.stdin.write(`${line}\n`),
    exited,
    stderr: () => err,
  };
}

// The devDependency `node@22` exists only to run the MCP conformance runner (it needs Node 22), started
// explicitly as node_modules/node/bin/node. npm would also link it as node_modules/.bin/node, which puts it
// ahead of the machine's Node in every npm script and npx call: tests would silently run on Node 22 and native
// addons built for the machine's Node would fail to load. Remove that one link; keep the binary.
import { lstatSync, readlinkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';

const link = join(process.cwd(), 'node_modules', '.bin', 'node');
try {
  if (lstatSync(link).isSymbolicLink() && readlinkSync(link).includes(join('node', 'bin', 'node'))) unlinkSync(link);
} catch {
  // No link: nothing to do (e.g. installed as a dependency of another project).
}

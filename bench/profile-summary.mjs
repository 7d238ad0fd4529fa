// Summarises a V8 CPU profile (`node --cpu-prof`, or BENCH_PROFILE=DIR of bench/authorization-server.mjs): where
// the process spent its samples, by self time per function and by package or source area, and (with --inclusive)
// the total time under functions whose name matches a pattern.
//
//   node bench/profile-summary.mjs DIR/sqlite.cpuprofile [--top 30] [--inclusive seal,open,find,upsert]
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--') && !/^\d+$/.test(a));
if (!file) {
  console.error('usage: node bench/profile-summary.mjs PROFILE.cpuprofile [--top N] [--inclusive name,name]');
  process.exit(2);
}
const option = (name) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : undefined;
};
const top = Number(option('--top') ?? 25);
const inclusive = (option('--inclusive') ?? '').split(',').filter(Boolean);

const profile = JSON.parse(readFileSync(file, 'utf8'));
const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
const parent = new Map();
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

// Sample counts per node; the time deltas give each sample its duration.
const selfMicros = new Map();
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i];
  selfMicros.set(id, (selfMicros.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
}
const total = [...selfMicros.values()].reduce((a, b) => a + b, 0);

/** A short place for a script URL: the package under node_modules, or the path under dist/ or src/. */
function area(url) {
  if (!url) return '(native / V8)';
  const modules = url.lastIndexOf('node_modules/');
  if (modules >= 0) {
    const rest = url.slice(modules + 'node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  const ours = /\/(dist|src)\/(.+)$/.exec(url);
  if (ours) return `gatehouse ${ours[2]}`;
  if (url.startsWith('node:')) return url;
  return url.split('/').slice(-2).join('/');
}

const byFunction = new Map();
const byArea = new Map();
for (const [id, micros] of selfMicros) {
  const { callFrame } = nodes.get(id);
  const name = `${callFrame.functionName || '(anonymous)'}  ${area(callFrame.url)}:${callFrame.lineNumber + 1}`;
  byFunction.set(name, (byFunction.get(name) ?? 0) + micros);
  const place = callFrame.url ? area(callFrame.url) : callFrame.functionName || '(native)';
  byArea.set(place, (byArea.get(place) ?? 0) + micros);
}

const percent = (micros) => `${((micros / total) * 100).toFixed(1).padStart(5)}%`;
const print = (title, map) => {
  console.log(`\n${title}`);
  for (const [name, micros] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${percent(micros)}  ${(micros / 1000).toFixed(0).padStart(7)} ms  ${name}`);
  }
};

console.log(`${file}: ${(total / 1000).toFixed(0)} ms sampled`);
print('self time by area', byArea);
print('self time by function', byFunction);

if (inclusive.length) {
  // Time spent with a matching function anywhere on the stack (counted once per sample).
  const under = new Map(inclusive.map((name) => [name, 0]));
  for (const [id, micros] of selfMicros) {
    const seen = new Set();
    for (let at = id; at !== undefined; at = parent.get(at)) {
      const name = nodes.get(at).callFrame.functionName;
      for (const wanted of inclusive) {
        if (name === wanted && !seen.has(wanted)) {
          seen.add(wanted);
          under.set(wanted, under.get(wanted) + micros);
        }
      }
    }
  }
  print('inclusive time under', under);
}

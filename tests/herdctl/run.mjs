// herdctl on herdctl-container: herdctl's own code and tests, with this package swapped in for
// herdctl's Docker layer. Run by scripts/test-herdctl (part of scripts/test).
//
// 1. Finds herdctl's source snapshot (HERDCTL_SNAPSHOT, else ../shared/herdctl/herdctl-*.tar.gz
//    next to the repository) and fails loudly without it: this test never skips.
// 2. Unpacks it into a cache directory keyed by the snapshot's hash (never into the repository)
//    and installs @herdctl/core's dependencies with pnpm 9 from the registry, once.
// 3. Runs herdctl's vitest suite for packages/core on stock herdctl, once per snapshot (the
//    results are cached), then swaps this package in (container-runner.ts and docker-config.ts
//    become re-exports of herdctl-container, installed into herdctl's node_modules as `npm
//    install` would), applies the patches in patches/ (one: herdctl's openChatSession asks the
//    runtime it builds for `openSession` instead of refusing Docker agents; nothing else
//    changes), builds herdctl (its `npm run build`, which also type-checks its tests against our
//    types), and runs the suite again.
// 4. Every test that passes on stock herdctl must pass swapped, except those listed in
//    differences.mjs with their reason; a listed test that passes is an error too (the list must
//    stay true).
// 5. Runs real jobs and live chat sessions through herdctl's FleetManager (fleet-jobs.test.mjs,
//    fleet-sessions.test.mjs).
//
// Environment: HERDCTL_SNAPSHOT (the tarball), HERDCTL_CONTAINER_CACHE (default
// $XDG_CACHE_HOME/herdctl-container, else ~/.cache/herdctl-container).
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { DIFFERENCES, EXCLUDED } from './differences.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const NPM = path.join(REPO, 'npm');
const SWAPPED = ['container-runner.ts', 'docker-config.ts'];
// The changes to herdctl's own code beyond the swap, applied in name order with `git apply` (which
// needs no repository): each says at its top what it changes and why.
const PATCHES = fs.readdirSync(path.join(HERE, 'patches')).filter((f) => f.endsWith('.patch')).sort()
  .map((f) => path.join(HERE, 'patches', f));
/** The files of herdctl's tree (relative to it) that the patches change. */
const PATCHED = [...new Set(PATCHES.flatMap((p) =>
  [...fs.readFileSync(p, 'utf8').matchAll(/^\+\+\+ b\/(\S+)/gm)].map((m) => m[1])))];
const RUNTIME = 'packages/core/src/runner/runtime';

const started = Date.now();
const phases = [];
function phase(name, fn) {
  const t = Date.now();
  log(`${name} ...`);
  const out = fn();
  phases.push([name, (Date.now() - t) / 1000]);
  return out;
}
function log(message) {
  process.stderr.write(`test-herdctl: ${message}\n`);
}
function fail(message) {
  process.stderr.write(`\ntest-herdctl: FAILED: ${message}\n`);
  process.exit(1);
}
function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...options });
  if (r.error) fail(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  return r.status;
}
function must(cmd, args, options = {}) {
  const status = run(cmd, args, options);
  if (status !== 0) fail(`${cmd} ${args.join(' ')} exited with ${status}`);
}
const sha256 = (data) => crypto.createHash('sha256').update(data).digest('hex');

// --- 1. the snapshot ---
function findSnapshot() {
  const given = process.env.HERDCTL_SNAPSHOT;
  if (given) {
    if (!fs.existsSync(given)) fail(`HERDCTL_SNAPSHOT=${given} does not exist`);
    return path.resolve(given);
  }
  const dir = path.resolve(REPO, '..', 'shared', 'herdctl');
  const found = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /^herdctl-.*\.tar\.gz$/.test(f)) : [];
  if (found.length === 0) {
    fail(`herdctl's source snapshot is missing: expected ${dir}/herdctl-<commit>.tar.gz, or set HERDCTL_SNAPSHOT to its path. This test runs herdctl's own code and never skips.`);
  }
  if (found.length > 1) fail(`several snapshots in ${dir} (${found.join(', ')}); set HERDCTL_SNAPSHOT to one`);
  return path.join(dir, found[0]);
}

const snapshot = findSnapshot();
const key = sha256(fs.readFileSync(snapshot)).slice(0, 16);
const cache = process.env.HERDCTL_CONTAINER_CACHE ||
  path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'herdctl-container');
const keyed = path.join(cache, `herdctl-${key}`);
// One work tree per repository checkout: two checkouts testing at once must not swap each other's
// package into one tree.
const work = path.join(keyed, `work-${sha256(REPO).slice(0, 12)}`);
const tree = path.join(work, 'herdctl');
const coreDir = path.join(tree, 'packages', 'core');
fs.mkdirSync(work, { recursive: true });
log(`snapshot ${snapshot} (${key}); cache ${keyed}`);

// A lock per work tree (an atomic mkdir), taken from a dead owner.
const lock = `${work}.lock`;
function takeLock() {
  const deadline = Date.now() + 30 * 60_000;
  for (;;) {
    try {
      fs.mkdirSync(lock);
      fs.writeFileSync(path.join(lock, 'pid'), String(process.pid));
      return;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      let owner = 0;
      try {
        owner = Number(fs.readFileSync(path.join(lock, 'pid'), 'utf8'));
      } catch {
        // being written
      }
      let alive = false;
      try {
        alive = owner > 0 && (process.kill(owner, 0) || true);
      } catch {
        alive = false;
      }
      if (owner > 0 && !alive) fs.rmSync(lock, { recursive: true, force: true });
      else if (Date.now() > deadline) fail(`${lock} is held by pid ${owner} for 30 minutes`);
      else execFileSync('sleep', ['1']);
    }
  }
}
takeLock();
process.on('exit', () => fs.rmSync(lock, { recursive: true, force: true }));

// --- 2. pnpm, the tree, its dependencies ---
const pnpmDir = path.join(cache, 'pnpm');
const pnpm = path.join(pnpmDir, 'node_modules', '.bin', 'pnpm');
if (!fs.existsSync(pnpm)) {
  phase('installing pnpm 9 (npm registry)', () =>
    must('npm', ['install', '--no-audit', '--no-fund', '--silent', '--prefix', pnpmDir, 'pnpm@9']));
}
const installed = path.join(work, '.installed');
if (!fs.existsSync(installed)) {
  phase('unpacking herdctl and installing @herdctl/core\'s dependencies', () => {
    fs.rmSync(tree, { recursive: true, force: true });
    must('tar', ['-xzf', snapshot, '-C', work]);
    if (!fs.existsSync(coreDir)) fail(`${snapshot} has no herdctl/packages/core`);
    must(pnpm, ['install', '--frozen-lockfile', '--filter', '@herdctl/core...', '--ignore-scripts',
      '--store-dir', path.join(cache, 'pnpm-store'), '--reporter', 'append-only'], { cwd: tree });
    fs.writeFileSync(installed, new Date().toISOString());
  });
}

/** A file of herdctl's tree (relative to it) as the snapshot has it. */
function restoreFile(rel) {
  const text = execFileSync('tar', ['-xzf', snapshot, '-O', `herdctl/${rel}`]);
  fs.writeFileSync(path.join(tree, rel), text);
}

/** The swapped and the patched files as the snapshot has them. */
function restoreStock() {
  for (const f of SWAPPED) restoreFile(`${RUNTIME}/${f}`);
  for (const rel of PATCHED) restoreFile(rel);
  fs.rmSync(path.join(coreDir, 'node_modules', 'herdctl-container'), { recursive: true, force: true });
}

// --- 3. herdctl's suite, stock (once per snapshot) and swapped ---
const VITEST = path.join(coreDir, 'node_modules', '.bin', 'vitest');
/** Runs herdctl's vitest suite (or some of its files); returns its JSON report. */
function vitest(outFile, files = []) {
  fs.rmSync(outFile, { force: true });
  // The exit code says whether any test failed; the report says which.
  run(VITEST, ['run', '--reporter=json', `--outputFile=${outFile}`, '--testNamePattern', EXCLUDED.pattern, ...files], {
    cwd: coreDir, stdio: ['ignore', 'ignore', 'inherit'],
  });
  if (!fs.existsSync(outFile)) fail(`vitest wrote no report (${outFile})`);
  return JSON.parse(fs.readFileSync(outFile, 'utf8'));
}

/**
 * The suite with its failing files run once more: some of herdctl's tests are timed (its
 * scheduler's) and fail on a busy machine. A test counts as passing when it passed in either run;
 * `flaky` lists those that needed the second.
 */
function vitestTwice(outFile) {
  const first = vitest(outFile);
  const failing = first.testResults
    .filter((f) => f.status === 'failed')
    .map((f) => path.relative(coreDir, f.name));
  if (failing.length === 0) return first;
  log(`running ${failing.length} file(s) with failures once more: ${failing.join(', ')}`);
  const again = vitest(`${outFile}.again`, failing);
  const passedAgain = new Set();
  for (const f of again.testResults) {
    for (const a of f.assertionResults) if (a.status === 'passed') passedAgain.add(`${f.name} > ${a.fullName}`);
  }
  first.flaky = [];
  for (const f of first.testResults) {
    for (const a of f.assertionResults) {
      if (a.status === 'failed' && passedAgain.has(`${f.name} > ${a.fullName}`)) {
        a.status = 'passed';
        first.flaky.push(`${path.relative(coreDir, f.name)} > ${a.fullName}`);
      }
    }
  }
  return first;
}

const stockFile = path.join(keyed, 'stock.json');
if (!fs.existsSync(stockFile)) {
  phase('herdctl\'s tests on stock herdctl (once per snapshot)', () => {
    restoreStock();
    const tmp = `${stockFile}.${process.pid}`;
    fs.writeFileSync(tmp, JSON.stringify(vitestTwice(tmp)));
    fs.rmSync(`${tmp}.again`, { force: true });
    fs.renameSync(tmp, stockFile);
  });
}

phase('swapping herdctl-container in', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(NPM, 'package.json'), 'utf8'));
  const node = fs.readdirSync(NPM).filter((f) => f.endsWith('.node'));
  if (node.length === 0) fail('the addon is not built: run `npm run build` in npm/ first (npm test does)');
  const dest = path.join(coreDir, 'node_modules', 'herdctl-container');
  fs.rmSync(dest, { recursive: true, force: true });
  fs.mkdirSync(dest, { recursive: true });
  // What `npm install herdctl-container` puts there: package.json and its `files`.
  for (const f of ['package.json', ...pkg.files.filter((f) => !f.includes('*')), ...node]) {
    fs.copyFileSync(path.join(NPM, f), path.join(dest, f));
  }
  for (const f of SWAPPED) {
    fs.copyFileSync(path.join(HERE, 'swap', f), path.join(tree, RUNTIME, f));
  }
  // From the stock text every time: a patch applies once.
  for (const rel of PATCHED) restoreFile(rel);
  // Outside any repository: git would otherwise apply paths relative to one found above the tree.
  const env = { ...process.env, GIT_CEILING_DIRECTORIES: work };
  for (const p of PATCHES) must('git', ['apply', p], { cwd: tree, env });
});

const builtStamp = path.join(work, '.built');
const buildInputs = sha256([
  ...SWAPPED.map((f) => fs.readFileSync(path.join(HERE, 'swap', f))),
  ...PATCHES.map((p) => fs.readFileSync(p)),
  ...['index.d.ts', 'binding.d.ts', 'index.mjs', 'index.js', 'binding.js'].map((f) => fs.readFileSync(path.join(NPM, f))),
].join('\0'));
if (!fs.existsSync(builtStamp) || fs.readFileSync(builtStamp, 'utf8') !== buildInputs) {
  phase('building herdctl with the swap (npm run build: tsc over its sources and tests)', () => {
    fs.rmSync(builtStamp, { force: true });
    must('npm', ['run', 'build'], { cwd: coreDir });
    fs.writeFileSync(builtStamp, buildInputs);
  });
}

const swapped = phase('herdctl\'s tests with herdctl-container swapped in', () => vitestTwice(path.join(work, 'swapped.json')));
const stock = JSON.parse(fs.readFileSync(stockFile, 'utf8'));

// --- 4. the comparison ---
/**
 * A test file's name relative to the package it ran in. The stock report is cached once per
 * snapshot, so it may come from another checkout's work tree: the part before the package is
 * dropped, not taken as this tree's.
 */
function inCore(name) {
  const mark = `${path.sep}herdctl${path.sep}packages${path.sep}core${path.sep}`;
  const at = name.lastIndexOf(mark);
  return at >= 0 ? name.slice(at + mark.length) : path.relative(coreDir, name);
}

/** `file > full name` to status, and failure messages. */
function results(report) {
  const out = new Map();
  for (const file of report.testResults) {
    const rel = inCore(file.name);
    for (const a of file.assertionResults) {
      out.set(`${rel} > ${a.fullName}`, { status: a.status, failure: (a.failureMessages || []).join('\n') });
    }
    if (file.assertionResults.length === 0 && file.status === 'failed') {
      out.set(`${rel} > (the file)`, { status: 'failed', failure: file.message || '' });
    }
  }
  return out;
}
const before = results(stock);
const after = results(swapped);
const listed = new Map(DIFFERENCES.map((d) => [`${d.file} > ${d.test}`, d]));
const unexpected = [];
const stale = [];
const regressed = [];
for (const [id, r] of before) {
  if (r.status !== 'passed') continue;
  const now = after.get(id);
  if (now && now.status === 'passed') {
    if (listed.has(id)) stale.push(id);
    continue;
  }
  if (listed.has(id)) regressed.push(id);
  else unexpected.push([id, now ? now.failure : 'not run swapped']);
}
for (const id of listed.keys()) {
  if (!before.has(id) || before.get(id).status !== 'passed') stale.push(`${id} (not a stock-passing test)`);
}
const count = (m, s) => [...m.values()].filter((r) => r.status === s).length;
log(`stock: ${count(before, 'passed')} passed, ${count(before, 'failed')} failed; swapped: ${count(after, 'passed')} passed, ${count(after, 'failed')} failed; excluded: ${EXCLUDED.reason}`);
for (const [what, report] of [['stock', stock], ['swapped', swapped]]) {
  for (const id of report.flaky || []) log(`  passed on the second run (${what}): ${id}`);
}
for (const id of regressed) {
  const d = listed.get(id);
  log(`  differs (${d.kind}): ${id}\n      ${d.reason}`);
}
if (unexpected.length > 0) {
  fail(`${unexpected.length} test(s) pass on stock herdctl and fail with herdctl-container, and differences.mjs does not list them:\n` +
    unexpected.map(([id, f]) => `  ${id}\n      ${f.split('\n').slice(0, 4).join('\n      ')}`).join('\n'));
}
if (stale.length > 0) fail(`differences.mjs lists tests that do not differ; remove them:\n  ${stale.join('\n  ')}`);

// --- 5. real jobs and live sessions through herdctl's FleetManager ---
const FLEET_TESTS = ['fleet-jobs.test.mjs', 'fleet-sessions.test.mjs'].map((f) => path.join(HERE, f));
const fleetStatus = phase('real jobs and live sessions through herdctl\'s FleetManager', () =>
  run(process.execPath, ['--test', '--test-concurrency=1', ...FLEET_TESTS], {
    env: { ...process.env, HERDCTL_CORE: coreDir },
  }));
for (const [name, s] of phases) log(`  ${s.toFixed(1)} s  ${name}`);
log(`total ${((Date.now() - started) / 1000).toFixed(1)} s`);
if (fleetStatus !== 0) fail('the FleetManager jobs or sessions failed (above)');
log('ok');

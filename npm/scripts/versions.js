'use strict';
// One version for everything a release ships: the npm package (the source of truth), its platform
// packages (platforms/*), and the Rust crates (the CLI reports the crate's version).
//
//   node scripts/versions.js --check   fails, naming each file, when one is out of step
//   node scripts/versions.js --write   sets them all to npm/package.json's version (npm runs it
//                                      as the `version` script, after `npm version X` bumped it)
//
// Every napi target must have its folder in platforms/ and every folder must be a target: the
// optional dependencies that scripts/package writes come from that list.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const REPO = path.join(__dirname, '..', '..');
const NPM = path.join(REPO, 'npm');
const PLATFORMS = path.join(REPO, 'platforms');
const CRATES = [path.join(REPO, 'Cargo.toml'), path.join(REPO, 'bindings', 'node', 'Cargo.toml')];

/** napi's name for a Rust target triple: `x86_64-unknown-linux-gnu` -> `linux-x64-gnu`. */
function tagOf(triple) {
  const arch = { x86_64: 'x64', aarch64: 'arm64' }[triple.split('-')[0]];
  const m = /-linux-(gnu|musl)$/.exec(triple);
  if (!arch || !m) throw new Error(`versions: no platform name for the target ${triple}; add it to tagOf()`);
  return `linux-${arch}-${m[1]}`;
}

function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/** The package's version, its targets as {tag, triple}, and the platform folders. */
function layout() {
  const pkg = readJson(path.join(NPM, 'package.json'));
  const targets = pkg.napi.targets.map((triple) => ({ triple, tag: tagOf(triple) }));
  const folders = fs.readdirSync(PLATFORMS, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
  return { pkg, version: pkg.version, targets, folders };
}

/** The `version = "..."` of a Cargo.toml's [package] table. */
function crateVersion(text) {
  const m = /^\[package\][^[]*?^version\s*=\s*"([^"]+)"/m.exec(text);
  return m && m[1];
}

/** Every disagreement with npm/package.json's version, as one line each. */
function problems() {
  const { version, targets, folders } = layout();
  const out = [];
  for (const { tag, triple } of targets) {
    if (!folders.includes(tag)) out.push(`platforms/${tag}/ is missing (napi target ${triple})`);
  }
  for (const folder of folders) {
    if (!targets.some((t) => t.tag === folder)) out.push(`platforms/${folder}/ is not in npm/package.json's napi.targets`);
    const file = path.join(PLATFORMS, folder, 'package.json');
    const p = readJson(file);
    if (p.name !== `herdctl-container-${folder}`) out.push(`${path.relative(REPO, file)}: name ${p.name}, expected herdctl-container-${folder}`);
    if (p.version !== version) out.push(`${path.relative(REPO, file)}: version ${p.version}, expected ${version}`);
  }
  for (const file of CRATES) {
    const v = crateVersion(fs.readFileSync(file, 'utf8'));
    if (v !== version) out.push(`${path.relative(REPO, file)}: version ${v}, expected ${version}`);
  }
  return out;
}

/** Throws, listing every file out of step. */
function check() {
  const found = problems();
  if (found.length > 0) {
    throw new Error(`versions out of step with npm/package.json (fix with \`node npm/scripts/versions.js --write\`):\n  ${found.join('\n  ')}`);
  }
  return layout();
}

/** Sets every version to npm/package.json's, then Cargo.lock's entries for the workspace. */
function write() {
  const { version, folders } = layout();
  for (const folder of folders) {
    const file = path.join(PLATFORMS, folder, 'package.json');
    const text = fs.readFileSync(file, 'utf8');
    fs.writeFileSync(file, text.replace(/^(\s*"version":\s*)"[^"]*"/m, `$1"${version}"`));
  }
  for (const file of CRATES) {
    const text = fs.readFileSync(file, 'utf8');
    fs.writeFileSync(file, text.replace(/^(\[package\][^[]*?^version\s*=\s*)"[^"]*"/m, `$1"${version}"`));
  }
  execFileSync('cargo', ['update', '--workspace', '--offline'], { cwd: REPO, stdio: 'inherit' });
}

if (require.main === module) {
  try {
    if (process.argv.includes('--write')) write();
    check();
  } catch (e) {
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
  }
}

module.exports = { check, problems, tagOf, layout, REPO, NPM, PLATFORMS };

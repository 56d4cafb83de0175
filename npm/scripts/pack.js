'use strict';
// Packs what a release ships to npm, the way `napi pre-publish` lays it out: the main package
// (`herdctl-container`, with one optional dependency per platform package) and this machine's
// platform package (`herdctl-container-linux-x64-gnu`: the addon and the CLI binary).
//
//   node scripts/pack.js --out DIR --addon FILE --cli FILE
//       stages both packages in a temp folder, checks them, and `npm pack`s them into DIR
//       (scripts/package builds the addon and the CLI, then runs this)
//   node scripts/pack.js --prepack
//       npm's prepack in npm/ and platforms/*/: refuses to pack a package that lacks what it
//       ships (the main package always does here: its optional dependencies are written at staging)
//
// The checks: versions in step, the addon and the CLI present, for this platform's CPU, stripped
// (no debug info, no symbol table), the addon at most 3 MB, and their newest glibc symbol no newer
// than the floor the package states (platform.js's GLIBC_FLOOR).
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const versions = require('./versions.js');
const { platformTag, GLIBC_FLOOR } = require('../platform.js');

const NAME = 'herdctl-container';
/** The addon's size limit (issue 13): a stripped release build (fat LTO) is about 2.8 MB. */
const ADDON_MAX_BYTES = 3 * 1024 * 1024;
/** ELF e_machine of each npm cpu. */
const MACHINES = { x64: 62, arm64: 183 };
/** What the main package leaves out of the packed package.json. */
const DEV_ONLY = ['scripts', 'devDependencies', '//'];

const fail = (message) => {
  throw new Error(`pack: ${message}`);
};

/**
 * The parts of a 64-bit little-endian ELF file that the checks read: its machine, its section
 * names, and the glibc versions its dynamic symbols need (`.gnu.version_r`).
 */
function readElf(file) {
  const b = fs.readFileSync(file);
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46) fail(`${file} is not an ELF file`);
  if (b[4] !== 2 || b[5] !== 1) fail(`${file} is not a 64-bit little-endian ELF file`);
  const machine = b.readUInt16LE(18);
  const shoff = Number(b.readBigUInt64LE(0x28));
  const shentsize = b.readUInt16LE(0x3a);
  const shnum = b.readUInt16LE(0x3c);
  const shstrndx = b.readUInt16LE(0x3e);
  const sections = [];
  for (let i = 0; i < shnum; i++) {
    const at = shoff + i * shentsize;
    sections.push({
      nameAt: b.readUInt32LE(at),
      type: b.readUInt32LE(at + 4),
      offset: Number(b.readBigUInt64LE(at + 0x18)),
      size: Number(b.readBigUInt64LE(at + 0x20)),
      link: b.readUInt32LE(at + 0x28),
    });
  }
  const cstr = (at) => b.toString('latin1', at, b.indexOf(0, at));
  const names = sections[shstrndx];
  for (const s of sections) s.name = cstr(names.offset + s.nameAt);
  // SHT_GNU_verneed: per needed library, entries naming the symbol versions used from it.
  const glibc = [];
  const verneed = sections.find((s) => s.type === 0x6ffffffe);
  if (verneed) {
    const strtab = sections[verneed.link].offset;
    for (let need = verneed.offset, more = true; more; ) {
      const count = b.readUInt16LE(need + 2);
      for (let i = 0, aux = need + b.readUInt32LE(need + 8); i < count; i++) {
        const m = /^GLIBC_(\d+(?:\.\d+)+)$/.exec(cstr(strtab + b.readUInt32LE(aux + 8)));
        if (m) glibc.push(m[1]);
        aux += b.readUInt32LE(aux + 12);
      }
      const next = b.readUInt32LE(need + 12);
      more = next !== 0;
      need += next;
    }
  }
  const newest = glibc.sort(compareVersions).at(-1);
  return { machine, sections: sections.map((s) => s.name), glibc: newest, bytes: b.length };
}

function compareVersions(a, b) {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] || 0) - (pb[i] || 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** Checks one shipped binary; returns what was measured. */
function checkBinary(file, cpu, what) {
  if (!fs.existsSync(file)) fail(`${what} ${file} is missing: run scripts/package (it builds and packs)`);
  const elf = readElf(file);
  if (elf.machine !== MACHINES[cpu]) fail(`${what} ${file} is for ELF machine ${elf.machine}, not ${cpu}`);
  const unstripped = elf.sections.filter((s) => s.startsWith('.debug') || s === '.symtab');
  if (unstripped.length > 0) fail(`${what} ${file} is not stripped (${unstripped.join(', ')}): build with the release profile`);
  if (elf.glibc && compareVersions(elf.glibc, GLIBC_FLOOR) > 0) {
    fail(`${what} ${file} needs glibc ${elf.glibc}, newer than the ${GLIBC_FLOOR} the package states (platform.js GLIBC_FLOOR, README, platforms/*/package.json)`);
  }
  return elf;
}

/** A platform package's folder holds its addon and CLI, and they pass the checks. */
function checkPlatformPackage(dir) {
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const cpu = pkg.cpu[0];
  if (!pkg.description.includes(`glibc ${GLIBC_FLOOR}`)) fail(`${pkg.name}'s description does not state glibc ${GLIBC_FLOOR}`);
  const addon = checkBinary(path.join(dir, pkg.main), cpu, 'addon');
  if (addon.bytes > ADDON_MAX_BYTES) fail(`addon ${pkg.main} is ${addon.bytes} bytes, over the ${ADDON_MAX_BYTES} limit`);
  const cli = checkBinary(path.join(dir, NAME), cpu, 'CLI');
  if ((fs.statSync(path.join(dir, NAME)).mode & 0o111) === 0) fail(`the CLI ${path.join(dir, NAME)} is not executable`);
  return { addon, cli };
}

/** The main package's folder is complete: generated binding files, every optional dependency. */
function checkMainPackage(dir, { version, targets }) {
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  for (const file of ['binding.js', 'binding.d.ts']) {
    if (!fs.existsSync(path.join(dir, file))) fail(`${file} is missing: run \`npm run build\` in npm/ first`);
  }
  const optional = pkg.optionalDependencies || {};
  const missing = targets.filter(({ tag }) => optional[`${NAME}-${tag}`] !== version);
  if (missing.length > 0) {
    fail(
      `the package lacks its platform packages as optional dependencies (${missing.map((t) => `${NAME}-${t.tag}@${version}`).join(', ')}); ` +
        'npm pack in npm/ would ship a package without its addon. Run scripts/package: it stages the package with them and packs it',
    );
  }
}

function copy(from, to, mode) {
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.copyFileSync(from, to);
  if (mode) fs.chmodSync(to, mode);
}

/** `npm pack` of a staged folder into `out`; returns the tarball's path. */
function npmPack(dir, out) {
  const text = execFileSync('npm', ['pack', '--json', '--pack-destination', out], { cwd: dir, encoding: 'utf8' });
  return path.join(out, JSON.parse(text)[0].filename);
}

function stageAndPack({ out, addon, cli }) {
  const layout = versions.check();
  const tag = platformTag();
  const target = layout.targets.find((t) => t.tag === tag);
  if (!target) fail(`no platform package for this machine (${tag}); napi.targets has ${layout.targets.map((t) => t.tag).join(', ')}`);
  fs.mkdirSync(out, { recursive: true });
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'herdctl-container-pack-'));
  try {
    // The main package: its `files`, and a package.json with the optional dependencies.
    const main = path.join(stage, 'main');
    const pkg = JSON.parse(fs.readFileSync(path.join(versions.NPM, 'package.json'), 'utf8'));
    for (const file of pkg.files) copy(path.join(versions.NPM, file), path.join(main, file));
    for (const key of DEV_ONLY) delete pkg[key];
    pkg.optionalDependencies = Object.fromEntries(layout.targets.map((t) => [`${NAME}-${t.tag}`, layout.version]));
    fs.writeFileSync(path.join(main, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
    checkMainPackage(main, layout);

    // This machine's platform package: its package.json and README, the addon and the CLI.
    const platform = path.join(stage, tag);
    const source = path.join(versions.PLATFORMS, tag);
    const ppkg = JSON.parse(fs.readFileSync(path.join(source, 'package.json'), 'utf8'));
    delete ppkg.scripts;
    fs.mkdirSync(platform);
    fs.writeFileSync(path.join(platform, 'package.json'), `${JSON.stringify(ppkg, null, 2)}\n`);
    copy(path.join(source, 'README.md'), path.join(platform, 'README.md'));
    copy(addon, path.join(platform, ppkg.main), 0o755);
    copy(cli, path.join(platform, NAME), 0o755);
    const measured = checkPlatformPackage(platform);

    const tarballs = [npmPack(main, out), npmPack(platform, out)];
    for (const t of tarballs) process.stdout.write(`pack: ${t} (${fs.statSync(t).size} bytes)\n`);
    process.stdout.write(
      `pack: ${tag}: addon ${measured.addon.bytes} bytes, CLI ${measured.cli.bytes} bytes, ` +
        `glibc ${measured.addon.glibc} and ${measured.cli.glibc} (floor stated: ${GLIBC_FLOOR})\n`,
    );
    return tarballs;
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

function prepack() {
  const dir = process.cwd();
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  if (pkg.name === NAME) checkMainPackage(dir, versions.check());
  else checkPlatformPackage(dir);
}

function arg(name) {
  const i = process.argv.indexOf(name);
  if (i < 0 || !process.argv[i + 1]) fail(`expected ${name} VALUE`);
  return path.resolve(process.argv[i + 1]);
}

if (require.main === module) {
  try {
    if (process.argv.includes('--prepack')) prepack();
    else stageAndPack({ out: arg('--out'), addon: arg('--addon'), cli: arg('--cli') });
  } catch (e) {
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
  }
}

module.exports = { readElf, checkPlatformPackage, ADDON_MAX_BYTES };

'use strict';
// The release as a user gets it (issue 13): scripts/package's tarballs installed into a fresh
// folder by npm, offline, with a PATH that has node and npm but no cargo or rustc; then used from
// CommonJS, ESM, the CLI (`npx herdctl-container`) and TypeScript (node16, nodenext and bundler
// resolution, CJS and ESM consumers), with real jobs in the test image. Also: what the tarballs
// and the .crate hold, the addon's size and glibc floor (objdump), the crates' rust-version
// against their dependencies, `npm pack` refusing an incomplete package, and the errors on a
// platform without an addon.
//
//   scripts/package --out DIR && HERDCTL_PACKAGES=DIR node --test npm/test/packaged/
//
// scripts/test runs it after scripts/package. Not in `npm test`'s glob: it needs the tarballs.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { IMAGE, prepareImage, run } = require('../helpers/image.js');

const REPO = path.join(__dirname, '..', '..', '..');
const NPM = path.join(REPO, 'npm');
const PACKAGES = path.resolve(process.env.HERDCTL_PACKAGES || path.join(REPO, 'dist'));
const VERSION = require('../../package.json').version;
const { platformTag, GLIBC_FLOOR, PREBUILT } = require('../../platform.js');
const TAG = platformTag();
const PLATFORM_PKG = `herdctl-container-${TAG}`;
const ADDON = `herdctl-container.${TAG}.node`;
/** The addon's size limit (issue 13). */
const ADDON_MAX_BYTES = 3 * 1024 * 1024;
/** The Rust the tests need (Cargo.toml and README say so): tempfile's getrandom is edition 2024. */
const TESTS_RUST = '1.85';
const TSC = path.join(NPM, 'node_modules', 'typescript', 'bin', 'tsc');

const tarball = (name) => {
  const file = path.join(PACKAGES, name);
  assert.ok(fs.existsSync(file), `${file} is missing: run scripts/package --out ${PACKAGES} first`);
  return file;
};
const MAIN_TGZ = tarball(`herdctl-container-${VERSION}.tgz`);
const PLATFORM_TGZ = tarball(`${PLATFORM_PKG}-${VERSION}.tgz`);
const CRATE = tarball(`herdctl-container-${VERSION}.crate`);

const runId = `packaged-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'herdctl-packaged-'));
const app = path.join(root, 'app');
const installed = path.join(app, 'node_modules', 'herdctl-container');
const installedPlatform = path.join(app, 'node_modules', PLATFORM_PKG);

/** A PATH with node, npm, npx and sh only: whatever runs from it cannot reach a Rust toolchain. */
function bareEnv() {
  const bin = path.join(root, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  const which = (cmd) => execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim();
  for (const [name, target] of [['node', process.execPath], ['npm', which('npm')], ['npx', which('npx')], ['sh', which('sh')]]) {
    fs.symlinkSync(fs.realpathSync(target), path.join(bin, name));
  }
  const home = path.join(root, 'home');
  fs.mkdirSync(home);
  const userconfig = path.join(home, '.npmrc');
  fs.writeFileSync(userconfig, '');
  const env = {
    PATH: bin,
    HOME: home,
    TMPDIR: os.tmpdir(),
    // No registry: the tarballs are all there is (the other platform's optional dependency is
    // skipped, as on a machine of this platform).
    npm_config_offline: 'true',
    npm_config_cache: path.join(root, 'npm-cache'),
    npm_config_userconfig: userconfig,
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
  };
  if (process.env.DOCKER_HOST) env.DOCKER_HOST = process.env.DOCKER_HOST;
  return env;
}
const env = bareEnv();

/** Runs `cmd args` in the app folder with the bare environment. */
function inApp(cmd, args, { input, extraEnv = {}, cwd = app, timeoutMs = 120_000 } = {}) {
  const res = spawnSync(cmd, args, { cwd, env: { ...env, ...extraEnv }, input, encoding: 'utf8', timeout: timeoutMs });
  if (res.error) throw res.error;
  return res;
}
const show = (res) => `exit ${res.status} ${res.signal || ''}\nstdout: ${res.stdout}\nstderr: ${res.stderr}`;

/** A docker: block for the test image, labelled with this run so that cleanup finds it. */
const dockerConfig = () => ({
  image: IMAGE,
  network: 'none',
  memory: '256m',
  labels: { 'herdctl-test': '1', 'herdctl-test-run': runId },
});
const workspace = path.join(root, 'workspace');
const stateDir = path.join(root, 'state');
const agent = (name) => ({ name, qualifiedName: `test.${runId}.${name}`, working_directory: workspace });

test.before(() => {
  prepareImage();
  fs.mkdirSync(workspace);
  // The agent runs as 1000:1000 when this runs as root; the runner refuses a workspace it
  // could not write.
  fs.chmodSync(workspace, 0o777);
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
  const install = inApp('npm', ['install', '--no-save', MAIN_TGZ, PLATFORM_TGZ]);
  assert.equal(install.status, 0, `npm install of the tarballs failed\n${show(install)}`);
});

test.after(() => {
  const ids = execFileSync('docker', ['ps', '-aq', '--filter', `label=herdctl-test-run=${runId}`], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean);
  if (ids.length > 0) execFileSync('docker', ['rm', '-f', ...ids], { stdio: 'ignore' });
  fs.rmSync(root, { recursive: true, force: true });
});

test('the install had no Rust toolchain within reach', () => {
  const res = inApp('sh', ['-c', 'command -v cargo || command -v rustc || command -v rustup']);
  assert.notEqual(res.status, 0, `found ${res.stdout}`);
});

test('the tarballs: the main package holds JS and types, the platform package the addon and the CLI', () => {
  const list = (file) => execFileSync('tar', ['-tzvf', file], { encoding: 'utf8' }).split('\n').filter(Boolean);
  const names = (lines) => lines.map((l) => l.split(/\s+/).at(-1).replace(/^package\//, '')).sort();
  assert.deepEqual(names(list(MAIN_TGZ)), [
    'binding.d.ts', 'binding.js', 'cli.js', 'index.d.mts', 'index.d.ts', 'index.js', 'index.mjs', 'package.json', 'platform.js',
  ]);
  const platformLines = list(PLATFORM_TGZ);
  assert.deepEqual(names(platformLines), [ADDON, 'README.md', 'herdctl-container', 'package.json'].sort());
  assert.match(platformLines.find((l) => l.endsWith('/herdctl-container')), /^-rwx/, 'the CLI is executable');

  const main = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8'));
  assert.deepEqual(main.optionalDependencies, Object.fromEntries(PREBUILT.map((t) => [`herdctl-container-${t}`, VERSION])));
  assert.deepEqual(main.bin, { 'herdctl-container': 'cli.js' });
  assert.equal(main.scripts, undefined, 'no dev scripts in the published package.json');
  const platform = JSON.parse(fs.readFileSync(path.join(installedPlatform, 'package.json'), 'utf8'));
  const [os_, cpu, libc] = TAG.split('-');
  assert.deepEqual([platform.os, platform.cpu, platform.libc], [[os_], [cpu], [libc === 'gnu' ? 'glibc' : libc]]);
  assert.equal(platform.version, VERSION);
  assert.equal(platform.main, ADDON);
});

test('the addon and the CLI: stripped, the addon at most 3 MB, glibc no newer than stated', () => {
  for (const file of [path.join(installedPlatform, ADDON), path.join(installedPlatform, 'herdctl-container')]) {
    const sections = execFileSync('readelf', ['-S', '-W', file], { encoding: 'utf8' });
    assert.doesNotMatch(sections, /\.debug_|\.symtab/, `${file} carries debug info or symbols`);
    const versions = execFileSync('objdump', ['-T', file], { encoding: 'utf8' }).match(/GLIBC_\d+(\.\d+)+/g);
    const newest = [...new Set(versions)].map((v) => v.slice(6)).sort((a, b) => a.localeCompare(b, 'en', { numeric: true })).at(-1);
    assert.equal(newest, GLIBC_FLOOR, `${file}: newest glibc symbol ${newest}; platform.js, README and the platform package state ${GLIBC_FLOOR}`);
  }
  const bytes = fs.statSync(path.join(installedPlatform, ADDON)).size;
  assert.ok(bytes <= ADDON_MAX_BYTES, `the addon is ${bytes} bytes`);
  assert.match(fs.readFileSync(path.join(REPO, 'README.md'), 'utf8'), new RegExp(`glibc ${GLIBC_FLOOR.replace('.', '\\.')} or newer`));
});

test('require and import load the package from the platform package, with one surface', () => {
  const cjs = inApp('node', ['-e', `
    const m = require('herdctl-container');
    const addons = Object.keys(require.cache).filter((f) => f.endsWith('.node'));
    console.log(JSON.stringify({ keys: Object.keys(m).sort(), addons }));`]);
  assert.equal(cjs.status, 0, show(cjs));
  const { keys, addons } = JSON.parse(cjs.stdout);
  assert.ok(keys.includes('ContainerRunner') && keys.includes('resolveDockerConfig'), keys.join());
  assert.deepEqual(addons, [path.join(fs.realpathSync(installedPlatform), ADDON)]);

  const esm = inApp('node', ['--input-type=module', '-e', `
    import pkg, * as m from 'herdctl-container';
    const named = Object.keys(m).filter((k) => k !== 'default').sort();
    console.log(JSON.stringify({ named, same: named.every((k) => pkg[k] === m[k]) }));`]);
  assert.equal(esm.status, 0, show(esm));
  assert.deepEqual(JSON.parse(esm.stdout), { named: keys, same: true });
});

/** A job through ContainerRunner, from a script in the app folder; its messages' types. */
function jobScript(kind) {
  const body = `
    class CLIRuntime {}
    const runner = new ContainerRunner(new CLIRuntime(), ${JSON.stringify(dockerConfig())}, ${JSON.stringify(stateDir)});
    const types = [];
    let result;
    for await (const m of runner.execute({ prompt: 'hello from ${kind}', agent: ${JSON.stringify(agent(kind))} })) {
      types.push(m.type);
      if (m.type === 'result' || m.type === 'error') result = m;
    }
    console.log(JSON.stringify({ types, result }));`;
  return kind === 'esm'
    ? `import { ContainerRunner } from 'herdctl-container';\n${body}\n`
    : `const { ContainerRunner } = require('herdctl-container');\n(async () => {${body}\n})().catch((e) => { console.error(e); process.exit(1); });\n`;
}

for (const kind of ['cjs', 'esm']) {
  test(`a real job through ContainerRunner from ${kind === 'cjs' ? 'CommonJS' : 'an ES module'}`, { timeout: 120_000 }, () => {
    const file = path.join(app, `job.${kind === 'esm' ? 'mjs' : 'cjs'}`);
    fs.writeFileSync(file, jobScript(kind));
    const res = inApp('node', [file]);
    assert.equal(res.status, 0, show(res));
    const { types, result } = JSON.parse(res.stdout.trim().split('\n').at(-1));
    assert.deepEqual(types, ['system', 'assistant', 'result'], JSON.stringify(result));
    assert.equal(result.subtype, 'success');
  });
}

test('npx herdctl-container: doctor, a real agent job, and the exit code of the command', { timeout: 120_000 }, () => {
  const doctor = inApp('npx', ['herdctl-container', 'doctor', '--image', IMAGE]);
  assert.equal(doctor.status, 0, show(doctor));
  assert.match(doctor.stdout, /outcome:\s+exited with code 0/);

  const config = path.join(root, 'docker.json');
  fs.writeFileSync(config, JSON.stringify(dockerConfig()));
  const common = ['herdctl-container', 'run', '--agent', `test.${runId}.npx`, '--config', config, '--state-dir', stateDir, '--workspace', workspace];
  const job = inApp('npx', [...common, '--', 'claude', '-p', '--output-format', 'stream-json', '--verbose'], { input: 'hello from npx' });
  assert.equal(job.status, 0, show(job));
  const types = job.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l).type);
  assert.deepEqual(types, ['system', 'assistant', 'result']);

  const failing = inApp('npx', [...common, '--', 'sh', '-c', 'exit 7']);
  assert.equal(failing.status, 7, show(failing));
});

test('TypeScript consumers type-check under node16, nodenext and bundler, each entry with its own types', { timeout: 180_000 }, async () => {
  const consumer = path.join(__dirname, 'consumer');
  for (const file of fs.readdirSync(consumer)) fs.copyFileSync(path.join(consumer, file), path.join(app, file));
  const modes = ['node16', 'nodenext', 'bundler'];
  // In parallel: tsc spends most of its time loading itself.
  const runs = await Promise.all(modes.map((mode) => run(process.execPath, [TSC, '-p', path.join(app, `tsconfig.${mode}.json`), '--explainFiles'], { timeoutMs: 170_000 })));
  runs.forEach((res, i) => {
    const mode = modes[i];
    assert.equal(res.code, 0, `tsc (${mode}) failed:\n${res.stdout.split('\n').filter((l) => /error TS/.test(l)).join('\n')}\n${res.stderr}`);
    const importers = explained(res.stdout);
    const dts = importers.get('node_modules/herdctl-container/index.d.ts') || [];
    const dmts = importers.get('node_modules/herdctl-container/index.d.mts') || [];
    if (mode === 'bundler') {
      assert.deepEqual(dmts, ['bundler.ts'], `${mode}: import reads index.d.mts`);
      assert.ok(dts.includes('bundler.ts'), `${mode}: import = require() reads index.d.ts`);
    } else {
      assert.deepEqual(dmts, ['esm.mts'], `${mode}: the ES module consumer reads index.d.mts`);
      assert.deepEqual(dts.filter((f) => !f.startsWith('node_modules/')), ['cjs.cts'], `${mode}: only the CommonJS consumer reads index.d.ts`);
    }
  });
});

/** `tsc --explainFiles` output as file -> the files that import it by the package's name. */
function explained(text) {
  const importers = new Map();
  let file;
  // tsc prints paths relative to its cwd: keep them from node_modules/ on, else the base name.
  const short = (f) => (f.includes('node_modules/') ? f.slice(f.lastIndexOf('node_modules/')) : path.basename(f));
  for (const line of text.split('\n')) {
    if (line && !line.startsWith(' ')) file = short(line.trim());
    const m = /^\s+Imported via '(?:herdctl-container|\.\/index\.js)' from file '([^']+)'/.exec(line);
    if (m && file) importers.set(file, [...new Set([...(importers.get(file) || []), short(m[1])])]);
  }
  return importers;
}

/** `require('herdctl-container')` (or the CLI) in the app folder with process.arch faked. */
function onArch(arch, args) {
  const preload = path.join(root, `arch-${arch}.cjs`);
  fs.writeFileSync(preload, `Object.defineProperty(process, 'arch', { value: ${JSON.stringify(arch)} });\n`);
  return inApp('node', ['-r', preload, ...args]);
}
const requireReport = ['-e', "try { require('herdctl-container') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }"];

test('on a platform without a prebuilt package, require and the CLI name it and say how to build from source', () => {
  const res = onArch('riscv64', requireReport);
  const { code, message } = JSON.parse(res.stdout);
  assert.equal(code, 'UNSUPPORTED_PLATFORM');
  assert.match(message, /no prebuilt addon for this platform \(linux-riscv64-gnu\)/);
  assert.match(message, /linux-x64-gnu, linux-arm64-gnu \(glibc 2\.\d+ or newer\)/);
  assert.match(message, /npm ci && npm run build` in its npm\/ folder, then `npm install <checkout>\/npm`/);

  const cli = onArch('riscv64', [path.join(installed, 'cli.js'), 'doctor']);
  assert.equal(cli.status, 2);
  assert.match(cli.stderr, /no prebuilt CLI for this platform \(linux-riscv64-gnu\)/);
});

test('a supported platform whose package npm left out is told which package to install', () => {
  const other = PREBUILT.find((t) => t !== TAG).split('-')[1];
  const { code, message } = JSON.parse(onArch(other, requireReport).stdout);
  assert.equal(code, 'ADDON_NOT_LOADED');
  assert.match(message, new RegExp(`npm install herdctl-container-linux-${other}-gnu@${VERSION.replace(/\./g, '\\.')}`));
});

test('an addon that does not load is reported with the loader\'s reason and the glibc floor', () => {
  // A copy of the install whose platform package holds a file that is not a shared object.
  const broken = path.join(root, 'broken', 'node_modules');
  fs.cpSync(installed, path.join(broken, 'herdctl-container'), { recursive: true });
  fs.mkdirSync(path.join(broken, PLATFORM_PKG));
  fs.copyFileSync(path.join(installedPlatform, 'package.json'), path.join(broken, PLATFORM_PKG, 'package.json'));
  fs.writeFileSync(path.join(broken, PLATFORM_PKG, ADDON), 'not an ELF file');
  const res = inApp('node', requireReport, { cwd: path.dirname(broken) });
  const { code, message } = JSON.parse(res.stdout);
  assert.equal(code, 'ADDON_NOT_LOADED');
  assert.match(message, new RegExp(`the addon in ${PLATFORM_PKG} did not load: .*(invalid ELF header|too short)`));
  assert.match(message, new RegExp(`needs glibc ${GLIBC_FLOOR.replace('.', '\\.')} or newer`));
});

test('npm pack refuses the source folders: npm/ lacks its platform packages, platforms/* their binaries', () => {
  for (const dir of [NPM, path.join(REPO, 'platforms', TAG)]) {
    const res = spawnSync('npm', ['pack', '--dry-run'], { cwd: dir, encoding: 'utf8' });
    assert.notEqual(res.status, 0, `npm pack in ${dir} succeeded`);
    assert.match(res.stderr, /run scripts\/package|Run scripts\/package/, res.stderr);
  }
});

test('the .crate holds the library and the CLI with their assets, and its metadata', () => {
  const files = execFileSync('tar', ['-tzf', CRATE], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map((f) => f.slice(f.indexOf('/') + 1));
  for (const f of ['src/lib.rs', 'src/main.rs', 'src/herdctl/assets/sdk-runner.mjs', 'src/run/job/kill.sh', 'README.md', 'Cargo.toml']) {
    assert.ok(files.includes(f), `${f} is not in the crate`);
  }
  const stray = files.filter((f) => !/^(src\/|Cargo\.toml|Cargo\.toml\.orig|Cargo\.lock|README\.md|CHANGELOG\.md|\.cargo_vcs_info\.json)/.test(f));
  assert.deepEqual(stray, [], 'only the library, the CLI and their docs');
  const manifest = execFileSync('tar', ['-xzOf', CRATE, `herdctl-container-${VERSION}/Cargo.toml`], { encoding: 'utf8' });
  for (const field of ['description', 'license', 'documentation', 'readme', 'keywords', 'categories', 'rust-version']) {
    assert.match(manifest, new RegExp(`^${field} = `, 'm'), `${field} is missing from the crate's Cargo.toml`);
  }
  assert.doesNotMatch(manifest, /^publish = false/m);
});

test('rust-version: no dependency in Cargo.lock needs a newer Rust than its crate states', () => {
  const meta = JSON.parse(execFileSync('cargo', ['metadata', '--format-version', '1', '--locked', '--offline'], { cwd: REPO, encoding: 'utf8', maxBuffer: 64 << 20 }));
  const byId = new Map(meta.packages.map((p) => [p.id, p]));
  const nodes = new Map(meta.resolve.nodes.map((n) => [n.id, n]));
  const cmp = (a, b) => {
    const [pa, pb] = [a, b].map((v) => v.split('.').map(Number));
    for (let i = 0; i < 3; i++) if ((pa[i] || 0) !== (pb[i] || 0)) return (pa[i] || 0) - (pb[i] || 0);
    return 0;
  };
  // The newest rust-version among what `id` pulls in through edges of the given kinds (then
  // through their normal and build dependencies, which is what building them needs).
  const newest = (id, kinds) => {
    const seen = new Set();
    const stack = nodes.get(id).deps.filter((d) => d.dep_kinds.some((k) => kinds.includes(k.kind || 'normal'))).map((d) => d.pkg);
    while (stack.length > 0) {
      const next = stack.pop();
      if (seen.has(next)) continue;
      seen.add(next);
      for (const d of nodes.get(next).deps) if (d.dep_kinds.some((k) => k.kind !== 'dev')) stack.push(d.pkg);
    }
    return [...seen].map((p) => byId.get(p)).filter((p) => p.rust_version).sort((a, b) => cmp(a.rust_version, b.rust_version)).at(-1);
  };
  for (const id of meta.workspace_members) {
    const crate = byId.get(id);
    assert.ok(crate.rust_version, `${crate.name} states no rust-version`);
    const dep = newest(id, ['normal', 'build']);
    assert.ok(!dep || cmp(dep.rust_version, crate.rust_version) <= 0, `${crate.name} says ${crate.rust_version}, but ${dep && dep.name} ${dep && dep.version} needs ${dep && dep.rust_version}`);
    const dev = newest(id, ['dev']);
    assert.ok(!dev || cmp(dev.rust_version, TESTS_RUST) <= 0, `${crate.name}'s tests: ${dev && dev.name} needs ${dev && dev.rust_version}, README says ${TESTS_RUST}`);
  }
});

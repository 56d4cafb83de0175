'use strict';
// The runner's debug log and pull progress, against the real engine: a `logger` option gets one
// line per engine call (method, path, status, milliseconds), `HERDCTL_CONTAINER_LOG=debug` prints
// the same lines to stderr without one, `onPullProgress` gets each line of a pull from a
// registry on loopback, and a Node job leaves its record in the state directory as CLI jobs do.
const test = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const { ContainerRunner } = require('../index.js');
const { Fleet, collect, docker, sleep } = require('./helpers/fleet.js');

const fleet = new Fleet('logging');
test.after(() => fleet.cleanup());

/** A runtime that runs `argv` in the container. */
const raw = (argv) => ({ containerCommand: () => ({ argv }) });

const LINE = /^herdctl-container: engine: (GET|POST|DELETE|HEAD) \/\S* -> \d{3} \(\d+ ms\)$/;

test('a logger gets one debug line per engine call, with the event', async () => {
  const lines = [];
  const events = [];
  const logger = {
    debug(message, event) {
      lines.push(message);
      events.push(event);
    },
  };
  const runner = new ContainerRunner(raw(['sh', '-c', 'echo \'{"type":"result"}\'']), fleet.config(), fleet.stateDir, { logger });
  const messages = await collect(runner.execute({ prompt: '', agent: fleet.agent('logger') }));
  assert.equal(messages.at(-1).type, 'result');
  // The events arrive on the JS thread after the calls; give the last ones a tick.
  await sleep(50);
  assert.ok(lines.length >= 5, lines.join('\n'));
  for (const line of lines) assert.match(line, LINE);
  const create = events.find((e) => e.method === 'POST' && /\/containers\/create$/.test(e.path));
  assert.ok(create, lines.join('\n'));
  assert.equal(create.status, 201);
  assert.equal(typeof create.ms, 'number');
  assert.ok(create.path.startsWith('/v1.'), create.path);
  assert.ok(events.some((e) => e.status === 101), 'the exec upgrade');
});

test('a throwing logger does not break the job; a bad one is refused', async () => {
  const logger = { debug() { throw new Error('logger broke'); } };
  const runner = new ContainerRunner(raw(['sh', '-c', 'echo \'{"type":"result"}\'']), fleet.config(), fleet.stateDir, { logger });
  const messages = await collect(runner.execute({ prompt: '', agent: fleet.agent('throwing') }));
  assert.equal(messages.at(-1).type, 'result');
  for (const [options, field] of [[{ logger: {} }, 'options.logger'], [{ logger: 'x' }, 'options.logger'], [{ onPullProgress: 1 }, 'options.onPullProgress']]) {
    assert.throws(() => new ContainerRunner(raw(['true']), fleet.config(), fleet.stateDir, options), (e) => {
      assert.equal(e.code, 'INVALID_ARGUMENT');
      assert.ok(e.message.startsWith(`invalid ${field}: `), e.message);
      return true;
    });
  }
});

test('HERDCTL_CONTAINER_LOG=debug prints the lines to stderr without a logger', () => {
  const script = `
    const { ContainerRunner } = require(${JSON.stringify(path.join(__dirname, '..', 'index.js'))});
    const runner = new ContainerRunner({}, ${JSON.stringify(fleet.config())}, ${JSON.stringify(fleet.stateDir)});
    runner.listContainers('nobody').then(() => {});
  `;
  const env = { ...process.env, HERDCTL_CONTAINER_LOG: 'debug' };
  const on = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8' });
  assert.equal(on.status, 0, on.stderr);
  const lines = on.stderr.split('\n').filter((l) => l.includes('engine:'));
  assert.ok(lines.some((l) => /GET \/_ping -> 200/.test(l)), on.stderr);
  assert.ok(lines.some((l) => /GET \/v1\.\d+\/containers\/json -> 200/.test(l)), on.stderr);
  for (const line of lines) assert.match(line, LINE);
  delete env.HERDCTL_CONTAINER_LOG;
  const off = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8' });
  assert.equal(off.status, 0, off.stderr);
  assert.ok(!off.stderr.includes('engine:'), off.stderr);
});

/** Debian's docker-registry on a free loopback port; `stop()` ends it and removes its files. */
async function startRegistry() {
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herdctl-node-registry-'));
  const config = path.join(dir, 'config.yml');
  fs.writeFileSync(config, `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/storage\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  const child = spawn('docker-registry', ['serve', config], { stdio: 'ignore' });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) throw new Error('docker-registry did not answer');
    await sleep(20);
  }
  return { port, stop: () => { child.kill(); fs.rmSync(dir, { recursive: true, force: true }); } };
}

test('onPullProgress gets each line of a pull from a loopback registry', async () => {
  const registry = await startRegistry();
  const remote = `127.0.0.1:${registry.port}/herdctl-test/node-pull:${process.pid}`;
  // A small image (busybox, with sh and sleep) so that the push takes milliseconds, not the
  // test image's 100 MB.
  const rootfs = fs.mkdtempSync(path.join(os.tmpdir(), 'herdctl-node-rootfs-'));
  try {
    fs.mkdirSync(path.join(rootfs, 'bin'));
    fs.mkdirSync(path.join(rootfs, 'tmp'));
    fs.copyFileSync('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
    fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
    for (const applet of ['sh', 'sleep', 'echo', 'cat']) fs.symlinkSync('busybox', path.join(rootfs, 'bin', applet));
    execFileSync('sh', ['-c', 'tar --numeric-owner -C "$1" -c . | docker import -c "ENV PATH=/bin" - "$2"', 'sh', rootfs, remote], { stdio: 'ignore' });
    docker(['push', remote]);
    docker(['rmi', remote]);
    const events = [];
    const runner = new ContainerRunner(
      raw(['sh', '-c', 'echo \'{"type":"result"}\'']),
      fleet.config({ image: remote }),
      fleet.stateDir,
      { pull: 'if-missing', onPullProgress: (e) => events.push(e) },
    );
    const messages = await collect(runner.execute({ prompt: '', agent: fleet.agent('pull') }));
    assert.equal(messages.at(-1).type, 'result');
    await sleep(50);
    const statuses = events.map((e) => e.status);
    assert.ok(statuses.some((s) => s.startsWith('Status: Downloaded newer image')), statuses.join('\n'));
    assert.ok(events.some((e) => typeof e.id === 'string'), 'layer lines carry their id');
  } finally {
    spawnSync('docker', ['rmi', '-f', remote], { stdio: 'ignore' });
    fs.rmSync(rootfs, { recursive: true, force: true });
    registry.stop();
  }
});

test('a Node job leaves a job record in the state directory', async () => {
  const agent = fleet.agent('record');
  const runner = new ContainerRunner(raw(['sh', '-c', 'echo not-json; echo oops >&2; exit 5']), fleet.config(), fleet.stateDir);
  const messages = await collect(runner.execute({ prompt: '', agent }));
  assert.equal(messages.at(-1).type, 'error');
  const jobs = path.join(fleet.stateDir, 'jobs');
  const records = fs
    .readdirSync(jobs)
    .flatMap((dir) => fs.readdirSync(path.join(jobs, dir)).map((f) => JSON.parse(fs.readFileSync(path.join(jobs, dir, f), 'utf8'))))
    .filter((r) => r.agent === agent.qualifiedName);
  assert.equal(records.length, 1);
  const [record] = records;
  assert.equal(record.report.outcome, 'exited');
  assert.equal(record.report.exit_code, 5);
  assert.equal(record.report.stderr_tail, 'oops\n');
  assert.equal(record.stdout_tail, 'not-json\n');
  assert.equal(record.image, fleet.config().image);
  assert.ok(record.job.startsWith('herdctl-job-'));
});

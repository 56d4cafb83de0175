'use strict';
// The job's report reaches Node on the message that closes the job, read the way herdctl reads
// (up to the first `result` or `error`, then `return()`): outcome, exit code, timings, image,
// config hash, container, and warnings (a limit a host_config override removed, a container the
// engine did not stop). Against the real engine; the engine that stops answering is a proxy in
// this process that forwards to it until the runner asks it to stop the container.
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const path = require('node:path');

const { ContainerRunner } = require('../index.js');
const { Fleet, CLIRuntime, docker, isRunning } = require('./helpers/fleet.js');

const fleet = new Fleet('report');
test.after(() => fleet.cleanup());

/** herdctl's job executor: every message up to the first result or error, then `return()`. */
async function asHerdctl(generator) {
  const seen = [];
  for await (const message of generator) {
    seen.push(message);
    if (message.type === 'result' || message.type === 'error') break;
  }
  return seen;
}

const raw = (script) => ({ containerCommand: () => ({ argv: ['sh', '-c', script] }) });

test('the result carries the job report: outcome, timings, image, config hash, container', async () => {
  const agent = fleet.agent('ok');
  const seen = await asHerdctl(fleet.runner().execute({ prompt: 'hello', agent }));
  const result = seen.at(-1);
  assert.equal(result.type, 'result');
  assert.equal(result.subtype, 'success', "the agent's own fields stay");
  const report = result.container_report;
  assert.equal(report.outcome, 'exited');
  assert.equal(report.success, true);
  assert.equal(report.exit_code, 0);
  assert.equal(report.oom_killed, false);
  assert.equal(report.image, fleet.config().image);
  assert.deepEqual(report.warnings, []);
  for (const phase of ['acquire_ms', 'create_ms', 'exec_start_ms', 'end_ms', 'release_ms']) {
    assert.equal(typeof report.timings[phase], 'number', phase);
  }
  const [name, hash] = docker(['inspect', '-f', '{{.Name}} {{index .Config.Labels "dev.herdctl.config-hash"}}', report.container_id])
    .trim()
    .split(' ');
  assert.equal(name, `/${report.container_name}`);
  assert.equal(hash, report.config_hash);
  assert.equal(isRunning(report.container_id), false, 'the report comes after the container was released');
});

test('a failed job ends with an error that carries the report', async () => {
  const agent = fleet.agent('fail');
  const seen = await asHerdctl(fleet.runner(raw('echo oops >&2; exit 3')).execute({ prompt: 'p', agent }));
  const error = seen.at(-1);
  assert.equal(error.type, 'error');
  assert.equal(error.container_report.outcome, 'exited');
  assert.equal(error.container_report.exit_code, 3);
  assert.match(error.container_report.stderr_tail, /oops/);
});

test('a limit removed by host_config is a warning on the result', async () => {
  const agent = fleet.agent('nolimit');
  const runner = fleet.runner(new CLIRuntime(), { host_config: { Memory: 0, PidsLimit: -1 } });
  const result = (await asHerdctl(runner.execute({ prompt: 'hello', agent }))).at(-1);
  assert.equal(result.type, 'result');
  const warnings = result.container_report.warnings.join('\n');
  assert.match(warnings, /no memory limit/);
  assert.match(warnings, /no pids limit/);
});

/** A unix socket that forwards to the real engine until a request holds `cue`; then it is dead. */
function cuttingProxy(cue) {
  const upstream = (process.env.DOCKER_HOST || '').startsWith('unix://')
    ? process.env.DOCKER_HOST.slice('unix://'.length)
    : '/var/run/docker.sock';
  const socketPath = path.join(fleet.root, 'proxy.sock');
  const open = new Set();
  const proxy = { socketPath, dead: false };
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    if (proxy.dead) return client.destroy();
    const engine = net.connect({ path: upstream, allowHalfOpen: true });
    for (const [from, to] of [[client, engine], [engine, client]]) {
      open.add(from);
      from.on('data', (chunk) => {
        if (from === client && chunk.includes(cue)) {
          proxy.dead = true;
          for (const s of open) s.destroy();
          return;
        }
        to.write(chunk);
      });
      from.on('end', () => to.end());
      from.on('error', () => to.destroy());
      from.on('close', () => open.delete(from));
    }
  });
  proxy.close = () => new Promise((resolve) => server.close(resolve));
  return new Promise((resolve) => server.listen(socketPath, () => resolve(proxy)));
}

test('a stop the engine does not answer is a warning on the result; gc stops the container later', async () => {
  const agent = fleet.agent('nostop');
  const proxy = await cuttingProxy('/stop?t=');
  try {
    const runner = new ContainerRunner(new CLIRuntime(), fleet.config(), fleet.stateDir, { socketPath: proxy.socketPath });
    const result = (await asHerdctl(runner.execute({ prompt: 'hello', agent }))).at(-1);
    assert.equal(result.type, 'result');
    assert.ok(proxy.dead, 'the runner asked the engine to stop the container');
    const report = result.container_report;
    const stop = report.warnings.find((w) => w.startsWith('stop container'));
    assert.ok(stop, JSON.stringify(report.warnings));
    assert.ok(stop.includes(report.container_name), stop);
    assert.equal(isRunning(report.container_id), true, 'left running by the failed stop');

    // The engine answers again: this process's gc stops what its failed stop left running.
    const direct = fleet.runner();
    const everyone = [...new Set((await direct.listContainers()).map((c) => c.agent))];
    const collected = await direct.gc(everyone, 1000);
    assert.ok(collected.stopped.includes(report.container_id), JSON.stringify(collected));
    assert.equal(isRunning(report.container_id), false);
  } finally {
    await proxy.close();
  }
});

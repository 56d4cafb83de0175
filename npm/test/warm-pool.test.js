'use strict';
// Warm pools from Node: the warmPool option (shared by the ContainerRunners of the process, as
// herdctl makes one per job), close(), the environment variable an unmodified herdctl can set,
// and the pool going with the process when it exits.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const { ContainerRunner } = require('../index.js');
const { Fleet, CLIRuntime, collect, sleep } = require('./helpers/fleet.js');

const fleet = new Fleet('pool');
test.after(() => fleet.cleanup());

async function waitFor(what, check, ms = 90_000) {
  const giveUp = Date.now() + ms;
  for (;;) {
    const got = await check();
    if (got) return got;
    if (Date.now() > giveUp) throw new Error(`waited ${ms} ms for ${what}`);
    await sleep(100);
  }
}

const idle = (containers) => containers.filter((c) => c.mode === 'pool');

test('a job of a runner with warmPool takes a warm container, and close() removes the idle ones', async () => {
  const agent = fleet.agent('warm');
  const runner = () => new ContainerRunner(new CLIRuntime(), fleet.config(), fleet.stateDir, { warmPool: 1 });
  const lister = runner();
  // The first job makes its own container; its pool warms one afterwards.
  const first = await collect(runner().execute({ prompt: 'one', agent }));
  assert.equal(first.at(-1).type, 'result', JSON.stringify(first.at(-1)));
  const [warm] = await waitFor('a warm container', async () => {
    // Listed from its create on; taken only once it runs and its check inside has passed.
    const pool = idle(await lister.listContainers(agent.qualifiedName));
    return pool.length === 1 && pool[0].state === 'running' && pool;
  });
  assert.equal(warm.state, 'running');

  // A second runner (herdctl makes one per job) takes it.
  const second = runner();
  const messages = await collect(second.execute({ prompt: 'two', agent }));
  assert.equal(messages.at(-1).type, 'result', JSON.stringify(messages.at(-1)));
  const after = await lister.listContainers(agent.qualifiedName);
  const taken = after.find((c) => c.id === warm.id);
  assert.equal(taken.mode, 'ephemeral', JSON.stringify(after));
  assert.equal(taken.state, 'exited');
  await waitFor('the replacement', async () => idle(await lister.listContainers(agent.qualifiedName)).length === 1);

  const closed = await second.close();
  assert.deepEqual(closed.warnings, []);
  assert.equal(closed.removed.length, 1);
  const left = await lister.listContainers(agent.qualifiedName);
  assert.deepEqual(idle(left), [], JSON.stringify(left));
  assert.ok(left.some((c) => c.id === warm.id), 'the job containers are kept');
  // A runner that never ran a job has nothing to close.
  assert.deepEqual(await runner().close(), { removed: [], stopped: [], warnings: [] });
});

test('warmPool must be a whole number from 0 to 64', () => {
  for (const bad of [65, -1, 1.5, '2', true]) {
    assert.throws(
      () => new ContainerRunner(new CLIRuntime(), fleet.config(), fleet.stateDir, { warmPool: bad }),
      (e) => e.code === 'INVALID_ARGUMENT' && e.message.startsWith('invalid options.warmPool: '),
      String(bad),
    );
  }
});

test('HERDCTL_CONTAINER_WARM_POOL turns it on for an unmodified caller, and the pool goes when the process exits', async () => {
  const agent = fleet.agent('env');
  const script = `
    const { ContainerRunner } = require(${JSON.stringify(path.join(__dirname, '..', 'index.js'))});
    class CLIRuntime { async *execute() {} }
    const [config, stateDir, agent] = JSON.parse(process.argv[1]);
    (async () => {
      const runner = new ContainerRunner(new CLIRuntime(), config, stateDir);
      for await (const m of runner.execute({ prompt: 'hi', agent })) if (m.type === 'result') break;
      for (;;) {
        const all = await runner.listContainers(agent.qualifiedName);
        if (all.some((c) => c.mode === 'pool')) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      console.log('warm');
    })();`;
  const child = spawnSync(process.execPath, ['-e', script, JSON.stringify([fleet.config(), fleet.stateDir, agent])], {
    env: { ...process.env, HERDCTL_CONTAINER_WARM_POOL: '2' },
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(child.status, 0, child.stderr);
  assert.equal(child.stdout.trim(), 'warm');
  const left = await fleet.runner().listContainers(agent.qualifiedName);
  assert.deepEqual(idle(left), [], JSON.stringify(left));
  assert.equal(left.length, 1, 'the job container is kept');
});

'use strict';
// Many jobs at once and containers over time: 20 jobs in parallel across 4 agents (two ephemeral,
// two persistent) all succeed and retention holds; a persistent container is reused by a second
// ContainerRunner (herdctl makes one per job); list, prune and gc from JS.
const test = require('node:test');
const assert = require('node:assert/strict');

const { Fleet, CLIRuntime, SDKRuntime, collect, isRunning } = require('./helpers/fleet.js');

const fleet = new Fleet('fleet');
test.after(() => fleet.cleanup());

test('20 jobs in parallel across 4 agents all succeed, and retention holds', async (t) => {
  const keep = 3;
  const agents = [
    { agent: fleet.agent('eph-cli'), runtime: new CLIRuntime(), ephemeral: true },
    { agent: fleet.agent('eph-sdk'), runtime: new SDKRuntime(), ephemeral: true },
    { agent: fleet.agent('per-cli'), runtime: new CLIRuntime(), ephemeral: false },
    { agent: fleet.agent('per-sdk'), runtime: new SDKRuntime(), ephemeral: false },
  ];
  const started = Date.now();
  const jobs = [];
  for (let i = 0; i < 20; i++) {
    const a = agents[i % agents.length];
    // A runner per job, as herdctl's factory makes them.
    const runner = fleet.runner(a.runtime, { ephemeral: a.ephemeral, max_containers: keep });
    jobs.push(collect(runner.execute({ prompt: `#say job ${i}`, agent: a.agent })).then((messages) => ({ i, messages })));
  }
  const results = await Promise.all(jobs);
  const seconds = (Date.now() - started) / 1000;
  for (const { i, messages } of results) {
    assert.equal(messages.at(-1).type, 'result', `job ${i}: ${JSON.stringify(messages.at(-1))}`);
    assert.equal(messages.at(-1).subtype, 'success');
    assert.ok(messages.some((m) => m.message && m.message.content && m.message.content[0].text === `job ${i}`));
  }
  t.diagnostic(`20 jobs across 4 agents in ${seconds.toFixed(2)} s: ${(20 / seconds).toFixed(1)} jobs/s`);

  const lister = fleet.runner();
  for (const a of agents) {
    const containers = await lister.listContainers(a.agent.qualifiedName);
    if (a.ephemeral) {
      // Each job stops its own container before it prunes, so whatever order the jobs end in,
      // the oldest are gone once the last one has ended.
      assert.equal(containers.length, keep, `${a.agent.name}: ${containers.map((c) => c.name)}`);
      assert.ok(containers.every((c) => c.state === 'exited' && c.mode === 'ephemeral'));
      const pruned = await lister.prune(a.agent.qualifiedName, 1);
      assert.equal(pruned.removed.length, keep - 1);
      assert.equal((await lister.listContainers(a.agent.qualifiedName)).length, 1);
    } else {
      assert.equal(containers.length, 1, `${a.agent.name} has exactly one persistent container`);
      assert.equal(containers[0].state, 'running');
      assert.equal(containers[0].mode, 'persistent');
    }
  }
});

test('a persistent container is reused by a second ContainerRunner instance', async () => {
  const agent = fleet.agent('reuse');
  const first = fleet.runner(new CLIRuntime(), { ephemeral: false });
  const a = await collect(first.execute({ prompt: 'one', agent }));
  const [before] = await first.listContainers(agent.qualifiedName);
  const second = fleet.runner(new CLIRuntime(), { ephemeral: false });
  const b = await collect(second.execute({ prompt: 'two', agent, resume: a.at(-1).session_id }));
  assert.equal(b.at(-1).type, 'result');
  assert.equal(b.at(-1).standin.earlier_turns, 1);
  const after = await second.listContainers(agent.qualifiedName);
  assert.deepEqual(after.map((c) => c.id), [before.id]);
  assert.ok(isRunning(before.id));
});

test('gc removes the stopped containers of agents that are gone', async () => {
  const gone = fleet.agent('gone');
  const live = fleet.agent('live');
  const runner = fleet.runner();
  await collect(runner.execute({ prompt: 'x', agent: gone }));
  await collect(runner.execute({ prompt: 'x', agent: live }));
  const goneId = (await runner.listContainers(gone.qualifiedName))[0].id;
  // gc looks at every container of this project on the engine; name every agent that is not
  // this test's `gone` as live, so other tests' containers are left alone.
  const everyone = (await runner.listContainers()).map((c) => c.agent).filter((name) => name !== gone.qualifiedName);
  const report = await runner.gc([...new Set(everyone)], 100);
  assert.ok(report.removed.includes(goneId), JSON.stringify(report));
  assert.deepEqual(await runner.listContainers(gone.qualifiedName), []);
  assert.equal((await runner.listContainers(live.qualifiedName)).length, 1);
});

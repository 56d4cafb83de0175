'use strict';
// ContainerRunner.openSession (herdctl's RuntimeSession) against the real engine, with the test
// image's stand-in `claude` (stream-json input) and stand-in Agent SDK (streaming input): several
// turns, interrupt, listCommands, setModel, stopTask and close through both runtimes; herdctl's
// lifecycle signals; a killed container and a session that cannot start; and the ways a session
// is closed for its caller (break, abort, garbage collection).
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const { ContainerRunner } = require('../index.js');
const { Fleet, CLIRuntime, SDKRuntime, docker, isRunning, sleep } = require('./helpers/fleet.js');

const fleet = new Fleet('session');
test.after(() => fleet.cleanup());

const text = (m) => m.message && m.message.content && m.message.content[0] && m.message.content[0].text;

/** Reads a session's messages in the background; `until` waits for one that matches. */
function reader(session) {
  const seen = [];
  const waiters = [];
  const state = { ended: false, failure: null };
  const wake = () => waiters.splice(0).forEach((w) => w());
  (async () => {
    try {
      for await (const m of session.messages) {
        seen.push(m);
        wake();
      }
    } catch (e) {
      state.failure = e;
    }
    state.ended = true;
    wake();
  })();
  const r = {
    seen,
    state,
    async until(pred, from = 0, what = 'a message') {
      for (;;) {
        const i = seen.findIndex((m, j) => j >= from && pred(m));
        if (i >= 0) return i;
        if (state.ended) throw state.failure || new Error(`the session ended before ${what}: ${JSON.stringify(seen)}`);
        await new Promise((resolve) => waiters.push(resolve));
      }
    },
    /** The messages from `from` to the next result. */
    async result(from = seen.length) {
      const i = await r.until((m) => m.type === 'result', from, 'a result');
      return seen.slice(from, i + 1);
    },
    async turn(words) {
      const from = seen.length;
      await session.send(words);
      return r.result(from);
    },
    async ended() {
      while (!state.ended) await new Promise((resolve) => waiters.push(resolve));
    },
  };
  return r;
}

const containerOf = (agent) => fleet.containers().find((id) => docker(['inspect', '-f', '{{ index .Config.Labels "dev.herdctl.agent" }}', id]).trim() === agent.qualifiedName);

async function everyControl(runtime, extra) {
  const agent = fleet.agent(`every-${runtime.constructor.name}`);
  const session = fleet.runner(runtime, extra).openSession({ agent, prompt: 'hello' });
  const r = reader(session);
  const first = await r.result(0);
  assert.equal(first[0].type, 'system');
  assert.equal(first[0].cwd, '/workspace');
  const sessionId = first.at(-1).session_id;

  const commands = await session.listCommands();
  assert.ok(commands.some((c) => c.name === 'compact' && 'argumentHint' in c), JSON.stringify(commands));

  const second = await r.turn('second');
  assert.equal(second.at(-1).session_id, sessionId);
  assert.equal(second.at(-1).standin.earlier_turns, 1);

  await session.send('#sleep 60');
  await sleep(300);
  const t = Date.now();
  const from = r.seen.length;
  await session.interrupt();
  const interrupted = await r.result(from);
  assert.ok(Date.now() - t < 2000, `interrupt took ${Date.now() - t} ms`);
  assert.equal(interrupted.at(-1).standin.interrupted, true);

  await session.setModel('claude-other-9');
  const third = await r.turn('#say switched');
  assert.ok(third.filter((m) => m.type === 'assistant').every((m) => m.message.model === 'claude-other-9'));
  assert.ok(third.some((m) => text(m) === 'switched'));

  const started = await r.turn('#background 60\n#background 60 monitor_mcp');
  const [task, monitor] = started.filter((m) => m.standin_task_id).map((m) => m.standin_task_id);
  const before = r.seen.length;
  await session.stopTask(task);
  await r.until((m) => m.subtype === 'task_notification' && m.status === 'stopped' && m.task_id === task, before);
  await session.stopTask(task);
  await assert.rejects(session.stopTask(monitor), (e) => e.code === 'AGENT_ERROR' && /unsupported_type/.test(e.message));

  const id = containerOf(agent);
  const closing = Date.now();
  await session.close();
  assert.ok(Date.now() - closing < 2000, `close took ${Date.now() - closing} ms`);
  await r.ended();
  assert.equal(r.state.failure, null);
  assert.equal(r.seen.filter((m) => m.type === 'error').length, 0, 'a close is no error');
  assert.equal(isRunning(id), extra.ephemeral === false);
  await assert.rejects(session.send('late'), (e) => e.code === 'SESSION_ENDED');
}

test('CLI session: turns, interrupt, commands, model, tasks and close', { timeout: 120_000 }, () =>
  everyControl(new CLIRuntime(), {}));

test('SDK session in a persistent container: the same, and the container stays up', { timeout: 120_000 }, () =>
  everyControl(new SDKRuntime(), { ephemeral: false }));

test('onLifecycleSignal gets herdctl\'s signals: activity, background tasks, cron deletes, turn ends', { timeout: 120_000 }, async () => {
  for (const runtime of [new SDKRuntime(), new CLIRuntime()]) {
    const agent = fleet.agent(`lifecycle-${runtime.constructor.name}`);
    const signals = [];
    let r = null;
    const session = fleet.runner(runtime).openSession({
      agent,
      prompt: '#background 60\n#tool CronDelete {"id":"wake-1"}\n#tool Read {}',
      onLifecycleSignal: (s) => {
        signals.push({ ...s, read: r.seen.length });
        throw new Error('a failing sink is not the session\'s problem');
      },
    });
    r = reader(session);
    const turn = await r.result(0);
    await sleep(50);
    const kinds = signals.map((s) => s.kind);
    assert.deepEqual([...new Set(kinds)].sort(), ['activity', 'background_tasks_changed', 'cron_deleted', 'turn_end'], JSON.stringify(signals));
    assert.equal(kinds.filter((k) => k === 'activity').length, 1, 'one activity signal per turn');
    const end = signals.find((s) => s.kind === 'turn_end');
    assert.equal(end.sessionId, turn.at(-1).session_id);
    // The turn's end is signalled once its result was read (herdctl's reaper closes at once).
    assert.ok(end.read >= r.seen.indexOf(turn.at(-1)) + 1, `turn_end after ${end.read} messages: ${JSON.stringify(r.seen.map((m) => m.type))}`);
    assert.equal(end.backgroundTasks.length, 1);
    assert.deepEqual(signals.find((s) => s.kind === 'cron_deleted').deletedCronIds, ['wake-1']);
    const changed = signals.find((s) => s.kind === 'background_tasks_changed');
    assert.equal(changed.backgroundTasks[0].status, 'running');
    // No hook ever reaches the messages.
    assert.ok(r.seen.every((m) => !Array.isArray(m)));
    await session.close();
  }
});

test('a container that dies mid-session ends the messages with an error and rejects waiting calls', { timeout: 60_000 }, async () => {
  const agent = fleet.agent('killed');
  const session = fleet.runner().openSession({ agent, prompt: 'hello' });
  const r = reader(session);
  await r.result(0);
  await session.send('#freeze 60');
  await sleep(300);
  // Settled into values at once: a rejection is not left unhandled while the test waits.
  const waiting = session.interrupt().then(() => null, (e) => e);
  const listing = session.setModel('x').then(() => null, (e) => e);
  docker(['kill', '-s', 'TERM', containerOf(agent)]);
  await r.ended();
  const error = r.seen.at(-1);
  assert.equal(error.type, 'error');
  assert.equal(error.outcome, 'container_died');
  assert.match(error.message, /^the agent session ended before it was closed/);
  for (const e of [await waiting, await listing]) {
    assert.ok(e && e.code === 'SESSION_ENDED' && /before the agent answered/.test(e.message), String(e));
  }
  await session.close();
});

test('a session that cannot start throws from messages, and its calls reject with the same code', { timeout: 60_000 }, async () => {
  const agent = fleet.agent('noimage');
  const runner = new ContainerRunner(new CLIRuntime(), fleet.config({ image: 'herdctl-test/no-such-image:never' }), fleet.stateDir);
  const session = runner.openSession({ agent, prompt: 'hi' });
  const commands = session.listCommands().then(() => null, (e) => e);
  await assert.rejects(
    (async () => {
      for await (const m of session.messages) assert.fail(`no message expected: ${JSON.stringify(m)}`);
    })(),
    (e) => e.code === 'NOT_FOUND',
  );
  assert.equal((await commands).code, 'NOT_FOUND');
  await assert.rejects(session.send('x'), (e) => e.code === 'NOT_FOUND');
});

test('leaving messages early and aborting close the session and release the container', { timeout: 60_000 }, async () => {
  const agent = fleet.agent('break');
  const session = fleet.runner().openSession({ agent, prompt: '#say hi\n#sleep 60' });
  for await (const m of session.messages) {
    if (m.type === 'assistant') break;
  }
  assert.equal(isRunning(containerOf(agent)), false);
  await assert.rejects(session.interrupt(), (e) => e.code === 'SESSION_ENDED');

  const aborted = fleet.agent('abort');
  const abortController = new AbortController();
  const other = fleet.runner().openSession({ agent: aborted, prompt: '#sleep 60', abortController });
  const r = reader(other);
  await r.until((m) => m.type === 'system');
  abortController.abort();
  await r.ended();
  await other.close();
  assert.equal(isRunning(containerOf(aborted)), false);
});

test('an abandoned session is closed when it is garbage collected', { timeout: 60_000 }, async () => {
  // In a child with --expose-gc: open, wait for the container, drop every reference, collect.
  const script = `
    const { ContainerRunner } = require(${JSON.stringify(path.join(__dirname, '..', 'index.js'))});
    class CLIRuntime {}
    const runner = new ContainerRunner(new CLIRuntime(), ${JSON.stringify(fleet.config())}, ${JSON.stringify(fleet.stateDir)});
    const agent = ${JSON.stringify(fleet.agent('abandoned'))};
    (async () => {
      let session = runner.openSession({ agent, prompt: '#sleep 60' });
      await session.listCommands();
      const [c] = await runner.listContainers(agent.qualifiedName);
      session = null;
      for (let i = 0; i < 50; i++) {
        global.gc();
        await new Promise((r) => setTimeout(r, 100));
        const [now] = await runner.listContainers(agent.qualifiedName);
        if (now.state !== 'running') return console.log(JSON.stringify({ id: c.id, state: now.state, ms: i * 100 }));
      }
      console.log(JSON.stringify({ id: c.id, state: 'running' }));
    })();
  `;
  const out = JSON.parse(execFileSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 50_000 }));
  assert.equal(out.state, 'exited', JSON.stringify(out));
});

test('bad input is refused with INVALID_ARGUMENT', { timeout: 30_000 }, async () => {
  const raw = new ContainerRunner({ containerCommand: () => ({ argv: ['true'] }) }, fleet.config(), fleet.stateDir);
  assert.throws(() => raw.openSession({ agent: fleet.agent('raw') }), (e) => e.code === 'INVALID_ARGUMENT' && /cannot hold a session/.test(e.message));
  const runner = fleet.runner();
  assert.throws(() => runner.openSession({ agent: fleet.agent('x'), onLifecycleSignal: 3 }), (e) => e.code === 'INVALID_ARGUMENT');
  assert.throws(() => runner.openSession({ agent: fleet.agent('y'), prompt: NaN }), (e) => e.code === 'INVALID_ARGUMENT');
  const session = runner.openSession({ agent: fleet.agent('z') });
  await assert.rejects(session.send(42), (e) => e.code === 'INVALID_ARGUMENT' && /invalid text/.test(e.message));
  await assert.rejects(session.send('\uD800'), (e) => e.code === 'INVALID_ARGUMENT');
  await assert.rejects(session.stopTask(undefined), (e) => e.code === 'INVALID_ARGUMENT');
  await session.close();
});

test('injected MCP tools run here during a session', { timeout: 60_000 }, async () => {
  const agent = fleet.agent('mcp');
  const calls = [];
  const session = fleet.runner(new SDKRuntime()).openSession({
    agent,
    prompt: 'hello',
    injectedMcpServers: {
      files: { name: 'files', tools: [{ name: 'send_file', handler: async (args) => (calls.push(args), { content: [{ type: 'text', text: 'sent' }] }) }] },
    },
  });
  const r = reader(session);
  await r.result(0);
  const turn = await r.turn('#mcp-call files send_file {"file_path":"/workspace/x.txt"}');
  const report = turn.find((m) => m.standin_mcp).standin_mcp;
  assert.equal(report.result.content[0].text, 'sent');
  assert.deepEqual(calls, [{ file_path: path.join(fleet.workspace, 'x.txt') }]);
  await session.close();
});

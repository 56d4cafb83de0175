// Live chat sessions through herdctl's own FleetManager.openChatSession, for Docker agents, with
// herdctl-container swapped in for herdctl's Docker layer and the one patch of issue 15 applied to
// herdctl's openChatSession (patches/open-chat-session.patch: it asks the runtime it builds for
// `openSession` instead of refusing Docker agents). Run by tests/herdctl/run.mjs, which builds
// that herdctl and passes its package directory in HERDCTL_CORE.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const core = process.env.HERDCTL_CORE;
if (!core) throw new Error('HERDCTL_CORE is not set: run this through scripts/test-herdctl');
const { FleetManager } = await import(pathToFileURL(path.join(core, 'dist', 'index.js')).href);

const IMAGE = 'herdctl-test/runtime:latest';
const run = crypto.randomBytes(4).toString('hex');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'herdctl-sessions-'));
const stateDir = path.join(root, 'state');
const docker = (...args) => execFileSync('docker', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** The agents: name suffix, runtime, ephemeral. */
const AGENTS = {
  'cli-eph': { runtime: 'cli', ephemeral: true },
  'sdk-per': { runtime: 'sdk', ephemeral: false },
  'managed': { runtime: 'sdk', ephemeral: true },
};
const name = (suffix) => `hs-${run}-${suffix}`;

function writeFleet() {
  fs.mkdirSync(path.join(root, 'agents'), { recursive: true });
  const entries = [];
  for (const [suffix, a] of Object.entries(AGENTS)) {
    const ws = path.join(root, `ws-${suffix}`);
    fs.mkdirSync(ws, { recursive: true });
    fs.chmodSync(ws, 0o777);
    fs.writeFileSync(path.join(root, 'agents', `${suffix}.yaml`), [
      `name: ${name(suffix)}`,
      `runtime: ${a.runtime}`,
      `working_directory: ${ws}`,
      'docker:',
      '  enabled: true',
      `  ephemeral: ${a.ephemeral}`,
      '',
    ].join('\n'));
    entries.push(`  - path: ./agents/${suffix}.yaml`);
  }
  fs.writeFileSync(path.join(root, 'herdctl.yaml'), [
    'version: 1',
    'fleet:',
    `  name: hs-${run}`,
    'defaults:',
    '  docker:',
    `    image: ${IMAGE}`,
    '    network: none',
    '    memory: 256m',
    '    labels:',
    "      herdctl-test: '1'",
    `      herdctl-test-run: '${run}'`,
    'agents:',
    ...entries,
    '',
  ].join('\n'));
}

function containers(suffix) {
  const filters = ['--filter', `label=herdctl-test-run=${run}`];
  if (suffix) filters.push('--filter', `label=dev.herdctl.agent=${name(suffix)}`);
  return docker('ps', '-aq', '--no-trunc', ...filters).split('\n').filter(Boolean);
}
const running = (id) => docker('inspect', '-f', '{{.State.Running}}', id).trim() === 'true';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
// A session that never answers (an agent without streaming input) fails its test, never hangs it.
const timeout = 120_000;
let fleet;

test.before(async () => {
  writeFleet();
  fleet = new FleetManager({ configPath: path.join(root, 'herdctl.yaml'), stateDir, logger: quiet });
  await fleet.initialize();
});

test.after(async () => {
  const ids = containers();
  if (ids.length > 0) docker('rm', '-f', ...ids);
  fs.rmSync(root, { recursive: true, force: true });
});

/** Reads a session's messages in the background; `result(from)` waits for the next result. */
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
  const until = async (pred, from, what) => {
    for (;;) {
      const i = seen.findIndex((m, j) => j >= from && pred(m));
      if (i >= 0) return i;
      if (state.ended) throw state.failure || new Error(`the session ended before ${what}: ${JSON.stringify(seen)}`);
      await new Promise((resolve) => waiters.push(resolve));
    }
  };
  return {
    seen,
    state,
    until,
    async result(from = seen.length) {
      const i = await until((m) => m.type === 'result', from, 'a result');
      return seen.slice(from, i + 1);
    },
    async ended() {
      while (!state.ended) await new Promise((resolve) => waiters.push(resolve));
    },
  };
}
const said = (messages, words) => messages.some((m) => m.type === 'assistant' && m.message.content.some((c) => c.text === words));

for (const suffix of ['cli-eph', 'sdk-per']) {
  test(`${suffix}: FleetManager.openChatSession holds a Docker agent across turns, an interrupt and a close`, { timeout }, async () => {
    const session = await fleet.openChatSession(name(suffix), { prompt: '#say first turn', resume: null });
    const r = reader(session);
    const first = await r.result(0);
    assert.ok(said(first, 'first turn'), JSON.stringify(first));
    assert.equal(first[0].cwd, '/workspace', 'the session runs in the container');
    const sessionId = first.at(-1).session_id;
    const [id] = containers(suffix);
    assert.ok(id && running(id), 'the agent\'s container runs');

    const commands = await session.listCommands();
    assert.ok(commands.some((c) => c.name === 'compact'), JSON.stringify(commands));

    let from = r.seen.length;
    await session.send('#say second turn');
    const second = await r.result(from);
    assert.ok(said(second, 'second turn'));
    assert.equal(second.at(-1).session_id, sessionId, 'one session across turns');
    assert.equal(second.at(-1).standin.earlier_turns, 1);

    from = r.seen.length;
    await session.send('#sleep 60');
    await new Promise((resolve) => setTimeout(resolve, 300));
    await session.interrupt();
    const interrupted = await r.result(from);
    assert.equal(interrupted.at(-1).standin.interrupted, true);

    await session.setModel('claude-other-9');
    from = r.seen.length;
    await session.send('#background 60');
    const started = await r.result(from);
    const task = started.find((m) => m.standin_task_id).standin_task_id;
    assert.equal(started.find((m) => m.type === 'assistant').message.model, 'claude-other-9');
    from = r.seen.length;
    await session.stopTask(task);
    await r.until((m) => m.subtype === 'task_notification' && m.status === 'stopped', from, 'the stopped task');

    const t = Date.now();
    await session.close();
    assert.ok(Date.now() - t < 2000, `close took ${Date.now() - t} ms`);
    await r.ended();
    assert.equal(r.state.failure, null);
    assert.equal(running(id), !AGENTS[suffix].ephemeral, 'ephemeral: stopped and kept; persistent: up');
    // The transcript has the name herdctl's session code reads (its flat docker-sessions/; its
    // listing shows a session once a job record, a chat platform's binding or an adoption
    // attributes it, which openChatSession alone does not, for host sessions either), and
    // herdctl resumes the session in a new chat session.
    const flat = path.join(stateDir, 'docker-sessions', `${sessionId}.jsonl`);
    assert.ok(fs.statSync(flat).isFile(), `${flat} is missing`);
    const again = await fleet.openChatSession(name(suffix), { prompt: '#say third turn', resume: sessionId });
    const a = reader(again);
    const third = await a.result(0);
    assert.ok(said(third, 'third turn'), JSON.stringify(third));
    assert.equal(third.at(-1).session_id, sessionId, 'the same session, resumed');
    assert.ok(third.at(-1).standin.earlier_turns >= 2, JSON.stringify(third.at(-1).standin));
    await again.close();
    await a.ended();
    assert.equal(a.state.failure, null);
  });
}

test('listAgentCommands works for a Docker agent (it opens and closes a session)', { timeout }, async () => {
  const commands = await fleet.listAgentCommands(name('cli-eph'));
  assert.ok(commands.some((c) => c.name === 'compact'), JSON.stringify(commands));
});

test('a managed session is reaped by herdctl when its turn ends idle, and kept while it has background work', { timeout }, async () => {
  const session = await fleet.openChatSession(name('managed'), { prompt: '#say reap me', manageLifecycle: true, resume: null });
  const r = reader(session);
  await r.result(0);
  // turn_end with no background work: herdctl's reaper closes the session; the messages end.
  await r.ended();
  assert.equal(r.state.failure, null);
  const [id] = containers('managed');
  assert.equal(running(id), false, 'the ephemeral container was released');

  const busy = await fleet.openChatSession(name('managed'), { prompt: '#background 60', manageLifecycle: true, resume: null });
  const b = reader(busy);
  const turn = await b.result(0);
  const sessionId = turn.at(-1).session_id;
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.equal(b.state.ended, false, 'kept alive for its background task');
  assert.equal(fleet.getSessionLifecycle().reaper.isSessionLive(sessionId), true);
  await busy.close();
  await b.ended();
});

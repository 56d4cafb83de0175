// Real jobs through herdctl's own FleetManager, with herdctl-container swapped in for herdctl's
// Docker layer (only container-runner.ts and docker-config.ts changed, to re-exports). Run by
// tests/herdctl/run.mjs, which builds herdctl from its source snapshot and passes the built
// package's directory in HERDCTL_CORE. Everything is checked through herdctl's own records and
// APIs: its job records and their output, its session handling (resume, listing), its cancelJob.
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
const herdctl = await import(pathToFileURL(path.join(core, 'dist', 'index.js')).href);
const { FleetManager, getJob, readJobOutputAll } = herdctl;

const IMAGE = 'herdctl-test/runtime:latest';
const run = crypto.randomBytes(4).toString('hex');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'herdctl-fleet-'));
const stateDir = path.join(root, 'state');
const docker = (...args) => execFileSync('docker', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** The test's agents: name suffix, runtime, ephemeral, and extra YAML for the fleet's entry. */
const AGENTS = {
  'cli-eph': { runtime: 'cli', ephemeral: true },
  'cli-per': { runtime: 'cli', ephemeral: false },
  'sdk-eph': { runtime: 'sdk', ephemeral: true },
  'sdk-per': { runtime: 'sdk', ephemeral: false },
  'stale': { runtime: 'cli', ephemeral: true },
  'rootws': { runtime: 'cli', ephemeral: true, workspaceMode: 0o555 },
  'gpu': {
    runtime: 'cli', ephemeral: true,
    // A GPU-style device (herdctl's docs pass /dev/nvidia0 and friends); /dev/null stands in.
    hostConfig: { Devices: [{ PathOnHost: '/dev/null', PathInContainer: '/dev/herdctl-gpu0', CgroupPermissions: 'rwm' }] },
  },
};
const name = (suffix) => `hc-${run}-${suffix}`;
const workspace = (suffix) => path.join(root, `ws-${suffix}`);

/** Writes the fleet: herdctl.yaml with the docker defaults, one agent file per agent. */
function writeFleet() {
  fs.mkdirSync(path.join(root, 'agents'), { recursive: true });
  const entries = [];
  for (const [suffix, a] of Object.entries(AGENTS)) {
    const ws = workspace(suffix);
    fs.mkdirSync(ws, { recursive: true });
    // The agent runs as a non-root user (1000:1000 under a root herdctl): its workspace must be
    // writable for it, except where a test says otherwise.
    fs.chmodSync(ws, a.workspaceMode ?? 0o777);
    fs.writeFileSync(path.join(root, 'agents', `${suffix}.yaml`), [
      `name: ${name(suffix)}`,
      `runtime: ${a.runtime}`,
      `working_directory: ${ws}`,
      'docker:',
      '  enabled: true',
      `  ephemeral: ${a.ephemeral}`,
      '',
    ].join('\n'));
    const overrides = a.hostConfig ? { docker: { host_config: a.hostConfig } } : undefined;
    entries.push(`  - path: ./agents/${suffix}.yaml` + (overrides ? `\n    overrides: ${JSON.stringify(overrides)}` : ''));
  }
  fs.writeFileSync(path.join(root, 'herdctl.yaml'), [
    'version: 1',
    'fleet:',
    `  name: hc-${run}`,
    'defaults:',
    '  docker:',
    `    image: ${IMAGE}`,
    '    network: none',
    '    memory: 256m',
    '    max_containers: 2',
    '    labels:',
    "      herdctl-test: '1'",
    `      herdctl-test-run: '${run}'`,
    'agents:',
    ...entries,
    '',
  ].join('\n'));
}

/** Containers of this run, by the label every one of them carries. */
function containers(agentSuffix) {
  const filters = ['--filter', `label=herdctl-test-run=${run}`];
  if (agentSuffix) filters.push('--filter', `label=dev.herdctl.agent=${name(agentSuffix)}`);
  return docker('ps', '-aq', '--no-trunc', ...filters).split('\n').filter(Boolean);
}

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
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

/** Triggers a job of agent `suffix` and waits for it; returns herdctl's result, record and output. */
async function job(suffix, prompt, options = {}) {
  const result = await fleet.trigger(name(suffix), undefined, { prompt, ...options });
  const jobsDir = path.join(stateDir, 'jobs');
  const record = await getJob(jobsDir, result.jobId);
  const output = await readJobOutputAll(jobsDir, result.jobId);
  return { result, record, output };
}

const said = (output, text) => output.some((o) => o.type === 'assistant' && String(o.content ?? '').includes(text));

for (const suffix of ['cli-eph', 'cli-per', 'sdk-eph', 'sdk-per']) {
  test(`${suffix}: output in herdctl's job record, resume by herdctl's session, sessions listed`, async () => {
    const first = await job(suffix, '#say first words');
    assert.equal(first.record.status, 'completed', JSON.stringify(first.record));
    assert.equal(first.result.success, true);
    assert.ok(said(first.output, 'first words'), JSON.stringify(first.output));
    const session = first.result.sessionId;
    assert.ok(session, 'herdctl learned the session id');

    // No resume given: herdctl resumes the agent's session itself (its session record, checked
    // against the transcript where herdctl looks for it).
    const second = await job(suffix, '#say second words');
    assert.equal(second.record.status, 'completed', JSON.stringify(second.record));
    assert.equal(second.result.sessionId, session, 'the same session continued');
    assert.ok(said(second.output, `resumed session ${session} with 1 earlier turns`), JSON.stringify(second.output));

    // herdctl caches who owns which session for 30 s; its own API drops the cache, as its web
    // UI does after a job.
    fleet.invalidateSessions(name(suffix));
    const listed = await fleet.getAgentSessions(name(suffix));
    assert.ok(listed.some((s) => s.sessionId === session), JSON.stringify(listed));

    const ids = containers(suffix);
    const persistent = !AGENTS[suffix].ephemeral;
    assert.equal(ids.length, persistent ? 1 : 2, 'persistent: one container, reused');
  });
}

test("herdctl's deleteSession removes a session from its view, and later jobs do not bring it back", async () => {
  const agent = name('cli-eph');
  fleet.invalidateSessions(agent);
  const [newest] = await fleet.getAgentSessions(agent);
  assert.ok(newest, 'a session to delete');
  assert.equal(await fleet.deleteSession(agent, newest.sessionId), true);
  // The next job finds its session gone where herdctl looks, and starts a fresh one.
  const next = await job('cli-eph', '#say after the delete');
  assert.equal(next.record.status, 'completed', JSON.stringify(next.record));
  assert.notEqual(next.result.sessionId, newest.sessionId);
  fleet.invalidateSessions(agent);
  const ids = (await fleet.getAgentSessions(agent)).map((s) => s.sessionId);
  assert.ok(!ids.includes(newest.sessionId), JSON.stringify(ids));
  assert.ok(ids.includes(next.result.sessionId), JSON.stringify(ids));
});

test("cancelJob leaves no agent process, and herdctl records the job as cancelled", async () => {
  let jobId;
  let created;
  const started = new Promise((resolve) => (created = resolve));
  const triggered = fleet.trigger(name('cli-per'), undefined, {
    prompt: '#spawn-child\n#sleep 120',
    onJobCreated: (id) => {
      jobId = id;
      created();
    },
    onMessage: (m) => {
      if (m.standin_child_pid) spawned = true;
    },
  });
  let spawned = false;
  await started;
  const deadline = Date.now() + 30_000;
  while (!spawned && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.ok(spawned, 'the agent started its child');
  const t0 = Date.now();
  await fleet.cancelJob(jobId);
  await triggered.catch(() => {});
  const record = await getJob(path.join(stateDir, 'jobs'), jobId);
  assert.equal(record.status, 'cancelled', JSON.stringify(record));
  // The persistent container lives on; nothing of the job does.
  const [id] = containers('cli-per');
  const deadlineGone = Date.now() + 5_000;
  let left;
  do {
    left = docker('top', id, '-o', 'pid,args').split('\n').slice(1).filter((l) => /claude|sleep 86399|sleep 120/.test(l));
    if (left.length === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  } while (Date.now() < deadlineGone);
  assert.deepEqual(left, [], 'no agent process left in the container');
  assert.ok(Date.now() - t0 < 5_000, `cancel took ${Date.now() - t0} ms`);
});

test('a failed job is recorded as failed, with the agent\'s words', async () => {
  const failed = await job('cli-eph', '#error-result the tool broke');
  assert.equal(failed.result.success, false);
  assert.equal(failed.record.status, 'failed', JSON.stringify(failed.record));
  assert.match(failed.result.error?.message ?? JSON.stringify(failed.record), /the tool broke/);
});

test("a stale resume fails, and herdctl's own retry with a fresh session answers", async () => {
  const stale = crypto.randomUUID();
  const { result, record, output } = await job('stale', '#say answered anyway', { resume: stale });
  assert.equal(record.status, 'completed', JSON.stringify(record));
  assert.ok(output.some((o) => o.type === 'system' && /Retrying with fresh session/.test(o.content ?? '')), JSON.stringify(output));
  assert.ok(said(output, 'answered anyway'));
  assert.notEqual(result.sessionId, stale);
});

test('a workspace the agent cannot write fails the job before it starts, saying what to do', async () => {
  const { result, record } = await job('rootws', '#say never');
  assert.equal(record.status, 'failed', JSON.stringify(record));
  const message = result.error?.message ?? '';
  assert.match(message, /cannot write the workspace/);
  assert.match(message, /docker\.user/);
  assert.deepEqual(containers('rootws'), [], 'no container was made');
});

test('a GPU-style Devices host_config is accepted and applied', async () => {
  const { record } = await job('gpu', '#say with a device');
  assert.equal(record.status, 'completed', JSON.stringify(record));
  const [id] = containers('gpu');
  const devices = JSON.parse(docker('inspect', '--format', '{{json .HostConfig.Devices}}', id));
  assert.deepEqual(devices, [{ PathOnHost: '/dev/null', PathInContainer: '/dev/herdctl-gpu0', CgroupPermissions: 'rwm' }]);
});

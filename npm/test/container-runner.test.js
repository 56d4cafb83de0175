'use strict';
// ContainerRunner end to end against the real engine, with the test image's stand-in `claude`
// and stand-in Agent SDK: both strategies, the containerCommand hook, resume, cancel by break and
// by abort (no job process left), a killed container, a missing image, a 4 MiB prompt, and
// errors before the container exists thrown with their code.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const { ContainerRunner } = require('../index.js');
const { Fleet, CLIRuntime, SDKRuntime, collect, docker, isRunning, jobProcesses, sleep } = require('./helpers/fleet.js');

const fleet = new Fleet('runner');
test.after(() => fleet.cleanup());

const types = (messages) => messages.map((m) => m.type);
/** The agent's own session directory name (the core's agent_dir_name): readable part, hash. */
const agentDirName = (name) => {
  const readable = [...name].slice(0, 48).map((c) => (/[A-Za-z0-9_.-]/.test(c) ? c : '-')).join('').replace(/^\./, '-');
  const hash = crypto.createHash('sha256').update(name).digest('hex').slice(0, 16);
  return readable ? `${readable}-${hash}` : hash;
};
const text = (m) => m.message && m.message.content && m.message.content[0] && m.message.content[0].text;

test('CLI strategy: the agent flags reach claude, the prompt arrives on stdin, messages stream', async () => {
  const agent = fleet.agent('cli', {
    model: 'claude-test-model', permission_mode: 'plan', system_prompt: 'be terse',
    allowed_tools: ['Read', 'Bash(git *)'], denied_tools: ['Write'],
  });
  const messages = await collect(fleet.runner().execute({ prompt: 'hello from node', agent, systemPromptAppend: 'and kind' }));
  assert.deepEqual(types(messages), ['system', 'assistant', 'result']);
  const seen = messages[0].standin.seen;
  assert.equal(seen.model, 'claude-test-model');
  assert.equal(seen.permissionMode, 'plan');
  assert.equal(seen.systemPrompt, 'be terse');
  assert.equal(seen.appendSystemPrompt, 'and kind');
  assert.deepEqual(seen.allowedTools, ['Read,Bash(git *)']);
  assert.equal(seen.promptFrom, 'stdin');
  assert.equal(messages[0].cwd, '/workspace');
  assert.equal(messages[2].subtype, 'success');
  assert.equal(messages[2].standin.prompt_bytes, Buffer.byteLength('hello from node'));
});

test('SDK strategy (by class name and by kind): query() runs in the container with its options', async () => {
  for (const runtime of [new SDKRuntime(), { kind: 'sdk' }]) {
    const agent = fleet.agent(`sdk-${runtime.kind || 'class'}`, { max_turns: 4 });
    const messages = await collect(fleet.runner(runtime).execute({
      prompt: '#say inside', agent, includePartialMessages: true, systemPromptAppend: 'extra',
    }));
    assert.equal(messages[0].type, 'system');
    assert.equal(messages[0].cwd, '/workspace');
    assert.equal(messages[0].standin.seen.systemPrompt.append, 'extra');
    assert.equal(messages[0].standin.seen.maxTurns, 4);
    assert.ok(messages.some((m) => m.type === 'stream_event'), 'partial messages were asked for');
    assert.ok(messages.some((m) => text(m) === 'inside'));
    assert.equal(messages.at(-1).type, 'result');
  }
});

test('a runtime with containerCommand runs its own command; stdout JSON lines are the messages', async () => {
  const seen = [];
  const runtime = {
    containerCommand(options) {
      seen.push(options.prompt);
      // `{oops}` looks like an object to the Rust side and is dropped by the JS parse.
      const script = 'echo "not json"; echo "{oops}"; while read -r line; do echo "{\\"type\\":\\"assistant\\",\\"echo\\":\\"$line\\"}"; done; echo "{\\"type\\":\\"result\\",\\"subtype\\":\\"success\\"}"';
      return { argv: ['sh', '-c', script], stdin: new TextEncoder().encode('one\ntwo\n') };
    },
  };
  const messages = await collect(fleet.runner(runtime).execute({ prompt: 'p', agent: fleet.agent('raw') }));
  assert.deepEqual(seen, ['p']);
  assert.deepEqual(messages.map((m) => m.echo || m.type), ['one', 'two', 'result']);
});

test('an unsupported runtime yields an error message naming it', async () => {
  class OllamaRuntime {}
  const messages = await collect(fleet.runner(new OllamaRuntime()).execute({ prompt: 'p', agent: fleet.agent('unsupported') }));
  assert.equal(messages.length, 1);
  assert.equal(messages[0].type, 'error');
  assert.match(messages[0].message, /unsupported runtime OllamaRuntime/);
  assert.deepEqual(fleet.containers().filter((id) => id.includes('unsupported')), []);
});

test('resume finds the earlier session in the agent\'s own session directory', async () => {
  const agent = fleet.agent('resume');
  const first = await collect(fleet.runner().execute({ prompt: 'remember this', agent }));
  const session = first.at(-1).session_id;
  assert.ok(session);
  const dir = path.join(fleet.stateDir, 'docker-sessions', agentDirName(agent.qualifiedName));
  const own = fs.lstatSync(path.join(dir, `${session}.jsonl`));
  // herdctl's session code reads the flat directory: the same file under a second name there.
  const flat = fs.lstatSync(path.join(fleet.stateDir, 'docker-sessions', `${session}.jsonl`));
  assert.ok(flat.isFile());
  assert.equal(flat.ino, own.ino);
  // A new ContainerRunner, as herdctl makes per job.
  const second = await collect(fleet.runner().execute({ prompt: 'and now?', agent, resume: session }));
  assert.equal(second.at(-1).type, 'result');
  assert.equal(second.at(-1).session_id, session);
  assert.equal(second.at(-1).standin.earlier_turns, 1);
  assert.match(text(second.find((m) => m.standin_resumed)), /1 earlier turns/);
});

for (const mode of ['ephemeral', 'persistent']) {
  test(`breaking out of for await (${mode}) kills the job's processes before the generator finishes`, async () => {
    const agent = fleet.agent(`break-${mode}`);
    const runner = fleet.runner(new CLIRuntime(), { ephemeral: mode === 'ephemeral' });
    let childPid;
    for await (const m of runner.execute({ prompt: '#spawn-child\n#sleep 120', agent })) {
      if (m.standin_child_pid) {
        childPid = m.standin_child_pid;
        break;
      }
    }
    assert.ok(childPid, 'the job spawned its child');
    const [c] = await runner.listContainers(agent.qualifiedName);
    assert.deepEqual(jobProcesses(c.id), [], 'no process of the job remains');
    assert.equal(isRunning(c.id), mode === 'persistent', 'ephemeral stopped, persistent kept running');
  });
}

test('abortController.abort() cancels the job and ends the generator after the release', async () => {
  const agent = fleet.agent('abort');
  const runner = fleet.runner(new SDKRuntime(), { ephemeral: false });
  const abortController = new AbortController();
  const seen = [];
  const started = Date.now();
  for await (const m of runner.execute({ prompt: '#spawn-child\n#sleep 120', agent, abortController })) {
    seen.push(m.type);
    if (m.standin_child_pid) setTimeout(() => abortController.abort(), 50);
  }
  assert.ok(Date.now() - started < 10_000, 'the generator ended soon after the abort');
  assert.deepEqual(seen, ['system', 'assistant']);
  const [c] = await runner.listContainers(agent.qualifiedName);
  assert.ok(isRunning(c.id));
  assert.deepEqual(jobProcesses(c.id), [], 'no process of the job remains');
});

test('an abortController aborted before execute starts nothing', async () => {
  const agent = fleet.agent('preaborted');
  const runner = fleet.runner();
  const abortController = new AbortController();
  abortController.abort();
  assert.deepEqual(await collect(runner.execute({ prompt: 'p', agent, abortController })), []);
  assert.deepEqual(await runner.listContainers(agent.qualifiedName), []);
});

test('a container killed mid-job ends the generator with an error message', async () => {
  const agent = fleet.agent('killed');
  const runner = fleet.runner();
  const messages = [];
  for await (const m of runner.execute({ prompt: '#say started\n#sleep 120', agent })) {
    messages.push(m);
    if (text(m) === 'started') {
      const [c] = await runner.listContainers(agent.qualifiedName);
      docker(['kill', c.id]);
    }
  }
  const last = messages.at(-1);
  assert.equal(last.type, 'error');
  assert.equal(last.outcome, 'container_died');
  assert.equal(last.exit_code, 137);
  assert.match(last.message, /^the agent job failed: the container/);
});

test('a failing agent ends with one error carrying its exit code and stderr', async () => {
  const messages = await collect(fleet.runner().execute({ prompt: '#stderr disk on fire\n#exit 42', agent: fleet.agent('fails') }));
  const last = messages.at(-1);
  assert.equal(last.type, 'error');
  assert.equal(last.exit_code, 42);
  assert.equal(last.oom_killed, false);
  assert.equal(last.message, 'the agent job failed: exited with code 42; stderr: disk on fire');
});

test('a missing image throws a clear Error with code NOT_FOUND, and no container remains', async () => {
  const agent = fleet.agent('noimage');
  const runner = new ContainerRunner(new CLIRuntime(), fleet.config({ image: 'herdctl-test/no-such-image:never' }), fleet.stateDir);
  await assert.rejects(collect(runner.execute({ prompt: 'p', agent })), (e) => {
    assert.ok(e instanceof Error);
    assert.equal(e.code, 'NOT_FOUND');
    assert.match(e.message, /no such image herdctl-test\/no-such-image:never; build it/);
    return true;
  });
  assert.deepEqual(await runner.listContainers(agent.qualifiedName), []);
});

test('errors before the container exists are thrown with their code', async () => {
  assert.throws(() => fleet.runner(new CLIRuntime(), { memory: 'lots' }), (e) => e.code === 'INVALID_CONFIG' && /docker\.memory/.test(e.message));
  const runner = fleet.runner();
  await assert.rejects(
    collect(runner.execute({ prompt: 'p', agent: fleet.agent('nows', { working_directory: '/no/such/dir' }) })),
    (e) => e.code === 'INVALID_CONFIG' && /\/no\/such\/dir/.test(e.message),
  );
  const unreachable = new ContainerRunner(new CLIRuntime(), fleet.config(), fleet.stateDir, { socketPath: '/nonexistent/docker.sock' });
  await assert.rejects(collect(unreachable.execute({ prompt: 'p', agent: fleet.agent('nodocker') })), (e) => e.code === 'ENGINE_UNREACHABLE');
  const raw = fleet.runner({ containerCommand: () => ({ argv: ['sh', 42] }) });
  await assert.rejects(collect(raw.execute({ prompt: 'p', agent: fleet.agent('badraw') })), (e) => e.code === 'INVALID_ARGUMENT' && /containerCommand\.argv\[1\]/.test(e.message));
});

test('jobTimeoutMs ends a job that runs too long with a timed_out error, and no process remains', async () => {
  const agent = fleet.agent('timeout');
  const runner = new ContainerRunner(new CLIRuntime(), fleet.config({ ephemeral: false }), fleet.stateDir, { jobTimeoutMs: 300 });
  const started = Date.now();
  const messages = await collect(runner.execute({ prompt: '#sleep 600', agent }));
  const last = messages.at(-1);
  assert.equal(last.type, 'error');
  assert.equal(last.outcome, 'timed_out');
  assert.match(last.message, /timed out after 300ms/);
  assert.ok(Date.now() - started < 5000, 'the job was stopped, not waited out');
  const [container] = await runner.listContainers(agent.qualifiedName);
  assert.deepEqual(jobProcesses(container.id), []);
});

test('translatePaths rewrites container paths in messages to the host\'s', async () => {
  const agent = fleet.agent('paths');
  const runner = new ContainerRunner(new CLIRuntime(), fleet.config(), fleet.stateDir, { translatePaths: true });
  const messages = await collect(runner.execute({ prompt: 'hi', agent }));
  assert.equal(messages[0].type, 'system');
  assert.equal(messages[0].cwd, fleet.workspace);
  const plain = await collect(fleet.runner().execute({ prompt: 'hi', agent }));
  assert.equal(plain[0].cwd, '/workspace');
});

test('sessionLayout "flat" keeps sessions where herdctl\'s discovery looks', async () => {
  const agent = fleet.agent('flat');
  const runner = new ContainerRunner(new CLIRuntime(), fleet.config(), fleet.stateDir, { sessionLayout: 'flat' });
  const messages = await collect(runner.execute({ prompt: 'hi', agent }));
  const session = messages[0].session_id;
  assert.ok(fs.existsSync(path.join(fleet.stateDir, 'docker-sessions', `${session}.jsonl`)));
});

test('bad runner options are thrown with their code and field', () => {
  const make = (options) => () => new ContainerRunner(new CLIRuntime(), fleet.config(), fleet.stateDir, options);
  assert.throws(make({ pull: 'sometimes' }), (e) => e.code === 'INVALID_ARGUMENT' && /options\.pull: "sometimes" is not a pull policy/.test(e.message));
  assert.throws(make({ sessionLayout: 'nested' }), (e) => e.code === 'INVALID_ARGUMENT' && /options\.sessionLayout/.test(e.message));
  assert.throws(make({ jobTimeoutMs: -1 }), (e) => e.code === 'INVALID_ARGUMENT' && /options\.jobTimeoutMs/.test(e.message));
  assert.throws(make({ dockerHost: 'unix:///a', socketPath: '/b' }), (e) => e.code === 'INVALID_ARGUMENT');
});

test('a 4 MiB prompt arrives intact', async () => {
  const filler = crypto.randomBytes(3 << 20).toString('base64'); // 4 MiB of text
  const prompt = `#sha256\n${filler}\n$1234 \`x\` "quoted" 'single' ünïcödé`;
  const expected = crypto.createHash('sha256').update(prompt, 'utf8').digest('hex');
  const messages = await collect(fleet.runner().execute({ prompt, agent: fleet.agent('bigprompt') }));
  const result = messages.at(-1);
  assert.equal(result.type, 'result');
  assert.equal(result.standin.prompt_sha256, expected);
  assert.equal(result.standin.prompt_bytes, Buffer.byteLength(prompt));
});

test('a failed job yields its error before its error result, so herdctl records a failure', async () => {
  const messages = await collect(fleet.runner().execute({ prompt: '#error-result it broke', agent: fleet.agent('errresult') }));
  const endings = types(messages).filter((t) => t === 'result' || t === 'error');
  assert.deepEqual(endings, ['error', 'result']);
  const error = messages.find((m) => m.type === 'error');
  assert.equal(error.message, 'the agent job failed: exited with code 1; its result: it broke');
});

test('a dockerode client as the 4th argument (herdctl\'s own signature) gives its engine address', async () => {
  // A stand-in for dockerode: its methods (one named `pull`) and its modem's address.
  const client = (modem) => ({ modem, pull() {}, createContainer() {}, getContainer() {} });
  const socketPath = process.env.DOCKER_HOST ? process.env.DOCKER_HOST.replace(/^unix:\/\//, '') : '/var/run/docker.sock';
  const agent = fleet.agent('dockerode');
  const ok = new ContainerRunner(new CLIRuntime(), fleet.config(), fleet.stateDir, client({ socketPath }));
  assert.equal((await collect(ok.execute({ prompt: 'hi', agent }))).at(-1).type, 'result');
  // Without an address (a test double), the default engine.
  const bare = new ContainerRunner(new CLIRuntime(), fleet.config(), fleet.stateDir, { createContainer() {} });
  assert.equal((await collect(bare.execute({ prompt: 'hi', agent }))).at(-1).type, 'result');
  const elsewhere = new ContainerRunner(new CLIRuntime(), fleet.config(), fleet.stateDir, client({ socketPath: '/nonexistent/docker.sock' }));
  await assert.rejects(collect(elsewhere.execute({ prompt: 'p', agent })), (e) => e.code === 'ENGINE_UNREACHABLE');
  assert.throws(
    () => new ContainerRunner(new CLIRuntime(), fleet.config(), fleet.stateDir, client({ host: '127.0.0.1', port: 2376, protocol: 'https' })),
    (e) => e.code === 'INVALID_ARGUMENT' && /https:\/\/127\.0\.0\.1:2376/.test(e.message),
  );
});

test('HERDCTL_CONTAINER_PULL sets the pull policy of runners built without options', () => {
  const saved = process.env.HERDCTL_CONTAINER_PULL;
  try {
    process.env.HERDCTL_CONTAINER_PULL = 'sometimes';
    assert.throws(
      () => new ContainerRunner(new CLIRuntime(), fleet.config(), fleet.stateDir),
      (e) => e.code === 'INVALID_CONFIG' && /HERDCTL_CONTAINER_PULL: "sometimes" is not a pull policy/.test(e.message),
    );
    process.env.HERDCTL_CONTAINER_PULL = 'if-missing';
    assert.ok(new ContainerRunner(new CLIRuntime(), fleet.config(), fleet.stateDir));
  } finally {
    if (saved === undefined) delete process.env.HERDCTL_CONTAINER_PULL;
    else process.env.HERDCTL_CONTAINER_PULL = saved;
  }
});

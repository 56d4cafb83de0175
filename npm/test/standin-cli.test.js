'use strict';
// The test image's stand-in `claude` behaves like `claude -p --output-format stream-json
// --verbose` where the ContainerRunner tests rely on it: flags, stdin, session files, resume and
// fork, and the prompt controls. Run inside the real image, as uid 1000 with network none.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Box, jsonLines } = require('./helpers/image.js');

const STREAM = ['claude', '-p', '--output-format', 'stream-json', '--verbose'];
let box;
test.before(async () => {
  box = await Box.start('cli');
});
test.after(async () => {
  if (box) await box.remove();
});

test('prints init, assistant and result lines and reports every flag it saw', async () => {
  const mcp = JSON.stringify({ mcpServers: { files: { command: 'mcp-files' } } });
  const res = await box.exec([
    ...STREAM, '--permission-mode', 'acceptEdits', '--model', 'm-test', '--system-prompt', 'be terse',
    '--append-system-prompt', 'and kind', '--allowedTools', 'Bash(git log:*),Read', '--disallowedTools', 'Write',
    '--tools', 'Bash Read Write', '--setting-sources', 'project,local', '--mcp-config', mcp,
    '--include-partial-messages',
  ], { input: 'hello there' });
  assert.equal(res.code, 0, res.stderr);
  const msgs = jsonLines(res.stdout);
  const [init] = msgs;
  assert.equal(init.type, 'system');
  assert.equal(init.subtype, 'init');
  assert.equal(init.cwd, '/workspace');
  assert.equal(init.model, 'm-test');
  assert.equal(init.permissionMode, 'acceptEdits');
  assert.deepEqual(init.tools, ['Bash', 'Read'], '--tools minus --disallowedTools');
  assert.deepEqual(init.mcp_servers.map((s) => s.name), ['files']);
  assert.deepEqual(init.standin.seen, {
    print: true, outputFormat: 'stream-json', verbose: true, permissionMode: 'acceptEdits', model: 'm-test',
    systemPrompt: 'be terse', appendSystemPrompt: 'and kind', allowedTools: ['Bash(git log:*),Read'],
    disallowedTools: ['Write'], tools: ['Bash Read Write'], settingSources: 'project,local', mcpConfig: [mcp],
    includePartialMessages: true, promptFrom: 'stdin',
  });
  assert.deepEqual(msgs.map((m) => m.type), ['system', 'stream_event', 'assistant', 'result']);
  const result = msgs.at(-1);
  assert.equal(result.is_error, false);
  assert.equal(result.session_id, init.session_id);
  assert.equal(result.standin.prompt_bytes, Buffer.byteLength('hello there'));
  const file = await box.exec(['cat', `/home/claude/.claude/projects/-workspace/${init.session_id}.jsonl`]);
  assert.equal(file.code, 0, 'the session file exists under the Claude home');
  const entries = jsonLines(file.stdout);
  assert.deepEqual(entries.map((e) => e.type), ['user', 'assistant']);
  assert.equal(entries[0].message.content, 'hello there');
});

test('--resume continues a session and counts its earlier turns; --fork-session copies it', async () => {
  const first = jsonLines((await box.exec(STREAM, { input: 'turn one' })).stdout);
  const id = first[0].session_id;
  const second = await box.exec([...STREAM, '--resume', id], { input: 'turn two' });
  assert.equal(second.code, 0, second.stderr);
  const msgs = jsonLines(second.stdout);
  assert.equal(msgs[0].session_id, id);
  assert.deepEqual(msgs[0].standin.resumed, true);
  assert.equal(msgs[1].standin_resumed.earlier_turns, 1);
  assert.match(msgs[1].message.content[0].text, new RegExp(`resumed session ${id} with 1 earlier turns`));
  assert.equal(msgs.at(-1).num_turns, 2);

  const fork = jsonLines((await box.exec([...STREAM, '--resume', id, '--fork-session'], { input: 'turn three' })).stdout);
  assert.notEqual(fork[0].session_id, id);
  assert.equal(fork[0].standin.forked, true);
  assert.equal(fork[0].standin.earlier_turns, 2);
  const original = await box.exec(['cat', `/home/claude/.claude/projects/-workspace/${id}.jsonl`]);
  assert.equal(jsonLines(original.stdout).filter((e) => e.type === 'user').length, 2, 'a fork leaves the original alone');
});

test('--session-id names a new session; resuming a missing one ends in an error result', async () => {
  const id = crypto.randomUUID();
  const named = jsonLines((await box.exec([...STREAM, '--session-id', id], { input: 'x' })).stdout);
  assert.equal(named[0].session_id, id);
  const missing = crypto.randomUUID();
  const res = await box.exec([...STREAM, '--resume', missing], { input: 'x' });
  assert.equal(res.code, 1);
  const [result] = jsonLines(res.stdout);
  assert.equal(result.type, 'result');
  assert.equal(result.is_error, true);
  assert.equal(result.result, `No conversation found with session ID: ${missing}`);
});

test('bad flags fail like the real CLI: on stderr, exit 1', async () => {
  const unknown = await box.exec([...STREAM, '--no-such-flag'], { input: 'x' });
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /unknown option '--no-such-flag'/);
  const noVerbose = await box.exec(['claude', '-p', '--output-format', 'stream-json'], { input: 'x' });
  assert.equal(noVerbose.code, 1);
  assert.match(noVerbose.stderr, /requires --verbose/);
});

test('prompt controls: stderr, exit code, env report without the value, numbered lines', async () => {
  const prompt = ['do things', '#stderr warn: careful', '#echo-env SECRET_TOKEN', '#echo-env ABSENT', '#lines 3 2000', '#exit 3'].join('\n');
  const res = await box.exec(STREAM, { input: prompt, env: { SECRET_TOKEN: 'hunter2-value' } });
  assert.equal(res.code, 3);
  assert.equal(res.stderr, 'warn: careful\n');
  assert.ok(!res.stdout.includes('hunter2-value'), 'an env value never reaches the output');
  const msgs = jsonLines(res.stdout);
  assert.deepEqual(msgs.filter((m) => m.standin_env).map((m) => m.standin_env), [
    { name: 'SECRET_TOKEN', set: true, length: 13 },
    { name: 'ABSENT', set: false, length: 0 },
  ]);
  const lines = res.stdout.split('\n').filter((l) => l.includes('"standin_line"'));
  assert.deepEqual(lines.map((l) => JSON.parse(l).standin_line), [0, 1, 2]);
  for (const l of lines) assert.ok(Math.abs(l.length - 2000) < 100, `a #lines line is ${l.length} bytes`);
  assert.equal(msgs.filter((m) => m.type === 'result').length, 0, '#exit ends without a result');
});

test('a 4 MiB prompt on stdin arrives byte for byte (#sha256)', { timeout: 60_000 }, async () => {
  const prompt = `#sha256\n${'héllo "wörld" \\ ✓ 𝄞\t'.repeat(150_000)}`.slice(0, 4 << 20);
  const res = await box.exec(STREAM, { input: prompt });
  assert.equal(res.code, 0, res.stderr);
  const result = jsonLines(res.stdout).at(-1);
  const want = crypto.createHash('sha256').update(prompt, 'utf8').digest('hex');
  assert.equal(result.standin.prompt_sha256, want);
  assert.equal(result.standin.prompt_bytes, Buffer.byteLength(prompt));
  assert.match(result.result, new RegExp(`sha256=${want} bytes=${Buffer.byteLength(prompt)}`));
});

test('signals: #ignore-sigterm holds until SIGKILL, and a #spawn-child outlives its parent', { timeout: 60_000 }, async () => {
  let child;
  const job = box.exec(STREAM, {
    input: '#ignore-sigterm\n#spawn-child\n#sleep 30',
    onStdout: (text) => {
      const m = /"standin_child_pid":(\d+)/.exec(text);
      if (m) child = Number(m[1]);
    },
  });
  const deadline = Date.now() + 10_000;
  while (!child && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.ok(child, 'the child pid was reported');
  const [claude] = await box.kill('TERM', 'claude -p');
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(await box.pids('claude -p'), [claude], '#ignore-sigterm: still running after SIGTERM');
  await box.kill('KILL', 'claude -p');
  const res = await job;
  assert.equal(res.code, 137);
  assert.deepEqual(await box.pids('sleep 86399'), [child], 'the child outlives its parent');
  await box.kill('KILL', 'sleep 86399');
});

test('#eat-memory past the memory limit gets the process OOM-killed', { timeout: 60_000 }, async () => {
  const small = await Box.start('oom', ['--memory', '64m', '--memory-swap', '64m']);
  try {
    const res = await small.exec(STREAM, { input: '#eat-memory 256' });
    assert.equal(res.code, 137, res.stdout + res.stderr);
  } finally {
    await small.remove();
  }
});

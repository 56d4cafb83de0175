'use strict';
// The in-container SDK runner (src/herdctl/assets/sdk-runner.mjs, run as `node --input-type=module -e`)
// against the test image's stand-in Agent SDK, inside the real image: messages as JSON lines,
// options honoured, resume, stdin byte identity, abort on SIGTERM, and its error contract.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Box, IMAGE, SDK_RUNNER, jsonLines, run, uniqueName } = require('./helpers/image.js');

let box;
test.before(async () => {
  box = await Box.start('sdk');
});
test.after(async () => {
  if (box) await box.remove();
});

test('the program is small enough to travel as one argv element', () => {
  assert.ok(Buffer.byteLength(SDK_RUNNER) < 16 * 1024, `sdk-runner.mjs is ${Buffer.byteLength(SDK_RUNNER)} bytes`);
});

test('prints every message of query() as a JSON line, honouring the options', async () => {
  const res = await box.sdk('hello sdk\n#say partial please', {
    cwd: '/workspace', model: 'm-sdk', permissionMode: 'plan', includePartialMessages: true,
    systemPrompt: { type: 'preset', preset: 'claude_code', append: 'from herdctl' },
    allowedTools: ['Read'], env: { HOME: '/home/claude', API_TOKEN: 'never-shown' },
  });
  assert.equal(res.code, 0, res.stderr);
  assert.ok(!res.stdout.includes('never-shown'));
  const msgs = jsonLines(res.stdout);
  assert.deepEqual(msgs.map((m) => m.type), ['system', 'stream_event', 'assistant', 'stream_event', 'assistant', 'result']);
  const [init] = msgs;
  assert.equal(init.cwd, '/workspace');
  assert.equal(init.model, 'm-sdk');
  assert.equal(init.permissionMode, 'plan');
  assert.equal(init.standin.seen.systemPromptAppend, 'from herdctl');
  assert.equal(init.standin.seen.abortController, '<object>', 'the runner passes its AbortController');
  assert.deepEqual(init.standin.seen.envNames, ['API_TOKEN', 'HOME']);
  assert.equal(msgs.at(-1).is_error, false);
});

test('resume finds the session an earlier run wrote', async () => {
  const first = jsonLines((await box.sdk('one', { cwd: '/workspace' })).stdout);
  const id = first[0].session_id;
  const again = await box.sdk('two', { cwd: '/workspace', resume: id });
  assert.equal(again.code, 0, again.stderr);
  const msgs = jsonLines(again.stdout);
  assert.equal(msgs[0].session_id, id);
  assert.equal(msgs[1].standin_resumed.earlier_turns, 1);
  const missing = await box.sdk('x', { cwd: '/workspace', resume: crypto.randomUUID() });
  const result = jsonLines(missing.stdout).at(-1);
  assert.equal(result.is_error, true);
  assert.match(result.result, /No conversation found/);
});

test('a 4 MiB prompt on stdin reaches query() byte for byte', { timeout: 60_000 }, async () => {
  const prompt = `#sha256\n${'日本語 "quotes" \\ backslash\n'.repeat(200_000)}`.slice(0, 4 << 20);
  const res = await box.sdk(prompt, { cwd: '/workspace' });
  assert.equal(res.code, 0, res.stderr);
  const result = jsonLines(res.stdout).at(-1);
  assert.equal(result.standin.prompt_sha256, crypto.createHash('sha256').update(prompt, 'utf8').digest('hex'));
  assert.equal(result.standin.prompt_bytes, Buffer.byteLength(prompt));
});

test('SIGTERM aborts query() at once: an error line and exit 143; a spawned child is left to the runner', { timeout: 60_000 }, async () => {
  let sawChild;
  const started = Date.now();
  const job = box.sdk('#spawn-child\n#sleep 30', { cwd: '/workspace' }, {
    onStdout: (text) => {
      const m = /"standin_child_pid":(\d+)/.exec(text);
      if (m && !sawChild) {
        sawChild = Number(m[1]);
        box.kill('TERM', 'input-type=module');
      }
    },
  });
  const res = await job;
  assert.ok(sawChild, 'the child pid was reported');
  assert.equal(res.code, 143, res.stdout + res.stderr);
  assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
  assert.deepEqual(jsonLines(res.stdout).at(-1), { type: 'error', message: 'sdk-runner: aborted by SIGTERM' });
  // The stand-in leaves its child running, as a real agent's tool process may: killing it is the
  // ContainerRunner's cancel's job. Prove it is there, then clean it up.
  assert.deepEqual(await box.pids('sleep 86399'), [sawChild]);
  await box.kill('KILL', 'sleep 86399');
  assert.deepEqual(await box.pids('sleep 86399'), []);
});

test('bad input is refused with the field named, exit 2', async () => {
  const notJson = await box.exec(['node', '--input-type=module', '-e', SDK_RUNNER], { input: 'not json' });
  assert.equal(notJson.code, 2);
  assert.match(jsonLines(notJson.stdout)[0].message, /^sdk-runner: stdin is not valid JSON/);
  const noPrompt = await box.exec(['node', '--input-type=module', '-e', SDK_RUNNER], { input: '{"sdkOptions":{}}' });
  assert.equal(noPrompt.code, 2);
  assert.deepEqual(jsonLines(noPrompt.stdout), [{ type: 'error', message: "sdk-runner: bad input: field 'prompt' must be a string" }]);
  const badOptions = await box.sdk('x', []);
  assert.equal(badOptions.code, 2);
  assert.match(jsonLines(badOptions.stdout)[0].message, /field 'sdkOptions' must be an object/);
});

test('an image without the Agent SDK gets a clear error, exit 3', async () => {
  const res = await run('docker', [
    'run', '--rm', '-i', '--network', 'none', '--label', 'dev.herdctl.test=1', '--name', uniqueName('nosdk'),
    '-u', '1000:1000', '--tmpfs', '/usr/local/lib/node_modules', IMAGE, 'node', '--input-type=module', '-e', SDK_RUNNER,
  ], { input: JSON.stringify({ prompt: 'x', sdkOptions: {} }) });
  assert.equal(res.code, 3);
  const [error] = jsonLines(res.stdout);
  assert.equal(error.type, 'error');
  assert.match(error.message, /@anthropic-ai\/claude-agent-sdk is not installed in the image \(looked in .*\/usr\/local\/lib\/node_modules/);
});

test('an ESM-only SDK on NODE_PATH, packaged like the real one, is found through its exports', async () => {
  const dir = '/tmp/np/@anthropic-ai/claude-agent-sdk';
  const pkg = JSON.stringify({ name: '@anthropic-ai/claude-agent-sdk', type: 'module', main: 'sdk.mjs', exports: { '.': { types: './sdk.d.ts', default: './sdk.mjs' } } });
  const sdk = 'export function query({ prompt, options }) { return (async function* () { yield { type: "result", result: "esm:" + prompt, cwd: options.cwd }; })(); }';
  const made = await box.exec(['sh', '-c', `mkdir -p ${dir} && cat > ${dir}/package.json && printf '%s' '${sdk}' > ${dir}/sdk.mjs`], { input: pkg });
  assert.equal(made.code, 0, made.stderr);
  const res = await box.sdk('hi', { cwd: '/workspace' }, { env: { NODE_PATH: '/tmp/np' } });
  assert.equal(res.code, 0, res.stdout + res.stderr);
  assert.deepEqual(jsonLines(res.stdout), [{ type: 'result', result: 'esm:hi', cwd: '/workspace' }]);
});

test('a query() that throws ends with an error line, exit 1', async () => {
  const res = await box.sdk('#exit 7', { cwd: '/workspace' });
  assert.equal(res.code, 1);
  const msgs = jsonLines(res.stdout);
  assert.equal(msgs[0].subtype, 'init');
  assert.deepEqual(msgs.at(-1), { type: 'error', message: 'sdk-runner: query() failed: Claude Code process exited with code 7' });
});

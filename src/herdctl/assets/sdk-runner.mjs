// herdctl-container's in-container Agent SDK runner. Runs as
//   node --input-type=module -e <this file's text>
// inside an agent's container (no file of ours is needed in the image), so it stays small: the
// text travels as one argv element (the kernel caps one at 128 KiB; keep this under 16 KiB).
//
// stdin: one JSON object `{"prompt": string, "sdkOptions": object}`, read to EOF (stdin, not argv
// or env: a prompt has no size limit there and never shows in `ps` or `docker inspect`).
// stdout: every message of `query({prompt, options: sdkOptions})` as one JSON line. Failures end
// with one `{"type":"error","message":...}` line and a non-zero exit:
//   1 query() failed   2 bad input   3 the Agent SDK is not installed or has no query()
//   130 / 143 aborted by SIGINT / SIGTERM (query() got an AbortController abort first)
// stderr: what the SDK reports through its `stderr` option.
//
// With the argument `session`: a live session. stdin is one line `{"sdkOptions": object}`, then
// Claude Code's stream-json input (the protocol the SDK speaks to the CLI): `{"type":"user"}`
// lines are the turns of one query() with streaming input; `{"type":"control_request"}` lines
// (initialize first, then interrupt, set_model, stop_task) are answered on stdout with
// `{"type":"control_response"}` lines; hooks named in initialize are registered with the SDK,
// and each call goes to the host as a `hook_callback` control request whose answer is its result.
// stdout carries the SDK's messages too (never one typed `control_*`). EOF ends the turns; the
// runner exits 0 once the query has finished them.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

const SDK = '@anthropic-ai/claude-agent-sdk';
const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 };

function print(message) {
  return new Promise((resolve) => {
    if (process.stdout.write(JSON.stringify(message) + '\n')) resolve();
    else process.stdout.once('drain', resolve);
  });
}

let failed = false;
function fail(message, code) {
  if (failed) return;
  failed = true;
  process.stdout.write(JSON.stringify({ type: 'error', message: `sdk-runner: ${message}` }) + '\n', () =>
    process.exit(code),
  );
}

async function readInput() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  let input;
  try {
    input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (e) {
    throw Object.assign(new Error(`stdin is not valid JSON: ${e.message}`), { exitCode: 2 });
  }
  const bad = (what) => Object.assign(new Error(`bad input: ${what}`), { exitCode: 2 });
  if (input === null || typeof input !== 'object' || Array.isArray(input)) throw bad('expected a JSON object {prompt, sdkOptions}');
  if (typeof input.prompt !== 'string') throw bad("field 'prompt' must be a string");
  const options = input.sdkOptions === undefined ? {} : input.sdkOptions;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) throw bad("field 'sdkOptions' must be an object");
  return { prompt: input.prompt, options };
}

// ESM ignores NODE_PATH, and a global install is outside every module's node_modules chain, so
// look in the usual global roots ourselves and resolve the package entry from its package.json.
function globalRoots() {
  const roots = (process.env.NODE_PATH || '').split(':').filter(Boolean);
  roots.push(join(dirname(dirname(process.execPath)), 'lib', 'node_modules'));
  roots.push('/usr/local/lib/node_modules', '/usr/lib/node_modules');
  return [...new Set(roots)];
}

function pickTarget(target) {
  if (typeof target === 'string') return target;
  if (Array.isArray(target)) {
    for (const t of target) {
      const found = pickTarget(t);
      if (found) return found;
    }
  } else if (target && typeof target === 'object') {
    // Node's own rule: the first listed condition that applies wins.
    for (const [condition, t] of Object.entries(target)) {
      if (condition === 'node' || condition === 'import' || condition === 'default') {
        const found = pickTarget(t);
        if (found) return found;
      }
    }
  }
  return null;
}

async function loadQuery() {
  const roots = globalRoots();
  for (const root of roots) {
    const dir = join(root, SDK);
    if (!existsSync(join(dir, 'package.json'))) continue;
    let pkg;
    try {
      pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    } catch (e) {
      throw Object.assign(new Error(`${dir}/package.json is unreadable: ${e.message}`), { exitCode: 3 });
    }
    let exp = pkg.exports;
    if (exp && typeof exp === 'object' && !Array.isArray(exp) && '.' in exp) exp = exp['.'];
    const entry = join(dir, pickTarget(exp) || pkg.main || 'index.js');
    let mod;
    try {
      mod = await import(pathToFileURL(entry).href);
    } catch (e) {
      throw Object.assign(new Error(`cannot load ${SDK} from ${entry}: ${e.message}`), { exitCode: 3 });
    }
    const query = typeof mod.query === 'function' ? mod.query : mod.default && mod.default.query;
    if (typeof query !== 'function') {
      throw Object.assign(new Error(`${SDK} at ${dir} has no query() function`), { exitCode: 3 });
    }
    return query;
  }
  throw Object.assign(
    new Error(`${SDK} is not installed in the image (looked in ${roots.join(', ')}); install it globally with npm install -g ${SDK}`),
    { exitCode: 3 },
  );
}

async function main() {
  const controller = new AbortController();
  let signalled = null;
  for (const sig of Object.keys(SIGNAL_EXIT)) {
    process.on(sig, () => {
      if (signalled) process.exit(SIGNAL_EXIT[sig]); // a second signal: stop waiting for the SDK
      signalled = sig;
      controller.abort();
      // An SDK that ignores its abort must not keep the job alive.
      setTimeout(() => fail(`query() did not end within 5 s of ${sig}`, SIGNAL_EXIT[sig]), 5000).unref();
    });
  }
  const { prompt, options } = await readInput();
  const query = await loadQuery();
  try {
    const messages = query({
      prompt,
      options: { ...options, abortController: controller, stderr: (data) => process.stderr.write(data) },
    });
    for await (const message of messages) {
      if (failed) return;
      await print(message);
    }
  } catch (e) {
    if (signalled) throw Object.assign(new Error(`aborted by ${signalled}`), { exitCode: SIGNAL_EXIT[signalled] });
    throw Object.assign(new Error(`query() failed: ${e && e.message ? e.message : String(e)}`), { exitCode: 1 });
  }
  if (signalled) throw Object.assign(new Error(`aborted by ${signalled}`), { exitCode: SIGNAL_EXIT[signalled] });
  process.stdout.write('', () => process.exit(0));
}

/** The lines of a stream; a line is split only at a newline byte, so UTF-8 stays whole. */
async function* readLines(stream) {
  let parts = [];
  for await (const chunk of stream) {
    let start = 0;
    for (let nl; (nl = chunk.indexOf(10, start)) >= 0; start = nl + 1) {
      parts.push(chunk.subarray(start, nl));
      yield Buffer.concat(parts).toString('utf8');
      parts = [];
    }
    if (start < chunk.length) parts.push(chunk.subarray(start));
  }
  if (parts.length) yield Buffer.concat(parts).toString('utf8');
}

function parse(line) {
  try {
    const v = JSON.parse(line);
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

/** An async iterable fed by push() until end(): the session's turns. */
function turnQueue() {
  const items = [];
  let wake = null;
  let ended = false;
  const poke = () => wake && wake();
  return {
    push: (v) => (items.push(v), poke()),
    end: () => ((ended = true), poke()),
    async *[Symbol.asyncIterator]() {
      for (;;) {
        if (items.length) yield items.shift();
        else if (ended) return;
        else await new Promise((r) => (wake = r));
      }
    },
  };
}

const SESSION_CONTROLS = { interrupt: 'interrupt', set_model: 'setModel', stop_task: 'stopTask' };

async function session() {
  const lines = readLines(process.stdin);
  const next = async () => (await lines.next()).value;
  const bad = (what) => Object.assign(new Error(`bad input: ${what}`), { exitCode: 2 });
  const head = parse((await next()) ?? '');
  const options = head && head.sdkOptions;
  if (!options || typeof options !== 'object' || Array.isArray(options)) throw bad("the first line must be {\"sdkOptions\": object}");
  const init = parse((await next()) ?? '');
  if (!init || init.type !== 'control_request' || !init.request || init.request.subtype !== 'initialize') throw bad('the first request must be initialize');
  const query = await loadQuery();
  const write = (m) => process.stdout.write(JSON.stringify(m) + '\n');
  const answer = (id, work) =>
    Promise.resolve()
      .then(work)
      .then(
        (response) => write({ type: 'control_response', response: { subtype: 'success', request_id: id, response: response || {} } }),
        (e) => write({ type: 'control_response', response: { subtype: 'error', request_id: id, error: String((e && e.message) || e) } }),
      );
  // Our own requests (hook callbacks): answered by the host, or continue after 10 s or at EOF.
  const asked = new Map();
  let seq = 0;
  let ended = false;
  const ask = (request) =>
    new Promise((resolve) => {
      if (ended) return resolve({ continue: true });
      const id = `sdk_runner_${++seq}`;
      const timer = setTimeout(() => settle(id, { continue: true }), 10000);
      asked.set(id, (r) => (clearTimeout(timer), resolve(r)));
      write({ type: 'control_request', request_id: id, request });
    });
  const settle = (id, response) => {
    const done = asked.get(id);
    if (done) asked.delete(id), done(response);
  };
  const hooks = {};
  for (const [event, matchers] of Object.entries(init.request.hooks || {})) {
    hooks[event] = (Array.isArray(matchers) ? matchers : []).map((m) => ({
      matcher: m.matcher ?? undefined,
      hooks: (m.hookCallbackIds || []).map((id) => (input, toolUseId) => ask({ subtype: 'hook_callback', callback_id: id, input, tool_use_id: toolUseId })),
    }));
  }
  const turns = turnQueue();
  const controller = new AbortController();
  for (const sig of Object.keys(SIGNAL_EXIT)) {
    process.on(sig, () => {
      controller.abort();
      fail(`aborted by ${sig}`, SIGNAL_EXIT[sig]);
    });
  }
  const q = query({
    prompt: turns,
    options: { ...options, ...(Object.keys(hooks).length ? { hooks } : {}), abortController: controller, stderr: (d) => process.stderr.write(d) },
  });
  answer(init.request_id, async () => ({ commands: typeof q.supportedCommands === 'function' ? await q.supportedCommands() : [] }));
  (async () => {
    for await (const line of lines) {
      const m = parse(line);
      if (!m) continue;
      if (m.type === 'user') turns.push(m);
      else if (m.type === 'control_response') settle(m.response && m.response.request_id, (m.response && m.response.response) || { continue: true });
      else if (m.type === 'control_request') {
        const r = m.request || {};
        answer(m.request_id, async () => {
          const method = SESSION_CONTROLS[r.subtype];
          if (!method) throw new Error(`unsupported control request: ${r.subtype}`);
          if (typeof q[method] !== 'function') throw new Error(`the Agent SDK in the image has no ${method}()`);
          await (r.subtype === 'set_model' ? q.setModel(r.model ?? undefined) : r.subtype === 'stop_task' ? q.stopTask(r.task_id) : q.interrupt());
          return {};
        });
      }
    }
    ended = true;
    turns.end();
    for (const id of [...asked.keys()]) settle(id, { continue: true });
  })().catch((e) => fail(`reading stdin: ${e.message}`, 1));
  try {
    for await (const message of q) {
      if (failed) return;
      if (message && typeof message.type === 'string' && message.type.startsWith('control_')) continue;
      await print(message);
    }
  } catch (e) {
    throw Object.assign(new Error(`query() failed: ${e && e.message ? e.message : String(e)}`), { exitCode: 1 });
  }
  process.stdout.write('', () => process.exit(0));
}

(process.argv[1] === 'session' ? session : main)().catch((e) => fail(e && e.message ? e.message : String(e), (e && e.exitCode) || 1));

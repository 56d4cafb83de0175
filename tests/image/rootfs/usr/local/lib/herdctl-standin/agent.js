'use strict';
// The behaviour shared by the test image's stand-in `claude` CLI (/usr/local/bin/claude) and its
// stand-in Agent SDK (/usr/local/lib/node_modules/@anthropic-ai/claude-agent-sdk): one agent "turn"
// that prints SDK-shaped messages, keeps a session file under the Claude home, and obeys test
// controls written in the PROMPT (so a test needs no extra env or argv to steer it).
//
// Test controls: a prompt line that is exactly `#name args`, processed in prompt order after the
// `system/init` message (a line like `# Title` or `#tag` that names no control is ordinary text):
//   #sleep SECONDS       wait (fractions allowed); the SDK's abort ends the wait at once
//   #exit CODE           exit with CODE now, without a result (the SDK throws "... exited with code")
//   #stderr TEXT         write TEXT and a newline to stderr (the SDK: to options.stderr if given)
//   #eat-memory MB       allocate and touch MB MiB, held until the process exits
//   #lines N SIZE        N assistant messages of about SIZE bytes each as JSON, numbered from 0
//   #sha256              put the prompt's sha256 and byte length into the result text
//   #spawn-child         start `sleep 86399` as a child (not killed on abort or signal: the
//                        runner's cancel must do that); its pid is in an assistant message
//   #echo-env NAME       say whether env NAME is set and its length, never its value
//   #ignore-sigterm      ignore SIGTERM from now on (proves a runner escalates to SIGKILL)
//   #say TEXT            an assistant message with TEXT
//   #error-result TEXT   end with an error result (is_error: true) carrying TEXT; the CLI exits 1
//   #mcp-call SERVER TOOL [JSON]
//                        start the configured stdio MCP server SERVER, initialize it, list its
//                        tools and call TOOL with the JSON arguments; an assistant message carries
//                        `standin_mcp: {server, protocolVersion, serverInfo, tools, result, error}`
// The result always carries `standin: {prompt_bytes, prompt_sha256, resumed, earlier_turns}`.
//
// Sessions: `<home>/.claude/projects/<cwd with every non-alphanumeric as '-'>/<session_id>.jsonl`,
// one JSON entry a line (user and assistant turns). Resume continues the same session id; a fork
// copies the earlier entries into a new id. A missing session ends with an error result.

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const childProcess = require('child_process');

const DEFAULT_MODEL = 'claude-standin-1';
const DEFAULT_TOOLS = ['Bash', 'Edit', 'Glob', 'Grep', 'Read', 'Write', 'WebFetch', 'TodoWrite'];
const PERMISSION_MODES = ['default', 'acceptEdits', 'bypassPermissions', 'plan'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const held = []; // memory eaten by #eat-memory, held until exit
const children = new Set();

class AbortError extends Error {
  constructor(message = 'Claude Code process aborted by user') {
    super(message);
    this.name = 'AbortError';
  }
}

/** Thrown by `#exit CODE`: the CLI exits with `code`, the SDK turns it into an error. */
class StandinExit extends Error {
  constructor(code) {
    super(`Claude Code process exited with code ${code}`);
    this.code = code;
  }
}

function parseControls(prompt) {
  const controls = [];
  for (const raw of prompt.split('\n')) {
    const m = /^#([a-z][a-z0-9-]*)(?:[ \t]+(.*))?$/.exec(raw.trimEnd());
    if (m && CONTROLS.has(m[1])) controls.push({ name: m[1], arg: (m[2] || '').trim() });
  }
  return controls;
}

function projectDir(home, cwd) {
  return path.join(home, '.claude', 'projects', cwd.replace(/[^A-Za-z0-9]/g, '-'));
}

function readEntries(file) {
  const entries = [];
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line) continue;
    try {
      entries.push(JSON.parse(line));
    } catch {
      // a torn last line from a killed run is not an entry
    }
  }
  return entries;
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) return reject(new AbortError());
    const onAbort = () => {
      clearTimeout(timer);
      reject(new AbortError());
    };
    const timer = setTimeout(() => {
      if (signal) signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
  });
}

function killChildren() {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
}

/** Splits a tool list the way the CLI does: commas or spaces, but not inside parentheses. */
function splitList(values) {
  const out = [];
  for (const value of values) {
    let depth = 0;
    let cur = '';
    for (const ch of String(value)) {
      if (ch === '(') depth++;
      if (ch === ')') depth = Math.max(0, depth - 1);
      if (depth === 0 && (ch === ',' || ch === ' ')) {
        if (cur) out.push(cur);
        cur = '';
      } else cur += ch;
    }
    if (cur) out.push(cur);
  }
  return out;
}

/**
 * One agent turn. `req`: {prompt, cwd, home, env, model, permissionMode, tools (array or
 * undefined for the default set), disallowedTools, mcpServers (names), mcpConfigs (name to
 * config, for #mcp-call), resume, forkSession,
 * sessionId, includePartialMessages, seen (the flags or options as received, for the init
 * message), signal (optional AbortSignal), stderr(text)}. Yields SDK messages.
 */
async function* run(req) {
  const started = Date.now();
  const promptBytes = Buffer.byteLength(req.prompt, 'utf8');
  const promptSha = crypto.createHash('sha256').update(req.prompt, 'utf8').digest('hex');
  const dir = projectDir(req.home, req.cwd);
  const base = { session_id: req.resume || req.sessionId || crypto.randomUUID() };
  const errorResult = (text) => ({
    type: 'result', subtype: 'error_during_execution', is_error: true, duration_ms: Date.now() - started,
    duration_api_ms: 0, num_turns: 0, result: text, session_id: base.session_id, total_cost_usd: 0,
    usage: { input_tokens: 0, output_tokens: 0 }, permission_denials: [], uuid: crypto.randomUUID(),
  });

  if (req.permissionMode !== undefined && !PERMISSION_MODES.includes(req.permissionMode)) {
    yield errorResult(`invalid permission mode '${req.permissionMode}' (expected one of ${PERMISSION_MODES.join(', ')})`);
    return;
  }
  if (req.sessionId !== undefined && !UUID.test(req.sessionId)) {
    yield errorResult(`invalid session id '${req.sessionId}': it must be a UUID`);
    return;
  }
  let earlier = [];
  if (req.resume) {
    const file = path.join(dir, `${req.resume}.jsonl`);
    if (!fs.existsSync(file)) {
      req.stderr(`No conversation found with session ID: ${req.resume}\n`);
      yield errorResult(`No conversation found with session ID: ${req.resume}`);
      return;
    }
    earlier = readEntries(file);
    if (req.forkSession) base.session_id = req.sessionId || crypto.randomUUID();
  } else if (fs.existsSync(path.join(dir, `${base.session_id}.jsonl`))) {
    yield errorResult(`Session ID ${base.session_id} is already in use`);
    return;
  }
  const earlierTurns = earlier.filter((e) => e.type === 'user').length;
  const session = path.join(dir, `${base.session_id}.jsonl`);
  fs.mkdirSync(dir, { recursive: true });
  if (req.resume && req.forkSession) {
    fs.writeFileSync(session, earlier.map((e) => JSON.stringify(e) + '\n').join(''));
  }
  const record = (entry) =>
    fs.appendFileSync(session, JSON.stringify({ ...entry, sessionId: base.session_id, cwd: req.cwd, timestamp: new Date().toISOString(), uuid: crypto.randomUUID() }) + '\n');
  record({ type: 'user', message: { role: 'user', content: req.prompt } });

  const denied = new Set(req.disallowedTools || []);
  const model = req.model || DEFAULT_MODEL;
  yield {
    type: 'system', subtype: 'init', cwd: req.cwd, session_id: base.session_id,
    tools: (req.tools || DEFAULT_TOOLS).filter((t) => !denied.has(t)),
    mcp_servers: (req.mcpServers || []).map((name) => ({ name, status: 'standin' })),
    model, permissionMode: req.permissionMode || 'default', slash_commands: [], apiKeySource: 'none',
    output_style: 'default', uuid: crypto.randomUUID(),
    standin: { seen: req.seen, resumed: Boolean(req.resume), forked: Boolean(req.resume && req.forkSession), earlier_turns: earlierTurns },
  };

  const assistant = (text, extra) => ({
    type: 'assistant',
    message: {
      id: `msg_standin_${crypto.randomUUID()}`, type: 'message', role: 'assistant', model,
      content: [{ type: 'text', text }], stop_reason: null, usage: { input_tokens: 1, output_tokens: 1 },
    },
    parent_tool_use_id: null, session_id: base.session_id, uuid: crypto.randomUUID(), ...extra,
  });
  const partial = (text) => ({
    type: 'stream_event', event: { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } },
    parent_tool_use_id: null, session_id: base.session_id, uuid: crypto.randomUUID(),
  });
  function* say(text, extra) {
    if (req.includePartialMessages) yield partial(text);
    yield assistant(text, extra);
  }

  if (req.resume) {
    yield* say(`resumed session ${req.resume} with ${earlierTurns} earlier turns`, { standin_resumed: { from: req.resume, earlier_turns: earlierTurns } });
  }
  const notes = [];
  let failure = null;
  for (const { name, arg } of parseControls(req.prompt)) {
    if (req.signal && req.signal.aborted) throw new AbortError();
    const action = CONTROLS.get(name);
    const out = await action(arg, { req, notes, promptSha, promptBytes });
    if (out && out.error !== undefined) failure = out.error;
    if (out && out.texts) {
      for (const [text, extra] of out.texts()) {
        if (req.signal && req.signal.aborted) throw new AbortError();
        yield* say(text, extra);
      }
    }
  }
  if (failure !== null) {
    yield errorResult(failure);
    return;
  }
  const reply = `standin reply to a ${promptBytes}-byte prompt${notes.length ? ': ' + notes.join('; ') : ''}`;
  yield* say(reply);
  record({ type: 'assistant', message: { role: 'assistant', content: [{ type: 'text', text: reply }] } });
  yield {
    type: 'result', subtype: 'success', is_error: false, duration_ms: Date.now() - started, duration_api_ms: 0,
    num_turns: earlierTurns + 1, result: reply, session_id: base.session_id, total_cost_usd: 0,
    usage: { input_tokens: promptBytes, output_tokens: reply.length }, permission_denials: [], uuid: crypto.randomUUID(),
    standin: { prompt_bytes: promptBytes, prompt_sha256: promptSha, resumed: Boolean(req.resume), earlier_turns: earlierTurns },
  };
}

/**
 * One MCP session with a stdio server, as Claude Code runs it: spawn, `initialize`,
 * `notifications/initialized`, `tools/list`, `tools/call`, then close its stdin.
 */
function mcpCall(config, tool, args, signal) {
  return new Promise((resolve) => {
    const report = { tools: [] };
    if (!config || typeof config.command !== 'string') {
      resolve({ ...report, error: 'not a configured stdio server' });
      return;
    }
    const child = childProcess.spawn(config.command, config.args || [], {
      stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...(config.env || {}) },
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const waiting = new Map();
    let buffered = '';
    child.stdout.on('data', (d) => {
      buffered += d;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        let message;
        try {
          message = JSON.parse(line);
        } catch {
          continue;
        }
        const done = waiting.get(message.id);
        if (done) done(message);
      }
    });
    let finished = false;
    const finish = (extra) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      if (signal) signal.removeEventListener('abort', onAbort);
      child.stdin.end();
      resolve({ ...report, ...extra, stderr: stderr.trim() || undefined });
    };
    const onAbort = () => {
      child.kill('SIGKILL');
      finish({ error: 'aborted' });
    };
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => finish({ error: 'timed out' }), 30000);
    child.on('error', (e) => finish({ error: e.message }));
    child.on('close', (code) => finish({ error: `the server exited with code ${code}` }));
    let nextId = 1;
    const request = (method, params) =>
      new Promise((res) => {
        const id = nextId++;
        waiting.set(id, res);
        child.stdin.write(JSON.stringify({ jsonrpc: '2.0', id, method, params }) + '\n');
      });
    (async () => {
      const init = await request('initialize', {
        protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'claude-standin', version: '1' },
      });
      if (init.error) return finish({ error: init.error.message });
      report.protocolVersion = init.result.protocolVersion;
      report.serverInfo = init.result.serverInfo;
      child.stdin.write(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) + '\n');
      const list = await request('tools/list', {});
      report.tools = (list.result && list.result.tools || []).map((t) => t.name);
      const call = await request('tools/call', { name: tool, arguments: args });
      if (call.error) return finish({ error: call.error.message });
      finish({ result: call.result });
    })();
  });
}

function intArg(name, value, min) {
  const n = Number(value);
  if (!Number.isFinite(n) || n < min) throw new Error(`standin: #${name} wants a number >= ${min}, got '${value}'`);
  return n;
}

const CONTROLS = new Map([
  ['sleep', (arg, { req }) => sleep(intArg('sleep', arg, 0) * 1000, req.signal)],
  ['exit', (arg) => {
    throw new StandinExit(intArg('exit', arg, 0));
  }],
  ['stderr', (arg, { req }) => req.stderr(arg + '\n')],
  ['eat-memory', (arg) => {
    const mb = intArg('eat-memory', arg, 0);
    for (let i = 0; i < mb; i++) held.push(Buffer.allocUnsafe(1 << 20).fill(i & 0xff));
    return { texts: () => [[`ate ${mb} MiB`]] };
  }],
  ['lines', (arg) => {
    const [count, size] = arg.split(/\s+/);
    const n = intArg('lines', count, 0);
    const pad = Math.max(0, intArg('lines', size === undefined ? '100' : size, 0) - 400);
    return {
      texts: function* () {
        for (let i = 0; i < n; i++) yield [`line ${i} ${'x'.repeat(pad)}`, { standin_line: i }];
      },
    };
  }],
  ['sha256', (_arg, { notes, promptSha, promptBytes }) => {
    notes.push(`sha256=${promptSha} bytes=${promptBytes}`);
  }],
  ['spawn-child', () => {
    const child = childProcess.spawn('sleep', ['86399'], { stdio: 'ignore' });
    child.unref();
    children.add(child);
    return { texts: () => [[`spawned child pid ${child.pid}`, { standin_child_pid: child.pid }]] };
  }],
  ['echo-env', (arg, { req }) => {
    const value = req.env[arg];
    const report = { name: arg, set: value !== undefined, length: value === undefined ? 0 : value.length };
    const text = report.set ? `env ${arg} is set (${report.length} chars)` : `env ${arg} is not set`;
    return { texts: () => [[text, { standin_env: report }]] };
  }],
  ['ignore-sigterm', () => {
    process.on('SIGTERM', () => {});
  }],
  ['say', (arg) => ({ texts: () => [[arg]] })],
  ['error-result', (arg) => ({ error: arg || 'standin error result' })],
  ['mcp-call', async (arg, { req }) => {
    const m = /^(\S+)\s+(\S+)(?:\s+(.*))?$/.exec(arg);
    if (!m) throw new Error(`standin: #mcp-call wants SERVER TOOL [JSON], got '${arg}'`);
    const [, server, tool, json] = m;
    const report = await mcpCall((req.mcpConfigs || {})[server], tool, json ? JSON.parse(json) : {}, req.signal);
    const text = report.error ? `mcp ${server}/${tool} failed: ${report.error}` : `mcp ${server}/${tool}: ${JSON.stringify(report.result)}`;
    return { texts: () => [[text, { standin_mcp: { server, ...report } }]] };
  }],
]);

module.exports = {
  run, splitList, killChildren, projectDir, AbortError, StandinExit,
  DEFAULT_MODEL, DEFAULT_TOOLS, PERMISSION_MODES,
};

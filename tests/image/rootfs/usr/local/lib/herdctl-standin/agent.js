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
//   #freeze SECONDS      block the whole process (its event loop): nothing is read, printed or
//                        answered meanwhile, as an agent stuck in a synchronous call
//   #tool NAME [JSON]    a tool call: an assistant tool_use and a user tool_result message, after
//                        the PostToolUse hooks that match NAME ran (sessions and hooked queries)
//   #background SECONDS [TYPE]
//                        (sessions) start a background task of TYPE (default local_bash) that
//                        completes after SECONDS; its id is in an assistant message
//                        (`standin_task_id`), and `background_tasks_changed` system messages
//                        follow the live set. A `monitor_mcp` task cannot be stopped.
// The result always carries `standin: {prompt_bytes, prompt_sha256, resumed, earlier_turns}`.
//
// Sessions (`Session`, the CLI's `--input-format stream-json`, the SDK's query() with an async
// iterable prompt): turns run in order in one session id, each seeing the earlier ones; control
// requests `initialize` (answers the commands), `interrupt` (ends the running turn with an
// `error_during_execution` result carrying `standin.interrupted`), `set_model`, `stop_task`
// (idempotent; emits `task_notification` status `stopped`); the `Stop` hook runs before each
// turn's result with `background_tasks` (the live tasks) and `session_crons: []`.
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
  const continued = Boolean(req.continued && req.resume);
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
  // A session's later turns continue quietly: no new init, no "resumed" message.
  if (!continued) yield {
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

  if (req.resume && !continued) {
    yield* say(`resumed session ${req.resume} with ${earlierTurns} earlier turns`, { standin_resumed: { from: req.resume, earlier_turns: earlierTurns } });
  }
  const notes = [];
  let failure = null;
  for (const { name, arg } of parseControls(req.prompt)) {
    if (req.signal && req.signal.aborted) throw new AbortError();
    const action = CONTROLS.get(name);
    const out = await action(arg, { req, notes, promptSha, promptBytes, sessionId: base.session_id });
    if (out && out.error !== undefined) failure = out.error;
    if (out && out.texts) {
      for (const [text, extra] of out.texts()) {
        if (req.signal && req.signal.aborted) throw new AbortError();
        yield* say(text, extra);
      }
    }
    if (out && out.tool) {
      const { id, name, input, output } = out.tool;
      yield {
        type: 'assistant',
        message: {
          id: `msg_standin_${crypto.randomUUID()}`, type: 'message', role: 'assistant', model,
          content: [{ type: 'tool_use', id, name, input }], stop_reason: 'tool_use', usage: { input_tokens: 1, output_tokens: 1 },
        },
        parent_tool_use_id: null, session_id: base.session_id, uuid: crypto.randomUUID(),
      };
      yield {
        type: 'user', message: { role: 'user', content: [{ type: 'tool_result', tool_use_id: id, content: output }] },
        parent_tool_use_id: null, session_id: base.session_id, uuid: crypto.randomUUID(),
      };
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
  ['freeze', (arg) => {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, intArg('freeze', arg, 0) * 1000);
  }],
  ['tool', async (arg, { req, sessionId }) => {
    const m = /^(\S+)(?:\s+(.*))?$/.exec(arg);
    if (!m) throw new Error(`standin: #tool wants NAME [JSON], got '${arg}'`);
    const [, name, json] = m;
    const input = json ? JSON.parse(json) : {};
    const id = `toolu_standin_${crypto.randomUUID().slice(0, 8)}`;
    const output = `standin ran ${name}`;
    if (req.runHooks) {
      await req.runHooks('PostToolUse', {
        hook_event_name: 'PostToolUse', session_id: sessionId, cwd: req.cwd, tool_name: name, tool_input: input,
        tool_response: output, tool_use_id: id,
      }, name);
    }
    return { tool: { id, name, input, output } };
  }],
  ['background', (arg, { req }) => {
    const [seconds, type] = arg.split(/\s+/);
    const after = intArg('background', seconds, 0);
    if (!req.session) return { texts: () => [['#background needs a session']] };
    const id = req.session.startTask(after, type || 'local_bash');
    return { texts: () => [[`started background task ${id}`, { standin_task_id: id }]] };
  }],
  ['mcp-call', async (arg, { req }) => {
    const m = /^(\S+)\s+(\S+)(?:\s+(.*))?$/.exec(arg);
    if (!m) throw new Error(`standin: #mcp-call wants SERVER TOOL [JSON], got '${arg}'`);
    const [, server, tool, json] = m;
    const report = await mcpCall((req.mcpConfigs || {})[server], tool, json ? JSON.parse(json) : {}, req.signal);
    const text = report.error ? `mcp ${server}/${tool} failed: ${report.error}` : `mcp ${server}/${tool}: ${JSON.stringify(report.result)}`;
    return { texts: () => [[text, { standin_mcp: { server, ...report } }]] };
  }],
]);

/** The slash commands a session lists (`initialize`'s `commands`). */
const COMMANDS = [
  { name: 'compact', description: 'Clear conversation history but keep a summary in context', argumentHint: '<optional custom summarization instructions>' },
  { name: 'clear', description: 'Clear conversation history and free up context', argumentHint: '' },
  { name: 'standin-status', description: 'Stand-in: report the session state', argumentHint: '' },
];

/** The text of a user message's content: a string, or its text blocks joined. */
function textOf(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.filter((c) => c && c.type === 'text').map((c) => c.text).join('\n');
  return '';
}

/** Whether a hook matcher (none, `*`, a name or a regex of names) matches a tool name. */
function matches(matcher, name) {
  if (!matcher || matcher === '*') return true;
  try {
    return new RegExp(`^(?:${matcher})$`).test(name || '');
  } catch {
    return matcher === name;
  }
}

/**
 * A streaming-input session. `base` is run()'s request without the prompt (plus `signal`, which
 * ends the whole session); `emit(message)` receives every message, in order; `hooks` is
 * `{Event: [{matcher, fns: [async (input, toolUseId) => output]}]}`. Feed it with pushUser(text)
 * and end(); `done` settles when the last turn ran (rejects with what ended it otherwise).
 */
class Session {
  constructor(base, { emit, hooks }) {
    this.base = base;
    this.emit = emit;
    this.hooks = hooks || {};
    this.model = base.model;
    this.queue = [];
    this.ended = false;
    this.running = null;
    this.sessionId = null;
    this.tasks = new Map();
    this.wake = null;
    this.done = this.loop();
    this.done.catch(() => {}); // observed by whoever awaits it; never an unhandled rejection
  }

  pushUser(text) {
    this.queue.push(text);
    if (this.wake) this.wake();
  }

  end() {
    this.ended = true;
    if (this.wake) this.wake();
  }

  async runHooks(event, input, toolName) {
    for (const m of this.hooks[event] || []) {
      if (!matches(m.matcher, toolName)) continue;
      for (const fn of m.fns) await fn(input, input.tool_use_id, { signal: this.base.signal });
    }
  }

  summaries() {
    return [...this.tasks.values()].map((t) => ({ id: t.id, type: t.type, status: 'running', description: t.description }));
  }

  tasksChanged() {
    const tasks = [...this.tasks.values()].map((t) => ({ task_id: t.id, task_type: t.type, description: t.description }));
    this.emit({ type: 'system', subtype: 'background_tasks_changed', tasks, session_id: this.sessionId, uuid: crypto.randomUUID() });
  }

  startTask(seconds, type) {
    const id = `task_${crypto.randomUUID().slice(0, 8)}`;
    const timer = setTimeout(() => this.finishTask(id, 'completed'), seconds * 1000);
    this.tasks.set(id, { id, type, description: `standin ${type} task (${seconds}s)`, timer });
    this.tasksChanged();
    return id;
  }

  finishTask(id, status) {
    const task = this.tasks.get(id);
    if (!task) return;
    clearTimeout(task.timer);
    this.tasks.delete(id);
    this.emit({ type: 'system', subtype: 'task_notification', task_id: id, status, session_id: this.sessionId, uuid: crypto.randomUUID() });
    this.tasksChanged();
  }

  async control(request) {
    switch (request && request.subtype) {
      case 'initialize':
        return { commands: COMMANDS, models: [{ value: DEFAULT_MODEL, displayName: 'Stand-in' }], output_style: 'default' };
      case 'interrupt':
        if (this.running) this.running.abort();
        return {};
      case 'set_model':
        this.model = request.model || undefined;
        return {};
      case 'stop_task': {
        const task = this.tasks.get(request.task_id);
        if (!task) return {}; // gone already: a race, not an error
        if (task.type === 'monitor_mcp') throw new Error('unsupported_type: monitor_mcp tasks have no kill strategy');
        this.finishTask(task.id, 'stopped');
        return {};
      }
      default:
        throw new Error(`Unsupported control request subtype: ${request && request.subtype}`);
    }
  }

  async loop() {
    try {
      for (;;) {
        if (this.queue.length === 0) {
          if (this.ended) return;
          await new Promise((resolve) => (this.wake = resolve));
          this.wake = null;
          continue;
        }
        await this.turn(this.queue.shift());
      }
    } finally {
      for (const task of this.tasks.values()) clearTimeout(task.timer);
    }
  }

  async turn(text) {
    const controller = new AbortController();
    this.running = controller;
    const outer = this.base.signal;
    const signal = outer ? AbortSignal.any([outer, controller.signal]) : controller.signal;
    const req = {
      ...this.base, prompt: text, model: this.model, signal, session: this,
      runHooks: (event, input, toolName) => this.runHooks(event, input, toolName),
    };
    if (this.sessionId) Object.assign(req, { resume: this.sessionId, forkSession: false, continued: true });
    const started = Date.now();
    try {
      for await (const message of run(req)) {
        if (message.session_id && !this.sessionId && message.type === 'system') this.sessionId = message.session_id;
        if (message.type === 'result') {
          this.sessionId = this.sessionId || message.session_id;
          await this.runHooks('Stop', {
            hook_event_name: 'Stop', session_id: this.sessionId, cwd: req.cwd, stop_hook_active: false,
            session_crons: [], background_tasks: this.summaries(),
          });
        }
        this.emit(message);
      }
    } catch (e) {
      if (!(e instanceof AbortError) || (outer && outer.aborted)) throw e;
      this.emit({
        type: 'result', subtype: 'error_during_execution', is_error: true, duration_ms: Date.now() - started,
        duration_api_ms: 0, num_turns: 1, result: '[Request interrupted by user]', session_id: this.sessionId,
        total_cost_usd: 0, usage: { input_tokens: 0, output_tokens: 0 }, permission_denials: [],
        uuid: crypto.randomUUID(), standin: { interrupted: true },
      });
    } finally {
      this.running = null;
    }
  }
}

module.exports = {
  run, splitList, killChildren, projectDir, AbortError, StandinExit, Session, COMMANDS, textOf,
  DEFAULT_MODEL, DEFAULT_TOOLS, PERMISSION_MODES,
};

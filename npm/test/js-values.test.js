'use strict';
// JS values that JSON cannot carry faithfully, in any field that crosses into Rust: each is an
// Error with code INVALID_CONFIG (a config) or INVALID_ARGUMENT (an argument) naming the field, never a silent default (NaN, Infinity and
// 1e309 became null, so memory fell back to 2 GiB), an uncoded TypeError (BigInt, circular) or
// a RangeError (deep nesting), and a lone surrogate in the prompt names `prompt`. No engine is
// needed: every one is refused before a job starts.
const test = require('node:test');
const assert = require('node:assert/strict');
const os = require('node:os');

const h = require('../index.js');
const { ContainerRunner } = h;

class CLIRuntime {}

// The fleet's config (the docker block, the agent) is INVALID_CONFIG; a call's arguments (the
// options, the prompt, the state directory) are INVALID_ARGUMENT.
const codeOf = (field) => (/^(docker|agent)\b/.test(field) ? 'INVALID_CONFIG' : 'INVALID_ARGUMENT');
const invalid = (field, problem, code = codeOf(field)) => (e) => {
  assert.ok(e instanceof Error, String(e));
  assert.equal(e.code, code, e.message);
  assert.ok(e.message.startsWith(`invalid ${field}: `), e.message);
  if (problem) assert.match(e.message, problem);
  return true;
};

const NOT_FINITE = [
  [NaN, /NaN is not a number/],
  [Infinity, /Infinity is not a finite number/],
  [-Infinity, /-Infinity is not a finite number/],
  [1e309, /Infinity is not a finite number \(a literal like 1e309/],
];

const circular = () => {
  const o = { a: 1 };
  o.self = o;
  return o;
};
const deep = (levels) => {
  let o = {};
  for (let i = 0; i < levels; i++) o = { a: o };
  return o;
};

const stateDir = os.tmpdir();
const runner = (config, options) => new ContainerRunner(new CLIRuntime(), config, stateDir, options);
// No engine is reached: everything here is refused before.
const offline = { socketPath: '/nonexistent/herdctl-test.sock' };

test('NaN, Infinity and 1e309 in numeric config fields name the field', () => {
  const fields = ['memory', 'memoryBytes', 'pids_limit', 'pidsLimit', 'cpu_shares', 'cpu_period', 'cpu_quota', 'cpuQuota', 'max_containers', 'maxContainers'];
  for (const field of fields) {
    for (const [value, problem] of NOT_FINITE) {
      assert.throws(() => runner({ [field]: value }), invalid(`docker.${field}`, problem), `${field}: ${value}`);
      assert.throws(() => h.resolveDockerConfig({ [field]: value }), invalid(`docker.${field}`, problem));
    }
  }
  // Nested fields too.
  assert.throws(() => runner({ host_config: { Memory: NaN } }), invalid('docker.host_config.Memory'));
  assert.throws(() => runner({ volumes: ['/a:/b', Infinity] }), invalid('docker.volumes[1]'));
  // Boxed numbers are numbers to JSON.stringify.
  assert.throws(() => runner({ memory: new Number(NaN) }), invalid('docker.memory'));
});

test('runner options: NaN, Infinity, BigInt and wrong types name the option', () => {
  for (const [value, problem] of NOT_FINITE) {
    assert.throws(() => runner({}, { jobTimeoutMs: value }), invalid('options.jobTimeoutMs', problem));
  }
  assert.throws(() => runner({}, { jobTimeoutMs: 10n }), invalid('options.jobTimeoutMs', /BigInt/));
  assert.throws(() => runner({}, { jobTimeoutMs: '100' }), invalid('options.jobTimeoutMs', /expected a number/));
  assert.throws(() => runner({}, { pull: 5 }), invalid('options.pull', /expected a string/));
  assert.throws(() => runner({}, { translatePaths: 'yes' }), invalid('options.translatePaths'));
  assert.throws(() => runner({}, { jobTimeout: 100 }), invalid('options.jobTimeout', /unknown option/));
  assert.throws(() => runner({}, circular()), invalid('options.self', /circular/));
  assert.throws(() => runner({}, 'fast'), invalid('options', /expected an object/));
  assert.throws(() => new ContainerRunner(new CLIRuntime(), {}, 42), invalid('stateDir'));
});

test('BigInt, circular and over-deep values in the config name the field', () => {
  assert.throws(() => runner({ memory: 10n }), invalid('docker.memory', /BigInt/));
  assert.throws(() => runner({ labels: { big: 1n } }), invalid('docker.labels.big', /BigInt/));
  assert.throws(() => runner({ labels: circular() }), invalid('docker.labels.self', /circular/));
  assert.throws(() => runner({ host_config: deep(200) }), invalid('docker.host_config', /nested deeper than 100 levels/));
  // Deep enough to overflow JSON.stringify's own stack: still a coded error.
  assert.throws(() => runner({ host_config: deep(20000) }), invalid('docker.host_config', /nested deeper/));
  assert.throws(() => h.resolveDockerConfig({ labels: circular() }), invalid('docker.labels.self'));
  assert.throws(() => h.resolveDockerConfig(circular()), invalid('docker.self'));
  assert.throws(() => h.resolveDockerConfig(7n), invalid('docker', /BigInt/));
  // A lone surrogate in a key or a value.
  assert.throws(() => runner({ labels: { ['k\ud800']: 'v' } }), invalid('docker.labels', /lone UTF-16 surrogate/));
  assert.throws(() => runner({ image: 'img\udc00' }), invalid('docker.image', /U\+DC00 at index 3/));
});

test('shared (not circular) objects, toJSON and functions keep JSON.stringify\'s meaning', () => {
  // A Date becomes its ISO string (toJSON), the same object twice is not a cycle, and a function
  // is dropped (it is not an unknown field).
  const when = new Date(0);
  const c = h.resolveDockerConfig({ memory: '512m', labels: { when, again: when }, describe() {} });
  assert.equal(c.memoryBytes, 512 * 1024 * 1024);
  assert.deepEqual(c.labels, { when: '1970-01-01T00:00:00.000Z', again: '1970-01-01T00:00:00.000Z' });
  assert.equal(runner(c, offline).config.memoryBytes, c.memoryBytes);
});

/** The error of the first `next()` of an execute call (or a failure when it yields instead). */
async function executeError(r, options) {
  try {
    for await (const m of r.execute(options)) return assert.fail(`yielded ${JSON.stringify(m)}`);
  } catch (e) {
    return e;
  }
  return assert.fail('ended without an error');
}

test('a lone surrogate in the prompt names the field and says what is wrong', async () => {
  const r = runner({}, offline);
  const agent = { name: 'a', working_directory: stateDir };
  for (const [prompt, unit, index] of [['a\ud800b', 'D800', 1], ['\udfffend', 'DFFF', 0], ['ok \ud83d\ude00 then \ud83d', 'D83D', 11]]) {
    const e = await executeError(r, { prompt, agent });
    invalid('prompt', new RegExp(`lone UTF-16 surrogate \\(U\\+${unit} at index ${index}\\)`))(e);
    assert.doesNotMatch(e.message, /hex escape|not JSON/);
  }
  invalid('systemPromptAppend', /surrogate/)(await executeError(r, { prompt: 'p', agent, systemPromptAppend: '\ud800' }));
  invalid('agent.system_prompt', /surrogate/)(await executeError(r, { prompt: 'p', agent: { ...agent, system_prompt: 'x\udbff' } }));
  // A well-formed pair is text: the call gets as far as the (absent) engine.
  const e = await executeError(r, { prompt: 'ok \ud83d\ude00', agent });
  assert.equal(e.code, 'ENGINE_UNREACHABLE', e.message);
});

test('BigInt, circular and over-deep values in execute options and the agent name the field', async () => {
  const r = runner({}, offline);
  const agent = { name: 'a', working_directory: stateDir };
  invalid('prompt', /BigInt/)(await executeError(r, { prompt: 1n, agent }));
  invalid('agent.max_turns', /BigInt/)(await executeError(r, { prompt: 'p', agent: { ...agent, max_turns: 3n } }));
  invalid('agent.max_turns', /NaN/)(await executeError(r, { prompt: 'p', agent: { ...agent, max_turns: NaN } }));
  invalid('agent.self', /circular/)(await executeError(r, { prompt: 'p', agent: Object.assign(circular(), agent) }));
  invalid('agent.mcp_servers', /nested deeper/)(await executeError(r, { prompt: 'p', agent: { ...agent, mcp_servers: deep(150) } }));
  const tools = [{ name: 't', inputSchema: circular(), handler: () => 1 }];
  invalid('injectedMcpServers.s.tools[0].inputSchema.self', /circular/)(
    await executeError(r, { prompt: 'p', agent, injectedMcpServers: { s: { tools } } }),
  );
  // The same object in two places is not a cycle.
  const shared = { type: 'string' };
  const ok = [{ name: 't', inputSchema: { type: 'object', properties: { a: shared, b: shared } }, handler: () => 1 }];
  const e = await executeError(r, { prompt: 'p', agent, injectedMcpServers: { s: { tools: ok } } });
  assert.equal(e.code, 'ENGINE_UNREACHABLE', e.message);
});

test('a raw runtime\'s argv and stdin are checked the same way', async () => {
  const raw = (command) => new ContainerRunner({ containerCommand: () => command }, {}, stateDir, offline);
  const agent = { name: 'a', working_directory: stateDir };
  invalid('containerCommand.argv[1]', /surrogate/)(await executeError(raw({ argv: ['sh', '\ud800'] }), { prompt: '', agent }));
  invalid('containerCommand.argv[1]', /BigInt/)(await executeError(raw({ argv: ['sh', 1n] }), { prompt: '', agent }));
  invalid('containerCommand.stdin', /surrogate/)(await executeError(raw({ argv: ['cat'], stdin: 'x\udc00' }), { prompt: '', agent }));
});

test('prune and gc refuse a keep that is not a whole count, by name', async () => {
  const r = runner({}, offline);
  for (const keep of [NaN, Infinity, 1e309, 10n, -1, 1.5]) {
    await assert.rejects(r.prune('agent', keep), invalid('keep'), String(keep));
    await assert.rejects(r.gc(['agent'], keep), invalid('keep'), String(keep));
  }
  // A good count gets as far as the (absent) engine.
  await assert.rejects(r.prune('agent', 2), (e) => e.code === 'ENGINE_UNREACHABLE');
});

test('hostile objects (a throwing getter, toJSON or Proxy trap, a revoked Proxy) get a coded error naming the value', async () => {
  const boom = () => {
    throw new Error('boom');
  };
  const { proxy: revoked, revoke } = Proxy.revocable({}, {});
  revoke();
  const throwsNonError = new Proxy(
    {},
    {
      ownKeys: () => ['Privileged'],
      getOwnPropertyDescriptor: () => ({ value: 1, enumerable: true, configurable: true }),
      get: () => {
        throw 'not even an Error';
      },
    },
  );
  const cases = [
    [{ get memory() { return boom(); } }, /could not be read: Error: boom/],
    [{ labels: { toJSON: boom } }, /could not be read: Error: boom/],
    [{ labels: new Proxy({}, { ownKeys: boom }) }, /could not be read: Error: boom/],
    [{ labels: revoked }, /could not be read: TypeError: .*revoked/],
    [{ host_config: throwsNonError }, /could not be read: not even an Error/],
  ];
  for (const [config, problem] of cases) {
    assert.throws(() => runner(config), invalid('docker', problem));
    assert.throws(() => h.resolveDockerConfig(config), invalid('docker', problem));
  }
  const agent = { name: 'a', working_directory: stateDir };
  const r = runner({}, offline);
  invalid('agent', /boom/)(await executeError(r, { prompt: 'p', agent: { ...agent, get model() { return boom(); } } }));
  invalid('execute options', /boom/)(await executeError(r, { prompt: 'p', agent, get systemPromptAppend() { return boom(); } }));
  invalid('execute options', /could not be read: TypeError/)(await executeError(r, undefined));
  // A key __proto__ (as JSON.parse makes one) is a plain unknown key, never the prototype.
  const c = h.resolveDockerConfig(JSON.parse('{"labels": {"__proto__": "x", "a": "b"}}'));
  assert.deepEqual(Object.keys(c.labels).sort(), ['__proto__', 'a']);
  assert.equal({}.a, undefined);
});

test('list, prune and gc refuse an agent name that is not a string, by name', async () => {
  const r = runner({}, offline);
  assert.throws(() => r.listContainers(7), invalid('agent', /as a string, got number/, 'INVALID_ARGUMENT'));
  await assert.rejects(r.prune({ name: 'a' }, 1), invalid('agent', /got object/, 'INVALID_ARGUMENT'));
  await assert.rejects(r.prune('a\ud800', 1), invalid('agent', /surrogate/, 'INVALID_ARGUMENT'));
  await assert.rejects(r.gc('agent', 1), invalid('liveAgents', /a list of agent names/));
  await assert.rejects(r.gc(['ok', 5], 1), invalid('liveAgents[1]', /got number/));
});

'use strict';
// gVisor through ContainerRunner, in every shape herdctl can hand it over: the config's own
// `runtime`, herdctl's resolved config with `hostConfigOverride.Runtime`, an agent object whose
// `docker.runtime` herdctl's resolver dropped, and the runner option. Each job is proven to run on
// gVisor's kernel, not the host's; an SDK job and an injected MCP tool call work there; a runtime
// the engine does not list is refused with its list.
const test = require('node:test');
const assert = require('node:assert/strict');
const os = require('node:os');

const { ContainerRunner } = require('../index.js');
const { Fleet, CLIRuntime, SDKRuntime, collect, docker } = require('./helpers/fleet.js');

const fleet = new Fleet('gvisor');
test.after(() => fleet.cleanup());

/** A job that reports the kernel release it runs on, through a runtime's own command. */
const kernel = {
  containerCommand() {
    return { argv: ['sh', '-c', 'echo "{\\"type\\":\\"result\\",\\"release\\":\\"$(uname -r)\\"}"'] };
  },
};

/** The runtime of each container of `agent`, from the engine. */
function runtimesOf(agent) {
  const ids = docker(['ps', '-aq', '--no-trunc', '--filter', `label=dev.herdctl.agent=${agent.qualifiedName}`])
    .split('\n')
    .filter(Boolean);
  return ids.map((id) => docker(['inspect', '-f', '{{.HostConfig.Runtime}}', id]).trim());
}

test('every shape of the runtime herdctl can give runs the job on gVisor\'s kernel', async () => {
  const host = os.release();
  // herdctl's resolver keeps host_config (as hostConfigOverride) and drops everything it does
  // not know, `runtime` included: its shape, as its factory passes it.
  const herdctlResolved = {
    enabled: true, ephemeral: true, image: fleet.config().image, network: 'none',
    memoryBytes: 268435456, user: '1000:1000', maxContainers: 5, volumes: [], workspaceMode: 'rw',
    env: {}, ports: [], tmpfs: [], labels: fleet.config().labels,
  };
  const shapes = [
    ['docker.runtime', new ContainerRunner(kernel, fleet.config({ runtime: 'runsc' }), fleet.stateDir), {}],
    ['hostConfigOverride.Runtime', new ContainerRunner(kernel, { ...herdctlResolved, hostConfigOverride: { Runtime: 'runsc' } }, fleet.stateDir), {}],
    ['agent.docker.runtime', new ContainerRunner(kernel, herdctlResolved, fleet.stateDir), { docker: { enabled: true, runtime: 'runsc' } }],
    ['options.runtime', new ContainerRunner(kernel, fleet.config(), fleet.stateDir, { runtime: 'runsc' }), {}],
  ];
  for (const [shape, runner, extra] of shapes) {
    const agent = fleet.agent(shape.replace(/\W/g, '-').toLowerCase(), extra);
    const [result] = await collect(runner.execute({ prompt: 'p', agent }));
    assert.equal(result.type, 'result', `${shape}: ${JSON.stringify(result)}`);
    assert.notEqual(result.release, host, `${shape}: gVisor's kernel, not the host's`);
    assert.deepEqual(runtimesOf(agent), ['runsc'], shape);
  }
  // The default stays runc, on the host's kernel.
  const agent = fleet.agent('default');
  const [result] = await collect(new ContainerRunner(kernel, fleet.config(), fleet.stateDir).execute({ prompt: 'p', agent }));
  assert.equal(result.release, host);
  assert.deepEqual(runtimesOf(agent), ['runc']);
});

test('an SDK job and an injected MCP tool call under gVisor', async () => {
  const sdk = await collect(fleet.runner(new SDKRuntime(), { runtime: 'runsc' }).execute({ prompt: '#say from gVisor', agent: fleet.agent('sdk') }));
  assert.equal(sdk.at(-1).type, 'result', JSON.stringify(sdk.at(-1)));
  assert.equal(sdk.at(-1).subtype, 'success');
  assert.ok(sdk.some((m) => m.message && m.message.content && m.message.content[0].text === 'from gVisor'));

  const calls = [];
  const injectedMcpServers = {
    files: {
      name: 'files',
      tools: [{
        name: 'send_file',
        description: 'Send a file',
        inputSchema: { type: 'object', properties: { file_path: { type: 'string' } } },
        handler: async (args) => {
          calls.push(args);
          return { content: [{ type: 'text', text: 'sent' }] };
        },
      }],
    },
  };
  const messages = await collect(fleet.runner(new CLIRuntime(), { runtime: 'runsc' }).execute({
    prompt: '#mcp-call files send_file {"file_path":"/workspace/a.txt"}',
    agent: fleet.agent('mcp'),
    injectedMcpServers,
  }));
  const report = messages.map((m) => m.standin_mcp).find(Boolean);
  assert.ok(report, JSON.stringify(messages));
  assert.equal(report.error, undefined, JSON.stringify(report));
  assert.equal(report.result.content[0].text, 'sent');
  assert.deepEqual(calls, [{ file_path: `${fleet.workspace}/a.txt` }]);
});

test('a runtime the engine does not list is refused with its list, before any container', async () => {
  const agent = fleet.agent('unknown');
  await assert.rejects(
    collect(fleet.runner(new CLIRuntime(), { runtime: 'no-such-runtime' }).execute({ prompt: 'p', agent })),
    (e) => e.code === 'INVALID_CONFIG'
      && e.message.startsWith('invalid docker.runtime: "no-such-runtime" is not a runtime of this engine, which lists ')
      && e.message.includes('runsc'),
  );
  assert.deepEqual(runtimesOf(agent), []);
  assert.throws(
    () => new ContainerRunner(new CLIRuntime(), fleet.config(), fleet.stateDir, { runtime: 'run sc' }),
    (e) => e.code === 'INVALID_ARGUMENT' && e.message.startsWith('invalid options.runtime: "run sc" is not a runtime name'),
  );
});

'use strict';
// The host_config gate as herdctl reaches it: a config herdctl's own resolver accepts resolves
// here too (keys in the engine's spelling), a setting that loosens the container throws
// INVALID_CONFIG saying how to opt in, and each opt-in an unmodified herdctl can use (the
// runner option, the environment variable) lets it through. GPU-style devices need none.
const test = require('node:test');
const assert = require('node:assert/strict');

const { ContainerRunner, resolveDockerConfig } = require('../index.js');
const { Fleet, CLIRuntime, collect, docker } = require('./helpers/fleet.js');

const fleet = new Fleet('hostconfig');
test.after(() => fleet.cleanup());

const ENV = 'HERDCTL_CONTAINER_ALLOW_UNSAFE_HOST_CONFIG';
/** A job that prints its process namespace's pid 1 command, through a runtime's own command. */
const runtime = {
  containerCommand() {
    return { argv: ['sh', '-c', 'echo "{\\"type\\":\\"result\\",\\"pid1\\":\\"$(cat /proc/1/comm)\\"}"'] };
  },
};

test('herdctl\'s own resolver test config resolves: the gate runs when a job starts', () => {
  const config = resolveDockerConfig({
    enabled: true,
    host_config: {
      ShmSize: 67108864,
      privileged: true,
      Devices: [{ PathOnHost: '/dev/nvidia0', PathInContainer: '/dev/nvidia0', CgroupPermissions: 'rwm' }],
    },
  });
  assert.equal(config.hostConfigOverride.ShmSize, 67108864);
  assert.equal(config.hostConfigOverride.Privileged, true, 'keys in the engine\'s spelling');
  assert.throws(
    () => resolveDockerConfig({ host_config: { Privileged: false, privileged: true } }),
    (e) => e.code === 'INVALID_CONFIG' && /set twice/.test(e.message),
  );
});

test('a loosening host_config throws INVALID_CONFIG saying how to opt in; each opt-in lets it run', async () => {
  const config = fleet.config({ host_config: { pidMode: 'host' } });
  const agent = fleet.agent('pidmode');
  const refused = new ContainerRunner(runtime, config, fleet.stateDir);
  await assert.rejects(
    collect(refused.execute({ prompt: 'p', agent })),
    (e) => e.code === 'INVALID_CONFIG'
      && e.message.startsWith('invalid docker.host_config.PidMode: "host" shares a process namespace')
      && e.message.includes('agents[].overrides.docker')
      && e.message.includes(`${ENV}=1`)
      && e.message.includes('allowUnsafeHostConfig: true'),
  );
  assert.deepEqual(fleet.containers(), []);

  // The runner option (ContainerRunner's 4th argument).
  const byOption = new ContainerRunner(runtime, config, fleet.stateDir, { allowUnsafeHostConfig: true });
  const [result] = await collect(byOption.execute({ prompt: 'p', agent }));
  assert.notEqual(result.pid1, 'docker-init', 'the job sees the host\'s pid 1');

  // The environment variable, read when the runner first connects.
  process.env[ENV] = '1';
  try {
    const byEnv = new ContainerRunner(runtime, config, fleet.stateDir);
    const [again] = await collect(byEnv.execute({ prompt: 'p', agent }));
    assert.equal(again.type, 'result');
  } finally {
    delete process.env[ENV];
  }
});

test('a GPU-style device needs no opt-in and is applied', async () => {
  const config = fleet.config({
    host_config: { Devices: [{ PathOnHost: '/dev/null', PathInContainer: '/dev/null-gpu', CgroupPermissions: 'rwm' }] },
  });
  const gpu = {
    containerCommand() {
      return { argv: ['sh', '-c', 'test -c /dev/null-gpu && echo "{\\"type\\":\\"result\\",\\"gpu\\":true}"'] };
    },
  };
  const agent = fleet.agent('gpu');
  const messages = await collect(new ContainerRunner(gpu, config, fleet.stateDir).execute({ prompt: 'p', agent }));
  assert.deepEqual(messages.map((m) => m.gpu), [true]);
  const [id] = docker(['ps', '-aq', '--filter', `label=dev.herdctl.agent=${agent.qualifiedName}`]).split('\n');
  const devices = JSON.parse(docker(['inspect', '-f', '{{json .HostConfig.Devices}}', id]));
  assert.equal(devices[0].PathInContainer, '/dev/null-gpu');
});

test('the engine socket as a volume is refused with the reason', async () => {
  const config = fleet.config({ volumes: ['/var/run/docker.sock:/var/run/docker.sock'], user: '0' });
  await assert.rejects(
    collect(new ContainerRunner(new CLIRuntime(), config, fleet.stateDir).execute({ prompt: 'p', agent: fleet.agent('sock') })),
    (e) => e.code === 'INVALID_CONFIG' && /docker\.volumes\[0\].*engine's socket.*root on the host/.test(e.message),
  );
});

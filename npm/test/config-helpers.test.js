'use strict';
// herdctl's config helpers under their names, backed by the Rust core: herdctl's shapes
// (camelCase), its defaults, and errors that name the field and carry code INVALID_CONFIG.
const test = require('node:test');
const assert = require('node:assert/strict');

const h = require('../index.js');

const invalid = (field) => (e) => {
  assert.ok(e instanceof Error);
  assert.equal(e.code, 'INVALID_CONFIG');
  assert.ok(e.message.startsWith(`invalid ${field}: `), e.message);
  return true;
};

test('constants', () => {
  assert.equal(h.DEFAULT_DOCKER_IMAGE, 'herdctl/runtime:latest');
  assert.equal(h.DEFAULT_MEMORY_LIMIT, '2g');
  assert.equal(h.DEFAULT_MAX_CONTAINERS, 5);
});

test('resolveDockerConfig applies herdctl\'s defaults and returns its camelCase shape', () => {
  const c = h.resolveDockerConfig({ enabled: true, memory: '512m', volumes: ['/tmp:/data:ro'], ports: ['8080:80'], user: '1000:1000' });
  assert.equal(c.enabled, true);
  assert.equal(c.ephemeral, true);
  assert.equal(c.image, h.DEFAULT_DOCKER_IMAGE);
  assert.equal(c.network, 'bridge');
  assert.equal(c.memoryBytes, 512 * 1024 * 1024);
  assert.equal(c.maxContainers, 5);
  assert.equal(c.workspaceMode, 'rw');
  assert.equal(c.user, '1000:1000');
  assert.deepEqual(c.volumes, [{ hostPath: '/tmp', containerPath: '/data', mode: 'ro' }]);
  assert.deepEqual(c.ports, [{ hostPort: 8080, containerPort: 80 }]);
  // The resolved shape reads back to itself.
  assert.deepEqual(h.resolveDockerConfig(c), c);
  assert.equal(h.resolveDockerConfig().memoryBytes, 2 * 1024 ** 3);
  assert.throws(() => h.resolveDockerConfig({ network: 'wifi' }), invalid('docker.network'));
});

test('the parsers return herdctl\'s shapes and refuse bad input by field', () => {
  assert.equal(h.parseMemoryToBytes('1.5g'), 1610612736);
  assert.equal(h.parseMemoryToBytes('2048'), 2048);
  assert.deepEqual(h.parsePortBinding('3000'), { hostPort: 3000, containerPort: 3000 });
  assert.deepEqual(h.parseTmpfsMount('/tmp:size=64m'), { path: '/tmp', options: 'size=64m' });
  assert.deepEqual(h.parseVolumeMount('/src:/mnt/src'), { hostPath: '/src', containerPath: '/mnt/src', mode: 'rw' });
  assert.throws(() => h.parseMemoryToBytes('2 gigs'), invalid('docker.memory'));
  assert.throws(() => h.parsePortBinding('99999'), invalid('docker.ports'));
  assert.throws(() => h.parseVolumeMount('relative:/x'), invalid('docker.volumes'));
  assert.throws(() => h.parseTmpfsMount('tmp'), invalid('docker.tmpfs'));
});

test('getHostUser is this process\'s uid:gid, never root', () => {
  const user = h.getHostUser();
  assert.match(user, /^\d+:\d+$/);
  const uid = process.getuid();
  assert.equal(user, uid === 0 ? '1000:1000' : `${uid}:${process.getgid()}`);
});

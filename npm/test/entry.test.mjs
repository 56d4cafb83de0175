// Both entries work and expose the same objects: `import` (index.mjs) and `require` (index.js).
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import * as esm from 'herdctl-container';

const cjs = createRequire(import.meta.url)('herdctl-container');

const SURFACE = [
  'ContainerRunner', 'DEFAULT_DOCKER_IMAGE', 'DEFAULT_MAX_CONTAINERS', 'DEFAULT_MEMORY_LIMIT',
  'MessageStream', 'getHostUser', 'messages', 'parseMemoryToBytes', 'parsePortBinding',
  'parseTmpfsMount', 'parseVolumeMount', 'resolveDockerConfig',
];

test('import and require give the same surface', () => {
  assert.deepEqual(Object.keys(cjs).sort(), SURFACE);
  for (const name of SURFACE) assert.equal(esm[name], cjs[name], name);
  assert.equal(esm.default, cjs);
  assert.equal(esm.ContainerRunner.name, 'ContainerRunner');
  assert.equal(esm.MessageStream.name, 'MessageStream');
});

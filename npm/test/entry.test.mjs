// Both entries work and expose the same objects: `import` (index.mjs) and `require` (index.js).
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import * as esm from 'herdctl-container';

const cjs = createRequire(import.meta.url)('herdctl-container');

test('import and require give the same surface', () => {
  assert.equal(esm.messages, cjs.messages);
  assert.equal(esm.MessageStream, cjs.MessageStream);
  assert.equal(typeof esm.messages, 'function');
  assert.equal(esm.MessageStream.name, 'MessageStream');
  assert.deepEqual(Object.keys(cjs).sort(), ['MessageStream', 'messages']);
});

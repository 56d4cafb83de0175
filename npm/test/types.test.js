'use strict';
// index.d.ts type-checks code written against it, from CommonJS-mode and ESM TypeScript.
// check.ts holds a `@ts-expect-error`, so types that degrade to `any` fail this test too.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');

test('tsc --noEmit accepts the checks written against index.d.ts', { timeout: 120_000 }, () => {
  const root = path.join(__dirname, '..');
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const run = spawnSync(process.execPath, [tsc, '-p', path.join(__dirname, 'types', 'tsconfig.json')], {
    cwd: root,
    encoding: 'utf8',
  });
  assert.equal(run.status, 0, `tsc failed:\n${run.stdout}${run.stderr}`);
});

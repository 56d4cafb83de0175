// Runs before `npm test`: installs the locked dev dependencies when they are missing (a fresh
// clone, CI), then builds the addon, so that the tests always run against the current Rust code.
'use strict';
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });

const needed = ['@napi-rs/cli/package.json', 'typescript/package.json'];
if (!needed.every((p) => fs.existsSync(path.join(root, 'node_modules', p)))) {
  run('npm', ['ci', '--no-audit', '--no-fund']);
}
run('npm', ['run', '--silent', 'build']);

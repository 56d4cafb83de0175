#!/usr/bin/env node
'use strict';
// `herdctl-container` on PATH (the package's `bin`): runs the CLI binary that ships in this
// platform's package (herdctl-container-linux-x64-gnu, ...) with the same arguments, stdio and
// exit code. A signal sent to this launcher is passed on, and one that ends the CLI ends it too.
const { spawn } = require('node:child_process');

let bin;
try {
  bin = require('./platform.js').cliPath();
} catch (e) {
  process.stderr.write(`${e.message}\n`);
  process.exit(2);
}

const child = spawn(bin, process.argv.slice(2), { stdio: 'inherit' });
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
const forward = (signal) => child.kill(signal);
for (const signal of SIGNALS) process.on(signal, forward);
child.on('error', (e) => {
  process.stderr.write(`herdctl-container: could not run ${bin}: ${e.message}\n`);
  process.exit(2);
});
child.on('exit', (code, signal) => {
  for (const s of SIGNALS) process.removeListener(s, forward);
  if (signal) process.kill(process.pid, signal);
  else process.exit(code);
});

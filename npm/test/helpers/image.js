'use strict';
// Shared helpers for tests that run things in the real test image through the docker CLI:
// bring the engine and the image up once, run a command and collect its output, and a `Box` (a
// long-lived container for several execs, so a session file survives between them) that is
// removed by the test and, failing that, when the process exits.
const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const REPO = path.join(__dirname, '..', '..', '..');
const IMAGE = 'herdctl-test/runtime:latest';
const SDK_RUNNER = fs.readFileSync(path.join(REPO, 'src', 'herdctl', 'assets', 'sdk-runner.mjs'), 'utf8');

let prepared = false;
/** Brings up the engine and (re)builds the test image when its inputs changed. */
function prepareImage() {
  if (prepared) return;
  execFileSync(path.join(REPO, 'scripts', 'ensure-engine'), { stdio: 'inherit' });
  execFileSync(path.join(REPO, 'scripts', 'build-test-images'), { stdio: 'inherit' });
  prepared = true;
}

function uniqueName(tag) {
  return `herdctl-test-node-${tag}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
}

/** Runs `cmd args`, feeding `input` on stdin; resolves with {code, signal, stdout, stderr, ms}. */
function run(cmd, args, { input, timeoutMs = 60_000, onStdout } = {}) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out = [];
    const err = [];
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.slice(0, 4).join(' ')} ... did not end within ${timeoutMs} ms`));
    }, timeoutMs);
    child.stdout.on('data', (chunk) => {
      out.push(chunk);
      if (onStdout) onStdout(Buffer.concat(out).toString('utf8'));
    });
    child.stderr.on('data', (chunk) => err.push(chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code, signal, ms: Date.now() - started,
        stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    child.stdin.on('error', () => {}); // the command may exit before reading all its input
    child.stdin.end(input === undefined ? '' : input);
  });
}

/** The JSON lines of `text`, parsed (a non-JSON line fails the test with its text). */
function jsonLines(text) {
  return text.split('\n').filter(Boolean).map((line) => {
    try {
      return JSON.parse(line);
    } catch {
      throw new Error(`not a JSON line: ${line.slice(0, 200)}`);
    }
  });
}

const live = new Set();
process.on('exit', () => {
  for (const name of live) {
    try {
      execFileSync('docker', ['rm', '-f', name], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
});

/** A running container of the test image (uid 1000, network none) for several execs. */
class Box {
  static async start(tag, extraArgs = []) {
    prepareImage();
    const name = uniqueName(tag);
    live.add(name);
    const res = await run('docker', [
      'run', '-d', '--init', '--network', 'none', '--label', 'dev.herdctl.test=1', '--name', name,
      '-u', '1000:1000', ...extraArgs, IMAGE, 'sleep', '3600',
    ]);
    if (res.code !== 0) throw new Error(`docker run failed: ${res.stderr}`);
    return new Box(name);
  }

  constructor(name) {
    this.name = name;
  }

  /** `docker exec -i` of `argv` with `input` on stdin; `env` entries become `-e NAME=VALUE`. */
  exec(argv, { input, env = {}, timeoutMs, onStdout } = {}) {
    const envArgs = Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
    return run('docker', ['exec', '-i', ...envArgs, this.name, ...argv], { input, timeoutMs, onStdout });
  }

  /** Runs the in-container SDK runner with `{prompt, sdkOptions}` on stdin. */
  sdk(prompt, sdkOptions, options = {}) {
    const input = JSON.stringify({ prompt, sdkOptions });
    return this.exec(['node', '--input-type=module', '-e', SDK_RUNNER, ...(options.argv || [])], { ...options, input });
  }

  /** Pids of the processes in the box whose command line contains `text`. */
  async pids(text) {
    const ps = await this.exec(['ps', '-o', 'pid,args']);
    return ps.stdout.split('\n').slice(1).filter((l) => l.includes(text)).map((l) => Number(l.trim().split(/\s+/)[0]));
  }

  /** Sends `signal` (e.g. 'TERM') to the processes whose command line contains `text`. */
  async kill(signal, text) {
    const pids = await this.pids(text);
    if (pids.length > 0) await this.exec(['kill', `-${signal}`, ...pids.map(String)]);
    return pids;
  }

  async remove() {
    await run('docker', ['rm', '-f', this.name]);
    live.delete(this.name);
  }
}

module.exports = { Box, IMAGE, SDK_RUNNER, prepareImage, run, jsonLines, uniqueName };

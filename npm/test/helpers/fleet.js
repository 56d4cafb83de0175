'use strict';
// Shared helpers of the ContainerRunner tests: a per-test fleet (its own state directory and
// workspace, unique agent names, every container labelled with the fleet's run id and removed in
// `cleanup()`), the stand-in runtimes by herdctl's class names, and small readers of the engine's
// view (the processes in a container, its state) through the docker CLI.
const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { ContainerRunner } = require('../../index.js');
const { IMAGE, prepareImage } = require('./image.js');

/** Named like herdctl's runtimes: ContainerRunner picks the strategy by class name. */
class CLIRuntime {
  async *execute() {
    throw new Error('the wrapped runtime must not run on the host');
  }
}
class SDKRuntime {
  async *execute() {
    throw new Error('the wrapped runtime must not run on the host');
  }
}

function docker(args, options = {}) {
  return execFileSync('docker', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...options });
}

/** One test's world: state dir, workspace, agents, runners; `cleanup()` removes all of it. */
class Fleet {
  constructor(tag) {
    prepareImage();
    this.run = `${tag}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), `herdctl-node-${tag}-`));
    this.stateDir = path.join(this.root, 'state');
    this.workspace = path.join(this.root, 'workspace');
    fs.mkdirSync(this.workspace, { recursive: true });
    // The container user (1000:1000 when the tests run as root) must be able to write its
    // workspace: the runner refuses a job whose agent could not.
    fs.chmodSync(this.workspace, 0o777);
  }

  /** A docker config for the test image: network none, small, labelled with this run. */
  config(extra = {}) {
    return {
      enabled: true,
      image: IMAGE,
      network: 'none',
      memory: '256m',
      // `dev.herdctl.` is the runner's own prefix; user labels may not use it.
      labels: { 'herdctl-test': '1', 'herdctl-test-run': this.run },
      ...extra,
    };
  }

  /** A herdctl agent object with a unique qualified name, working in the fleet's workspace. */
  agent(name, extra = {}) {
    return {
      name,
      qualifiedName: `test.${this.run}.${name}`,
      working_directory: this.workspace,
      ...extra,
    };
  }

  runner(runtime = new CLIRuntime(), extra = {}) {
    return new ContainerRunner(runtime, this.config(extra), this.stateDir);
  }

  /** Ids of every container of this run (all agents), from the engine. */
  containers() {
    return docker(['ps', '-aq', '--no-trunc', '--filter', `label=herdctl-test-run=${this.run}`])
      .split('\n')
      .filter(Boolean);
  }

  cleanup() {
    const ids = this.containers();
    if (ids.length > 0) docker(['rm', '-f', ...ids]);
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

/** Every message of `generator`, in order. */
async function collect(generator) {
  const out = [];
  for await (const m of generator) out.push(m);
  return out;
}

/** Whether the container is running, from the engine. */
function isRunning(id) {
  return docker(['inspect', '-f', '{{.State.Running}}', id]).trim() === 'true';
}

/** The command lines of the processes in a running container (`docker top`). */
function processes(id) {
  const lines = docker(['top', id, '-o', 'pid,args']).split('\n').slice(1).filter(Boolean);
  return lines.map((l) => l.trim().replace(/^\d+\s+/, ''));
}

/** The job's processes left in the container: none when it is stopped. */
function jobProcesses(id, pattern = /claude|node|86399/) {
  if (!isRunning(id)) return [];
  return processes(id).filter((args) => pattern.test(args));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

module.exports = { Fleet, CLIRuntime, SDKRuntime, collect, docker, isRunning, processes, jobProcesses, sleep, IMAGE };

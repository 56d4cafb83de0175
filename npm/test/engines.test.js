'use strict';
// Engines by configuration (issue 16): `dockerHost` takes a docker context's name, `engines`
// places agents on other engines, each agent's jobs, listing and pruning going to its own, and a
// TLS engine is reached through the CLI beside the addon. The remote transports themselves (TLS,
// SSH, the TLS helper) are tested against real daemons in tests/remote_engines.rs; here a context
// in a temporary DOCKER_CONFIG names the main engine, an agent placed on a socket where no engine
// listens shows where its jobs go, and a CA that is no certificate shows the helper at work.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const { ContainerRunner } = require('../index.js');
const { Fleet, CLIRuntime, collect } = require('./helpers/fleet.js');

const fleet = new Fleet('engines');
test.after(() => fleet.cleanup());

// A docker config directory with one context, in docker's store layout, naming the main engine.
// This file runs in a process of its own (node --test), so setting DOCKER_CONFIG here touches no
// other test.
const CONTEXT = 'herdctl-node-test';
const configDir = path.join(fleet.root, 'docker-config');
const digest = crypto.createHash('sha256').update(CONTEXT).digest('hex');
fs.mkdirSync(path.join(configDir, 'contexts', 'meta', digest), { recursive: true });
fs.writeFileSync(
  path.join(configDir, 'contexts', 'meta', digest, 'meta.json'),
  JSON.stringify({ Name: CONTEXT, Metadata: {}, Endpoints: { docker: { Host: process.env.DOCKER_HOST || 'unix:///var/run/docker.sock' } } }),
);
process.env.DOCKER_CONFIG = configDir;

test('dockerHost takes a docker context by name', async () => {
  const agent = fleet.agent('by-context');
  const runner = new ContainerRunner(new CLIRuntime(), fleet.config(), fleet.stateDir, { dockerHost: CONTEXT });
  const messages = await collect(runner.execute({ prompt: 'hi', agent }));
  assert.equal(messages.at(-1).type, 'result');
  assert.equal((await runner.listContainers(agent.qualifiedName)).length, 1);
});

test('engines places an agent on its own engine; the others stay on the runner\'s', async () => {
  const here = fleet.agent('here');
  const there = fleet.agent('there');
  const nowhere = path.join(fleet.root, 'no-engine.sock');
  const runner = new ContainerRunner(new CLIRuntime(), fleet.config(), fleet.stateDir, {
    engines: { [there.qualifiedName]: `unix://${nowhere}`, [here.qualifiedName]: CONTEXT },
  });
  const messages = await collect(runner.execute({ prompt: 'hi', agent: here }));
  assert.equal(messages.at(-1).type, 'result');
  await assert.rejects(collect(runner.execute({ prompt: 'hi', agent: there })), (e) => {
    assert.equal(e.code, 'ENGINE_UNREACHABLE');
    assert.ok(e.message.includes(nowhere), e.message);
    return true;
  });
  assert.equal((await runner.listContainers(here.qualifiedName)).length, 1);
  await assert.rejects(runner.listContainers(there.qualifiedName), (e) => e.code === 'ENGINE_UNREACHABLE');
});

test('a bad engine address is thrown with its option', () => {
  const make = (options) => () => new ContainerRunner(new CLIRuntime(), fleet.config(), fleet.stateDir, options);
  assert.throws(make({ engines: { 'fleet.a': 'tcp://no-port' } }), (e) =>
    e.code === 'INVALID_ARGUMENT' && e.message.startsWith('invalid options.engines["fleet.a"]: "tcp://no-port" is not tcp://HOST:PORT'));
  assert.throws(make({ dockerHost: 'no-such-context' }), (e) =>
    e.code === 'INVALID_ARGUMENT' && /^invalid options\.dockerHost: docker context "no-such-context" does not exist/.test(e.message));
  assert.throws(make({ dockerHost: 'ssh://me:secret-password@box' }), (e) =>
    e.code === 'INVALID_ARGUMENT' && /holds a password/.test(e.message) && !e.message.includes('secret-password'));
});

test('a TLS engine is reached through the CLI beside the addon, which speaks no TLS itself', async () => {
  // DOCKER_TLS_VERIFY makes a tcp:// dockerHost a TLS one. The CA here is no certificate: the
  // helper (herdctl-container dial-stdio), which reads it, says so, and its words arrive.
  const certs = path.join(fleet.root, 'certs');
  fs.mkdirSync(certs, { recursive: true });
  fs.writeFileSync(path.join(certs, 'ca.pem'), 'not a certificate\n');
  process.env.DOCKER_TLS_VERIFY = '1';
  process.env.DOCKER_CERT_PATH = certs;
  try {
    const runner = new ContainerRunner(new CLIRuntime(), fleet.config(), fleet.stateDir, { dockerHost: 'tcp://127.0.0.1:9' });
    await assert.rejects(collect(runner.execute({ prompt: 'hi', agent: fleet.agent('tls') })), (e) => {
      assert.equal(e.code, 'ENGINE_UNREACHABLE', e.message);
      assert.match(e.message, /herdctl-container to tcp:\/\/127\.0\.0\.1:9 exited with exit status: 125: herdctl-container: invalid TLS file \S+\/ca\.pem: holds no PEM certificate/);
      return true;
    });
  } finally {
    delete process.env.DOCKER_TLS_VERIFY;
    delete process.env.DOCKER_CERT_PATH;
  }
});

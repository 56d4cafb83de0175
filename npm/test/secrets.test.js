'use strict';
// No secret reaches JS in an error: an engine that quotes the request body in its error message
// (some engines and proxies do) is played by a proxy in front of the real engine, since a real
// engine cannot be made to do that on demand. The API key is in this process's environment (each
// test file runs in its own process), the config's env holds more secrets.
const test = require('node:test');
const assert = require('node:assert/strict');

const { ContainerRunner } = require('../index.js');
const { Fleet, CLIRuntime } = require('./helpers/fleet.js');
const { startEchoProxy } = require('./helpers/echo-proxy.js');

const API_KEY = 'sk-ant-api03-node-echo-0123456789';
const GITHUB_TOKEN = 'ghp_nodeecho_0123456789';
const DB_PASSWORD = 'hunter2-node-echo';
const SECRETS = [API_KEY, GITHUB_TOKEN, DB_PASSWORD];
process.env.ANTHROPIC_API_KEY = API_KEY;

/** The first piece (6 bytes or longer) of a secret found in `text`. */
function leak(text) {
  for (const secret of SECRETS) {
    for (let len = 6; len <= secret.length; len++) {
      for (let at = 0; at + len <= secret.length; at++) {
        if (text.includes(secret.slice(at, at + len))) return secret.slice(at, at + len);
      }
    }
  }
  return undefined;
}

test('an engine error quoting the request body reaches JS without a secret, thrown or yielded', async (t) => {
  const fleet = new Fleet('echo');
  t.after(() => fleet.cleanup());
  const proxy = await startEchoProxy(API_KEY);
  t.after(() => proxy.close());
  const config = fleet.config({ env: { GITHUB_TOKEN, DB_PASSWORD, MODE: 'plain' } });
  const runner = new ContainerRunner(new CLIRuntime(), config, fleet.stateDir, { socketPath: proxy.socketPath });
  let thrown;
  const messages = [];
  try {
    for await (const m of runner.execute({ prompt: 'hi', agent: fleet.agent('echo') })) messages.push(m);
  } catch (e) {
    thrown = e;
  }
  assert.equal(proxy.echoed, 1, 'the proxy quoted a body holding the key');
  assert.ok(thrown || messages.some((m) => m.type === 'error'), 'the job failed');
  const text = [thrown && thrown.message, thrown && thrown.stack, JSON.stringify(thrown), JSON.stringify(messages)].join('\n');
  assert.match(text, /\[REDACTED\]/);
  assert.equal(leak(text), undefined, text);
});

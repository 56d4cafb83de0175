'use strict';
// The injected-tool bridge against a hostile agent, with this process as herdctl's host (issue 9):
// a process in the agent's container, which can read the agent's own MCP config and so holds the
// secret, opens 8 connections and sends one large tools/call on each. Calls past the bridge's
// 4 MiB limit get a JSON-RPC error, and the host's memory stays bounded either way (before the
// bounds, 8 calls of 60 MB took this process from 44 MiB to 1.5 GiB, 348 MiB kept after the job).
const test = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');

const { Fleet, CLIRuntime, docker, sleep } = require('./helpers/fleet.js');

const fleet = new Fleet('mcp-limits');
test.after(() => fleet.cleanup());

/**
 * Run in the container: `n` connections to `socket`, each sending the secret, then a tools/call
 * with a string argument of `mib` MiB in 1 MiB writes (the id after the arguments, as the MCP
 * TypeScript SDK writes its requests); prints each connection's first answer line.
 */
const ATTACK = `
const net = require("net");
const [socket, secret, n, mib] = process.argv.slice(1);
let left = +n;
for (let i = 0; i < +n; i++) {
  const s = net.connect(socket);
  s.write(secret + "\\n");
  s.write('{"method":"tools/call","params":{"name":"send_file","arguments":{"file_path":"');
  const chunk = Buffer.alloc(1 << 20, 97);
  for (let k = 0; k < +mib; k++) s.write(chunk);
  s.write('"}},"jsonrpc":"2.0","id":' + i + "}\\n");
  let answer = "";
  s.on("data", (d) => {
    answer += d;
    if (answer.includes("\\n")) { console.log(answer.slice(0, answer.indexOf("\\n"))); s.destroy(); }
  });
  s.on("error", (e) => console.log(JSON.stringify({ socketError: e.message })));
  s.on("close", () => { if (--left === 0) process.exit(0); });
}`;

/**
 * Starts a job of agent `name` that waits, with one injected server whose tool runs `handler`,
 * and finds what its agent knows: the socket and the secret in its private MCP config.
 */
async function hostileAgent(name, handler) {
  const agent = fleet.agent(name);
  const runner = fleet.runner(new CLIRuntime());
  const abortController = new AbortController();
  const injectedMcpServers = { files: { tools: [{ name: 'send_file', handler }] } };
  const job = (async () => {
    for await (const m of runner.execute({ prompt: '#sleep 120', agent, abortController, injectedMcpServers })) {
      if (m.type === 'result' || m.type === 'error') return m;
    }
  })();
  let container;
  let config;
  for (let i = 0; i < 300 && !config; i++) {
    await sleep(100);
    [container] = (await runner.listContainers(agent.qualifiedName)).map((c) => c.id);
    if (!container) continue;
    const user = docker(['inspect', '-f', '{{.Config.User}}', container]).trim();
    try {
      // The CLI reads its MCP config from a private temporary file while it runs.
      config = JSON.parse(docker(['exec', '-u', user, container, 'sh', '-c', 'cat /tmp/tmp.*']));
    } catch {
      // not written yet
    }
  }
  assert.ok(config, 'the agent can read its MCP config');
  const server = config.mcpServers.files;
  const user = docker(['inspect', '-f', '{{.Config.User}}', container]).trim();
  return {
    /** Runs the attack; resolves with the answers, parsed. */
    attack: (n, mib) =>
      new Promise((resolve, reject) => {
        const args = ['exec', '-u', user, container, 'node', '-e', ATTACK, server.args.at(-1), server.env.HERDCTL_MCP_SECRET, String(n), String(mib)];
        execFile('docker', args, { maxBuffer: 1 << 24 }, (e, stdout, stderr) => {
          if (e) reject(new Error(`${e.message}: ${stderr}`));
          else resolve(stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l)));
        });
      }),
    stop: async () => {
      abortController.abort();
      await job;
    },
  };
}

/** Samples this process's RSS every 5 ms until `stop()`, which returns the peak. */
function rssPeak() {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 5);
  return () => {
    clearInterval(timer);
    return Math.max(peak, process.memoryUsage().rss);
  };
}

const MiB = 1 << 20;

test('8 connections each sending a 60 MB call get an error each, and the host stays small', { timeout: 180_000 }, async (t) => {
  let calls = 0;
  const agent = await hostileAgent('flood', async () => {
    calls += 1;
    return { content: [{ type: 'text', text: 'ran' }] };
  });
  const before = process.memoryUsage().rss;
  const stop = rssPeak();
  const answers = await agent.attack(8, 60);
  const peak = stop();
  await agent.stop();
  const after = process.memoryUsage().rss;
  t.diagnostic(`RSS ${before >> 20} MiB before, peak +${(peak - before) >> 20} MiB, +${(after - before) >> 20} MiB after the job`);
  assert.deepEqual(answers.map((a) => a.id).sort(), [0, 1, 2, 3, 4, 5, 6, 7], JSON.stringify(answers).slice(0, 500));
  for (const a of answers) {
    // Too large; or, while the others' first 4 MiB fill the bridge's budget, busy.
    assert.ok([-32600, -32000].includes(a.error && a.error.code), JSON.stringify(a));
  }
  assert.match(answers.find((a) => a.error.code === -32600).error.message, /^message too large: more than 4194304 bytes/);
  assert.equal(calls, 0, 'no handler ran');
  assert.ok(peak - before < 160 * MiB, `RSS grew by ${(peak - before) >> 20} MiB`);
});

test('8 calls of 3 MiB at once each run, one a turn of the event loop, in bounded memory', { timeout: 180_000 }, async (t) => {
  const sizes = [];
  let sameTurn = 0;
  let turnPending = false;
  const agent = await hostileAgent('burst', async (args) => {
    // Two handlers started before an immediate queued by the first has run share a turn.
    if (turnPending) sameTurn += 1;
    turnPending = true;
    setImmediate(() => {
      turnPending = false;
    });
    sizes.push(args.file_path.length);
    return { content: [{ type: 'text', text: 'ran' }] };
  });
  const before = process.memoryUsage().rss;
  const stop = rssPeak();
  const answers = await agent.attack(8, 3);
  const peak = stop();
  await agent.stop();
  t.diagnostic(`RSS ${before >> 20} MiB before, peak +${(peak - before) >> 20} MiB`);
  assert.equal(answers.length, 8);
  for (const a of answers) assert.deepEqual(a.result, { content: [{ type: 'text', text: 'ran' }] }, JSON.stringify(a).slice(0, 300));
  assert.ok(sizes.every((n) => n > 3 * MiB - 1000), `argument sizes ${sizes}`);
  assert.equal(sameTurn, 0, 'each call is parsed and run in a turn of its own');
  assert.ok(peak - before < 250 * MiB, `RSS grew by ${(peak - before) >> 20} MiB`);
});

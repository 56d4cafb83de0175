'use strict';
// injectedMcpServers end to end against the real engine: herdctl's in-process tools (here a
// file sender shaped like herdctl's) called by the stand-in agent from inside a container with
// network `none`, through the socket bridge; handler errors, and an abort while a call waits.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');

const { Fleet, CLIRuntime, SDKRuntime, collect, jobProcesses } = require('./helpers/fleet.js');

const fleet = new Fleet('mcp');
test.after(() => fleet.cleanup());

/** The stand-in's report of each `#mcp-call`. */
const reports = (messages) => messages.filter((m) => m.standin_mcp).map((m) => m.standin_mcp);

function fileSender(calls, extraTools = []) {
  return {
    'herdctl-file-sender': {
      name: 'herdctl-file-sender',
      version: '0.3.0',
      tools: [
        {
          name: 'send_file',
          description: 'Send a file from the workspace to the chat',
          inputSchema: { type: 'object', properties: { file_path: { type: 'string' } }, required: ['file_path'] },
          async handler(args) {
            calls.push(args);
            await new Promise((resolve) => setTimeout(resolve, 20));
            return { content: [{ type: 'text', text: `uploaded ${path.basename(args.file_path)} from ${args.file_path}` }] };
          },
        },
        ...extraTools,
      ],
    },
  };
}

for (const [kind, runtime] of [['CLI', () => new CLIRuntime()], ['SDK', () => new SDKRuntime()]]) {
  test(`${kind}: the agent calls an injected tool, which runs here with host paths`, async () => {
    const calls = [];
    const agent = fleet.agent(`mcp-${kind.toLowerCase()}`, { allowed_tools: ['Read'] });
    const prompt = '#mcp-call herdctl-file-sender send_file {"file_path":"/workspace/out/report.pdf"}';
    const messages = await collect(fleet.runner(runtime(), { ephemeral: kind === 'CLI' })
      .execute({ prompt, agent, injectedMcpServers: fileSender(calls) }));
    assert.equal(messages.at(-1).type, 'result', JSON.stringify(messages.at(-1)));
    const host = path.join(fleet.workspace, 'out/report.pdf');
    assert.deepEqual(calls, [{ file_path: host }]);
    const [report] = reports(messages);
    assert.equal(report.error, undefined, JSON.stringify(report));
    assert.deepEqual(report.tools, ['send_file']);
    assert.deepEqual(report.serverInfo, { name: 'herdctl-file-sender', version: '0.3.0' });
    assert.deepEqual(report.result, { content: [{ type: 'text', text: `uploaded report.pdf from ${host}` }] });
    assert.match(JSON.stringify(messages[0].standin.seen.allowedTools), /mcp__herdctl-file-sender__\*/);
  });
}

test('a handler that throws, or answers with what JSON cannot carry, is a failed tool the agent sees', async () => {
  const tools = [
    { name: 'broken', description: 'throws', handler: async () => { throw new Error('the chat is gone'); } },
    { name: 'bigint', description: 'not JSON', handler: () => ({ content: [{ type: 'text', text: 1n }] }) },
  ];
  const calls = [];
  const messages = await collect(fleet.runner().execute({
    prompt: '#mcp-call herdctl-file-sender broken\n#mcp-call herdctl-file-sender bigint',
    agent: fleet.agent('mcp-errors'),
    injectedMcpServers: fileSender(calls, tools),
  }));
  const [broken, bigint] = reports(messages);
  assert.deepEqual(broken.result, { content: [{ type: 'text', text: 'the chat is gone' }], isError: true });
  assert.equal(bigint.result.isError, true);
  assert.match(bigint.result.content[0].text, /^the tool's answer could not be sent: .*BigInt/);
  assert.equal(messages.at(-1).type, 'result', 'the agent carried on');
});

test('aborting while a tool call is pending ends the job and leaves no process', async () => {
  const agent = fleet.agent('mcp-abort');
  const runner = fleet.runner(new CLIRuntime(), { ephemeral: false });
  const abortController = new AbortController();
  const started = Date.now();
  const hang = {
    name: 'hang',
    description: 'never answers',
    handler: () => {
      setTimeout(() => abortController.abort(), 50);
      return new Promise(() => {});
    },
  };
  const messages = await collect(runner.execute({
    prompt: '#mcp-call herdctl-file-sender hang', agent, abortController, injectedMcpServers: fileSender([], [hang]),
  }));
  assert.ok(Date.now() - started < 10_000, 'the generator ended soon after the abort');
  assert.deepEqual(reports(messages), [], 'the call never answered');
  const [c] = await runner.listContainers(agent.qualifiedName);
  assert.deepEqual(jobProcesses(c.id), [], 'no process of the job remains');
});

test('bad injected servers are thrown with the field named, before any container', async () => {
  const agent = fleet.agent('mcp-bad');
  const runner = fleet.runner();
  await assert.rejects(
    collect(runner.execute({ prompt: 'p', agent, injectedMcpServers: { 'bad name': { tools: [] } } })),
    (e) => e.code === 'INVALID_ARGUMENT' && /injectedMcpServers\.bad name/.test(e.message),
  );
  await assert.rejects(
    collect(runner.execute({ prompt: 'p', agent, injectedMcpServers: { s: { tools: [{ description: 'no name' }] } } })),
    (e) => e.code === 'INVALID_ARGUMENT' && e.message.includes('injectedMcpServers.s.tools[0].name'),
  );
  assert.deepEqual(await runner.listContainers(agent.qualifiedName), []);
});

// The main job of herdctl-container, end to end: herdctl's ContainerRunner wraps a CLI runtime,
// runs an agent job in a container of the locally built test image (its stand-in `claude` prints
// what the real one prints), streams each message, then resumes the session in a second job, and
// in a third the agent calls a tool that runs in this process (herdctl's injectedMcpServers), from
// a container without network.
//
//   scripts/build-test-images && (cd npm && npm run build) && node npm/examples/demo.mjs
//
// Exits non-zero when anything fails. Containers are kept for inspection (the newest two of the
// demo agent; older ones are removed by retention).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { ContainerRunner } from '../index.mjs';

/** Stands in for herdctl's CLIRuntime: ContainerRunner picks its strategy by the class name. */
class CLIRuntime {
  async *execute() {
    throw new Error('not called: ContainerRunner runs the job in a container');
  }
}

const IMAGE = 'herdctl-test/runtime:latest';
const root = path.join(os.tmpdir(), 'herdctl-container-demo');
const stateDir = path.join(root, 'state');
const workspace = path.join(root, 'workspace');
fs.mkdirSync(workspace, { recursive: true });
// The agent runs as a non-root user (1000:1000 when this runs as root) and must be able to write
// its workspace; the runner refuses a job whose agent could not.
fs.chmodSync(workspace, 0o777);
fs.writeFileSync(path.join(workspace, 'README.md'), '# demo workspace\n');

const agent = {
  name: 'coder',
  qualifiedName: 'demo.coder',
  working_directory: workspace,
  model: 'claude-standin-1',
  permission_mode: 'acceptEdits',
  allowed_tools: ['Read', 'Edit'],
};
const docker = { enabled: true, image: IMAGE, network: 'none', memory: '512m', max_containers: 2 };

function show(message) {
  const kind = message.subtype ? `${message.type}/${message.subtype}` : message.type;
  const text =
    message.type === 'assistant' ? message.message.content.map((c) => c.text).join(' ')
      : message.type === 'result' ? message.result
        : message.type === 'error' ? message.message
          : `session ${message.session_id}, cwd ${message.cwd}, model ${message.model}`;
  console.log(`  [${kind}] ${text}`);
}

async function job(title, options) {
  console.log(`\n${title}`);
  // herdctl's factory makes a new runner for every job; persistence is in the engine and stateDir.
  const runner = new ContainerRunner(new CLIRuntime(), docker, stateDir);
  const started = Date.now();
  let result;
  for await (const message of runner.execute({ agent, ...options })) {
    show(message);
    if (message.type === 'error') throw new Error(`the job failed: ${message.message}`);
    if (message.type === 'result') result = message;
  }
  if (!result || result.is_error) throw new Error(`the job ended without a successful result`);
  const [container] = await runner.listContainers(agent.qualifiedName);
  console.log(`  done in ${Date.now() - started} ms in container ${container.name} (${container.state}, kept for inspection)`);
  return result;
}

try {
  const first = await job('Job 1: a new session', { prompt: 'Read README.md and summarise it.\n#say reading README.md' });
  const second = await job(`Job 2: resume session ${first.session_id}`, { prompt: 'What did I ask you before?', resume: first.session_id });
  if (second.session_id !== first.session_id || second.standin.earlier_turns < 1) {
    throw new Error(`the second job did not continue the first one's session`);
  }
  const sessionFile = path.join(stateDir, 'docker-sessions', agent.qualifiedName, `${first.session_id}.jsonl`);
  const turns = fs.readFileSync(sessionFile, 'utf8').split('\n').filter(Boolean).length;
  console.log(`\nThe session persisted on the host: ${sessionFile} (${turns} entries)`);

  // Shaped like herdctl's file sender: the handler runs here and sees host paths.
  const sent = [];
  const fileSender = {
    name: 'herdctl-file-sender',
    tools: [{
      name: 'send_file',
      description: 'Send a workspace file to the chat',
      inputSchema: { type: 'object', properties: { file_path: { type: 'string' } } },
      async handler({ file_path: file }) {
        sent.push(file);
        return { content: [{ type: 'text', text: `sent ${fs.statSync(file).size} bytes from ${file}` }] };
      },
    }],
  };
  await job('Job 3: the agent calls a tool of this process', {
    prompt: 'Send README.md to the chat.\n#mcp-call herdctl-file-sender send_file {"file_path":"/workspace/README.md"}',
    injectedMcpServers: { 'herdctl-file-sender': fileSender },
  });
  if (sent.length !== 1 || sent[0] !== path.join(workspace, 'README.md')) {
    throw new Error(`the tool was not called with the host path: ${JSON.stringify(sent)}`);
  }
} catch (e) {
  console.error(`\ndemo failed${e.code ? ` (${e.code})` : ''}: ${e.message}`);
  if (e.code === 'NOT_FOUND') console.error(`build the image first: scripts/build-test-images`);
  process.exit(1);
}

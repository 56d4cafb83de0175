// Type-checked by test/types.test.js (tsc --noEmit), never run: herdctl's own code, as it would
// wrap a runtime. The interfaces below restate the shapes herdctl's @herdctl/core declares (its
// runtime interface, execute options, message and resolved docker config), so this file fails to
// compile when ContainerRunner stops fitting where herdctl puts it.
import {
  ContainerRunner,
  resolveDockerConfig,
  parseMemoryToBytes,
  parseVolumeMount,
  parsePortBinding,
  parseTmpfsMount,
  getHostUser,
  DEFAULT_DOCKER_IMAGE,
  DEFAULT_MEMORY_LIMIT,
  DEFAULT_MAX_CONTAINERS,
  type ContainerErrorMessage,
} from 'herdctl-container'

// --- herdctl's shapes (@herdctl/core) ---
type NetworkMode = 'none' | 'bridge' | 'host'
type VolumeMode = 'ro' | 'rw'
interface PathMapping { hostPath: string; containerPath: string; mode: VolumeMode }
interface DockerConfig {
  enabled: boolean
  ephemeral: boolean
  image: string
  network: NetworkMode
  memoryBytes: number
  cpuShares?: number
  user: string
  maxContainers: number
  volumes: PathMapping[]
  workspaceMode: VolumeMode
}
interface DockerYaml { enabled?: boolean; ephemeral?: boolean; image?: string; memory?: string; network?: NetworkMode; volumes?: string[] }
interface ResolvedAgent {
  name: string
  qualifiedName: string
  configPath: string
  fleetPath: string[]
  working_directory?: string | { root: string; auto_clone?: boolean }
  model?: string
  permission_mode?: 'default' | 'acceptEdits' | 'bypassPermissions' | 'plan'
  allowed_tools?: string[]
  runtime?: 'sdk' | 'cli'
  docker?: DockerYaml
  schedules?: Record<string, { type: string; interval?: string }>
}
interface SDKContentBlock { type: 'text' | 'tool_use' | 'tool_result' | 'thinking'; text?: string }
interface SDKMessage {
  type: 'system' | 'assistant' | 'user' | 'stream_event' | 'result' | 'error' | 'tool_progress' | 'auth_status'
  subtype?: string
  session_id?: string
  message?: { content?: SDKContentBlock[] }
  result?: string
  error?: string
}
interface McpToolCallResult { content: Array<{ type: string; text: string }>; isError?: boolean }
interface InjectedMcpToolDef {
  name: string
  description: string
  inputSchema: Record<string, unknown>
  handler: (args: Record<string, unknown>) => Promise<McpToolCallResult>
}
interface InjectedMcpServerDef { name: string; version?: string; tools: InjectedMcpToolDef[] }
interface RuntimeExecuteOptions {
  prompt: string
  agent: ResolvedAgent
  resume?: string
  fork?: boolean
  abortController?: AbortController
  injectedMcpServers?: Record<string, InjectedMcpServerDef>
  systemPromptAppend?: string
}
// The Agent SDK's shapes that herdctl's session types use (its sdk.d.ts).
interface SlashCommand { name: string; description: string; argumentHint: string; aliases?: string[] }
interface SessionCronSummary { id: string; schedule: string; recurring: boolean; prompt: string }
interface BackgroundTaskSummary {
  id: string; type: string; status: string; description: string
  command?: string; agent_type?: string; server?: string; tool?: string; name?: string
}
interface SessionLifecycleSignal {
  kind: 'turn_end' | 'background_tasks_changed' | 'activity' | 'cron_deleted'
  sessionId: string
  sessionCrons: SessionCronSummary[]
  backgroundTasks: BackgroundTaskSummary[]
  deletedCronIds?: string[]
}
interface RuntimeSession {
  readonly messages: AsyncIterable<SDKMessage>
  send(text: string): Promise<void>
  interrupt(): Promise<void>
  listCommands(): Promise<SlashCommand[]>
  setModel(model?: string): Promise<void>
  stopTask(taskId: string): Promise<void>
  close(): Promise<void>
}
interface RuntimeInterface {
  execute(options: RuntimeExecuteOptions): AsyncIterable<SDKMessage>
  openSession?(options: RuntimeExecuteOptions & {
    includePartialMessages?: boolean
    onLifecycleSignal?: (signal: SessionLifecycleSignal) => void | Promise<void>
  }): RuntimeSession
}
class CLIRuntime implements RuntimeInterface {
  async *execute(_options: RuntimeExecuteOptions): AsyncIterable<SDKMessage> {}
}

// --- herdctl's factory and job loop, with this package in place of its ContainerRunner ---
export function createRuntime(agent: ResolvedAgent, stateDir: string): RuntimeInterface {
  const runtime: RuntimeInterface = new CLIRuntime()
  if (agent.docker?.enabled) {
    const config: DockerConfig = resolveDockerConfig(agent.docker)
    return new ContainerRunner(runtime, config, stateDir)
  }
  return runtime
}

// herdctl's logger shape (debug/info/warn/error of strings) is what `logger` takes.
interface HerdctlLogger {
  debug: (message: string) => void
  info: (message: string) => void
  warn: (message: string) => void
  error: (message: string) => void
}
export function withLogging(runtime: RuntimeInterface, config: DockerConfig, stateDir: string, logger: HerdctlLogger): RuntimeInterface {
  return new ContainerRunner(runtime, config, stateDir, {
    logger,
    pull: 'if-missing',
    onPullProgress: (e) => logger.info(`${e.id ?? ''} ${e.status} ${e.current ?? 0}/${e.total ?? 0}`),
  })
}

export async function runJob(runtime: RuntimeInterface, agent: ResolvedAgent): Promise<string | undefined> {
  const abortController = new AbortController()
  for await (const message of runtime.execute({ prompt: 'fix it', agent, abortController })) {
    if (message.type === 'result') return message.result
    if (message.type === 'error') throw new Error(message.error ?? 'failed')
  }
  return undefined
}

// herdctl's openChatSession with the one patch: it asks the runtime it built for openSession.
export async function chat(agent: ResolvedAgent, stateDir: string): Promise<string[]> {
  const runtime = createRuntime(agent, stateDir)
  if (!runtime.openSession) throw new Error('no streaming sessions')
  const session = runtime.openSession({
    agent,
    prompt: 'hi',
    includePartialMessages: true,
    onLifecycleSignal: (s) => void s.backgroundTasks.length,
  })
  const names = (await session.listCommands()).map((c) => c.name)
  await session.send('/compact')
  await session.interrupt()
  await session.setModel()
  await session.stopTask('task_1')
  for await (const m of session.messages) if (m.type === 'result') break
  await session.close()
  return names
}

// herdctl's chat managers pass their file sender this way.
export async function withFileSender(runtime: ContainerRunner, agent: ResolvedAgent, sender: InjectedMcpServerDef): Promise<void> {
  const injectedMcpServers: Record<string, InjectedMcpServerDef> = { 'herdctl-file-sender': sender }
  for await (const message of runtime.execute({ prompt: 'send the report', agent, injectedMcpServers })) {
    if (message.type === 'result') return
  }
}

export async function direct(agent: ResolvedAgent, stateDir: string): Promise<number> {
  const runner = new ContainerRunner({ kind: 'sdk' }, { memory: '1g', network: 'none' }, stateDir, { socketPath: '/var/run/docker.sock' })
  const dir: string = runner.stateDir
  const limit: number = runner.config.memoryBytes
  let errors = 0
  for await (const m of runner.execute({ prompt: 'x', agent, includePartialMessages: true })) {
    if (m.type === 'error') {
      const e = m as ContainerErrorMessage
      const code: number | null | undefined = e.exit_code
      errors += code ?? 1
    }
  }
  const raw = new ContainerRunner({ containerCommand: () => ({ argv: ['node', 'agent.js'], stdin: new Uint8Array(2) }) }, null, dir)
  const containers = await raw.listContainers(agent.qualifiedName)
  const pruned = await raw.prune(agent.qualifiedName, 2)
  const collected = await raw.gc([agent.qualifiedName])
  const created: number = containers[0]?.createdMs ?? 0
  // @ts-expect-error prune's result has removed ids, not a count
  const wrong: number = pruned.removed
  const mapping: PathMapping = parseVolumeMount('/a:/b:ro')
  const port: number = parsePortBinding('80').hostPort + (parseTmpfsMount('/tmp').options?.length ?? 0)
  const user: string = getHostUser() + DEFAULT_DOCKER_IMAGE + DEFAULT_MEMORY_LIMIT
  return errors + limit + created + wrong + mapping.hostPath.length + port + user.length + collected.removed.length +
    parseMemoryToBytes('2g') + DEFAULT_MAX_CONTAINERS
}

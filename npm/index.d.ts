// herdctl-container's public types. Those of the native classes and helpers are generated from
// the Rust doc comments into binding.d.ts (by `napi build`) and re-exported here; the shapes that
// herdctl defines (its config, its execute options, its messages) are written here to match it.
import type {
  MessageStream,
  ContainerRunnerOptions as NativeRunnerOptions,
  ContainerInfo,
  PruneResult,
  EngineCallEvent,
  PullProgressEvent,
} from './binding'

export { MessageStream } from './binding'
export type {
  StreamStats,
  EngineCallEvent,
  PullProgressEvent,
  ContainerInfo,
  PruneResult,
  PathMapping,
  PortBinding,
  TmpfsMount,
} from './binding'
export {
  parseMemoryToBytes,
  parsePortBinding,
  parseTmpfsMount,
  parseVolumeMount,
  getHostUser,
  DEFAULT_DOCKER_IMAGE,
  DEFAULT_MEMORY_LIMIT,
  DEFAULT_MAX_CONTAINERS,
} from './binding'
import type { PathMapping, PortBinding, TmpfsMount } from './binding'

/** Where the debug log goes: herdctl's logger (any object with `debug(message)`). */
export interface ContainerLogger {
  /** Called once per engine call with `herdctl-container: engine: POST /v1.41/... -> 201 (12 ms)`. */
  debug(message: string, event?: EngineCallEvent): void
}

/** `ContainerRunner`'s fourth argument. Every field is optional. */
export interface ContainerRunnerOptions extends NativeRunnerOptions {
  /**
   * Receives one line per engine call (method, path, status, milliseconds; secrets redacted) at
   * `debug`. Without it, `HERDCTL_CONTAINER_LOG=debug` prints the lines to stderr. A throw is
   * ignored.
   */
  logger?: ContainerLogger
  /** Called with each line of an image pull's progress (see `pull`). A throw is ignored. */
  onPullProgress?: (event: PullProgressEvent) => void
}

/** A message of a job, as herdctl's runtimes yield it (one JSON line of the agent's output). */
export interface SDKMessage {
  type: 'system' | 'assistant' | 'user' | 'result' | 'error' | 'stream_event' | (string & {})
  subtype?: string
  session_id?: string
  message?: unknown
  result?: string
  [key: string]: unknown
}

/** How long each phase of a job took, in milliseconds; `null` for a phase that did not happen. */
export interface ContainerJobTimings {
  /** Finding or making the container, start included. */
  acquire_ms: number | null
  /** Creating the container (null when a persistent one was reused). */
  create_ms: number | null
  /** Starting the container (null when it was running already). */
  start_ms: number | null
  /** Opening the job's exec. */
  exec_start_ms: number | null
  /** From the job's start to its first byte of output. */
  first_byte_ms: number | null
  /** From the job's start to the end of its output. */
  end_ms: number | null
  /** Stopping an ephemeral container and applying retention. */
  release_ms: number | null
}

/**
 * A job's report, as the message that closes the job carries it (`container_report`): the
 * agent's `result`, handed out once the job has ended and its container is released, or the
 * {@link ContainerErrorMessage} of a job that did not succeed. Every text is redacted.
 */
export interface ContainerJobReport {
  /** `exited`, `command_not_found`, `killed`, `container_died`, `cancelled`, `timed_out` or `failed`. */
  outcome: 'exited' | 'command_not_found' | 'killed' | 'container_died' | 'cancelled' | 'timed_out' | 'failed'
  /** True only for exit code 0. */
  success: boolean
  /** How the job ended, in one line. */
  message: string
  /** The error's code (`ENGINE_UNREACHABLE`, `LINE_TOO_LONG`, ...) when the outcome is `failed`. */
  code: string | null
  /** The exit code of the job's process, or of its container when that died. */
  exit_code: number | null
  /** An out-of-memory kill. */
  oom_killed: boolean
  container_id: string
  container_name: string
  /** The image, as configured. */
  image: string
  /** The container's `dev.herdctl.config-hash` label. */
  config_hash: string
  timings: ContainerJobTimings
  /**
   * What did not go as asked though the job ran: a limit the engine dropped or a `host_config`
   * override removed (`Memory: 0`), a container that could not be stopped after the job, a
   * persistent container replaced because its mounts went stale, retention that failed.
   */
  warnings: string[]
  /** The end of the job's stderr. */
  stderr_tail: string
}

/** The agent's `result`, with the job's report added. */
export interface ContainerResultMessage extends SDKMessage {
  type: 'result'
  container_report?: ContainerJobReport
}

/**
 * The message that ends a job that did not succeed (or printed no valid `result`): what is known
 * about how it ended. Only the agent's own error `result`, held back until now, may follow it.
 * Errors found before the container existed are thrown instead.
 */
export interface ContainerErrorMessage extends SDKMessage {
  type: 'error'
  message: string
  /** `exited`, `command_not_found`, `killed`, `container_died`, `cancelled`, `timed_out` or `failed`. */
  outcome?: string
  exit_code?: number | null
  oom_killed?: boolean
  /** The end of the job's stderr, secrets redacted. */
  stderr_tail?: string
  /** The last stdout lines that were not JSON messages. */
  stdout_tail?: string
  /** The container the job ran in (kept for inspection). */
  container?: string
  /** The error's code when the job could not be followed to its end. */
  code?: string
  /** The job's whole report. */
  container_report?: ContainerJobReport
}

/** The container's network mode (herdctl's `NetworkMode`). */
export type NetworkMode = 'none' | 'bridge' | 'host'

/** How a mount is mounted (herdctl's `VolumeMode`). */
export type VolumeMode = 'ro' | 'rw'

/**
 * The Docker Engine's `HostConfig` (`POST /containers/create`), as `host_config` carries it: the
 * fields fleets set typed as dockerode types them (herdctl's own code merges this into a
 * dockerode `HostConfig`), any other engine field allowed; the engine reads keys in any letter
 * case. Which fields and values a fleet may set without `allow_unsafe_host_config` is checked when
 * a job starts, not here.
 */
export interface HostConfig {
  Binds?: string[]
  Memory?: number
  MemorySwap?: number
  MemoryReservation?: number
  NanoCpus?: number
  CpuShares?: number
  CpuPeriod?: number
  CpuQuota?: number
  CpusetCpus?: string
  CpusetMems?: string
  ShmSize?: number
  PidsLimit?: number
  Ulimits?: Array<{ Name: string; Soft: number; Hard: number }>
  Privileged?: boolean
  CapAdd?: string[]
  CapDrop?: string[]
  SecurityOpt?: string[]
  ReadonlyRootfs?: boolean
  Devices?: Array<{ PathOnHost: string; PathInContainer: string; CgroupPermissions?: string }>
  DeviceRequests?: Array<{
    Driver?: string
    Count?: number
    DeviceIDs?: string[]
    Capabilities?: string[][]
    Options?: Record<string, string>
  }>
  DeviceCgroupRules?: string[]
  GroupAdd?: string[]
  NetworkMode?: string
  PidMode?: string
  IpcMode?: string
  UTSMode?: string
  UsernsMode?: string
  Runtime?: string
  Init?: boolean
  AutoRemove?: boolean
  Tmpfs?: Record<string, string>
  Sysctls?: Record<string, string>
  ExtraHosts?: string[]
  Dns?: string[]
  DnsOptions?: string[]
  DnsSearch?: string[]
  OomKillDisable?: boolean
  OomScoreAdj?: number
  [key: string]: unknown
}

/** herdctl's resolved docker config (`resolveDockerConfig`'s result). */
export interface DockerConfig {
  enabled: boolean
  ephemeral: boolean
  image: string
  network: NetworkMode
  memoryBytes: number
  cpuShares?: number
  cpuPeriod?: number
  cpuQuota?: number
  /** `"UID"` or `"UID:GID"`. */
  user: string
  maxContainers: number
  volumes: PathMapping[]
  workspaceMode: 'ro' | 'rw'
  env: Record<string, string>
  ports: PortBinding[]
  tmpfs: TmpfsMount[]
  pidsLimit?: number
  labels: Record<string, string>
  /**
   * The OCI runtime the container runs under, like `"runsc"` for gVisor (`hostConfigOverride.Runtime`
   * is read as this field); refused when the engine does not list it, proven from inside each
   * container when it is a sandbox. Default: the engine's (runc).
   */
  runtime?: string
  /**
   * Raw engine HostConfig merged over the generated one (fleet only), with keys in the engine's
   * spelling (it reads them in any letter case).
   */
  hostConfigOverride?: HostConfig
  /**
   * Lets hostConfigOverride and volumes loosen the container (fleet only); the runner option
   * `allowUnsafeHostConfig` and `HERDCTL_CONTAINER_ALLOW_UNSAFE_HOST_CONFIG=1` do it for every agent.
   */
  allowUnsafeHostConfig?: boolean
}

/** herdctl's `docker:` block as written in YAML (snake_case). */
export interface DockerInput {
  enabled?: boolean
  ephemeral?: boolean
  image?: string
  base_image?: string
  network?: 'none' | 'bridge' | 'host'
  memory?: string
  cpu_shares?: number
  cpu_period?: number
  cpu_quota?: number
  user?: string
  max_containers?: number
  volumes?: string[]
  workspace_mode?: 'ro' | 'rw'
  env?: Record<string, string>
  ports?: string[]
  tmpfs?: string[]
  pids_limit?: number
  labels?: Record<string, string>
  /** The OCI runtime, like `runsc` (gVisor); an agent's own config may only choose a sandbox. */
  runtime?: string
  host_config?: HostConfig
  /** Lets this agent's host_config and volumes loosen the container (see {@link HostConfig}). */
  allow_unsafe_host_config?: boolean
}

/** The fields of herdctl's resolved agent that a job reads; herdctl's object has many more. */
export interface AgentConfig {
  name: string
  qualifiedName?: string
  /** Mounted at /workspace; default: this process's current directory. */
  working_directory?: string | { root: string }
  model?: string
  permission_mode?: string
  system_prompt?: string
  allowed_tools?: string[]
  denied_tools?: string[]
  tools?: string[]
  setting_sources?: string[]
  mcp_servers?: object
  max_turns?: number
}

/** What a tool handler returns: MCP's `CallToolResult`. */
export interface McpToolCallResult {
  content: Array<{ type: string; text: string }>
  isError?: boolean
}

/** One tool of an injected MCP server (herdctl's `InjectedMcpToolDef`). */
export interface InjectedMcpToolDef {
  /** Letters, digits, `_` or `-`; the agent calls it `mcp__<server>__<name>`. */
  name: string
  description?: string
  /** JSON Schema of the arguments; default: any object. */
  inputSchema?: Record<string, unknown>
  /** Runs one call. A throw reaches the agent as a failed tool (`isError: true`) with its message. */
  handler: (args: Record<string, unknown>) => Promise<McpToolCallResult> | McpToolCallResult
}

/** An MCP server whose tools run in this process (herdctl's `InjectedMcpServerDef`). */
export interface InjectedMcpServerDef {
  /** herdctl's name for it; the key in `injectedMcpServers` is what the agent sees. */
  name?: string
  version?: string
  tools: InjectedMcpToolDef[]
}

/** herdctl's `RuntimeExecuteOptions`. */
export interface ExecuteOptions {
  prompt: string
  agent: AgentConfig
  resume?: string
  fork?: boolean
  /** Aborting cancels the job (its processes are killed) and ends the generator. */
  abortController?: AbortController
  /**
   * MCP servers whose tools run in this process (herdctl's file sender, say). The agent reaches
   * them through a unix socket mounted into its container, whatever its network mode; each call
   * runs the tool's `handler` here, with container paths in its arguments turned into host paths.
   */
  injectedMcpServers?: Record<string, InjectedMcpServerDef>
  systemPromptAppend?: string
  includePartialMessages?: boolean
}

/** A slash command of a session (the Agent SDK's `SlashCommand`). */
export interface SlashCommand {
  /** Without the leading slash. */
  name: string
  description: string
  argumentHint: string
  /** Other names that run it. */
  aliases?: string[]
}

/** A background task of a session (the Agent SDK's `BackgroundTaskSummary`). */
export interface BackgroundTaskSummary {
  id: string
  /** `shell`, `subagent`, `monitor`, `workflow`, ... */
  type: string
  status: string
  description: string
  command?: string
  agent_type?: string
  server?: string
  tool?: string
  name?: string
}

/** A wakeup the agent scheduled (the Agent SDK's `SessionCronSummary`). */
export interface SessionCronSummary {
  id: string
  schedule: string
  recurring: boolean
  prompt: string
}

/** herdctl's `SessionLifecycleSignal`, made from the agent's hooks and its session messages. */
export interface SessionLifecycleSignal {
  kind: 'turn_end' | 'background_tasks_changed' | 'activity' | 'cron_deleted'
  sessionId: string
  /** The agent's pending wakeups (the `Stop` hook's `session_crons`). */
  sessionCrons: SessionCronSummary[]
  backgroundTasks: BackgroundTaskSummary[]
  /** Only on `cron_deleted`. */
  deletedCronIds?: string[]
}

/** herdctl's `RuntimeExecuteOptions` as `openSession` takes them. */
export interface SessionOptions extends Omit<ExecuteOptions, 'prompt'> {
  /** The first turn; none when absent or empty. Send later turns with `send`. */
  prompt?: string
  /**
   * herdctl's session reaper: called (off the message stream, its throw ignored) at each turn's
   * end, when the live background tasks change, when a turn starts and when the agent deletes a
   * cron.
   */
  onLifecycleSignal?: (signal: SessionLifecycleSignal) => void | Promise<void>
}

/**
 * herdctl's `RuntimeSession`: one live agent in its container across many turns. Each control
 * call rejects with an Error whose `code` is `SESSION_ENDED` once the session is over (closed,
 * or its agent or container stopped; calls waiting then reject too), `AGENT_ERROR` when the
 * agent refused it (a task it cannot stop), `TIMEOUT` when it did not answer within 60 s, or the
 * code of the error that kept the session from opening.
 */
export interface RuntimeSession<M = SDKMessage> {
  /**
   * Every message of every turn. Throws the coded error of a session that cannot start; a
   * session that ends without `close()` ends with a {@link ContainerErrorMessage}. Leaving the
   * loop early closes the session.
   */
  readonly messages: AsyncGenerator<M, void, undefined>
  /** Sends a user turn (a leading `/` runs a slash command); settles once it is written. */
  send(text: string): Promise<void>
  /** Stops the current turn; the session stays open. */
  interrupt(): Promise<void>
  listCommands(): Promise<SlashCommand[]>
  /** The model for later turns; none for the agent's default. */
  setModel(model?: string): Promise<void>
  /** Stops one background task; one that already ended is no error. */
  stopTask(taskId: string): Promise<void>
  /**
   * Ends the session: what is left of the agent is killed within 2 s, the container released (an
   * ephemeral one stopped and kept for inspection; in a persistent one other jobs run on).
   */
  close(): Promise<void>
}

/** What a runtime's `containerCommand` hook returns: run `argv` in the container (cwd /workspace). */
export interface ContainerCommand {
  /** The program and its arguments; no shell is involved. */
  argv: string[]
  /** Written to the program's stdin, then closed. Any size. */
  stdin?: string | Uint8Array
}

/**
 * A runtime that ContainerRunner can wrap: herdctl's `CLIRuntime` or `SDKRuntime` (by class
 * name), one with `kind: 'cli' | 'sdk'`, or one that says what to run itself with
 * `containerCommand` (its stdout JSON lines are the messages). The wrapped runtime's own
 * `execute` is never called.
 */
export interface WrappableRuntime {
  readonly kind?: 'cli' | 'sdk'
  containerCommand?(options: ExecuteOptions): ContainerCommand | Promise<ContainerCommand>
}

/**
 * A dockerode client, as herdctl's own ContainerRunner takes as its 4th argument: only its
 * engine address is used.
 */
export interface DockerClientLike {
  /** docker-modem's `Modem`: `socketPath`, or `host`, `port` and `protocol`, are read. */
  modem?: object | null
}

/** Runs each job of a wrapped herdctl runtime in a Docker container. */
export declare class ContainerRunner {
  /**
   * @param wrapped the runtime herdctl built for the agent
   * @param config the agent's docker config, resolved or as written (checked here: a bad one
   *   throws with code INVALID_CONFIG)
   * @param stateDir herdctl's state directory; sessions live under `<stateDir>/docker-sessions/`
   * @param options where the engine listens (default: DOCKER_HOST, else /var/run/docker.sock), the
   *   pull policy, a job timeout, `allowUnsafeHostConfig` (the opt-in for host_config settings
   *   that loosen the container), `runtime` (the OCI runtime of configs that name none) and
   *   `warmPool` (warm containers per ephemeral agent); or a dockerode client (herdctl's 4th
   *   argument), whose engine address is used (a bad option throws with code INVALID_ARGUMENT)
   */
  constructor(
    wrapped: WrappableRuntime | object,
    config: Partial<DockerConfig> | DockerInput | null | undefined,
    stateDir: string,
    options?: ContainerRunnerOptions | DockerClientLike,
  )
  readonly wrapped: WrappableRuntime | object
  readonly stateDir: string
  /** The resolved config. */
  readonly config: DockerConfig
  /**
   * The job's messages as they arrive. Throws (an Error with `code`) when the job cannot start:
   * bad input, no engine, a missing image (NOT_FOUND). Once the container exists, every ending is
   * a message: a job that did not succeed yields a {@link ContainerErrorMessage}, before the
   * agent's `result` if it printed one (herdctl stops at the first). The agent's `result` is held
   * until the job has ended; it and that error carry the job's report as `container_report`
   * ({@link ContainerJobReport}). Leaving the loop early, or aborting, cancels the job and
   * releases its container before the generator finishes. `M` lets callers name their own SDK
   * message type.
   */
  execute<M = SDKMessage>(options: ExecuteOptions): AsyncGenerator<M, void, undefined>
  /**
   * herdctl's `openSession`: a live session in the agent's container, returned at once (the
   * container starts behind it; calls made meanwhile wait). Throws INVALID_ARGUMENT for bad
   * options or a runtime with `containerCommand`, INVALID_CONFIG for a bad agent. Aborting `abortController` closes it.
   */
  openSession<M = SDKMessage>(options: SessionOptions): RuntimeSession<M>
  /** This project's containers, optionally of one agent, newest first. */
  listContainers(agent?: string): Promise<ContainerInfo[]>
  /** Removes the agent's oldest stopped containers beyond `keep` (default: maxContainers). */
  prune(agent: string, keep?: number): Promise<PruneResult>
  /**
   * Stops running ephemeral containers that no live process owns (`stopped`), removes stopped
   * containers of agents not in `liveAgents`, and prunes the others to `keep`.
   */
  gc(liveAgents: string[], keep?: number): Promise<PruneResult>
  /**
   * Retires the warm pools (`warmPool`) this runner's jobs used: their idle containers are
   * removed. The process's remaining pools are retired when it exits.
   */
  close(): Promise<PruneResult>
}

/** herdctl's `resolveDockerConfig`: defaults applied, every field checked (throws INVALID_CONFIG). */
export declare function resolveDockerConfig(
  docker?: DockerInput | Partial<DockerConfig> | null,
): DockerConfig

/**
 * The messages of a MessageStream, parsed, as an async generator. Leaving the loop early
 * (`break`, `return()`, a throw) cancels the stream and waits until its producer has ended;
 * `signal` aborting does the same, and the generator then ends.
 */
export declare function messages(
  stream: MessageStream,
  signal?: AbortSignal,
): AsyncGenerator<SDKMessage, void, undefined>

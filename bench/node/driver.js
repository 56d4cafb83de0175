// The Node side of scripts/bench: a long-lived process that the Rust benchmark drives over
// stdin/stdout, one JSON command per line in, one JSON result per line out. Long-lived so that
// Node's own start-up is not charged to any figure, and so that its rounds interleave with the
// Rust rounds on the same engine.
//
// Baseline ops ("dockerode-*") do the work the way herdctl does it today (its ContainerManager and
// ContainerRunner): create + start with `sleep infinity`, exec without stdin (the prompt travels in
// the command), `exec.start({hijack: true})`, `modem.demuxStream` into PassThroughs, readline,
// `JSON.parse` per line, `exec.inspect()`, stop with a 5 s timeout, remove, and a list call for its
// retention. Ops "runner-*" use this project's ContainerRunner when it can be loaded.
'use strict'

const { PassThrough } = require('node:stream')
const { createInterface } = require('node:readline')
const Docker = require('dockerode')

const socketPath = (process.env.DOCKER_HOST || '').startsWith('unix://')
  ? process.env.DOCKER_HOST.slice('unix://'.length)
  : '/var/run/docker.sock'
const docker = new Docker({ socketPath })

const now = () => Number(process.hrtime.bigint()) / 1e6 // milliseconds

// herdctl's executeSDKRuntime: exec with Cmd, stdout/stderr attached, no stdin, no TTY, cwd
// /workspace; demuxStream into PassThroughs, readline over stdout, JSON.parse per line, yielded
// one by one from an async generator (its execute() then re-yields them with `yield*`). The exit
// code goes to `status.code`.
async function * execMessages (container, cmd, status) {
  const exec = await container.exec({
    Cmd: cmd,
    AttachStdout: true,
    AttachStderr: true,
    AttachStdin: false,
    Tty: false,
    WorkingDir: '/workspace'
  })
  const stream = await exec.start({ hijack: true, stdin: false })
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  docker.modem.demuxStream(stream, stdout, stderr)
  // demuxStream never ends its outputs; a working caller must, or readline waits forever.
  stream.on('end', () => { stdout.end(); stderr.end() })
  stream.on('close', () => { stdout.end(); stderr.end() })
  stderr.resume()
  const rl = createInterface({ input: stdout, crlfDelay: Infinity })
  for await (const line of rl) {
    const trimmed = line.trim()
    if (!trimmed) continue
    yield JSON.parse(trimmed)
  }
  const info = await exec.inspect()
  status.code = info.ExitCode
}

// herdctl's ContainerRunner.execute: `yield*` over the runtime-specific generator.
async function * herdctlExecute (container, cmd, status) {
  yield * execMessages(container, cmd, status)
}

// Runs the messages through herdctl's layers into `onMessage`; returns the exit code.
async function execLines (container, cmd, onMessage) {
  const status = {}
  for await (const message of herdctlExecute(container, cmd, status)) onMessage(message)
  return status.code
}

// The prompt inside an `sh -c` string, as herdctl does (its escaping is not the point here).
const echoCmd = (prompt) => ['sh', '-c', `printf '%s\\n' '${prompt.replace(/'/g, "'\\''")}'`]

// herdctl's exec of one job: the time of its first message (from t0), how many, the exit code.
async function timedExec (c, prompt, t0) {
  let first = null
  let messages = 0
  const code = await execLines(c, echoCmd(prompt), () => {
    if (first === null) first = now() - t0
    messages++
  })
  return { first, messages, code }
}

const ops = {
  // A job in a running persistent container: herdctl inspects it (is it running?), inspects it
  // again (for its id), execs, reads the messages, then lists the agent's containers (retention).
  async 'dockerode-warm' ({ container, prompt, agentPrefix }) {
    const t0 = now()
    const c = docker.getContainer(container)
    const info = await c.inspect()
    if (!info.State.Running) throw new Error(`${container} is not running`)
    await c.inspect()
    const { first, messages, code } = await timedExec(c, prompt, t0)
    await docker.listContainers({ all: true, filters: { name: [agentPrefix] } })
    if (code !== 0 || messages !== 1) throw new Error(`exit ${code}, ${messages} messages`)
    return { first_ms: first, exit_ms: now() - t0 }
  },

  // A cold ephemeral job, herdctl's way: create (sleep infinity as PID 1, no init) + start,
  // inspect, exec, read, stop with a 5 s timeout (sleep ignores SIGTERM, so it waits it out),
  // inspect, remove, list for retention.
  async 'dockerode-cold' ({ create, prompt, agentPrefix }) {
    const t0 = now()
    const c = await docker.createContainer(create)
    await c.start()
    await c.inspect()
    const { first, messages, code } = await timedExec(c, prompt, t0)
    try { await c.stop({ t: 5 }) } catch {}
    const info = await c.inspect()
    if (!info.HostConfig.AutoRemove) await c.remove({ force: true })
    await docker.listContainers({ all: true, filters: { name: [agentPrefix] } })
    if (code !== 0 || messages !== 1) throw new Error(`exit ${code}, ${messages} messages`)
    return { first_ms: first, exit_ms: now() - t0 }
  },

  // Stream throughput: the producer's JSONL into JS objects through demuxStream + readline +
  // JSON.parse and herdctl's generators. Timed from the first message to the end, like the Rust
  // figures. (Each line is 1 KiB by construction; `seq` checks that none was lost.)
  async 'dockerode-stream' ({ container, cmd }) {
    const c = docker.getContainer(container)
    let first = null
    let bytes = 0
    let lines = 0
    const code = await execLines(c, cmd, (msg) => {
      if (first === null) first = now()
      if (msg.seq !== lines % 1024) throw new Error(`message ${lines} has seq ${msg.seq}`)
      bytes += 1024
      lines++
    })
    if (code !== 0) throw new Error(`producer exited ${code}`)
    return { bytes, lines, ms: now() - first }
  }
}

// ContainerRunner ops, when the package exposes one (see bench/node/runner-ops.js).
try {
  Object.assign(ops, require('./runner-ops.js'))
} catch (e) {
  if (e.code !== 'MODULE_NOT_FOUND' || !String(e.message).includes('runner-ops')) throw e
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity })
const queue = []
let busy = false
async function pump () {
  if (busy) return
  busy = true
  while (queue.length) {
    const cmd = queue.shift()
    let out
    try {
      const op = ops[cmd.op]
      if (!op) throw new Error(`unknown op ${cmd.op}`)
      const cpu = process.cpuUsage()
      const result = await op(cmd)
      const used = process.cpuUsage(cpu)
      // This process's CPU (all its threads, the addon's included) for the op, in milliseconds.
      out = { ok: true, cpu_ms: (used.user + used.system) / 1000, ...result }
    } catch (e) {
      out = { ok: false, error: String((e && e.stack) || e) }
    }
    process.stdout.write(JSON.stringify(out) + '\n')
  }
  busy = false
}
rl.on('line', (line) => {
  if (!line.trim()) return
  queue.push(JSON.parse(line))
  pump()
})
rl.on('close', () => { /* the benchmark is done with us; pending ops finish first */ })
process.stdout.write(JSON.stringify({ ok: true, ready: true, ops: Object.keys(ops) }) + '\n')

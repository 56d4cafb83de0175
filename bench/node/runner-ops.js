// The Node API figures: this project's ContainerRunner (npm/), used the way herdctl uses a
// runtime. Loaded by driver.js only when the package has a ContainerRunner and its addon is built.
'use strict'

const path = require('node:path')
const { spawn } = require('node:child_process')

const pkg = path.join(__dirname, '..', '..', 'npm')
const { ContainerRunner } = require(pkg)
if (typeof ContainerRunner !== 'function') {
  const e = new Error('runner-ops: the npm package has no ContainerRunner')
  e.code = 'MODULE_NOT_FOUND'
  throw e
}

const now = () => Number(process.hrtime.bigint()) / 1e6

// A runtime that says what to run itself: `argv` with `stdin`, its stdout lines are the messages.
const runtime = (argv, stdin) => ({ containerCommand: () => ({ argv, stdin }) })

// herdctl builds a runtime (and so a ContainerRunner) per job, consumes messages until the first
// `result` or `error`, then calls return() on the iterator (a `break` does that).
async function herdctlJob (runner, prompt, agent, workspace, onMessage) {
  for await (const msg of runner.execute({ prompt, agent: { name: agent, working_directory: workspace } })) {
    onMessage(msg)
    if (msg.type === 'result' || msg.type === 'error') break
  }
}

// Sessions kept open across rounds by the session benchmark, by agent: the session and a reader
// that hands each message to whoever waits for the next one.
const sessions = new Map()

function openSession ({ agent, docker, stateDir, workspace }) {
  const runner = new ContainerRunner({ kind: 'cli' }, docker, stateDir)
  const session = runner.openSession({ prompt: '', agent: { name: agent, qualifiedName: agent, working_directory: workspace } })
  const s = { session, waiting: null, failed: null }
  ;(async () => {
    for await (const msg of session.messages) if (s.waiting) s.waiting(msg)
    s.failed = new Error('the session ended')
    if (s.waiting) s.waiting(null)
  })().catch((e) => { s.failed = e; if (s.waiting) s.waiting(null) })
  return s
}

module.exports = {
  // An agent job of the stand-in claude (kind cli): its first message is the agent's own output.
  async 'runner-agent-warm' ({ agent, docker, stateDir, workspace, prompt }) {
    const t0 = now()
    const runner = new ContainerRunner({ kind: 'cli' }, docker, stateDir)
    let first = null
    let last = null
    await herdctlJob(runner, prompt, agent, workspace, (msg) => {
      if (first === null) first = now() - t0
      last = msg
    })
    if (!last || last.type !== 'result') throw new Error(`runner-agent-warm: ended with ${JSON.stringify(last)}`)
    return { first_ms: first, exit_ms: now() - t0 }
  },

  // One turn of a session that stays open: send, the turn's first message, its result.
  async 'runner-session-turn' (cmd) {
    let s = sessions.get(cmd.agent)
    if (!s) sessions.set(cmd.agent, (s = openSession(cmd)))
    let first = null
    const t0 = now()
    const done = new Promise((resolve, reject) => {
      s.waiting = (msg) => {
        if (msg === null) return reject(s.failed)
        if (first === null) first = now() - t0
        if (msg.type === 'result') resolve()
      }
    })
    await s.session.send(cmd.prompt)
    await done
    s.waiting = null
    return { first_ms: first, exit_ms: now() - t0 }
  },

  async 'runner-session-close' ({ agent }) {
    const s = sessions.get(agent)
    sessions.delete(agent)
    if (s) await s.session.close()
    return { first_ms: 0, exit_ms: 0 }
  },

  async 'runner-warm' ({ agent, docker, stateDir, workspace, prompt }) {
    const t0 = now()
    const runner = new ContainerRunner(runtime(['cat'], prompt + '\n'), docker, stateDir)
    let first = null
    let last = null
    await herdctlJob(runner, prompt, agent, workspace, (msg) => {
      if (first === null) first = now() - t0
      last = msg
    })
    if (!last || last.type !== 'result') throw new Error(`runner-warm: ended with ${JSON.stringify(last)}`)
    return { first_ms: first, exit_ms: now() - t0 }
  },

  // Throughput into JS objects: every message parsed, timed from the first to the end.
  async 'runner-stream' ({ agent, docker, stateDir, workspace, cmd }) {
    const runner = new ContainerRunner(runtime(cmd, ''), docker, stateDir)
    let first = null
    let bytes = 0
    let lines = 0
    for await (const msg of runner.execute({ prompt: '', agent: { name: agent, working_directory: workspace } })) {
      if (first === null) first = now()
      // The producer prints no `result`, so the runner closes with an error message saying so.
      if (msg.type !== 'assistant') break
      if (msg.seq !== lines % 1024) throw new Error(`runner-stream: message ${lines} has seq ${msg.seq}`)
      bytes += 1024
      lines++
    }
    return { bytes, lines, ms: now() - first }
  },

  // Peak RSS growth in a fresh node process (this one has grown over the run).
  async 'runner-rss' (cmd) {
    const child = spawn(process.execPath, [path.join(__dirname, 'runner-rss.js'), JSON.stringify(cmd)], {
      stdio: ['ignore', 'pipe', 'inherit']
    })
    let out = ''
    child.stdout.on('data', (d) => { out += d })
    const code = await new Promise((resolve) => child.on('close', resolve))
    if (code !== 0) throw new Error(`runner-rss.js exited ${code}: ${out}`)
    return JSON.parse(out)
  }
}

// Peak RSS growth of the Node API while 1 GiB of JSONL streams into a consumer slower than the
// producer. Run in a fresh process by runner-ops.js; prints one JSON line.
//
// One small job runs first, so the addon, the engine connection and V8's first-use growth are in
// the baseline. Then the kernel's high-water mark is reset (/proc/self/clear_refs) and the peak
// (VmHWM) read after the stream, as the Rust figure does.
'use strict'

const fs = require('node:fs')
const path = require('node:path')
const { ContainerRunner } = require(path.join(__dirname, '..', '..', 'npm'))

const { agent, docker, stateDir, workspace, cmd, bytes: expected } = JSON.parse(process.argv[2])
const runtime = (argv) => ({ containerCommand: () => ({ argv, stdin: '' }) })
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const statusKb = (field) => {
  const m = fs.readFileSync('/proc/self/status', 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'))
  return Number(m[1])
}
// About 100 MB/s, like the Rust consumer: a pause after every 128 messages of 1 KiB.
const PACE_LINES = 128

async function main () {
  const runner = new ContainerRunner(runtime(['true']), docker, stateDir)
  for await (const msg of runner.execute({ prompt: '', agent: { name: agent, working_directory: workspace } })) {
    void msg
  }
  const baseline = statusKb('VmRSS')
  let reset = true
  try { fs.writeFileSync('/proc/self/clear_refs', '5') } catch { reset = false }

  const flood = new ContainerRunner(runtime(cmd), docker, stateDir)
  const t0 = Date.now()
  let got = 0
  let lines = 0
  for await (const msg of flood.execute({ prompt: '', agent: { name: agent, working_directory: workspace } })) {
    if (msg.type !== 'assistant') break
    got += 1024
    lines++
    if (lines % PACE_LINES === 0) await sleep(1)
  }
  if (got !== expected) throw new Error(`got ${got} bytes, expected ${expected}`)
  const peak = statusKb('VmHWM')
  const secs = (Date.now() - t0) / 1000
  process.stdout.write(JSON.stringify({
    ok: true,
    baseline_kb: baseline,
    peak_kb: peak,
    hwm_reset: reset,
    growth_mb: Math.max(0, peak - baseline) / 1024,
    mb_s: got / 1e6 / secs
  }) + '\n')
}

main().catch((e) => { console.error(e); process.exit(1) })

// Type-checked by test/types.test.js (tsc --noEmit), never run: code written against the
// package's public types, as a CommonJS-mode TypeScript consumer sees them.
import { messages, MessageStream, type SDKMessage, type StreamStats } from 'herdctl-container'

export async function lastResult(stream: MessageStream, signal?: AbortSignal): Promise<SDKMessage | undefined> {
  let result: SDKMessage | undefined
  for await (const message of messages(stream, signal)) {
    const type: string = message.type
    if (type === 'result') {
      result = message
      break
    }
  }
  const stats: StreamStats = stream.stats()
  const sent: number = stats.sent
  return sent >= 0 ? result : undefined
}

export async function raw(stream: MessageStream): Promise<number> {
  const batch: string | null = await stream.next()
  await stream.cancel()
  // @ts-expect-error next() settles to string | null (a JSON array's text), never a number
  const wrong: number = await stream.next()
  return (batch?.length ?? 0) + wrong
}

// The report on the message that closes a job.
import type { AgentConfig, ContainerErrorMessage, ContainerJobReport, ContainerResultMessage, ContainerRunner } from 'herdctl-container'

export async function closingReport(runner: ContainerRunner, agent: AgentConfig): Promise<string[]> {
  for await (const m of runner.execute<ContainerResultMessage | ContainerErrorMessage>({ prompt: 'x', agent })) {
    const report: ContainerJobReport | undefined = m.container_report
    if (report === undefined) continue
    const release: number | null = report.timings.release_ms
    const exit: number | null = report.exit_code
    // @ts-expect-error the outcome is one of the known kinds
    const bad: ContainerJobReport['outcome'] = 'exploded'
    return [...report.warnings, report.image, report.config_hash, String(release ?? exit), bad]
  }
  const collected = await runner.gc([agent.name])
  return collected.stopped
}

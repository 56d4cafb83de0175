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

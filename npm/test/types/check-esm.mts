// Type-checked by test/types.test.js, never run: the same surface seen from an ES module.
import { messages, type MessageStream } from 'herdctl-container'
import pkg from 'herdctl-container'

export async function count(stream: MessageStream): Promise<number> {
  let n = 0
  for await (const message of messages(stream)) if (message.type === 'assistant') n++
  return n + (typeof pkg.messages === 'function' ? 0 : 1)
}

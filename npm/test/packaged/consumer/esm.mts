// An ES module TypeScript consumer (.mts, or .ts in a "type": "module" package): TypeScript must
// read index.d.mts (the "import" condition) and see an ES module with a default export.
// Type-checked by ../install.test.js with tsc --noEmit, never run.
import herdctl, { ContainerRunner, messages, type ContainerErrorMessage, type MessageStream } from 'herdctl-container'

class SDKRuntime {}

export async function lastError(stateDir: string): Promise<ContainerErrorMessage | undefined> {
  const runner = new herdctl.ContainerRunner(new SDKRuntime(), { image: 'herdctl/runtime:latest' }, stateDir)
  let last: ContainerErrorMessage | undefined
  for await (const message of runner.execute<ContainerErrorMessage>({ prompt: 'hi', agent: { name: 'a' } })) last = message
  // @ts-expect-error listContainers() is a Promise, not an array
  runner.listContainers().length
  return runner instanceof ContainerRunner ? last : undefined
}

export async function count(stream: MessageStream): Promise<number> {
  let n = 0
  for await (const message of messages(stream)) if (message.type === 'assistant') n++
  return n
}

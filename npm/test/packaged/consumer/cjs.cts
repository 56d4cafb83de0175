// A CommonJS TypeScript consumer (.cts, or .ts in a package without "type": "module"): its
// imports become require() calls, so TypeScript must read index.d.ts (the "require" condition).
// Type-checked by ../install.test.js with tsc --noEmit, never run.
import herdctl = require('herdctl-container')
import { ContainerRunner, resolveDockerConfig, type DockerConfig, type SDKMessage } from 'herdctl-container'

class CLIRuntime {}

export async function firstJob(stateDir: string): Promise<SDKMessage[]> {
  const config: DockerConfig = resolveDockerConfig({ image: 'herdctl/runtime:latest', network: 'none' })
  const runner = new ContainerRunner(new CLIRuntime(), config, stateDir, { jobTimeoutMs: 60_000 })
  const messages: SDKMessage[] = []
  for await (const message of runner.execute({ prompt: 'hi', agent: { name: 'reviewer' } })) messages.push(message)
  // @ts-expect-error a network is 'none', 'bridge' or 'host': the types are not `any`
  resolveDockerConfig({ network: 42 })
  const keep: number = herdctl.DEFAULT_MAX_CONTAINERS
  return keep > 0 ? messages : []
}

// herdctl-container's public types. Those of the native classes are generated from the Rust doc
// comments into binding.d.ts (by `napi build`) and re-exported here.
import type { MessageStream } from './binding'

export { MessageStream } from './binding'
export type { StreamStats } from './binding'

/** A message of a job, as herdctl's runtimes yield it (one JSON line of the agent's output). */
export interface SDKMessage {
  type: 'system' | 'assistant' | 'user' | 'result' | 'error' | 'stream_event' | (string & {})
  subtype?: string
  session_id?: string
  message?: unknown
  result?: string
  [key: string]: unknown
}

/**
 * The messages of a MessageStream, parsed, as an async generator. Leaving the loop early
 * (`break`, `return()`, a throw) cancels the stream and waits until its producer has ended;
 * `signal` aborting does the same, and the generator then ends.
 */
export declare function messages(
  stream: MessageStream,
  signal?: AbortSignal,
): AsyncGenerator<SDKMessage, void, undefined>

//! Node bindings for herdctl-container, built with napi-rs.
//!
//! This crate only adapts: it converts between JS values and the core's types, maps errors to
//! JS errors with a stable `code`, and moves blocking work off the JS thread. Policy lives in the
//! core (`herdctl-container`); `npm/index.js` adds only the async generator over
//! [`MessageStream`].
//!
//! # Streaming a job to JS
//!
//! A job's output reaches JS through [`MessageStream::spawn`]: the producer closure runs on its
//! own thread (so it may block on the engine), hands each line to [`Sink::send`] (which blocks
//! while the consumer is behind and fails with [`Cancelled`] once it has stopped), and returns
//! how the job ended. Every line sent must be one JSON value: `messages()` in `npm/index.js`
//! parses each one. [`Sink::on_cancel`] registers what must happen to stop a job blocked
//! elsewhere (in a read from the engine, say); it runs on the JS thread, so it must not block.
//! The JS `cancel()` (and so `break` in a `for await`) settles only once the producer has
//! returned, so whatever the job releases before returning (its container) is released by then.
//!
//! `ContainerRunnerCore::execute` (in `runner.rs`) is the one real producer: it starts the
//! core's `AgentJob` on the stream's thread (an error there rejects the first `next()` with its
//! code), registers a canceller that calls `Canceller::cancel` on a thread of its own (it blocks
//! while the job's processes are killed), sends each message until the consumer leaves, and
//! finishes the job, which releases its container.
//!
//! `ContainerRunnerCore::open_session` is the other: it opens the core's `AgentSession` on the
//! stream's thread and pumps its events (messages as the agent's JSON objects, hooks as
//! `["hook", input]` arrays) until the session ends or JS closes it; `SessionCore` (in
//! `session.rs`) answers the session's control calls through promises settled from the
//! session's threads, queueing those made while it opens.
//!
//! # Errors
//!
//! Every core error reaches JS through `errors.rs`, as an `Error` whose `code` is
//! `herdctl_container::Error::code()`; a panic becomes `INTERNAL`, never a crash.
#![deny(missing_docs)]

pub mod buffer;
mod config;
pub mod errors;
mod hooks;
mod runner;
mod session;
pub mod stream;
mod test_producer;
mod tool_calls;

pub use buffer::{Cancelled, Capacity, Sink, StreamError};
pub use errors::Blocking;
pub use stream::MessageStream;

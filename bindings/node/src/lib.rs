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
//! ```text
//! #[napi]
//! pub fn execute(&self, request: JobRequest) -> napi::Result<MessageStream> {
//!     let job = self.core.job(request.try_into()?)?;   // validation only: no I/O on the JS thread
//!     MessageStream::spawn("herdctl-job", Capacity::default(), move |sink| {
//!         let stop = job.canceller();                   // Send, returns at once
//!         sink.on_cancel(move || stop.cancel());
//!         job.run(|line| sink.send(line).is_ok())       // false: stop reading, clean up, return
//!             .map_err(|e| StreamError::new(e.code(), e.to_string()))
//!     })
//! }
//! ```
#![deny(missing_docs)]

pub mod buffer;
mod config;
pub mod errors;
mod runner;
pub mod stream;
mod test_producer;

pub use buffer::{Cancelled, Capacity, Sink, StreamError};
pub use errors::Blocking;
pub use stream::MessageStream;

//! Node bindings for herdctl-container, built with napi-rs.
//!
//! This crate only adapts: it converts between JS values and the core's types, maps errors to
//! JS errors with a stable `code`, and moves blocking work off the JS thread. Policy lives in the
//! core (`herdctl-container`); `npm/index.js` adds only the async generator over
//! [`MessageStream`].
//!
//! A job's output reaches JS through [`MessageStream::spawn`]: the producer closure runs on its
//! own thread and hands each line to [`Sink::send`], which blocks while the consumer is behind
//! and fails once the consumer has cancelled; [`Sink::on_cancel`] registers what must happen
//! to stop a job blocked elsewhere (in a read from the engine, say).
#![deny(missing_docs)]

pub mod buffer;
pub mod stream;
mod test_producer;

pub use buffer::{Cancelled, Capacity, Sink, StreamError};
pub use stream::MessageStream;

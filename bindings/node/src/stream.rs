//! `MessageStream`: a pull stream of lines from a Rust producer thread to JavaScript.
//!
//! Why this shape: a job's output arrives on a blocking thread (the core has no async runtime),
//! while JS wants `for await`. `next()` hands JS a promise that the producer thread settles
//! through a threadsafe function (napi's `JsDeferred`), so no libuv pool thread ever waits for a
//! line. (An `AsyncTask` whose `compute()` blocks on a channel would: four waiting streams
//! exhaust libuv's four threads and stall every fs, dns and zlib call in the process.)
//!
//! Backpressure and batching are the [`Buffer`]'s: a slow consumer bounds memory, a fast one
//! takes every buffered line per `next()`. Every `next()` settles through the event loop, even
//! when lines are already buffered, so a consumer that never waits still lets timers and I/O run
//! between batches.

use std::sync::Arc;

use napi::bindgen_prelude::{Either, Latin1String, Object};
use napi::{Env, Error, Result};
use napi_derive::napi;

use crate::buffer::{Buffer, Capacity, Sink, StreamError, Taken, Wake};
use crate::errors::js_error;

/// What a `next()` settles to in JS: the batch as the text of one JSON array, or `null` once
/// the stream has ended.
type Batch = Option<Either<Latin1String, String>>;

/// An ASCII batch (the common case: JSON escapes what it needs) becomes a JS string by a plain
/// copy; UTF-8 would be decoded byte by byte.
fn js_text(text: String) -> Either<Latin1String, String> {
    if text.is_ascii() {
        Either::A(Latin1String::from(text))
    } else {
        Either::B(text)
    }
}

/// Joins lines (each one JSON value) into the text of one JSON array. One JS string and one
/// `JSON.parse` per batch instead of one of each per line: on a 1 KiB-message flood the string
/// per line was the larger half of the JS thread's time. The separator is `,\n` so a consumer
/// can still split the batch into its lines (a line never holds a raw newline) when one of them
/// turns out not to be JSON after all.
fn json_array(lines: Vec<String>) -> String {
    let len = lines.iter().map(|l| l.len() + 2).sum::<usize>() + 2;
    let mut text = String::with_capacity(len);
    text.push('[');
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            text.push_str(",\n");
        }
        text.push_str(line);
    }
    text.push(']');
    text
}

/// Counters of a stream, for diagnostics and tests.
#[napi(object)]
pub struct StreamStats {
    /// Lines the producer has handed over.
    pub sent: i64,
    /// Lines handed to JS.
    pub delivered: i64,
    /// Lines buffered now.
    pub queued_lines: i64,
    /// Bytes buffered now.
    pub queued_bytes: i64,
    /// The most bytes ever buffered at once (at most the capacity, or one longer line).
    pub max_queued_bytes: i64,
    /// Whether the producer has ended.
    pub finished: bool,
    /// Whether the consumer has cancelled.
    pub cancelled: bool,
}

/// A stream of lines from a job: pull batches with `next()`, stop it with `cancel()`.
/// `npm/index.js` wraps it in an async generator of parsed messages; use that instead.
#[napi]
pub struct MessageStream {
    buffer: Arc<Buffer>,
}

impl MessageStream {
    /// Runs `producer` on a new thread with the stream's [`Sink`]. Its `Ok` ends the stream
    /// after the lines it sent; its `Err` (or a panic, as `INTERNAL`) makes the `next()` after
    /// them reject with an `Error` whose `code` is the error's code.
    pub fn spawn<F>(name: &str, capacity: Capacity, producer: F) -> Result<MessageStream>
    where
        F: FnOnce(&Sink) -> std::result::Result<(), StreamError> + Send + 'static,
    {
        let buffer = Buffer::spawn(name, capacity, producer)
            .map_err(|e| Error::from_reason(format!("start a job thread: {e}")))?;
        Ok(MessageStream { buffer })
    }
}

#[napi]
impl MessageStream {
    /// The next batch, in order: every line buffered when the promise settles (at least one), as
    /// the text of one JSON array whose elements are separated by `,\n`; or `null` once the
    /// producer has ended or the stream was cancelled. Rejects with an `Error` carrying a `code`
    /// when the producer failed. One `next()` at a time.
    #[napi(ts_return_type = "Promise<string | null>", catch_unwind)]
    pub fn next<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        next_batch(env, &self.buffer)
    }

    /// Stops the stream: drops buffered lines, settles a pending `next()` with `null`, unblocks
    /// the producer and runs its canceller. The promise settles once the producer has ended, so
    /// the job's container is released before it does. Safe to call more than once.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn cancel<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        cancel_buffer(env, &self.buffer)
    }

    /// The stream's counters.
    #[napi(catch_unwind)]
    pub fn stats(&self) -> StreamStats {
        let stats = self.buffer.stats();
        StreamStats {
            sent: stats.sent as i64,
            delivered: stats.delivered as i64,
            queued_lines: stats.queued_lines as i64,
            queued_bytes: stats.queued_bytes as i64,
            max_queued_bytes: stats.max_queued_bytes as i64,
            finished: stats.finished,
            cancelled: stats.cancelled,
        }
    }
}

/// `next()` of a buffer's consumer (a [`MessageStream`], a session's messages): a promise of
/// the next batch, `null` at the end, rejected with a coded error when the producer failed.
pub(crate) fn next_batch<'env>(env: &'env Env, buffer: &Arc<Buffer>) -> Result<Object<'env>> {
    if buffer.is_waiting() {
        return Err(Error::from_reason(
            "next() called while an earlier next() is still pending",
        ));
    }
    let (deferred, promise) = env.create_deferred()?;
    let taken = buffer.clone();
    let settle: Wake = Box::new(move || {
        deferred.resolve(move |env: Env| -> Result<Batch> {
            match taken.take() {
                Taken::Lines(lines) => Ok(Some(js_text(json_array(lines)))),
                Taken::End => Ok(None),
                Taken::Failed(e) => Err(js_error(&env, &e.code, &e.message)),
                // Not reached (a wake-up comes only when there is something to take); an
                // empty batch keeps the contract: the caller asks again.
                Taken::Nothing => Ok(Some(js_text("[]".to_string()))),
            }
        })
    });
    // Only this (JS) thread parks a waiter, and none is parked (checked above), so `wait`
    // accepts it; were it ever refused, settling at once still never leaks the promise.
    if let Err(settle) = buffer.wait(settle) {
        settle();
    }
    Ok(promise)
}

/// Cancels a buffer's stream; the promise settles once its producer has ended.
pub(crate) fn cancel_buffer<'env>(env: &'env Env, buffer: &Arc<Buffer>) -> Result<Object<'env>> {
    let (deferred, promise) = env.create_deferred()?;
    buffer.cancel();
    buffer.when_finished(Box::new(move || deferred.resolve(|_env: Env| Ok(()))));
    Ok(promise)
}

impl Drop for MessageStream {
    /// A stream that JS dropped without cancelling (garbage collected) must not leave its
    /// producer blocked forever.
    fn drop(&mut self) {
        if !self.buffer.stats().finished {
            self.buffer.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::json_array;

    #[test]
    fn a_batch_is_one_json_array_that_splits_back_into_its_lines() {
        let lines = vec![
            r#"{"a":1}"#.to_string(),
            "2".to_string(),
            r#""x,y""#.to_string(),
        ];
        let text = json_array(lines.clone());
        assert_eq!(text, "[{\"a\":1},\n2,\n\"x,y\"]");
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.as_array().unwrap().len(), 3);
        let back: Vec<&str> = text[1..text.len() - 1].split(",\n").collect();
        assert_eq!(back, lines);
        assert_eq!(json_array(Vec::new()), "[]");
    }
}

//! A synthetic producer, exported to JS for the stream's own tests only (its name starts with
//! `_`, and it is left out of the package's documented surface). It exercises
//! [`MessageStream`] the way a job does: a thread that sends JSON lines and may fail, panic,
//! or block outside `send` until its canceller runs.

// napi's registration of the options type is not compiled into the unit-test build.
#![cfg_attr(test, allow(dead_code))]

use std::sync::mpsc;
use std::time::Duration;

use napi::Result;
use napi_derive::napi;

use crate::buffer::{Capacity, StreamError};
use crate::stream::MessageStream;

/// Knobs of `_testStream`; every field is optional.
#[napi(object)]
#[derive(Default)]
pub struct TestStreamOptions {
    /// End with a `TEST_FAILURE` error after this many lines.
    pub fail_after: Option<u32>,
    /// Panic after this many lines.
    pub panic_after: Option<u32>,
    /// After this many lines, block (as in a socket read) until the canceller runs.
    pub stall_after: Option<u32>,
    /// Sleep this many microseconds before each line (a slow producer).
    pub delay_micros: Option<u32>,
    /// Buffer limit in lines (default: the stream's default).
    pub capacity_lines: Option<u32>,
    /// Buffer limit in bytes (default: the stream's default).
    pub capacity_bytes: Option<u32>,
}

/// For tests only: a stream of `count` JSON lines of about `lineBytes` bytes each,
/// `{"type":"test","i":N,"pad":"..."}`, produced on a new thread.
#[napi(js_name = "_testStream", catch_unwind)]
pub fn _test_stream(
    count: u32,
    line_bytes: u32,
    options: Option<TestStreamOptions>,
) -> Result<MessageStream> {
    let options = options.unwrap_or_default();
    let defaults = Capacity::default();
    let capacity = Capacity {
        lines: options
            .capacity_lines
            .map_or(defaults.lines, |n| n as usize),
        bytes: options
            .capacity_bytes
            .map_or(defaults.bytes, |n| n as usize),
    };
    MessageStream::spawn("herdctl-test-producer", capacity, move |sink| {
        let (wake, stalled) = mpsc::channel::<()>();
        sink.on_cancel(move || {
            let _ = wake.send(());
        });
        for i in 0..count {
            if options.stall_after == Some(i) {
                // Stands in for a job blocked in a read that only the canceller can end.
                let _ = stalled.recv();
                return Ok(());
            }
            if options.fail_after == Some(i) {
                return Err(StreamError::new(
                    "TEST_FAILURE",
                    format!("failed after {i} lines"),
                ));
            }
            if options.panic_after == Some(i) {
                panic!("test producer panics after {i} lines");
            }
            if let Some(micros) = options.delay_micros {
                std::thread::sleep(Duration::from_micros(micros.into()));
            }
            let head = format!("{{\"type\":\"test\",\"i\":{i},\"pad\":\"");
            let pad = (line_bytes as usize).saturating_sub(head.len() + 2);
            let mut line = String::with_capacity(head.len() + pad + 2);
            line.push_str(&head);
            line.push_str(&"x".repeat(pad));
            line.push_str("\"}");
            if sink.send(line).is_err() {
                return Ok(());
            }
        }
        Ok(())
    })
}

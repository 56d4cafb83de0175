//! `ToolCalls`: the tool calls of a job's injected MCP servers, pulled by JS.
//!
//! The core runs each call on a bridge thread through a [`ToolHandler`] and blocks that thread
//! until the answer comes. The handlers are JS functions, so this adapts the callback to a pull,
//! the way [`crate::MessageStream`] adapts a job's output: JS awaits `next()` for each call, runs
//! the handler, and hands the answer to `answer()`, which wakes the waiting bridge thread. No JS
//! function is called from another thread, and none is kept alive past the job: when the job
//! ends the queue closes, the pending `next()` settles with `null`, and calls still waiting
//! fail.

// napi's registration of these items is not compiled into the unit-test build.
#![cfg_attr(test, allow(dead_code))]

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};

use herdctl_container::mcp::{ToolCall, ToolHandler};
use napi::bindgen_prelude::Object;
use napi::{Env, Error, Result};
use napi_derive::napi;
use serde_json::Value;

use crate::buffer::Wake;

type Answer = std::result::Result<Value, String>;

#[derive(Default)]
struct State {
    /// Calls not yet taken by JS, as JSON text.
    queue: VecDeque<String>,
    /// Calls taken and not yet answered.
    pending: HashMap<u32, Sender<Answer>>,
    next_id: u32,
    waiter: Option<Wake>,
    closed: bool,
}

/// The queue shared by the core's bridge threads (as a [`ToolHandler`]) and JS.
#[derive(Default)]
pub struct Queue {
    state: Mutex<State>,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the queue: a waiting `next()` gets `null`, waiting calls fail.
    pub fn close(&self) {
        let waiter = {
            let mut s = self.lock();
            s.closed = true;
            s.queue.clear();
            s.pending.clear();
            s.waiter.take()
        };
        if let Some(wake) = waiter {
            wake();
        }
    }

    /// The oldest call as JSON text, or `None` (closed, or nothing yet).
    fn take(&self) -> Option<String> {
        self.lock().queue.pop_front()
    }

    /// Parks `wake` until a call arrives or the queue closes; runs it at once when either has
    /// happened already.
    fn wait(&self, wake: Wake) {
        let mut s = self.lock();
        if s.queue.is_empty() && !s.closed {
            s.waiter = Some(wake);
            return;
        }
        drop(s);
        wake();
    }

    /// Delivers JS's answer to call `id`. False when no such call waits (it was answered
    /// already, or the job ended).
    fn answer(&self, id: u32, answer: Answer) -> bool {
        match self.lock().pending.remove(&id) {
            Some(tx) => tx.send(answer).is_ok(),
            None => false,
        }
    }
}

impl ToolHandler for Queue {
    fn call(&self, call: &ToolCall) -> Answer {
        let (tx, rx) = channel();
        let waiter = {
            let mut s = self.lock();
            if s.closed {
                return Err("the job has ended".into());
            }
            let id = s.next_id;
            s.next_id = s.next_id.wrapping_add(1);
            s.pending.insert(id, tx);
            // Written out rather than built with `json!`, which would copy the arguments (up
            // to the bridge's 4 MiB message) once more before writing them.
            let text = format!(
                r#"{{"id":{id},"server":{},"tool":{},"arguments":{}}}"#,
                Value::from(call.server.as_str()),
                Value::from(call.tool.as_str()),
                call.arguments
            );
            s.queue.push_back(text);
            s.waiter.take()
        };
        if let Some(wake) = waiter {
            wake();
        }
        rx.recv()
            .unwrap_or_else(|_| Err("the job ended before the tool answered".into()))
    }
}

/// The tool calls of one job's injected MCP servers. Create one, pass it to
/// `ContainerRunnerCore.execute`, then answer each call `next()` yields until it yields `null`.
/// `npm/index.js` does this for `injectedMcpServers`.
#[napi]
pub struct ToolCalls {
    pub(crate) queue: Arc<Queue>,
}

#[napi]
impl ToolCalls {
    /// An empty queue.
    #[napi(constructor)]
    pub fn new() -> Self {
        ToolCalls {
            queue: Arc::default(),
        }
    }

    /// The next call as JSON text, `{"id", "server", "tool", "arguments"}`, or `null` once the
    /// job has ended. One `next()` at a time.
    #[napi(ts_return_type = "Promise<string | null>", catch_unwind)]
    pub fn next<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        if self.queue.lock().waiter.is_some() {
            return Err(Error::from_reason(
                "next() called while an earlier next() is still pending",
            ));
        }
        let (deferred, promise) = env.create_deferred()?;
        let queue = self.queue.clone();
        self.queue.wait(Box::new(move || {
            deferred.resolve(move |_env: Env| Ok(queue.take()));
        }));
        Ok(promise)
    }

    /// Answers call `id`: `result` is the handler's `CallToolResult` as JSON text; `error` (when
    /// the handler threw) its message. False when the call no longer waits.
    #[napi(catch_unwind)]
    pub fn answer(&self, id: u32, result: Option<String>, error: Option<String>) -> bool {
        let answer = match (error, result) {
            (Some(message), _) => Err(message),
            (None, Some(text)) => serde_json::from_str(&text)
                .map_err(|e| format!("the tool's answer is not JSON: {e}")),
            (None, None) => Ok(Value::Null),
        };
        self.queue.answer(id, answer)
    }
}

/// Closes the queue when the job's thread is done with it, however it ends.
pub(crate) struct CloseOnDrop(pub Arc<Queue>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Default for ToolCalls {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn call(tool: &str) -> ToolCall {
        ToolCall {
            server: "s".into(),
            tool: tool.into(),
            arguments: json!({"x": 1}),
        }
    }

    #[test]
    fn a_call_waits_for_its_answer_and_wakes_the_consumer() {
        let queue = Arc::new(Queue::default());
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        queue.wait(Box::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        }));
        let q = queue.clone();
        let caller = std::thread::spawn(move || q.call(&call("t")));
        while queue.lock().queue.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        let taken: Value = serde_json::from_str(&queue.take().unwrap()).unwrap();
        assert_eq!(
            taken,
            json!({"id": 0, "server": "s", "tool": "t", "arguments": {"x": 1}})
        );
        assert!(queue.answer(0, Ok(json!({"content": []}))));
        assert_eq!(caller.join().unwrap(), Ok(json!({"content": []})));
        assert!(!queue.answer(0, Ok(Value::Null)), "answered once only");
    }

    #[test]
    fn closing_fails_waiting_calls_and_refuses_new_ones() {
        let queue = Arc::new(Queue::default());
        let q = queue.clone();
        let caller = std::thread::spawn(move || q.call(&call("t")));
        while queue.lock().pending.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        queue.close();
        queue.wait(Box::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(
            woken.load(Ordering::SeqCst),
            1,
            "a wait after close runs at once"
        );
        assert_eq!(
            caller.join().unwrap(),
            Err("the job ended before the tool answered".into())
        );
        assert_eq!(queue.call(&call("t")), Err("the job has ended".into()));
    }
}

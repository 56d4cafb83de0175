//! `SessionCore`: the native half of a `ContainerRunner.openSession()` session (npm/index.js),
//! over the core's [`AgentSession`].
//!
//! herdctl's `openSession` returns its session at once, so the session opens on a thread of its
//! own: that thread starts the container and the exec, then streams the events through the same
//! bounded buffer a job's messages use (`next()` as `MessageStream`'s). Control calls made while
//! it starts wait in a slot and go out once it is open, or fail with the error that kept it from
//! opening. Every call answers through a promise settled from a session thread, so no call
//! blocks the JS thread or a libuv worker.
//!
//! Events reach JS in one stream, framed so that the two kinds cannot be confused: a message is
//! a JSON object (the agent's line), a hook is a JSON array `["hook", input]` (made here, never
//! by the agent).

// napi's registration of these items is not compiled into the unit-test build.
#![cfg_attr(test, allow(dead_code))]

use std::sync::{Arc, Mutex};

use herdctl_container::session::{
    AgentSession, Control, Done, HookSpec, SessionEvent, SessionHandle,
};
use napi::bindgen_prelude::{Object, ToNapiValue};
use napi::{Env, Result};
use napi_derive::napi;
use serde_json::Value;

use crate::buffer::{Buffer, StreamError};
use crate::errors::{failure, js_error, Secrets};
use crate::stream::{cancel_buffer, next_batch};

type Call = Box<dyn FnOnce(std::result::Result<&SessionHandle, StreamError>) + Send>;

/// Where control calls find the session: not open yet (they wait), open, or failed to open.
enum SlotState {
    Starting(Vec<Call>),
    Open(SessionHandle),
    Failed(StreamError),
}

/// The session's handle once it is open.
pub(crate) struct Slot {
    state: Mutex<SlotState>,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            state: Mutex::new(SlotState::Starting(Vec::new())),
        }
    }
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        // Callbacks run outside the lock: a panic elsewhere cannot leave the state half-set.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `call` with the handle: now when the session is open (or failed), else once it is.
    fn with(&self, call: Call) {
        let mut state = self.lock();
        match &mut *state {
            SlotState::Starting(calls) => calls.push(call),
            SlotState::Open(handle) => {
                let handle = handle.clone();
                drop(state);
                call(Ok(&handle));
            }
            SlotState::Failed(e) => {
                let e = e.clone();
                drop(state);
                call(Err(e));
            }
        }
    }

    /// The session is open: the waiting calls go out, in the order they were made.
    pub(crate) fn open(&self, handle: &SessionHandle) {
        let previous = std::mem::replace(&mut *self.lock(), SlotState::Open(handle.clone()));
        if let SlotState::Starting(calls) = previous {
            for call in calls {
                call(Ok(handle));
            }
        }
    }

    /// The session did not open: the waiting calls, and every later one, fail with `e`.
    pub(crate) fn fail(&self, e: &StreamError) {
        let previous = std::mem::replace(&mut *self.lock(), SlotState::Failed(e.clone()));
        if let SlotState::Starting(calls) = previous {
            for call in calls {
                call(Err(e.clone()));
            }
        }
    }
}

/// The hooks of an `openSession` request: JSON `[{event, matcher?}]`.
pub(crate) fn hooks(json: Option<&str>) -> herdctl_container::Result<Vec<HookSpec>> {
    let invalid = |problem: &str| herdctl_container::Error::argument("session hooks", problem);
    let Some(text) = json else {
        return Ok(Vec::new());
    };
    let value: Value =
        serde_json::from_str(text).map_err(|e| invalid(&format!("not JSON: {e}")))?;
    let Value::Array(items) = value else {
        return Err(invalid("expected an array of {event, matcher}"));
    };
    items
        .into_iter()
        .map(|item| {
            let event = item.get("event").and_then(Value::as_str);
            let matcher = item.get("matcher");
            match (event, matcher) {
                (Some(event), None | Some(Value::Null)) => Ok(HookSpec {
                    event: event.to_string(),
                    matcher: None,
                }),
                (Some(event), Some(Value::String(m))) => Ok(HookSpec {
                    event: event.to_string(),
                    matcher: Some(m.clone()),
                }),
                _ => Err(invalid(
                    "expected {event: string, matcher?: string} for each hook",
                )),
            }
        })
        .collect()
}

/// The line an event becomes for JS.
pub(crate) fn event_line(event: SessionEvent) -> String {
    match event {
        SessionEvent::Message(m) => m,
        SessionEvent::Hook(input) => Value::Array(vec!["hook".into(), input]).to_string(),
    }
}

/// Streams an open session's events into the buffer until it ends or JS closes it, then closes
/// it (the container is released before the stream ends).
pub(crate) fn pump(session: AgentSession, sink: &crate::buffer::Sink) {
    let mut session = session;
    let handle = session.handle();
    sink.on_cancel(move || {
        // SessionHandle::close blocks while the agent is stopped, and this runs on the JS
        // thread. Should no thread be had, the close below still runs when the next event or
        // the next send finds the stream cancelled.
        let _ = std::thread::Builder::new()
            .name("herdctl-session-close".into())
            .spawn(move || handle.close());
    });
    while let Some(event) = session.next_event() {
        if sink.send(event_line(event)).is_err() {
            break;
        }
    }
    let _report = session.close();
}

/// A live agent session in its container, as `ContainerRunner.openSession()` returns it (wrapped
/// by `npm/index.js` in herdctl's `RuntimeSession` shape: use that instead).
#[napi]
pub struct SessionCore {
    pub(crate) buffer: Arc<Buffer>,
    pub(crate) slot: Arc<Slot>,
    pub(crate) secrets: Secrets,
}

#[napi]
impl SessionCore {
    /// The next batch of events, as `MessageStream.next()`: the text of a JSON array whose
    /// objects are messages and whose arrays (`["hook", input]`) are hooks the agent ran; `null`
    /// once the session has ended or been closed. Rejects with the coded error that kept the
    /// session from opening.
    #[napi(ts_return_type = "Promise<string | null>", catch_unwind)]
    pub fn next<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        next_batch(env, &self.buffer)
    }

    /// Sends a user turn; settles once it is written to the agent.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn send<'env>(&self, env: &'env Env, text: String) -> Result<Object<'env>> {
        self.call(env, move |h, done| h.send_then(&text, done), |_| ())
    }

    /// Stops the current turn (the session stays open).
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn interrupt<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        self.control(env, Control::Interrupt)
    }

    /// The session's slash commands, as JSON text: `[{name, description, argumentHint}]`.
    #[napi(ts_return_type = "Promise<string>", catch_unwind)]
    pub fn list_commands<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        self.call(
            env,
            |h, done| h.control_then(Control::ListCommands, done),
            |v| v.to_string(),
        )
    }

    /// Switches the model for later turns; no model means the agent's default.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn set_model<'env>(&self, env: &'env Env, model: Option<String>) -> Result<Object<'env>> {
        self.control(env, Control::SetModel(model))
    }

    /// Stops one background task by id.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn stop_task<'env>(&self, env: &'env Env, task_id: String) -> Result<Object<'env>> {
        self.control(env, Control::StopTask(task_id))
    }

    /// Closes the session: the events end, what is left of the agent is killed within 2 s, and
    /// the promise settles once the container is released. Idempotent.
    #[napi(ts_return_type = "Promise<void>", catch_unwind)]
    pub fn close<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        cancel_buffer(env, &self.buffer)
    }

    /// Whether the session has ended and released its container.
    #[napi(catch_unwind)]
    pub fn is_closed(&self) -> bool {
        self.buffer.stats().finished
    }
}

impl SessionCore {
    fn control<'env>(&self, env: &'env Env, control: Control) -> Result<Object<'env>> {
        self.call(env, move |h, done| h.control_then(control, done), |_| ())
    }

    /// A promise of one request: `start` makes it once the session is open; `convert` turns the
    /// answer into the promise's value.
    fn call<'env, T, F>(
        &self,
        env: &'env Env,
        start: F,
        convert: fn(Value) -> T,
    ) -> Result<Object<'env>>
    where
        T: ToNapiValue + Send + 'static,
        F: FnOnce(&SessionHandle, Done) + Send + 'static,
    {
        let (deferred, promise) = env.create_deferred()?;
        let settle = move |answer: std::result::Result<Value, StreamError>| {
            deferred.resolve(move |env: Env| -> Result<T> {
                match answer {
                    Ok(v) => Ok(convert(v)),
                    Err(e) => Err(js_error(&env, &e.code, &e.message)),
                }
            })
        };
        let secrets = self.secrets.clone();
        self.slot.with(Box::new(move |handle| match handle {
            Ok(handle) => {
                let done: Done = Box::new(move |answer| {
                    settle(answer.map_err(|e| failure(e, &*secrets)));
                });
                start(handle, done);
            }
            Err(e) => settle(Err(e)),
        }));
        Ok(promise)
    }
}

impl Drop for SessionCore {
    /// A session JS dropped without closing it (garbage collected) is closed: its agent is
    /// stopped and its container released.
    fn drop(&mut self) {
        if !self.buffer.stats().finished {
            self.buffer.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_are_read_strictly() {
        assert_eq!(hooks(None).unwrap(), Vec::new());
        let got = hooks(Some(
            r#"[{"event":"Stop"},{"event":"PostToolUse","matcher":"CronDelete"}]"#,
        ))
        .unwrap();
        assert_eq!(
            got,
            vec![
                HookSpec {
                    event: "Stop".into(),
                    matcher: None
                },
                HookSpec {
                    event: "PostToolUse".into(),
                    matcher: Some("CronDelete".into())
                },
            ]
        );
        for bad in [
            r#"{}"#,
            r#"[{"matcher":"x"}]"#,
            r#"[{"event":"Stop","matcher":3}]"#,
            "nope",
        ] {
            let e = hooks(Some(bad)).unwrap_err();
            assert_eq!(e.code(), "INVALID_ARGUMENT", "{bad}");
            assert!(e.to_string().starts_with("invalid session hooks: "), "{e}");
        }
    }

    #[test]
    fn hooks_travel_as_arrays_and_messages_as_they_came() {
        let m = r#"{"type":"assistant","x":["hook"]}"#.to_string();
        assert_eq!(event_line(SessionEvent::Message(m.clone())), m);
        let line = event_line(SessionEvent::Hook(
            serde_json::json!({"hook_event_name": "Stop"}),
        ));
        assert_eq!(line, r#"["hook",{"hook_event_name":"Stop"}]"#);
    }

    #[test]
    fn calls_made_while_starting_go_out_in_order_or_fail_with_the_open_error() {
        let slot = Slot::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for i in 0..3 {
            let seen = seen.clone();
            slot.with(Box::new(move |h| {
                seen.lock().unwrap().push((i, h.err().map(|e| e.code)));
            }));
        }
        assert!(seen.lock().unwrap().is_empty());
        slot.fail(&StreamError::new("NOT_FOUND", "no such image"));
        let s2 = seen.clone();
        slot.with(Box::new(move |h| {
            s2.lock().unwrap().push((3, h.err().map(|e| e.code)))
        }));
        let got = seen.lock().unwrap().clone();
        let want: Vec<(i32, Option<String>)> =
            (0..4).map(|i| (i, Some("NOT_FOUND".to_string()))).collect();
        assert_eq!(got, want);
    }
}

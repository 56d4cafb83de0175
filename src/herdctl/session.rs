//! Live agent sessions: one exec held open for the session's life, turns and control requests
//! written on its stdin, messages read from its stdout (herdctl's `RuntimeSession`).
//!
//! herdctl's chat front ends hold an agent open across many turns (`openSession`): they send
//! follow-up turns, interrupt a turn, list the slash commands, switch the model and stop one
//! background task, all without restarting the agent and re-reading its transcript. Here that
//! session runs inside the agent's container: the runtime reads Claude Code's stream-json input,
//! the protocol the Agent SDK itself speaks to the `claude` CLI ([`crate::herdctl::invocation::session`]):
//! the CLI speaks it natively, and the SDK strategy's in-container runner serves it through the
//! SDK's `query()` with streaming input. So one protocol, framed by each line's top-level `type`
//! (see `protocol.rs`), serves both runtimes, and a control answer can never be taken for a
//! message or the other way round.
//!
//! Threads: a reader owns the job's output and routes each line at once (a control answer to
//! the call waiting for it, a hook to the events, a message to the events), so a control call
//! is answered even while nobody reads messages; a writer owns the job's stdin and writes turns
//! and requests in order, and times out requests the agent never answers. Messages wait for
//! their reader in a bounded queue: when it is full the reader stops reading (backpressure),
//! except while a control call waits for its answer, which may be queued behind them.
//!
//! Endings: [`SessionHandle::close`] (or dropping the [`AgentSession`]) sends EOF, gives the
//! agent half a second to exit, then kills what is left of the session (the whole ephemeral
//! container, or exactly the session's processes in a shared persistent one) and releases the
//! container as a job's end does (an ephemeral one stopped and kept for inspection). A session
//! that ends any other way (its agent exits or crashes, its container is killed or runs out of
//! memory) ends its events with one `{"type":"error"}` message saying how; either way every
//! control call still waiting fails with [`Error::Session`] (`SESSION_ENDED`).
//!
//! ```no_run
//! use herdctl_container::agent::ExecuteOptions;
//! use herdctl_container::invocation::Strategy;
//! use herdctl_container::session::{AgentSession, SessionEvent, SessionRequest};
//! use herdctl_container::{resolve_docker_config, Engine, Runner, RunnerOptions};
//! # fn main() -> herdctl_container::Result<()> {
//! let runner = Runner::new(Engine::connect()?, RunnerOptions::new("/tmp/herdctl-state"))?;
//! let config = resolve_docker_config(&serde_json::json!({"network": "none"}))?;
//! let agent = serde_json::json!({"name": "coder", "working_directory": "/tmp/work"});
//! let request = SessionRequest::new(config, agent, ExecuteOptions::new("hello"), Strategy::Cli);
//! let mut session = AgentSession::open(&runner, request)?;
//! let handle = session.handle(); // Send + Sync: drive the session from other threads
//! while let Some(event) = session.next_event() {
//!     if let SessionEvent::Message(m) = event {
//!         if m.contains(r#""type":"result""#) {
//!             break; // the first turn is over
//!         }
//!     }
//! }
//! handle.send("and now the tests")?;
//! println!("{}", handle.list_commands()?);
//! let report = session.close(); // within 2 s; the container is released
//! # drop(report); Ok(()) }
//! ```

mod protocol;
mod threads;

use std::io;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::herdctl::agent::{AgentRequest, Command, ExecuteOptions, Prepared};
use crate::herdctl::invocation::Strategy;
use crate::herdctl::mcp::{Bridge, ToolHandler};
use crate::run::job::{JobReport, Outcome};
use crate::{DockerConfig, Error, Redactor, Result, Runner};
use threads::{
    spawn_reader, spawn_writer, Frame, Pending, Shared, State, Written, CONTROL_TIMEOUT,
};

/// How long a close waits for the agent to exit after EOF before killing it: enough for an idle
/// agent to exit by itself, short enough that the whole close stays within 2 s.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Everything one `openSession` call says about its session.
#[derive(Clone)]
pub struct SessionRequest {
    /// The agent's resolved docker config.
    pub config: DockerConfig,
    /// herdctl's resolved agent object, as for [`crate::herdctl::agent::AgentRequest::agent`].
    pub agent: Value,
    /// herdctl's options: `prompt` is the first turn (none when empty); `resume`, `fork`,
    /// `system_prompt_append`, `include_partial_messages` and the injected MCP servers apply as
    /// in `execute`.
    pub options: ExecuteOptions,
    /// Which runtime runs the session.
    pub strategy: Strategy,
    /// The hooks the agent reports as [`SessionEvent::Hook`] (herdctl's lifecycle signals use
    /// `Stop` and `PostToolUse`). Each is answered at once with `{"continue": true}`. Default:
    /// none.
    pub hooks: Vec<HookSpec>,
    /// Rewrite container paths in messages and hook inputs to the host's. Default: false.
    pub translate_paths: bool,
    /// Runs the tools of the injected MCP servers; required when there are any.
    pub tool_handler: Option<Arc<dyn ToolHandler>>,
}

impl SessionRequest {
    /// A request with no hooks, no path translation and no tool handler.
    pub fn new(
        config: DockerConfig,
        agent: Value,
        options: ExecuteOptions,
        strategy: Strategy,
    ) -> SessionRequest {
        SessionRequest {
            config,
            agent,
            options,
            strategy,
            hooks: Vec::new(),
            translate_paths: false,
            tool_handler: None,
        }
    }
}

/// A hook for the agent to report: a Claude Code hook event name (`Stop`, `PostToolUse`, ...)
/// and, for tool events, a tool name pattern (`CronDelete`; none matches every tool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSpec {
    /// The hook event.
    pub event: String,
    /// The tool name pattern.
    pub matcher: Option<String>,
}

/// What a session yields.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// One SDK message, a JSON object as the agent printed it; the last one of a session that
    /// ended without being closed is a synthesized `{"type":"error"}`.
    Message(String),
    /// A hook the agent ran: its input (`hook_event_name`, `session_id`, and the event's fields,
    /// like `background_tasks` for `Stop` or `tool_name` and `tool_input` for `PostToolUse`).
    Hook(Value),
}

impl SessionEvent {
    fn size(&self) -> usize {
        match self {
            SessionEvent::Message(m) => m.len(),
            // An estimate: hook inputs are small.
            SessionEvent::Hook(_) => 256,
        }
    }
}

/// A control request of herdctl's `RuntimeSession`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Stop the current turn (the session stays open; a later send starts a new turn).
    Interrupt,
    /// The slash commands of the session: a JSON array of `{name, description, argumentHint}`.
    ListCommands,
    /// The model for later turns; `None` for the agent's default.
    SetModel(Option<String>),
    /// Stop one background task by id (idempotent: a task that already ended is no error).
    StopTask(String),
}

/// Receives the answer of a request made without blocking: runs once, on a session thread (or at
/// once, on the caller's, when the session has ended). The value is `null` for every request
/// but [`Control::ListCommands`]. It must not block: a blocking request or a close made from it
/// waits for the very thread it runs on.
pub type Done = Box<dyn FnOnce(Result<Value>) + Send>;

/// A live session of one agent in its container. Pull its events with
/// [`AgentSession::next_event`]; drive it through [`AgentSession::handle`]. Dropping it closes
/// it as [`AgentSession::close`] does.
pub struct AgentSession {
    handle: SessionHandle,
    reader: Option<JoinHandle<()>>,
    /// Serves the injected MCP servers until the session is over.
    _mcp: Option<Bridge>,
}

/// Drives a session from any thread: cheap to clone, `Send` and `Sync`. Every request fails
/// with `SESSION_ENDED` once the session is over.
#[derive(Clone)]
pub struct SessionHandle {
    shared: Arc<Shared>,
}

impl AgentSession {
    /// Starts the session's container and exec, sends the handshake (`initialize`, with the
    /// hooks) and, when `options.prompt` is not empty, the first turn. An error here means no
    /// session ran (bad input, no engine, a missing image, a container that would not start);
    /// once this returns, every ending is an event. Errors are redacted as
    /// [`crate::herdctl::agent::AgentJob::start`]'s are.
    pub fn open(runner: &Runner, request: SessionRequest) -> Result<AgentSession> {
        let SessionRequest {
            config,
            agent,
            options,
            strategy,
            hooks,
            translate_paths,
            tool_handler,
        } = request;
        let prompt = options.prompt.clone();
        let mut request = AgentRequest {
            config,
            agent,
            options,
            command: Command::Session(strategy),
            deadline: None,
            translate_paths,
            tool_handler,
        };
        // As an agent job's: the runtime, the MCP bridge, the spec, herdctl's session links.
        let Prepared {
            mut spec,
            mut bridge,
            links,
        } = request.prepare(runner)?;
        // The invocation's own stdin (the MCP config, the SDK runner's options) opens the
        // stream the session writes.
        let setup = std::mem::take(&mut spec.stdin);
        spec.stdin_open = true;
        let mut job = runner.start(spec)?;
        let redactor = job.redactor().clone();
        if let (Some(bridge), Some(handler)) = (&mut bridge, &request.tool_handler) {
            bridge
                .serve(handler.clone(), job.path_map().clone())
                .map_err(|e| e.redact(&redactor))?;
        }
        let input = job
            .take_stdin()
            .expect("a job started with stdin_open keeps its stdin until taken");
        let (writer, frames) = mpsc::channel();
        let shared = Arc::new(Shared::new(writer, job.canceller(), redactor));
        spawn_writer(input, frames, Arc::downgrade(&shared));
        let paths = translate_paths.then(|| job.path_map().clone());
        let reader = spawn_reader(shared.clone(), job, paths, links);
        let handle = SessionHandle { shared };
        // One stdin, in this order: the setup, the handshake, the first turn.
        if !setup.is_empty() {
            handle.write(setup, None);
        }
        handle.initialize(&hooks);
        if !prompt.is_empty() {
            handle.write(protocol::user_message(&prompt), None);
        }
        Ok(AgentSession {
            handle,
            reader: Some(reader),
            _mcp: bridge,
        })
    }

    /// A handle that drives this session from any thread.
    pub fn handle(&self) -> SessionHandle {
        self.handle.clone()
    }

    /// The next event, blocking until one arrives; `None` once the session has ended (after its
    /// closing error, when it ended without a close) or is being closed.
    pub fn next_event(&mut self) -> Option<SessionEvent> {
        let shared = &self.handle.shared;
        let mut st = shared.lock();
        loop {
            if let Some(event) = st.events.pop_front() {
                st.queued_bytes = st.queued_bytes.saturating_sub(event.size());
                drop(st);
                shared.changed.notify_all();
                return Some(event);
            }
            if st.finished || st.closing {
                return None;
            }
            st = shared.wait(st);
        }
    }

    /// Closes the session (see [`SessionHandle::close`]) and reports how its job ended.
    pub fn close(mut self) -> JobReport {
        self.shut();
        let report = self.handle.shared.lock().report.take();
        // The reader stores the report before it ends; only a panic there (a bug) leaves none.
        report.unwrap_or_else(|| JobReport {
            outcome: Outcome::Failed(Error::Protocol {
                call: "session".into(),
                detail: "internal error: the session's reader panicked".into(),
            }),
            container_id: String::new(),
            container_name: String::new(),
            image: String::new(),
            config_hash: String::new(),
            stderr_tail: String::new(),
            timings: Default::default(),
            warnings: Vec::new(),
            redactor: Redactor::default(),
        })
    }

    fn shut(&mut self) {
        self.handle.close();
        if let Some(reader) = self.reader.take() {
            // The reader has finished its work (close waited for that); a panic there was a bug.
            let _ = reader.join();
        }
    }
}

impl Drop for AgentSession {
    fn drop(&mut self) {
        if self.reader.is_some() {
            self.shut();
        }
    }
}

impl SessionHandle {
    /// Sends a user turn (a leading `/` runs a slash command); returns once it is written to the
    /// agent's stdin. Turns sent while one runs wait their turn in the agent.
    pub fn send(&self, text: &str) -> Result<()> {
        self.wait(|done| self.send_then(text, done)).map(drop)
    }

    /// Stops the current turn; the session stays open.
    pub fn interrupt(&self) -> Result<()> {
        self.wait(|done| self.control_then(Control::Interrupt, done))
            .map(drop)
    }

    /// The session's slash commands: a JSON array of `{name, description, argumentHint}`.
    pub fn list_commands(&self) -> Result<Value> {
        self.wait(|done| self.control_then(Control::ListCommands, done))
    }

    /// Switches the model for later turns; `None` for the default.
    pub fn set_model(&self, model: Option<&str>) -> Result<()> {
        let model = model.map(str::to_string);
        self.wait(|done| self.control_then(Control::SetModel(model), done))
            .map(drop)
    }

    /// Stops one background task; a task that is gone already is no error, one the agent cannot
    /// stop is (`AGENT_ERROR`, in the agent's words).
    pub fn stop_task(&self, task_id: &str) -> Result<()> {
        let id = task_id.to_string();
        self.wait(|done| self.control_then(Control::StopTask(id), done))
            .map(drop)
    }

    /// [`SessionHandle::send`] without blocking: `done` gets the outcome.
    pub fn send_then(&self, text: &str, done: Done) {
        if let Some(e) = self.gone("send") {
            return done(Err(e));
        }
        self.write(
            protocol::user_message(text),
            Some(Box::new(move |written: io::Result<()>| {
                done(written.map(|()| Value::Null).map_err(|e| Error::Session {
                    request: "send".into(),
                    detail: format!("the turn could not be written to the agent: {e}"),
                    ended: true,
                }))
            })),
        );
    }

    /// A control request without blocking: `done` gets the agent's answer.
    pub fn control_then(&self, control: Control, done: Done) {
        let (name, body) = match control {
            Control::ListCommands => return self.commands_then(done),
            Control::Interrupt => ("interrupt", json!({"subtype": "interrupt"})),
            Control::SetModel(model) => {
                ("set_model", json!({"subtype": "set_model", "model": model}))
            }
            Control::StopTask(id) => ("stop_task", json!({"subtype": "stop_task", "task_id": id})),
        };
        self.request(
            name,
            body,
            Box::new(move |answer| done(answer.map(|_| Value::Null))),
        );
    }

    /// Closes the session: sends EOF, gives the agent half a second to exit, kills what is left
    /// (an ephemeral container's whole content; in a persistent one only this session's
    /// processes), and returns once the container is released. Events end at once, without an
    /// error; calls still waiting fail with `SESSION_ENDED`. Idempotent; safe from any thread.
    pub fn close(&self) {
        let first = {
            let mut st = self.shared.lock();
            st.closing = true;
            st.events.clear();
            st.queued_bytes = 0;
            !std::mem::replace(&mut st.close_started, true)
        };
        self.shared.changed.notify_all();
        if first {
            let _ = self.shared.writer.send(Frame::Close);
            if !self.wait_finished(Some(CLOSE_GRACE)) {
                // An error means the processes could not be confirmed gone; the stream is closed
                // all the same, so the reader ends and the container is released.
                let _ = self.shared.canceller.cancel();
            }
        }
        self.wait_finished(None);
    }

    /// Whether the session has ended (its events are over and its container released).
    pub fn is_finished(&self) -> bool {
        self.shared.lock().finished
    }

    /// Waits until the reader has finished (the job is over and its container released), at
    /// most `limit`; whether it has.
    fn wait_finished(&self, limit: Option<Duration>) -> bool {
        let until = limit.map(|l| Instant::now() + l);
        let mut st = self.shared.lock();
        while !st.finished {
            st = match until {
                None => self.shared.wait(st),
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.shared
                        .changed
                        .wait_timeout(st, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
        true
    }

    /// Blocks on a request made with a [`Done`].
    fn wait(&self, start: impl FnOnce(Done)) -> Result<Value> {
        let (tx, rx) = mpsc::sync_channel(1);
        start(Box::new(move |answer| {
            let _ = tx.send(answer);
        }));
        // Every `Done` is called (answered, failed, timed out, or failed when the session
        // ends); a dropped one means the session went away under it.
        rx.recv().unwrap_or_else(|_| {
            Err(Error::Session {
                request: "request".into(),
                detail: "the session went away".into(),
                ended: true,
            })
        })
    }

    /// The error for a request made after the session ended or while it closes.
    fn gone(&self, request: &'static str) -> Option<Error> {
        let st = self.shared.lock();
        gone_error(&st, request)
    }

    fn write(&self, bytes: Vec<u8>, written: Option<Written>) {
        self.shared.write(bytes, written);
    }

    /// Sends a control request; `done` gets the `response` object or the error.
    fn request(&self, name: &'static str, body: Value, done: Done) {
        let redactor = self.shared.redactor.clone();
        let done: Done = Box::new(move |answer| done(answer.map_err(|e| e.redact(&redactor))));
        let id = {
            let mut st = self.shared.lock();
            if let Some(e) = gone_error(&st, name) {
                drop(st);
                return done(Err(e));
            }
            st.next_id += 1;
            let id = format!("herdctl_{}_{}", st.next_id, self.shared.nonce);
            st.pending.insert(
                id.clone(),
                Pending {
                    request: name,
                    deadline: Instant::now() + CONTROL_TIMEOUT,
                    done,
                },
            );
            id
        };
        // A waiting call lifts the reader's backpressure: its answer may be behind the queue.
        self.shared.changed.notify_all();
        let weak = Arc::downgrade(&self.shared);
        let key = id.clone();
        self.write(
            protocol::control_request(&id, &body),
            Some(Box::new(move |written: io::Result<()>| {
                let Err(e) = written else { return };
                let Some(shared) = weak.upgrade() else { return };
                let pending = shared.lock().pending.remove(&key);
                if let Some(p) = pending {
                    (p.done)(Err(Error::Session {
                        request: p.request.into(),
                        detail: format!("the request could not be written to the agent: {e}"),
                        ended: true,
                    }));
                }
            })),
        );
    }

    /// The handshake every session starts with: the hooks to report, and (in the answer) the
    /// session's commands.
    fn initialize(&self, hooks: &[HookSpec]) {
        let mut by_event = serde_json::Map::new();
        for (i, hook) in hooks.iter().enumerate() {
            let matchers = by_event
                .entry(hook.event.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = matchers {
                list.push(json!({"matcher": hook.matcher, "hookCallbackIds": [format!("herdctl_hook_{i}")]}));
            }
        }
        let hooks = if by_event.is_empty() {
            Value::Null
        } else {
            Value::Object(by_event)
        };
        let weak = Arc::downgrade(&self.shared);
        self.request(
            "initialize",
            json!({"subtype": "initialize", "hooks": hooks}),
            Box::new(move |answer| {
                let Some(shared) = weak.upgrade() else { return };
                let stored = answer.map_err(|e| {
                    let ended = matches!(e, Error::Session { ended: true, .. });
                    (e.to_string(), ended)
                });
                let waiters = {
                    let mut st = shared.lock();
                    st.init = Some(stored.clone());
                    std::mem::take(&mut st.init_waiters)
                };
                for waiter in waiters {
                    waiter(commands_of(&stored));
                }
            }),
        );
    }

    fn commands_then(&self, done: Done) {
        let mut st = self.shared.lock();
        if let Some(init) = &st.init {
            let answer = commands_of(init);
            drop(st);
            return done(answer);
        }
        if let Some(e) = gone_error(&st, "list_commands") {
            drop(st);
            return done(Err(e));
        }
        st.init_waiters.push(done);
    }
}

/// The commands in an `initialize` answer (an empty list when it has none).
fn commands_of(init: &std::result::Result<Value, (String, bool)>) -> Result<Value> {
    match init {
        Ok(answer) => Ok(match answer.get("commands") {
            Some(Value::Array(list)) => Value::Array(list.clone()),
            _ => Value::Array(Vec::new()),
        }),
        Err((detail, ended)) => Err(Error::Session {
            request: "list_commands".into(),
            detail: format!("the session's handshake failed: {detail}"),
            ended: *ended,
        }),
    }
}

fn gone_error(st: &State, request: &'static str) -> Option<Error> {
    let detail = if st.closing {
        "the session is closed".to_string()
    } else {
        format!("the session has ended: {}", st.ended.as_deref()?)
    };
    Some(Error::Session {
        request: request.into(),
        detail,
        ended: true,
    })
}

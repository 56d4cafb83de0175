//! Live agent sessions: one exec held open for the session's life, turns and control requests
//! written on its stdin, messages read from its stdout (herdctl's `RuntimeSession`).
//!
//! herdctl's chat front ends hold an agent open across many turns (`openSession`): they send
//! follow-up turns, interrupt a turn, list the slash commands, switch the model and stop one
//! background task, all without restarting the agent and re-reading its transcript. Here that
//! session runs inside the agent's container: the runtime reads Claude Code's stream-json input,
//! the protocol the Agent SDK itself speaks to the `claude` CLI ([`crate::invocation::session`]):
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

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::agent::{to_host_paths, AgentRequest, Command, ExecuteOptions};
use crate::engine::ExecInput;
use crate::invocation::Strategy;
use crate::job::{Canceller, Job, JobReport, Outcome};
use crate::mcp::{Bridge, ToolHandler};
use crate::{
    is_secret_name, translate_json_paths, Direction, DockerConfig, Error, PathMap, Redactor,
    Result, Runner,
};
use protocol::Line;

/// How long a control request may wait for the agent's answer: the Agent SDK's own default.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a close waits for the agent to exit after EOF before killing it: enough for an idle
/// agent to exit by itself, short enough that the whole close stays within 2 s.
const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// Bytes of events held for a slow reader before the session stops reading the agent's output.
const QUEUE_BYTES: usize = 1 << 20;
/// How many non-JSON stdout lines a failed session's error keeps, and how much of each.
const NOISE_LINES: usize = 20;
const NOISE_LINE_BYTES: usize = 512;
/// How much of the stderr tail the error's `message` quotes (all of it is in `stderr_tail`).
const MESSAGE_STDERR_BYTES: usize = 1024;

/// Everything one `openSession` call says about its session.
#[derive(Clone)]
pub struct SessionRequest {
    /// The agent's resolved docker config.
    pub config: DockerConfig,
    /// herdctl's resolved agent object, as for [`crate::agent::AgentRequest::agent`].
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

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    writer: mpsc::Sender<Frame>,
    canceller: Canceller,
    redactor: Redactor,
    /// Makes this session's request ids unguessable.
    nonce: String,
}

#[derive(Default)]
struct State {
    events: VecDeque<SessionEvent>,
    queued_bytes: usize,
    pending: HashMap<String, Pending>,
    next_id: u64,
    /// The answer to `initialize` (it carries the commands), once known: `Err((detail, ended))`
    /// when it failed.
    init: Option<std::result::Result<Value, (String, bool)>>,
    init_waiters: Vec<Done>,
    /// `close` was called: events are dropped, the ending is not an error.
    closing: bool,
    close_started: bool,
    /// How the session's job ended, once it has.
    ended: Option<String>,
    report: Option<JobReport>,
    finished: bool,
}

struct Pending {
    request: &'static str,
    deadline: Instant,
    done: Done,
}

type Written = Box<dyn FnOnce(io::Result<()>) + Send>;

enum Frame {
    Write(Vec<u8>, Option<Written>),
    /// Send EOF: the agent finishes and exits.
    Close,
    /// The session is over.
    Stop,
}

impl AgentSession {
    /// Starts the session's container and exec, sends the handshake (`initialize`, with the
    /// hooks) and, when `options.prompt` is not empty, the first turn. An error here means no
    /// session ran (bad input, no engine, a missing image, a container that would not start);
    /// once this returns, every ending is an event. Errors are redacted as
    /// [`crate::agent::AgentJob::start`]'s are.
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
        let request = AgentRequest {
            config,
            agent,
            options,
            command: Command::Session(strategy),
            deadline: None,
            translate_paths,
            tool_handler,
        };
        let early = || Redactor::from_process_env().with_env(&request.config.env);
        let mut bridge = request.mcp_bridge(runner).map_err(|e| e.redact(&early()))?;
        let injected = bridge
            .as_ref()
            .map(Bridge::agent_configs)
            .unwrap_or_default();
        let (mut spec, mcp_env) = request
            .job_spec(&injected)
            .map_err(|e| e.redact(&early()))?;
        // As an agent job does: the MCP servers' env reaches the agent, so it is redacted.
        spec.secrets.extend(
            mcp_env
                .into_iter()
                .filter(|(k, _)| is_secret_name(k))
                .map(|(_, v)| v),
        );
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
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            writer,
            canceller: job.canceller(),
            redactor,
            nonce: nonce(),
        });
        spawn_writer(input, frames, Arc::downgrade(&shared));
        let paths = translate_paths.then(|| job.path_map().clone());
        let reader = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("herdctl-session-read".into())
                .spawn(move || {
                    // Whatever happens in there, the session must end for its waiters.
                    let _finish = FinishGuard(&shared);
                    read(&shared, job, paths);
                })
                .expect("spawning a thread fails only when the process is out of threads or memory")
        };
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

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Callbacks run outside the lock, and nothing under it panics: a poisoned lock still
        // guards consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(st).unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event for the session's reader, waiting while the queue is full and no control
    /// call waits for an answer; dropped once the session is closing.
    fn push(&self, event: SessionEvent) {
        let size = event.size();
        let mut st = self.lock();
        while st.queued_bytes >= QUEUE_BYTES
            && st.pending.is_empty()
            && st.init_waiters.is_empty()
            && !st.closing
        {
            st = self.wait(st);
        }
        if st.closing {
            return;
        }
        st.queued_bytes += size;
        st.events.push_back(event);
        drop(st);
        self.changed.notify_all();
    }

    /// Queues bytes for the agent's stdin; `written` gets the outcome of the write.
    fn write(&self, bytes: Vec<u8>, written: Option<Written>) {
        if let Err(mpsc::SendError(Frame::Write(_, Some(written)))) =
            self.writer.send(Frame::Write(bytes, written))
        {
            written(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the session's stdin is closed",
            )));
        }
    }

    /// How long until the next request times out.
    fn next_deadline(&self) -> Option<Duration> {
        let now = Instant::now();
        self.lock()
            .pending
            .values()
            .map(|p| p.deadline.saturating_duration_since(now))
            .min()
    }

    /// Fails every request whose time is up.
    fn expire(&self) {
        let now = Instant::now();
        let expired: Vec<Pending> = {
            let mut st = self.lock();
            let ids: Vec<String> = st
                .pending
                .iter()
                .filter(|(_, p)| p.deadline <= now)
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| st.pending.remove(id)).collect()
        };
        for p in expired {
            (p.done)(Err(Error::Timeout {
                phase: format!("session {}: waiting for the agent's answer", p.request),
                after: CONTROL_TIMEOUT,
            }));
        }
    }
}

/// The writer thread: writes frames in order, then serves request deadlines while idle.
fn spawn_writer(input: ExecInput, frames: mpsc::Receiver<Frame>, shared: Weak<Shared>) {
    std::thread::Builder::new()
        .name("herdctl-session-write".into())
        .spawn(move || {
            let mut input = Some(input);
            let mut broken: Option<String> = None;
            loop {
                let wait = shared
                    .upgrade()
                    .and_then(|s| s.next_deadline())
                    .unwrap_or(Duration::from_secs(3600));
                match frames.recv_timeout(wait) {
                    Ok(Frame::Write(bytes, written)) => {
                        let result = match (&mut input, &broken) {
                            (Some(stdin), None) => {
                                stdin.write_all(&bytes).and_then(|()| stdin.flush())
                            }
                            (_, Some(why)) => {
                                Err(io::Error::new(io::ErrorKind::BrokenPipe, why.clone()))
                            }
                            (None, None) => Err(io::Error::new(
                                io::ErrorKind::BrokenPipe,
                                "the session's stdin is closed",
                            )),
                        };
                        if let Err(e) = &result {
                            broken.get_or_insert_with(|| e.to_string());
                        }
                        if let Some(written) = written {
                            written(result);
                        }
                    }
                    Ok(Frame::Close) => {
                        if let Some(stdin) = input.take() {
                            let _ = stdin.close();
                        }
                    }
                    Ok(Frame::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => {
                        if let Some(s) = shared.upgrade() {
                            s.expire();
                        }
                    }
                }
            }
        })
        .expect("spawning a thread fails only when the process is out of threads or memory");
}

/// The reader thread: routes every line of the job's output, then ends the session.
fn read(shared: &Arc<Shared>, mut job: Job, paths: Option<PathMap>) {
    let mut noise = Noise::default();
    while let Some(line) = job.next_line() {
        match protocol::classify(line) {
            Line::Message(text) => {
                let text = text.to_string();
                let text = match &paths {
                    Some(paths) => to_host_paths(text, paths),
                    None => text,
                };
                shared.push(SessionEvent::Message(text));
            }
            Line::Response { id, answer } => {
                let pending = shared.lock().pending.remove(&id);
                // An answer nobody waits for (timed out, or not ours) is dropped.
                if let Some(p) = pending {
                    (p.done)(answer.map_err(|detail| Error::Session {
                        request: p.request.into(),
                        detail,
                        ended: false,
                    }));
                }
            }
            Line::Request { id, request } => {
                let answer = match request.get("subtype").and_then(Value::as_str) {
                    Some("hook_callback") => {
                        let mut input = request.get("input").cloned().unwrap_or(Value::Null);
                        if let Some(paths) = &paths {
                            translate_json_paths(&mut input, paths, Direction::ToHost);
                        }
                        shared.push(SessionEvent::Hook(input));
                        Ok(json!({"continue": true}))
                    }
                    other => Err(format!(
                        "herdctl-container sessions do not answer {} requests",
                        other.unwrap_or("untyped")
                    )),
                };
                shared.write(protocol::control_response(&id, answer), None);
            }
            Line::Cancelled => {}
            Line::Noise => noise.push(line, &shared.redactor),
        }
    }
    let report = job.finish();
    let (pending, closing) = {
        let mut st = shared.lock();
        st.ended = Some(report.outcome.describe());
        if !st.closing {
            let error = ended_message(&report, &noise, &shared.redactor);
            st.events.push_back(SessionEvent::Message(error));
        }
        st.report = Some(report);
        st.finished = true;
        let pending: Vec<Pending> = st.pending.drain().map(|(_, p)| p).collect();
        (pending, st.closing)
    };
    shared.changed.notify_all();
    let why = if closing {
        "the session was closed before the agent answered".to_string()
    } else {
        format!(
            "the session ended before the agent answered: {}",
            shared.lock().ended.clone().unwrap_or_default()
        )
    };
    for p in pending {
        (p.done)(Err(Error::Session {
            request: p.request.into(),
            detail: why.clone(),
            ended: true,
        }));
    }
    let _ = shared.writer.send(Frame::Stop);
}

/// Marks the session finished should its reader end without doing so (a panic: a bug), so
/// that `close` and the waiting calls do not wait forever.
struct FinishGuard<'a>(&'a Shared);

impl Drop for FinishGuard<'_> {
    fn drop(&mut self) {
        let pending: Vec<Pending> = {
            let mut st = self.0.lock();
            if st.finished {
                return;
            }
            st.finished = true;
            st.ended = Some("internal error: the session's reader panicked".into());
            st.pending.drain().map(|(_, p)| p).collect()
        };
        self.0.changed.notify_all();
        for p in pending {
            (p.done)(Err(Error::Session {
                request: p.request.into(),
                detail: "internal error: the session's reader panicked".into(),
                ended: true,
            }));
        }
        let _ = self.0.writer.send(Frame::Stop);
    }
}

/// The last lines of stdout that were not messages, redacted, then cut.
#[derive(Default)]
struct Noise {
    lines: VecDeque<String>,
    total: u64,
}

impl Noise {
    fn push(&mut self, line: &[u8], redactor: &Redactor) {
        self.total += 1;
        if self.lines.len() == NOISE_LINES {
            self.lines.pop_front();
        }
        let line = String::from_utf8_lossy(line);
        self.lines
            .push_back(cut_front(&redactor.redact(&line), NOISE_LINE_BYTES));
    }
}

/// The `{"type":"error"}` that ends the events of a session that ended without a close, with the
/// job's report as `container_report` (as an agent job's closing message has it).
fn ended_message(report: &JobReport, noise: &Noise, redactor: &Redactor) -> String {
    let outcome = &report.outcome;
    let mut message = format!(
        "the agent session ended before it was closed: {}",
        outcome.describe()
    );
    let stderr = report.stderr_tail.trim_end();
    if !stderr.is_empty() {
        let mut start = stderr.len().saturating_sub(MESSAGE_STDERR_BYTES);
        while !stderr.is_char_boundary(start) {
            start += 1;
        }
        message.push_str("; stderr: ");
        message.push_str(&stderr[start..]);
    }
    if noise.total > 0 {
        message.push_str(&format!(
            "; {} stdout line(s) were not JSON messages",
            noise.total
        ));
    }
    let stdout_tail: Vec<&str> = noise.lines.iter().map(String::as_str).collect();
    let mut error = json!({
        "type": "error",
        "message": redactor.redact(&message),
        "outcome": outcome.kind(),
        "exit_code": outcome.exit_code(),
        "oom_killed": outcome.oom_killed(),
        "stderr_tail": report.stderr_tail,
        "stdout_tail": stdout_tail.join("\n"),
        "container": report.container_name,
        "container_report": report.summary(),
    });
    if let Outcome::Failed(e) = outcome {
        error["code"] = json!(e.code());
    }
    error.to_string()
}

/// The first `max` bytes of `s`, cut back to a character boundary, with `...` when cut.
fn cut_front(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// 64 random bits as hex, from the kernel; a clock-and-pid fallback should it be unreadable
/// (the ids then stay unique, only guessable).
fn nonce() -> String {
    let mut bytes = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| {
        use std::io::Read;
        f.read_exact(&mut bytes)
    });
    if read.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = (nanos ^ u64::from(std::process::id()) << 32).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

//! A session's shared state and its two threads: the reader, which owns the job's output and
//! routes every line at once, and the writer, which owns the job's stdin, writes in order and
//! times out the requests the agent does not answer.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::protocol::{self, Line};
use super::{Done, SessionEvent};
use crate::engine::ExecInput;
use crate::herdctl::agent::{to_host_paths, SessionLinks};
use crate::run::job::{Canceller, Job, JobReport, Outcome};
use crate::{translate_json_paths, Direction, Error, PathMap, Redactor};

/// How long a control request may wait for the agent's answer: the Agent SDK's own default.
pub(super) const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes of events held for a slow reader before the session stops reading the agent's output.
const QUEUE_BYTES: usize = 1 << 20;
/// How many non-JSON stdout lines a failed session's error keeps, and how much of each.
const NOISE_LINES: usize = 20;
const NOISE_LINE_BYTES: usize = 512;
/// How much of the stderr tail the error's `message` quotes (all of it is in `stderr_tail`).
const MESSAGE_STDERR_BYTES: usize = 1024;

pub(super) struct Shared {
    state: Mutex<State>,
    pub(super) changed: Condvar,
    pub(super) writer: mpsc::Sender<Frame>,
    pub(super) canceller: Canceller,
    pub(super) redactor: Redactor,
    /// Makes this session's request ids unguessable.
    pub(super) nonce: String,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) events: VecDeque<SessionEvent>,
    pub(super) queued_bytes: usize,
    pub(super) pending: HashMap<String, Pending>,
    pub(super) next_id: u64,
    /// The answer to `initialize` (it carries the commands), once known: `Err((detail, ended))`
    /// when it failed.
    pub(super) init: Option<std::result::Result<Value, (String, bool)>>,
    pub(super) init_waiters: Vec<Done>,
    /// `close` was called: events are dropped, the ending is not an error.
    pub(super) closing: bool,
    pub(super) close_started: bool,
    /// How the session's job ended, once it has.
    pub(super) ended: Option<String>,
    pub(super) report: Option<JobReport>,
    pub(super) finished: bool,
}

pub(super) struct Pending {
    pub(super) request: &'static str,
    pub(super) deadline: Instant,
    pub(super) done: Done,
}

pub(super) type Written = Box<dyn FnOnce(io::Result<()>) + Send>;

pub(super) enum Frame {
    Write(Vec<u8>, Option<Written>),
    /// Send EOF: the agent finishes and exits.
    Close,
    /// The session is over.
    Stop,
}

impl Shared {
    pub(super) fn new(
        writer: mpsc::Sender<Frame>,
        canceller: Canceller,
        redactor: Redactor,
    ) -> Shared {
        Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            writer,
            canceller,
            redactor,
            nonce: nonce(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // Callbacks run outside the lock, and nothing under it panics: a poisoned lock still
        // guards consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn wait<'a>(&self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
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
    pub(super) fn write(&self, bytes: Vec<u8>, written: Option<Written>) {
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
                phase: crate::TimeoutPhase::SessionAnswer {
                    request: p.request.to_string(),
                },
                after: CONTROL_TIMEOUT,
            }));
        }
    }
}

/// The writer thread: writes frames in order, then serves request deadlines while idle.
pub(super) fn spawn_writer(input: ExecInput, frames: mpsc::Receiver<Frame>, shared: Weak<Shared>) {
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

/// Starts the reader thread over the session's job.
pub(super) fn spawn_reader(
    shared: Arc<Shared>,
    job: Job,
    paths: Option<PathMap>,
    links: Option<SessionLinks>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("herdctl-session-read".into())
        .spawn(move || {
            // Whatever happens in there, the session must end for its waiters.
            let _finish = FinishGuard(&shared);
            read(&shared, job, paths, links);
        })
        .expect("spawning a thread fails only when the process is out of threads or memory")
}

/// The reader thread: routes every line of the job's output, then ends the session.
fn read(shared: &Arc<Shared>, mut job: Job, paths: Option<PathMap>, links: Option<SessionLinks>) {
    let mut noise = Noise::default();
    let mut warnings = Vec::new();
    while let Some(line) = job.next_line() {
        match protocol::classify(line) {
            Line::Message(text) => {
                if let Some(links) = links.as_ref().filter(|_| ends_turn(text)) {
                    // The turn is in the transcript: herdctl lists the session while it is open.
                    // Linking is idempotent; a message that only mentions a result costs one
                    // directory read.
                    note(&mut warnings, links.link());
                }
                let text = text.to_string();
                let text = match &paths {
                    Some(paths) => to_host_paths(text, paths),
                    None => text,
                };
                shared.push(SessionEvent::Message(text));
            }
            Line::Response { id, answer } => deliver(shared, &id, answer),
            Line::Request { id, request } => answer_request(shared, &id, &request, &paths),
            Line::Cancelled => {}
            Line::Noise => noise.push(line, &shared.redactor),
        }
    }
    let mut report = job.finish();
    if let Some(links) = &links {
        note(&mut warnings, links.link());
    }
    report.warnings.extend(warnings);
    end(shared, report, &noise);
}

/// Hands the agent's answer to our control request `id` to whoever waits for it; an answer
/// nobody waits for (timed out, or not ours) is dropped.
fn deliver(shared: &Shared, id: &str, answer: Result<Value, String>) {
    let pending = shared.lock().pending.remove(id);
    if let Some(p) = pending {
        (p.done)(answer.map_err(|detail| Error::Session {
            request: p.request.into(),
            detail,
            ended: false,
        }));
    }
}

/// Answers the agent's control request `id` at once: a hook callback becomes a
/// [`SessionEvent::Hook`] (its paths the host's) and the agent goes on; any other request is
/// refused, so the agent never waits for an answer that will not come.
fn answer_request(shared: &Shared, id: &str, request: &Value, paths: &Option<PathMap>) {
    let answer = match request.get("subtype").and_then(Value::as_str) {
        Some("hook_callback") => {
            let mut input = request.get("input").cloned().unwrap_or(Value::Null);
            if let Some(paths) = paths {
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
    shared.write(protocol::control_response(id, answer), None);
}

/// Ends the session once the job has: keeps the report, tells the reader why it ended (unless
/// it was closed on purpose), wakes every waiter, fails the requests still waiting for an answer
/// and stops the writer thread.
fn end(shared: &Arc<Shared>, report: JobReport, noise: &Noise) {
    let (pending, closing) = {
        let mut st = shared.lock();
        st.ended = Some(report.outcome.describe());
        if !st.closing {
            let error = ended_message(&report, noise, &shared.redactor);
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

/// Adds the warnings not noted yet: a link that fails fails again at every turn.
fn note(warnings: &mut Vec<String>, new: Vec<String>) {
    for w in new {
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    }
}

/// Whether a message may be a turn's `result` (a cheap test: a false positive only links again).
fn ends_turn(message: &str) -> bool {
    memchr::memmem::find(message.as_bytes(), b"\"result\"").is_some()
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
pub(super) fn nonce() -> String {
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

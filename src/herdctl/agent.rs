//! One herdctl `execute` call as a job: herdctl's agent, docker config and execute options in,
//! SDK messages out.
//!
//! herdctl's runtimes yield SDK messages (one JSON object a line) that end with a `result`, and
//! herdctl stops at the first `result` or `error`. A job in a container can end in ways a runtime
//! never reports (killed, out of memory, cancelled, a missing binary, no engine mid-stream), so
//! every such ending becomes one last synthesized `{"type":"error"}` message carrying what is known:
//! the outcome, exit code, OOM flag and the redacted end of stderr. Only stdout lines that are JSON
//! objects are messages (each is parsed in full: one that looks like a message and is not is
//! named in that error, since its consumer would drop it without a word); anything else a broken
//! tool prints goes into a short tail for that error, since herdctl would choke on it.
//!
//! The messages that close the stream (the synthesized error, the agent's `result`) carry the
//! job's whole report as `container_report` (a [`crate::JobSummary`]: outcome, exit code,
//! timings, warnings, container, image, config hash). herdctl reads nothing after the first
//! `result` or `error`, so the agent's `result` is held back until the job has ended and its
//! container is released (the agent exits within milliseconds of printing it; one still running
//! half a second later is stopped, as herdctl's own cancel would); a job that failed yields its
//! error before that result.
//!
//! ```no_run
//! use herdctl_container::agent::{AgentJob, AgentRequest, Command, ExecuteOptions};
//! use herdctl_container::invocation::Strategy;
//! use herdctl_container::{resolve_docker_config, Engine, Runner, RunnerOptions};
//! # fn main() -> herdctl_container::Result<()> {
//! let runner = Runner::new(Engine::connect()?, RunnerOptions::new("/tmp/herdctl-state"))?;
//! let request = AgentRequest {
//!     config: resolve_docker_config(&serde_json::json!({"network": "none"}))?,
//!     agent: serde_json::json!({"name": "coder", "working_directory": "/tmp/work"}),
//!     options: ExecuteOptions::new("fix the bug"),
//!     command: Command::Runtime(Strategy::Cli),
//!     deadline: Some(std::time::Duration::from_secs(3600)),
//!     translate_paths: false,
//!     tool_handler: None,
//! };
//! let mut job = AgentJob::start(&runner, request)?;
//! while let Some(message) = job.next_message() {
//!     println!("{message}");
//! }
//! # Ok(()) }
//! ```

use std::cell::Cell;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::herdctl::invocation::{self, AgentSpec, Invocation, McpServer, Strategy};
use crate::herdctl::mcp::{Bridge, ToolHandler};
use crate::host::{
    claim_legacy_transcript, link_new_transcripts, mcp_socket_dir, prepare_session_dir,
};
use crate::plan::agent_session_dir;
use crate::run::job::{Canceller, Job, JobReport, Outcome, Timings};
use crate::{
    is_secret_name, process_user, translate_json_paths, workspace_root, Direction, DockerConfig,
    Error, JobSpec, PathMap, Redactor, Result, Runner, SessionLayout,
};

pub use crate::herdctl::invocation::ExecuteOptions;

/// What runs in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// One of herdctl's runtimes; the invocation is built from the agent and the options.
    Runtime(Strategy),
    /// A command the wrapped runtime chose itself (its `containerCommand` hook); the agent and
    /// the options shape only the container and the workspace.
    Raw(Invocation),
    /// One of herdctl's runtimes as a live session ([`crate::herdctl::invocation::session`]): it reads
    /// turns and control requests on stdin for as long as it runs. Only
    /// [`crate::herdctl::session::AgentSession`] runs it; [`AgentJob::start`] refuses it.
    Session(Strategy),
}

impl Command {
    /// A raw command, checked: `argv` must name a program, and no element may hold a NUL byte
    /// (the kernel cannot pass one).
    pub fn raw(argv: Vec<String>, stdin: Vec<u8>) -> Result<Command> {
        if argv.first().is_none_or(|p| p.is_empty()) {
            return Err(Error::argument(
                "containerCommand.argv",
                "empty; expected the program and its arguments, like [\"node\", \"agent.js\"]",
            ));
        }
        if let Some(i) = argv.iter().position(|a| a.contains('\0')) {
            return Err(Error::argument(
                format!("containerCommand.argv[{i}]"),
                "contains a NUL byte; pass binary data on stdin",
            ));
        }
        Ok(Command::Raw(Invocation { argv, stdin }))
    }
}

/// Everything one herdctl `execute` call says about its job.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    /// The agent's resolved docker config.
    pub config: DockerConfig,
    /// herdctl's resolved agent object (snake_case fields plus `qualifiedName`), as JSON. Its
    /// `qualifiedName` (else `name`) names the agent's containers and session directory; its
    /// `working_directory` (a path or `{root}`) is mounted at `/workspace`, else this process's
    /// current directory is.
    pub agent: Value,
    /// The per-call options.
    pub options: ExecuteOptions,
    /// What runs in the container.
    pub command: Command,
    /// Cancel the job when it runs longer than this (the outcome is then `TimedOut`). Default:
    /// none.
    pub deadline: Option<std::time::Duration>,
    /// Rewrite the container paths in messages (`/workspace/src/main.rs`) to the host's. Costs a
    /// parse of every message. Default: false.
    pub translate_paths: bool,
    /// Runs the tools of [`ExecuteOptions::injected_mcp_servers`]; required when there are any.
    pub tool_handler: Option<Arc<dyn ToolHandler>>,
}

impl AgentRequest {
    /// The runner's job for this request, of the agent `spec` (this request's agent, read
    /// once): agent name, workspace, argv and stdin, with `injected` (each server's name and its
    /// in-container config) among the agent's MCP servers; and the env of all those servers (it
    /// reaches the agent, so it is redacted from what the agent prints). No I/O but reading the
    /// current directory when the agent has no working directory.
    fn job_spec(
        &self,
        mut spec: AgentSpec,
        injected: &[(String, McpServer)],
    ) -> Result<(JobSpec, Vec<(String, String)>)> {
        let workspace = match spec.working_directory.as_ref().filter(|v| !v.is_null()) {
            Some(wd) => workspace_root(wd)?,
            None => std::env::current_dir()
                .map_err(|e| Error::io("read the current directory (the default workspace)", e))?
                .to_string_lossy()
                .into_owned(),
        };
        for (name, config) in injected {
            spec.mcp_servers.insert(name.clone(), config.clone());
            // herdctl's rule: an agent limited to a list of tools may still call injected ones.
            if !spec.allowed_tools.is_empty() {
                spec.allowed_tools.push(format!("mcp__{name}__*"));
            }
        }
        let invocation = match &self.command {
            Command::Runtime(strategy) => invocation::build(*strategy, &spec, &self.options),
            Command::Session(strategy) => invocation::session(*strategy, &spec, &self.options),
            Command::Raw(inv) => inv.clone(),
        };
        let agent = spec.key().to_string();
        let mut job = JobSpec::new(agent, self.config.clone(), workspace, invocation.argv);
        job.stdin = invocation.stdin;
        job.deadline = self.deadline;
        let mcp_env = spec.mcp_servers.into_values().flat_map(|s| s.env).collect();
        Ok((job, mcp_env))
    }

    /// The bridge of the injected MCP servers of the agent named `agent`, bound; `None` when
    /// there are none.
    fn mcp_bridge(&self, runner: &Runner, agent: &str) -> Result<Option<Bridge>> {
        let servers = &self.options.injected_mcp_servers;
        if servers.is_empty() {
            return Ok(None);
        }
        if self.tool_handler.is_none() {
            return Err(Error::argument(
                "injectedMcpServers",
                "given without a handler to run their tools",
            ));
        }
        if let Command::Raw(_) = self.command {
            return Err(Error::argument(
                "injectedMcpServers",
                "a runtime with its own containerCommand cannot be given injected MCP servers; wrap a CLIRuntime or SDKRuntime",
            ));
        }
        let engine = runner.engine_for(agent)?;
        if !engine.options().is_local() {
            return Err(Error::argument(
                "injectedMcpServers",
                format!("the agent's engine {} is on another machine, and injected tools reach its containers through a unix socket of this one; place the agent on a local engine (a unix socket or a loopback address) to use them, or run it without injected tools", engine.host()),
            ));
        }
        // Never an agent silently without its tools: its OCI runtime must reach the sockets.
        runner.check_host_sockets(&engine, &self.config)?;
        let state_dir = runner.state_dir().to_string_lossy();
        let dir = mcp_socket_dir(&state_dir, agent)?;
        Bridge::bind(std::path::Path::new(&dir), servers.clone()).map(Some)
    }
}

/// The message with every container path under a mount rewritten to the host's, as text: each
/// string value (not a key) that [`translate_json_paths`] would rewrite is replaced where it
/// stands, and every other byte is kept (the agent's key order, its numbers), so the message is
/// parsed once, by its consumer, not built and written again here. A message that is not JSON
/// after all is left for the consumer's parse to drop.
pub(crate) fn to_host_paths(message: String, paths: &PathMap) -> String {
    let bytes = message.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while let Some(at) = memchr::memchr(b'"', &bytes[i..]) {
        let start = i + at;
        let Some(end) = string_end(bytes, start + 1) else {
            break;
        };
        i = end + 1;
        // Outside strings a JSON text holds no quote, so this is a whole string: a key when a
        // colon follows it. A path starts with `/` (or its escape `\/`, `\u002f`).
        let is_key = bytes.get(skip_blank(bytes, i)) == Some(&b':');
        if is_key || !matches!(bytes.get(start + 1), Some(b'/' | b'\\')) {
            continue;
        }
        let Ok(mut value) = serde_json::from_str::<Value>(&message[start..i]) else {
            continue;
        };
        if translate_json_paths(&mut value, paths, Direction::ToHost) > 0 {
            out.push_str(&message[copied..start]);
            out.push_str(&value.to_string());
            copied = i;
        }
    }
    if copied == 0 {
        return message;
    }
    out.push_str(&message[copied..]);
    out
}

/// A running agent job that yields SDK messages. Dropping it, or calling
/// [`AgentJob::finish`] before the messages ended, cancels the job.
pub struct AgentJob {
    phase: Phase,
    /// Serves the injected MCP servers until the job is dropped.
    _mcp: Option<Bridge>,
    translate_paths: bool,
    transcript: Transcript,
    redactor: Redactor,
    /// `None` when the job failed before its command ran.
    canceller: Option<Canceller>,
    /// The agent's first `result`, held until the job has ended (see the module docs).
    held_result: Option<Accepted>,
    /// Messages the agent printed after its `result`, handed out after it.
    after_result: AfterResult,
    /// What is left to hand out once the job has ended: the closing error, the held result,
    /// then the messages after it.
    pending: VecDeque<String>,
    /// herdctl's flat view of this agent's transcripts, kept by [`SessionLinks`].
    sessions: Option<SessionLinks>,
}

/// Messages after the result, bounded: an agent that floods after its result is stopped within
/// [`AFTER_RESULT_GRACE`], but what it prints until then must not pile up without limit.
#[derive(Debug, Default)]
struct AfterResult {
    kept: VecDeque<String>,
    bytes: usize,
    dropped: u64,
}

/// How many bytes of messages after the result are kept.
const AFTER_RESULT_BYTES: usize = 1 << 20;

enum Phase {
    Running(Box<Job>),
    Ended(Box<JobReport>),
    /// Only while `finish` moves the report out.
    Gone,
}

/// The per-agent session directory and herdctl's flat `docker-sessions/`, for the links between
/// them (see `paths::sessions`). A live session keeps them as an agent job does.
pub(crate) struct SessionLinks {
    flat: PathBuf,
    agent_dir: PathBuf,
    /// When the job started, less a margin for coarse file system clocks: transcripts written
    /// since are this job's.
    since: SystemTime,
    /// Whether the links were made once while the job ran.
    linked_early: bool,
}

impl SessionLinks {
    /// Links what was written since the start; returns what could not be, for the warnings.
    pub(crate) fn link(&self) -> Vec<String> {
        link_new_transcripts(&self.flat, &self.agent_dir, self.since)
    }
}

/// What an agent job and a live session make of a request before the runner starts it.
pub(crate) struct Prepared {
    pub spec: JobSpec,
    /// The injected MCP servers' bridge, bound; served once the job has its path map.
    pub bridge: Option<Bridge>,
    /// herdctl's flat view of the agent's transcripts, kept current around the job.
    pub links: Option<SessionLinks>,
}

impl AgentRequest {
    /// The steps an agent job and a live session share before the runner starts them, in one
    /// place so that neither misses one: the runtime herdctl's resolver dropped, the injected
    /// MCP servers' bridge, the job spec with their secrets, herdctl's session links. Errors are
    /// redacted with what this process's environment and the config hold secret.
    pub(crate) fn prepare(&mut self, runner: &Runner) -> Result<Prepared> {
        let early = || Redactor::from_process_env().with_env(&self.config.env);
        // The one read of the agent object.
        let agent = AgentSpec::from_json(&self.agent).map_err(|e| e.redact(&early()))?;
        // herdctl's resolver drops `docker.runtime`; the agent object still carries it.
        crate::run::isolation::runtime_from_agent(agent.docker_runtime(), &mut self.config)?;
        let early = || Redactor::from_process_env().with_env(&self.config.env);
        let bridge = self
            .mcp_bridge(runner, agent.key())
            .map_err(|e| e.redact(&early()))?;
        let injected = bridge
            .as_ref()
            .map(Bridge::agent_configs)
            .unwrap_or_default();
        let (mut spec, mcp_env) = self
            .job_spec(agent, &injected)
            .map_err(|e| e.redact(&early()))?;
        // The MCP servers' env (tokens, the bridge's secrets) reaches the agent too: the runner
        // redacts it with the job's other secrets, from the job's errors and stderr tail as the
        // job does from its stdout tail.
        spec.secrets.extend(
            mcp_env
                .into_iter()
                .filter(|(k, _)| is_secret_name(k))
                .map(|(_, v)| v),
        );
        let links = session_links(runner, &spec, self.options.resume.as_deref())
            .map_err(|e| e.redact(&early().with_secrets(&spec.secrets)))?;
        Ok(Prepared {
            spec,
            bridge,
            links,
        })
    }
}

impl AgentJob {
    /// Starts the job on `runner`. An error here means the job got no container (bad input, no
    /// engine, a missing image, settings the gate refuses, a name held by a container not this
    /// agent's); once the job has a container, every ending is a message, a failed start in it
    /// included.
    ///
    /// Every error is redacted: before the job exists with what this process's environment
    /// and the config hold secret, afterwards with all of the job's secrets.
    pub fn start(runner: &Runner, mut request: AgentRequest) -> Result<AgentJob> {
        if let Command::Session(_) = request.command {
            return Err(Error::argument(
                "command",
                "a session command runs only as a session::AgentSession",
            ));
        }
        let Prepared {
            spec,
            mut bridge,
            links: sessions,
        } = request.prepare(runner)?;
        let early = || Redactor::from_process_env().with_env(&request.config.env);
        // For the report of a job that fails in its container before its command runs.
        let image = spec.config.image.clone();
        let secrets = spec.secrets.clone();
        let reached = Cell::new(None);
        let started = match runner.start_tracked(spec, &reached) {
            Ok(started) => started,
            Err(e) => {
                // The README's promise: errors after the container exists are messages. The
                // runner has released the container (an ephemeral one is stopped, kept for
                // inspection; one that never started is removed) and redacted the error.
                let Some(reached) = reached.take() else {
                    return Err(e);
                };
                let redactor = early().with_secrets(&secrets);
                let mut job = AgentJob::new(None, None, &request, redactor, sessions);
                let report = JobReport {
                    outcome: Outcome::Failed(e),
                    container_id: reached.id,
                    container_name: reached.name,
                    image,
                    config_hash: reached.config_hash,
                    stderr_tail: String::new(),
                    timings: Timings::default(),
                    warnings: Vec::new(),
                    redactor: job.redactor.clone(),
                };
                job.end(report);
                return Ok(job);
            }
        };
        let redactor = started.redactor().clone();
        if let (Some(bridge), Some(handler)) = (&mut bridge, &request.tool_handler) {
            // Connects made since the job started wait in the sockets' backlog until now.
            bridge
                .serve(handler.clone(), started.path_map().clone())
                .map_err(|e| e.redact(&redactor))?;
        }
        Ok(AgentJob::new(
            Some(started),
            bridge,
            &request,
            redactor,
            sessions,
        ))
    }

    /// A job in its first phase: running, or (without `job`) about to be ended by
    /// [`AgentJob::end`].
    fn new(
        job: Option<Job>,
        mcp: Option<Bridge>,
        request: &AgentRequest,
        redactor: Redactor,
        sessions: Option<SessionLinks>,
    ) -> AgentJob {
        AgentJob {
            _mcp: mcp,
            canceller: job.as_ref().map(Job::canceller),
            translate_paths: request.translate_paths,
            phase: job.map_or(Phase::Gone, |j| Phase::Running(Box::new(j))),
            transcript: Transcript {
                redactor: redactor.clone(),
                ..Transcript::default()
            },
            redactor,
            held_result: None,
            after_result: AfterResult::default(),
            pending: VecDeque::new(),
            sessions,
        }
    }

    /// A handle that cancels the job from another thread (it blocks while the job's processes
    /// are killed: call it off any thread that must stay responsive). `None` when the job failed
    /// before its command ran: there is nothing to cancel.
    pub fn canceller(&self) -> Option<Canceller> {
        self.canceller.clone()
    }

    /// The next message, a line that is one JSON object with a top-level `type`; after the job's
    /// own messages, one synthesized `{"type":"error"}` when the job did not succeed or printed no
    /// valid `result`; then `None`. Blocks until a message arrives or the job ends.
    ///
    /// The agent's first `result` comes once the job has ended, with the job's report added as
    /// `container_report`; so does the synthesized error. herdctl stops at the first `result` or
    /// `error` and records the job by which one it was, so a job that failed yields its closing
    /// error first (quoting an error result's text, which is what herdctl's retry of a stale
    /// session looks for) and the result after it. An error result (`is_error`, or a subtype
    /// other than `success`) of a job that exited 0 comes alone, as herdctl's own runtimes pass
    /// it on.
    pub fn next_message(&mut self) -> Option<String> {
        if let Some(message) = self.pending.pop_front() {
            return Some(message);
        }
        let Phase::Running(job) = &mut self.phase else {
            return None;
        };
        while let Some(line) = job.next_line() {
            let Some(mut accepted) = self.transcript.accept(line) else {
                continue;
            };
            if let Some(links) = self.sessions.as_mut().filter(|l| !l.linked_early) {
                // The transcript exists once the agent speaks: list it while the job runs.
                links.linked_early = true;
                links.link();
            }
            if self.translate_paths {
                accepted.text = to_host_paths(accepted.text, job.path_map());
            }
            if self.held_result.is_some() {
                self.after_result.push(accepted.text);
            } else if self.transcript.saw_result {
                // A cancel from now on (herdctl's, or the one below) lets the agent exit by
                // itself first; one that lingers is stopped, so the result is not held for ever.
                let Some(canceller) = self.canceller.clone() else {
                    return Some(accepted.text);
                };
                canceller.set_grace(AFTER_RESULT_GRACE);
                let waited = std::thread::Builder::new()
                    .name("herdctl-after-result".into())
                    .spawn(move || canceller.cancel());
                if waited.is_err() {
                    // No thread to wait with: hand the result out now, without the report.
                    return Some(accepted.text);
                }
                self.held_result = Some(accepted);
            } else {
                return Some(accepted.text);
            }
        }
        let Phase::Running(job) = std::mem::replace(&mut self.phase, Phase::Gone) else {
            unreachable!("matched Running above and nothing changed the phase since");
        };
        let report = self.report(*job);
        self.end(report);
        self.pending.pop_front()
    }

    /// How the job ended; cancels it first when its messages have not ended yet.
    pub fn finish(mut self) -> JobReport {
        match std::mem::replace(&mut self.phase, Phase::Gone) {
            Phase::Running(job) => self.report(*job),
            Phase::Ended(report) => *report,
            Phase::Gone => unreachable!("the phase is Gone only inside next_message and here"),
        }
    }
}

impl AgentJob {
    /// Finishes the job; its stderr tail redacted with this job's secrets as well as the
    /// runner's; the agent's new transcripts linked for herdctl.
    fn report(&self, job: Job) -> JobReport {
        let mut report = job.finish();
        report.stderr_tail = self.redactor.redact(&report.stderr_tail).into_owned();
        if let Some(links) = &self.sessions {
            report.warnings.extend(links.link());
        }
        // This job's secrets include the runner's: the report's own texts are redacted with them.
        report.redactor = self.redactor.clone();
        report
    }

    /// Queues the messages that end the job and keeps the report: the closing error (when the
    /// job failed or has no valid result), then the held result with the report, then what the
    /// agent printed after its result.
    fn end(&mut self, mut report: JobReport) {
        let lingered = self.held_result.is_some() && matches!(report.outcome, Outcome::Cancelled);
        if lingered {
            report.warnings.push(format!(
                "the agent was still running {AFTER_RESULT_GRACE:?} after its result and was stopped"
            ));
        }
        if self.after_result.dropped > 0 {
            report.warnings.push(format!(
                "{} message(s) the agent printed after its result were dropped (past {AFTER_RESULT_BYTES} bytes)",
                self.after_result.dropped
            ));
        }
        if !lingered {
            // A stopped lingerer's result stands: its cancel is no failure of the job.
            let held_error = self.held_result.as_ref().is_some_and(|r| r.error_result);
            self.pending
                .extend(self.transcript.closing(&report, &self.redactor, held_error));
        }
        if let Some(result) = self.held_result.take() {
            self.pending.push_back(with_report(result.text, &report));
        }
        self.pending.extend(self.after_result.kept.drain(..));
        self.phase = Phase::Ended(Box::new(report));
    }
}

/// The links for herdctl's flat session view, for the per-agent layout (`None` for the flat
/// one, where herdctl's directory is the agent's). Before a resume, a transcript that exists only
/// in the flat directory (left by herdctl's own Docker layer) is given to this agent.
pub(crate) fn session_links(
    runner: &Runner,
    spec: &JobSpec,
    resume: Option<&str>,
) -> Result<Option<SessionLinks>> {
    if runner.session_layout() != SessionLayout::PerAgent {
        return Ok(None);
    }
    let state_dir = runner.state_dir().to_string_lossy().into_owned();
    let agent_dir = agent_session_dir(&state_dir, &spec.agent, SessionLayout::PerAgent);
    let flat = agent_session_dir(&state_dir, &spec.agent, SessionLayout::Flat);
    if let Some(id) = resume {
        prepare_session_dir(&agent_dir, &spec.config)?;
        let user = spec.config.user;
        let owner = process_user()
            .is_some_and(|u| u.is_root())
            .then_some((user.uid, user.gid));
        claim_legacy_transcript(flat.as_ref(), agent_dir.as_ref(), id, owner);
    }
    Ok(Some(SessionLinks {
        flat: flat.into(),
        agent_dir: agent_dir.into(),
        since: SystemTime::now() - CLOCK_MARGIN,
        linked_early: false,
    }))
}

/// How far before a job's start a transcript's modification time may lie and still count as
/// written by the job: file systems with coarse timestamps (FAT, some network file systems) round
/// to a second or two.
const CLOCK_MARGIN: Duration = Duration::from_secs(2);
impl AfterResult {
    fn push(&mut self, message: String) {
        if self.bytes + message.len() > AFTER_RESULT_BYTES {
            self.dropped += 1;
            return;
        }
        self.bytes += message.len();
        self.kept.push_back(message);
    }
}

/// The agent's `result` with the job's report added as `container_report`; a result that does
/// not parse after all is handed out as it is (the consumer's parse drops it either way).
///
/// Spliced in as text before the closing brace: serialising the parsed message again would sort
/// the agent's keys and could change its numbers in the last digit. Should the agent have sent a
/// `container_report` of its own, this one comes last, and JSON.parse keeps the last.
fn with_report(result: String, report: &JobReport) -> String {
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&result) else {
        return result;
    };
    let Some(body) = result.trim_end().strip_suffix('}') else {
        return result;
    };
    let comma = if fields.is_empty() { "" } else { "," };
    format!(
        "{body}{comma}\"container_report\":{}}}",
        json!(report.summary())
    )
}

/// How long a cancel after the agent's `result` waits for the agent to exit by itself before
/// killing it. herdctl cancels at every `result`; an agent exits within milliseconds of printing
/// it, and killing it instead runs an exec that holds up the job's own last engine calls (about
/// 35 ms a job, measured by scripts/bench). Short enough that a cancel still ends the job's
/// processes within 2 s.
const AFTER_RESULT_GRACE: Duration = Duration::from_millis(500);

/// How many non-JSON stdout lines the closing error keeps, and how much of each.
const OTHER_LINES: usize = 20;
const OTHER_LINE_BYTES: usize = 512;
/// How much of the stderr tail the closing error's `message` quotes (all of it is in
/// `stderr_tail`).
const MESSAGE_STDERR_BYTES: usize = 1024;

/// What the job printed, as far as the closing error needs it. Pure: no engine, no I/O.
#[derive(Debug, Default)]
struct Transcript {
    /// A valid `result` message was seen.
    saw_result: bool,
    messages: u64,
    /// Every stdout line, messages and others, for the line numbers of errors.
    lines: u64,
    /// The last non-JSON stdout lines, each redacted and then cut to [`OTHER_LINE_BYTES`].
    other: VecDeque<String>,
    other_total: u64,
    /// The first line that looked like a message but is not JSON (a result line wins over an
    /// earlier one): herdctl would drop it without a word.
    broken: Option<Broken>,
    /// The text of the agent's first `result` when that is an error result (redacted, its first
    /// 64 KiB).
    error_result: Option<String>,
    /// The job's secrets: a line is redacted before it is cut, so that a secret across the cut
    /// cannot survive in part.
    redactor: Redactor,
}

/// A stdout line that looked like a JSON message and is not one.
#[derive(Debug)]
struct Broken {
    line: u64,
    result: bool,
    /// The parser's words, like `trailing comma at line 1 column 40` (no content of the line).
    reason: String,
}

/// A message the transcript accepted.
#[derive(Debug)]
struct Accepted {
    text: String,
    /// A `result` that reports an error (`is_error`, or a subtype other than `success`).
    error_result: bool,
}

/// Whether a line looks like one JSON object (its first and last non-blank bytes are braces),
/// and if so the value of its top-level `"type"` key when that is a string.
///
/// Not a parse: a quick look that sorts out plain text, and finds `type` without building the
/// message (Claude Code prints it as the first key, so this reads a few bytes). Keys before
/// `type` are skipped by bracket depth and string escapes alone; whether the line is JSON at all
/// is [`Transcript::accept`]'s full check, which builds nothing but a `result`.
fn object_type(line: &str) -> Option<Option<&str>> {
    let trimmed = line.trim_matches(|c: char| c.is_ascii_whitespace());
    let inner = trimmed.strip_prefix('{')?.strip_suffix('}')?;
    let bytes = inner.as_bytes();
    let mut i = 0;
    loop {
        i = skip_blank(bytes, i);
        if bytes.get(i) != Some(&b'"') {
            return Some(None);
        }
        let key_end = string_end(bytes, i + 1)?;
        let key = &inner[i + 1..key_end];
        i = skip_blank(bytes, key_end + 1);
        if bytes.get(i) != Some(&b':') {
            return Some(None);
        }
        i = skip_blank(bytes, i + 1);
        if key == "type" {
            return Some(match bytes.get(i) {
                Some(b'"') => string_end(bytes, i + 1).map(|end| &inner[i + 1..end]),
                _ => None,
            });
        }
        i = skip_value(bytes, i)?;
        i = skip_blank(bytes, i);
        if bytes.get(i) != Some(&b',') {
            return Some(None);
        }
        i += 1;
    }
}

fn skip_blank(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// The index of the quote that closes a string whose first content byte is at `i`.
fn string_end(bytes: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i += memchr::memchr2(b'"', b'\\', &bytes[i..])?;
        if bytes[i] == b'"' {
            return Some(i);
        }
        i += 2; // a backslash and the byte it escapes
    }
}

/// The index just past the value that starts at `i`.
fn skip_value(bytes: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *bytes.get(i)? {
            b'"' => i = string_end(bytes, i + 1)?,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.checked_sub(1)?,
            b',' if depth == 0 => return Some(i),
            _ => {}
        }
        i += 1;
        if depth == 0 && i == bytes.len() {
            return Some(i);
        }
    }
}

impl Transcript {
    /// The line as a message when it is one JSON object; otherwise it is kept for the closing
    /// error and `None` returned.
    ///
    /// Every message is parsed in full (without building it): a line the consumer cannot parse
    /// would be dropped there without a word, and a broken `result` would end the job with no
    /// message at all. The parse also rejects what JSON.parse rejects (raw control characters
    /// in strings, trailing commas), so every message reaches JS intact.
    fn accept(&mut self, line: &[u8]) -> Option<Accepted> {
        self.lines += 1;
        if let Ok(text) = std::str::from_utf8(line) {
            if let Some(kind) = object_type(text) {
                let text = text.trim();
                let is_result = kind == Some("result");
                let check = if is_result {
                    // One per job: read it whole for its error flag and text.
                    serde_json::from_str::<Value>(text).map(Some)
                } else {
                    serde_json::from_str::<serde::de::IgnoredAny>(text).map(|_| None)
                };
                match check {
                    Ok(result) => {
                        self.messages += 1;
                        let error_result = result.as_ref().is_some_and(is_error_result);
                        if let Some(result) = &result {
                            if error_result && !self.saw_result {
                                // The first result is the one held and quoted: redacted before
                                // it is cut, so no part of a secret survives a cut.
                                let text = result["result"].as_str().unwrap_or("").trim();
                                let text = self.redactor.redact(text);
                                self.error_result = Some(cut(&text, 64 << 10).into_owned());
                            }
                            self.saw_result = true;
                        }
                        return Some(Accepted {
                            text: text.to_string(),
                            error_result,
                        });
                    }
                    Err(e) => {
                        if self.broken.as_ref().is_none_or(|b| is_result && !b.result) {
                            self.broken = Some(Broken {
                                line: self.lines,
                                result: is_result,
                                reason: e.to_string(),
                            });
                        }
                    }
                }
            }
        }
        self.other_total += 1;
        if self.other.len() == OTHER_LINES {
            self.other.pop_front();
        }
        let line = String::from_utf8_lossy(line);
        self.other
            .push_back(cut(&self.redactor.redact(&line), OTHER_LINE_BYTES).into_owned());
        None
    }

    /// The synthesized error that ends the messages, unless the job succeeded with a valid
    /// result (`held_result`: an error result waits to be yielded after this error).
    fn closing(
        &self,
        report: &JobReport,
        redactor: &Redactor,
        held_result: bool,
    ) -> Option<String> {
        if report.outcome.success() && self.saw_result {
            return None;
        }
        let (exit_code, oom) = exit_and_oom(&report.outcome);
        let message = self.closing_message(report, redactor, held_result);
        let other: Vec<&str> = self.other.iter().map(String::as_str).collect();
        let stdout_tail = redactor.redact(&other.join("\n")).into_owned();
        let mut error = json!({
            "type": "error",
            "message": redactor.redact(&message),
            "outcome": report.outcome.kind(),
            "exit_code": exit_code,
            "oom_killed": oom,
            "stderr_tail": report.stderr_tail,
            "stdout_tail": stdout_tail,
            "container": report.container_name,
            "container_report": report.summary(),
        });
        if let Outcome::Failed(e) = &report.outcome {
            error["code"] = json!(e.code());
        }
        Some(error.to_string())
    }

    /// The closing error's `message`: how the job ended, its error result's text, a message
    /// that was not JSON, the end of stderr, the count of other stdout lines (not yet redacted).
    fn closing_message(
        &self,
        report: &JobReport,
        redactor: &Redactor,
        held_result: bool,
    ) -> String {
        let succeeded = report.outcome.success();
        let broken_result = self
            .broken
            .as_ref()
            .filter(|b| b.result && !self.saw_result);
        let mut message = match broken_result {
            Some(b) if succeeded => format!(
                "the agent's result message (stdout line {}) is not JSON: {}; the job has no valid result (exited with code 0)",
                b.line, b.reason
            ),
            _ if succeeded => {
                "the agent ended without a result message (exited with code 0)".to_string()
            }
            _ => format!("the agent job failed: {}", report.outcome.describe()),
        };
        if let Some(text) = self
            .error_result
            .as_ref()
            .filter(|t| held_result && !t.is_empty())
        {
            message.push_str("; its result: ");
            message.push_str(&cut(&redactor.redact(text), OTHER_LINE_BYTES));
        }
        match &self.broken {
            Some(b) if !(succeeded && broken_result.is_some()) => {
                let what = if b.result {
                    "the result message"
                } else {
                    "a message"
                };
                message.push_str(&format!(
                    "; {what} on stdout line {} is not JSON: {}",
                    b.line, b.reason
                ));
            }
            _ => {}
        }
        let stderr = report.stderr_tail.trim_end();
        if !stderr.is_empty() {
            message.push_str("; stderr: ");
            message.push_str(&tail(stderr, MESSAGE_STDERR_BYTES));
        }
        if self.other_total > 0 {
            message.push_str(&format!(
                "; {} stdout line(s) were not JSON messages",
                self.other_total
            ));
        }
        message
    }
}

/// The exit code and the OOM flag an outcome knows of.
fn exit_and_oom(outcome: &Outcome) -> (Option<i64>, bool) {
    match outcome {
        Outcome::Exited(code) => (Some(*code), false),
        Outcome::CommandNotFound { code } => (Some(*code), false),
        Outcome::Killed { code, oom } => (Some(*code), *oom),
        Outcome::ContainerDied {
            exit_code,
            oom_killed,
        } => (*exit_code, *oom_killed),
        _ => (None, false),
    }
}

/// herdctl's test for a failed result (its message processor's): `is_error`, or a subtype other
/// than `success`.
fn is_error_result(result: &Value) -> bool {
    result["is_error"].as_bool() == Some(true)
        || result["subtype"].as_str().is_some_and(|s| s != "success")
}

/// The first `max` bytes of `s`, cut back to a character boundary, with `...` when cut.
fn cut(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end]).into()
}

/// The last `max` bytes of `s`, cut forward to a character boundary, with `...` when cut.
fn tail(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..]).into()
}

#[cfg(test)]
mod tests;

//! One job: a command running in an agent's container, its output as lines, its end as an
//! [`Outcome`].
//!
//! The flow is one way: [`crate::Runner::start`] acquires the container and starts the exec, the
//! caller pulls lines with [`Job::next_line`] (no thread of ours sits between the socket and the
//! caller), and [`Job::finish`] works out the outcome, releases the container and applies retention.

mod cancel;
mod group;
mod lines;
mod outcome;
pub mod records;
mod watch;

use std::io::Write;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use cancel::Canceller;
pub(crate) use cancel::{run_argv, StopReason};
pub(crate) use group::JobGroup;
pub use outcome::{JobReport, JobSummary, Outcome, Timings};
pub(crate) use watch::watch_container;

use crate::engine::{Engine, ExecInput, ExecOutput, Stream};
use crate::paths::PathMap;
use crate::redact::Redactor;
use crate::run::lifecycle::Lease;
use crate::Error;
use lines::{LineTooLong, Lines, Tail};

/// How much of stderr a report keeps.
const STDERR_TAIL: usize = 8 * 1024;
/// How much of stdout a job record keeps, after redaction.
const STDOUT_TAIL: usize = 8 * 1024;
/// Kept beyond [`STDOUT_TAIL`] before redaction, so that a secret cut at the buffer's front is
/// dropped by the final cut instead of surviving in part (secrets are far shorter).
const TAIL_MARGIN: usize = 4 * 1024;
/// How long an exit code may stay unknown (`ExitCode: null`) after the stream ended before the
/// job is reported as failed; the engine normally fills it within milliseconds.
const EXIT_CODE_GRACE: Duration = Duration::from_secs(2);

/// A running job. Pull its stdout with [`Job::next_line`], then call [`Job::finish`].
///
/// Dropping a job without finishing it cancels it and releases its container.
pub struct Job {
    engine: Engine,
    exec_id: String,
    output: ExecOutput,
    lines: Lines,
    stderr: Tail,
    /// The end of stdout, for the job's record.
    stdout: Tail,
    redactor: Redactor,
    /// What the job's record says besides the report.
    record: records::Head,
    writer: Option<JoinHandle<()>>,
    /// The job's stdin, kept open for its caller ([`crate::JobSpec::stdin_open`]) until taken.
    stdin: Option<ExecInput>,
    canceller: Canceller,
    /// Dropping it tells the deadline watchdog that the job is over.
    _watchdog: Option<mpsc::Sender<()>>,
    /// Dropping it tells the container's watcher (gVisor, see `isolation/watch.rs`) the same.
    _container_watch: Option<mpsc::Sender<()>>,
    started: Instant,
    timings: Timings,
    warnings: Vec<String>,
    image: String,
    config_hash: String,
    /// The job's mounts, for translating paths between host and container.
    paths: PathMap,
    /// Set when the output ended: `None` for a clean end of stream.
    ended: Option<Option<Error>>,
    lease: Option<Lease>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("exec_id", &self.exec_id)
            .field("container", &self.lease.as_ref().map(|l| l.name()))
            .finish_non_exhaustive()
    }
}

/// What the runner hands over to a job once its exec is open.
pub(crate) struct Started {
    pub engine: Engine,
    pub exec_id: String,
    pub input: ExecInput,
    pub output: ExecOutput,
    pub stdin: Vec<u8>,
    /// Keep `input` open for the caller instead of writing `stdin` and closing it.
    pub stdin_open: bool,
    pub canceller: Canceller,
    pub redactor: Redactor,
    pub deadline: Option<Duration>,
    pub max_line: usize,
    pub started: Instant,
    pub timings: Timings,
    pub warnings: Vec<String>,
    pub image: String,
    pub config_hash: String,
    pub lease: Lease,
    pub paths: PathMap,
    pub record: records::Head,
    pub container_watch: Option<mpsc::Sender<()>>,
}

impl Job {
    pub(crate) fn new(s: Started) -> Job {
        let (writer, stdin) = if s.stdin_open {
            (None, Some(s.input))
        } else {
            (Some(spawn_writer(s.input, s.stdin)), None)
        };
        let watchdog = s
            .deadline
            .map(|after| spawn_watchdog(s.canceller.clone(), after));
        Job {
            engine: s.engine,
            exec_id: s.exec_id,
            output: s.output,
            lines: Lines::new(s.max_line),
            // At least TAIL_MARGIN, whatever the secrets: a tail is never cut mid-secret.
            stderr: Tail::new(STDERR_TAIL, s.redactor.longest().max(TAIL_MARGIN)),
            stdout: Tail::new(STDOUT_TAIL, s.redactor.longest().max(TAIL_MARGIN)),
            redactor: s.redactor,
            record: s.record,
            writer,
            stdin,
            canceller: s.canceller,
            _watchdog: watchdog,
            _container_watch: s.container_watch,
            started: s.started,
            timings: s.timings,
            warnings: s.warnings,
            image: s.image,
            config_hash: s.config_hash,
            ended: None,
            lease: Some(s.lease),
            paths: s.paths,
        }
    }

    /// The next line of the job's stdout, without its newline; `None` once the output ended (the
    /// report then says how). Blocks until a whole line arrived; there is no idle timeout, since an
    /// agent may think for minutes without printing (give the job a deadline instead).
    ///
    /// Lines are bytes: an agent prints UTF-8 JSON, but a broken tool may print anything.
    pub fn next_line(&mut self) -> Option<&[u8]> {
        loop {
            if self.ended.is_some() {
                return None;
            }
            match self.lines.next_range() {
                Ok(Some(range)) => return Some(self.lines.get(range)),
                Ok(None) => {}
                Err(LineTooLong) => {
                    self.end_with_limit();
                    return None;
                }
            }
            match self.output.next_chunk() {
                Ok(Some((stream, data))) => {
                    if self.timings.first_byte.is_none() {
                        self.timings.first_byte = Some(self.started.elapsed());
                    }
                    match stream {
                        Stream::Stdout => {
                            self.stdout.push(data);
                            self.lines.push(data)
                        }
                        Stream::Stderr => self.stderr.push(data),
                    }
                }
                Ok(None) => {
                    self.ended = Some(None);
                    self.canceller.mark_ended();
                    self.timings.end = Some(self.started.elapsed());
                    return self.lines.finish();
                }
                Err(e) => {
                    self.ended = Some(Some(e));
                    self.timings.end = Some(self.started.elapsed());
                    return None;
                }
            }
        }
    }

    /// The job's stdin, once, when it was started with [`crate::JobSpec::stdin_open`]: write to
    /// it for as long as the job runs (a live session's turns); dropping or closing it sends EOF.
    /// `None` for a job whose stdin the runner writes, and once taken.
    pub fn take_stdin(&mut self) -> Option<ExecInput> {
        self.stdin.take()
    }

    /// The job's mounts as a host/container path map, to translate the paths an agent prints
    /// (`/workspace/src/main.rs`) into the host's, or back.
    pub fn path_map(&self) -> &PathMap {
        &self.paths
    }

    /// The redactor of this job's secrets (credentials, the config's and the spec's secrets),
    /// for what a wrapper reports about the job.
    pub(crate) fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// A handle that cancels this job from another thread.
    pub fn canceller(&self) -> Canceller {
        self.canceller.clone()
    }

    /// Waits for the job to end, works out how it ended, releases its container (an ephemeral one
    /// is stopped and kept for inspection) and applies retention.
    ///
    /// Called before the output ended, it cancels the job: a caller that stops reading does not
    /// want the rest (this is what herdctl's `return()` on the message iterator means).
    pub fn finish(mut self) -> JobReport {
        self.abandon();
        self.conclude()
    }

    /// Stops a job whose output nobody will read. The stream is closed first: a process that
    /// floods its output would otherwise block on the full pipe, and the engine does not finish
    /// a kill while the process's output is still being copied.
    fn abandon(&mut self) {
        if self.ended.is_none() {
            self.canceller.abort_stream();
            let _ = self.canceller.stop(StopReason::Cancelled);
            while self.next_line().is_some() {}
        }
    }

    fn end_with_limit(&mut self) {
        self.canceller.abort_stream();
        let _ = self.canceller.stop(StopReason::OutputLimit);
        self.ended = Some(Some(Error::LineTooLong {
            limit: self.lines.max_line(),
        }));
        self.timings.end = Some(self.started.elapsed());
    }

    /// The end of a job, from [`Job::finish`] or its drop: how it ended, the clean-up inside
    /// its container, the container's release, then the report (redacted) and its record.
    fn conclude(&mut self) -> JobReport {
        if let Some(writer) = self.writer.take() {
            // The writer ends when stdin is written or the connection is gone; the stream has
            // ended, so the second is certain.
            let _ = writer.join();
        }
        let mut lease = self
            .lease
            .take()
            .expect("conclude runs once, from finish or drop");
        let outcome = self.outcome(&lease);
        self.warnings
            .extend(self.canceller.end(needs_sweep(&outcome)));
        let release_started = Instant::now();
        self.warnings.extend(lease.release());
        self.timings.release = Some(release_started.elapsed());
        let report = self.report(outcome, &lease);
        self.write_record(report)
    }

    /// How the job ended: a stop this process asked for names it (a cancel, a timeout, the
    /// container's stop), then a broken stream, then the output limit; else the exec's exit.
    fn outcome(&mut self, lease: &Lease) -> Outcome {
        let stream_error = self.ended.take().flatten();
        match (self.canceller.reason(), stream_error) {
            (Some(StopReason::Cancelled), _) => Outcome::Cancelled,
            (Some(StopReason::TimedOut(after)), _) => Outcome::TimedOut(after),
            (Some(StopReason::ContainerStopped), _) => self.container_outcome(lease),
            (_, Some(e)) => Outcome::Failed(e),
            (Some(StopReason::OutputLimit), None) => Outcome::Failed(Error::LineTooLong {
                limit: self.lines.max_line(),
            }),
            (None, None) => self.exit_outcome(lease),
        }
    }

    /// The report of a concluded job. What the engine said reaches the caller only redacted: an
    /// engine or proxy may quote a request of this job (its exec's env) in an error or a
    /// warning.
    fn report(&mut self, outcome: Outcome, lease: &Lease) -> JobReport {
        let outcome = match outcome {
            Outcome::Failed(e) => Outcome::Failed(e.redact(&self.redactor)),
            other => other,
        };
        let warnings = std::mem::take(&mut self.warnings)
            .into_iter()
            .map(|w| self.redactor.redact(&w).into_owned())
            .collect();
        JobReport {
            outcome,
            container_id: lease.id().to_string(),
            container_name: lease.name().to_string(),
            image: std::mem::take(&mut self.image),
            config_hash: std::mem::take(&mut self.config_hash),
            stderr_tail: self.stderr.text(&self.redactor),
            timings: self.timings.clone(),
            warnings,
            redactor: self.redactor.clone(),
        }
    }

    /// Writes the job's record (with its redacted stdout tail) and returns the report, with a
    /// warning added if the record could not be written.
    fn write_record(&self, mut report: JobReport) -> JobReport {
        let stdout = self.stdout.text(&self.redactor);
        if let Err(e) = records::write(&self.record, &report, &stdout, &self.redactor) {
            report.warnings.push(format!(
                "the job record was not written: {}",
                self.redactor.redact(&e.to_string())
            ));
        }
        report
    }

    /// The outcome of an exec whose stream ended by itself.
    fn exit_outcome(&self, lease: &Lease) -> Outcome {
        let give_up = Instant::now() + EXIT_CODE_GRACE;
        let killed_grace = Instant::now() + Duration::from_millis(300);
        loop {
            let exit = match self.engine.exec_inspect(&self.exec_id) {
                Ok(i) => i.exit_code,
                Err(e) => return Outcome::Failed(e),
            };
            // The container first: when it died, the exec's code says less than the container's.
            let container = match self.engine.inspect_container(lease.id()) {
                Ok(c) => c,
                Err(e) => return Outcome::Failed(e),
            };
            if !container.state.running {
                let code = container.state.exit_code;
                return Outcome::ContainerDied {
                    exit_code: Some(code),
                    oom_killed: container.state.oom_killed
                        || (code == 137 && container.host_config.memory > 0),
                };
            }
            match exit {
                Some(code @ (126 | 127)) => return Outcome::CommandNotFound { code },
                // A SIGKILLed exec in a container that is being killed: the exec's end reaches
                // us before the engine marks the container stopped, so look again briefly
                // before blaming the exec alone.
                Some(137) if Instant::now() < killed_grace => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Some(137) => {
                    let oom = container.state.oom_killed
                        || (container.host_config.memory > 0 && self.hit_memory_limit(lease));
                    return Outcome::Killed { code: 137, oom };
                }
                Some(code) => return Outcome::Exited(code),
                None if Instant::now() >= give_up => {
                    return Outcome::Failed(Error::Protocol {
                        call: format!("GET /exec/{}/json", self.exec_id),
                        detail: format!(
                            "the exit code was still unknown {EXIT_CODE_GRACE:?} after the output ended"
                        ),
                    })
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Job {
    /// The outcome of a job whose container stopped under it while its stream stayed open
    /// (gVisor): the container's exit. The exec's own record is of no help: the engine drops it
    /// with the sandbox.
    fn container_outcome(&self, lease: &Lease) -> Outcome {
        match self.engine.inspect_container(lease.id()) {
            Ok(c) if !c.state.running => {
                let code = c.state.exit_code;
                Outcome::ContainerDied {
                    exit_code: Some(code),
                    oom_killed: c.state.oom_killed || (code == 137 && c.host_config.memory > 0),
                }
            }
            Ok(_) => self.exit_outcome(lease),
            Err(e) => Outcome::Failed(e),
        }
    }

    /// Whether a SIGKILLed exec hit the memory limit. The engine sets `State.OOMKilled` only
    /// when the container itself stops, so for an exec the cgroup's peak usage is the witness:
    /// it reaches the limit only when the kernel had to reclaim or kill (cgroup v1; on v2 the
    /// engine reports no peak and the outcome stays "most likely OOM").
    fn hit_memory_limit(&self, lease: &Lease) -> bool {
        self.engine
            .container_memory(lease.id())
            .is_ok_and(|m| m.limit > 0 && m.max_usage.is_some_and(|peak| peak >= m.limit))
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if self.lease.is_some() {
            self.abandon();
            let _ = self.conclude();
        }
    }
}

/// Whether the job's processes must be killed after its exec ended. In a persistent container
/// the job's command ran under `kill.sh`, which killed what it left behind before exiting with
/// the command's status. Kill when that may not have happened: the exec died of a signal (the
/// job may have killed its `kill.sh`), or the stream broke and the job may still be running.
fn needs_sweep(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Exited(code) => *code >= 128,
        Outcome::Killed { .. } | Outcome::Failed(_) => true,
        _ => false,
    }
}

/// Writes the job's stdin on its own thread, then half-closes it: a process may print before it
/// has read all its input, and with both directions on one thread an 8 MiB prompt would deadlock
/// against a full output pipe.
fn spawn_writer(mut input: ExecInput, stdin: Vec<u8>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("herdctl-job-stdin".into())
        .spawn(move || {
            // A failed write means the process exited or the job was cancelled; the outcome is
            // read from the engine, not from here.
            if input.write_all(&stdin).is_ok() {
                let _ = input.close();
            }
        })
        .expect("spawning a thread fails only when the process is out of threads or memory")
}

fn spawn_watchdog(canceller: Canceller, after: Duration) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("herdctl-job-deadline".into())
        .spawn(move || {
            // The job drops the sender when it ends: Disconnected means "over, stand down".
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(after) {
                let _ = canceller.stop(StopReason::TimedOut(after));
            }
        })
        .expect("spawning a thread fails only when the process is out of threads or memory");
    tx
}

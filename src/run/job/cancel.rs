//! Cancelling a running job from any thread, and killing what a job left behind.
//!
//! No engine API kills an exec, and an exec'd process outlives the connection that started it. So a
//! cancel kills the job's processes itself: an ephemeral job's whole container (nothing else runs
//! there), or, in a persistent container shared with other jobs, exactly the processes that carry
//! the job's own group id (see `group.rs` and `kill.sh`). A job in a persistent container runs
//! under `kill.sh` too, which kills what the job's command left behind when it exits.

use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use super::group::JobGroup;
use crate::engine::{Engine, ExecAbort, ExecSpec};
use crate::labels::Mode;
use crate::{Error, Result};

/// `kill.sh` without its comment lines: it travels as an argument of every job in a persistent
/// container, where `ps` shows it.
static KILL_SCRIPT: LazyLock<String> = LazyLock::new(|| {
    include_str!("kill.sh")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
});

/// The argv that runs a job's `argv` in a persistent container: `kill.sh` in `run` mode, which
/// runs it and then kills the processes it left behind (found by `gid`), keeping its exit status.
pub(crate) fn run_argv(gid: u32, argv: &[String]) -> Vec<String> {
    let mut wrapped = vec![
        "sh".to_string(),
        "-c".to_string(),
        KILL_SCRIPT.clone(),
        "sh".to_string(),
        "run".to_string(),
        gid.to_string(),
    ];
    wrapped.extend(argv.iter().cloned());
    wrapped
}

/// Why a job was stopped before it ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    Cancelled,
    TimedOut(Duration),
    /// The job's output broke a limit (a line too long): it is stopped, the outcome says why.
    OutputLimit,
    /// The container stopped under a job whose stream stays open (gVisor's exec outlives its
    /// sandbox): the outcome is read from the container.
    ContainerStopped,
}

/// How a job's output is ending, as far as a cancel cares.
#[derive(Debug, Default)]
struct Ending {
    /// The output reached its end by itself: there is nothing left to stop.
    ended: bool,
    /// The stream was closed by us: it will not end by itself any more.
    aborted: bool,
    /// How long a cancel waits for the end before killing; zero until an agent's `result`.
    grace: Duration,
}

/// Cancels one job. Cheap to clone and `Send`: hand it to the thread that decides to cancel.
#[derive(Clone, Debug)]
pub struct Canceller {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    reason: Mutex<Option<StopReason>>,
    /// How the job's output is ending; `settled` wakes a cancel waiting out its grace.
    ending: Mutex<Ending>,
    settled: Condvar,
    engine: Engine,
    container_id: String,
    mode: Mode,
    job_id: String,
    user: String,
    /// The job's group id in a persistent container, claimed until the job is over; `None` in an
    /// ephemeral one, and once released (a late cancel then has nothing left to kill).
    group: Mutex<Option<JobGroup>>,
    abort: ExecAbort,
}

impl Canceller {
    pub(crate) fn new(
        engine: Engine,
        container_id: String,
        mode: Mode,
        job_id: String,
        user: String,
        group: Option<JobGroup>,
        abort: ExecAbort,
    ) -> Canceller {
        Canceller {
            inner: Arc::new(Inner {
                reason: Mutex::new(None),
                ending: Mutex::new(Ending::default()),
                settled: Condvar::new(),
                engine,
                container_id,
                mode,
                job_id,
                user,
                group: Mutex::new(group),
                abort,
            }),
        }
    }

    /// Stops the job: within about a second and a half no process it started remains, and its
    /// outcome is [`crate::Outcome::Cancelled`]. Calling it again, or after the job ended, does
    /// nothing. Blocks while the processes are killed.
    ///
    /// Once an agent job has seen the agent's `result`, a cancel first gives the job a short grace
    /// (`agent::AFTER_RESULT_GRACE`) to end by itself; if it does, nothing is killed.
    ///
    /// An error means the processes could not be confirmed gone (the engine went away, the image
    /// has no `sh` for the kill, or a process outlived SIGKILL); the job's stream is closed all
    /// the same.
    pub fn cancel(&self) -> Result<()> {
        let ending = self.ending();
        let grace = ending.grace;
        // Waits while the job may still end by itself: not ended, stream not aborted.
        drop(
            self.inner
                .settled
                .wait_timeout_while(ending, grace, |e| !e.ended && !e.aborted)
                .unwrap_or_else(|p| p.into_inner()),
        );
        self.stop(StopReason::Cancelled)
    }

    /// Closes the job's output stream, so a reader blocked on it returns at once.
    pub(crate) fn abort_stream(&self) {
        self.ending().aborted = true;
        self.inner.settled.notify_all();
        self.inner.abort.abort();
    }

    /// Records that the job's output reached its end by itself. A cancel after that is a no-op
    /// (the outcome stays the job's own): herdctl cancels every job it stops reading at its
    /// `result`, and killing a finished job's processes cost a needless exec that also holds up
    /// the engine's other calls on the container for tens of milliseconds.
    pub(crate) fn mark_ended(&self) {
        self.ending().ended = true;
        self.inner.settled.notify_all();
    }

    /// From now on, [`Canceller::cancel`] gives the job `grace` to end by itself before killing
    /// it. herdctl cancels (`return()` on the messages) as soon as it sees the agent's `result`,
    /// when the agent is about to exit anyway.
    pub(crate) fn set_grace(&self, grace: Duration) {
        self.ending().grace = grace;
    }

    fn ending(&self) -> MutexGuard<'_, Ending> {
        // Plain flags: a panic elsewhere cannot leave them inconsistent.
        self.inner.ending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job's container stopped (see `isolation/watch.rs`): unless the job ended or was
    /// stopped already, its stream is closed and its outcome read from the container. Nothing is
    /// left to kill.
    pub(crate) fn container_stopped(&self) {
        {
            let mut current = self.inner.reason.lock().unwrap_or_else(|p| p.into_inner());
            if current.is_some() || self.ending().ended {
                return;
            }
            *current = Some(StopReason::ContainerStopped);
        }
        self.abort_stream();
    }

    pub(crate) fn reason(&self) -> Option<StopReason> {
        *self.inner.reason.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn stop(&self, reason: StopReason) -> Result<()> {
        {
            let mut current = self.inner.reason.lock().unwrap_or_else(|p| p.into_inner());
            if current.is_some() || self.ending().ended {
                return Ok(());
            }
            *current = Some(reason);
        }
        let killed = match self.inner.mode {
            // Nothing but this job runs in an ephemeral container: kill all of it at once. A
            // SIGKILLed job prints nothing more, so close the stream first: the engine does not
            // finish a kill while output it still has to copy to an unread socket piles up.
            Mode::Ephemeral => {
                self.inner.abort.abort();
                self.inner
                    .engine
                    .kill_container(&self.inner.container_id, "KILL")
                    .map(|_| ())
            }
            Mode::Persistent => self.kill_job_processes(),
        };
        if killed.is_err() {
            // The processes may live on, but the caller gets its stream back now.
            self.inner.abort.abort();
        }
        killed
    }

    /// The job is over: kills what it left behind when `sweep` says its own `kill.sh` may not
    /// have (see [`super::Job`]'s conclusion), then releases its group id. Returns a warning when
    /// leftovers could not be confirmed gone. Nothing to do in an ephemeral container, whose
    /// stop kills everything in it.
    pub(crate) fn end(&self, sweep: bool) -> Option<String> {
        let swept = if sweep && self.reason().is_none() && self.inner.mode == Mode::Persistent {
            self.kill_job_processes().err()
        } else {
            None
        };
        drop(self.group().take());
        swept.map(|e| format!("processes the job left behind may still run: {e}"))
    }

    fn group(&self) -> MutexGuard<'_, Option<JobGroup>> {
        // An id or none: a panic elsewhere cannot leave it inconsistent.
        self.inner.group.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn kill_job_processes(&self) -> Result<()> {
        // Held while killing: the id is released (and may go to another job) only afterwards.
        let group = self.group();
        let Some(gid) = group.as_ref().map(JobGroup::gid) else {
            // Released: the job is over and its end killed what it left.
            return Ok(());
        };
        let gid = gid.to_string();
        let mut spec = ExecSpec::new(["sh", "-c", KILL_SCRIPT.as_str(), "sh", "kill", &gid]);
        // The job's uid may signal its processes; the user's own group (not the job's) keeps the
        // script's own processes out of what it kills. Root without capabilities could not
        // signal another uid.
        spec.user = Some(self.inner.user.clone());
        let out = self
            .inner
            .engine
            .exec_run(&self.inner.container_id, &spec, b"")
            .map_err(|e| Error::KillFailed {
                job: self.inner.job_id.clone(),
                detail: e.to_string(),
            })?;
        match out.exit_code {
            0 => Ok(()),
            code => Err(Error::KillFailed {
                job: self.inner.job_id.clone(),
                detail: format!(
                    "the kill script exited with {code}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            }),
        }
    }
}

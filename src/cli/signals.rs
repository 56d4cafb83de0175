//! SIGINT, SIGTERM and SIGHUP during `run`: cancel the job the way the API's cancel does (its
//! processes killed, its container released), then exit 128 + the signal.
//!
//! Without this the CLI died on Ctrl-C and left the job running: an exec outlives the connection
//! that started it. signal-hook turns the signals into values on a thread of ours (no code runs in
//! the handler itself), and that thread decides by the job's phase:
//! - before the job starts (stdin still being read), nothing exists yet: exit at once;
//! - while the job starts (pull, create, exec), remember the signal; the job is cancelled as soon
//!   as it exists;
//! - while it runs, cancel it on another thread; the main thread sees the output end, releases
//!   the container, writes the record and exits with the signal's code.
//!
//! A second signal exits at once, but only after the kill was sent (so the job's processes are
//! gone), skipping the release.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use herdctl_container::Canceller;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Where the job is, as far as a signal cares.
enum Phase {
    /// Nothing exists yet.
    Preparing,
    /// The runner is acquiring the container and starting the exec.
    Starting,
    /// The job runs; this cancels it.
    Running(Canceller),
}

struct State {
    phase: Phase,
    /// The first signal received.
    first: Option<i32>,
    /// The cancel's kill call returned (or there was nothing to kill).
    kill_sent: bool,
}

/// The signal watch of one `run`. Cheap to clone.
#[derive(Clone)]
pub struct Watch {
    inner: Arc<(Mutex<State>, Condvar)>,
}

/// How long a second signal waits for the first one's kill before exiting anyway: the kill is one
/// engine call (an exec for a persistent container), bounded by the engine's call timeout.
const KILL_WAIT: Duration = Duration::from_secs(10);

impl Watch {
    /// Installs the handlers for SIGINT, SIGTERM and SIGHUP; from now on they do not kill the
    /// process by themselves.
    pub fn install() -> std::io::Result<Watch> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        let watch = Watch {
            inner: Arc::new((
                Mutex::new(State {
                    phase: Phase::Preparing,
                    first: None,
                    kill_sent: false,
                }),
                Condvar::new(),
            )),
        };
        let on_thread = watch.clone();
        std::thread::Builder::new()
            .name("herdctl-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    on_thread.on_signal(signal);
                }
            })?;
        Ok(watch)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Plain flags: a panic elsewhere cannot leave them inconsistent.
        self.inner.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job is being started: a signal now is remembered, not fatal.
    pub fn starting(&self) {
        self.state().phase = Phase::Starting;
    }

    /// The job runs: a signal cancels it. Cancels it at once when a signal came while it started.
    pub fn running(&self, canceller: Canceller) {
        let mut state = self.state();
        state.phase = Phase::Running(canceller.clone());
        if state.first.is_some() {
            drop(state);
            self.cancel_on_a_thread(canceller);
        }
    }

    /// The exit code for a job that ended cancelled: 128 + the first signal, if one came.
    pub fn exit_code(&self) -> Option<u8> {
        self.state().first.map(code_of)
    }

    fn on_signal(&self, signal: i32) {
        let mut state = self.state();
        match state.first {
            None => {
                state.first = Some(signal);
                match &state.phase {
                    Phase::Preparing => std::process::exit(code_of(signal).into()),
                    Phase::Starting => {
                        eprintln!(
                            "herdctl-container: {}: the job is cancelled as soon as it has started (again to exit at once)",
                            name_of(signal)
                        );
                    }
                    Phase::Running(canceller) => {
                        let canceller = canceller.clone();
                        drop(state);
                        eprintln!(
                            "herdctl-container: {}: cancelling the job (again to exit at once)",
                            name_of(signal)
                        );
                        self.cancel_on_a_thread(canceller);
                    }
                }
            }
            Some(first) => {
                if matches!(state.phase, Phase::Running(_)) {
                    // Exit only once the job's processes were told to die.
                    let (_, woken) = &*self.inner;
                    let (s, _) = woken
                        .wait_timeout_while(state, KILL_WAIT, |s| !s.kill_sent)
                        .unwrap_or_else(|p| p.into_inner());
                    drop(s);
                }
                std::process::exit(code_of(first).into());
            }
        }
    }

    fn cancel_on_a_thread(&self, canceller: Canceller) {
        let watch = self.clone();
        let spawned = std::thread::Builder::new()
            .name("herdctl-cancel".into())
            .spawn(move || {
                if let Err(e) = canceller.cancel() {
                    eprintln!("herdctl-container: {e}");
                }
                watch.state().kill_sent = true;
                watch.inner.1.notify_all();
            });
        if spawned.is_err() {
            // No thread to be had: the second signal must not wait for a kill that never comes.
            self.state().kill_sent = true;
        }
    }
}

/// 128 + the signal number, as shells report a process killed by it.
fn code_of(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(130)
}

fn name_of(signal: i32) -> &'static str {
    match signal {
        SIGINT => "interrupted (SIGINT)",
        SIGTERM => "terminated (SIGTERM)",
        SIGHUP => "hung up (SIGHUP)",
        _ => "signalled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_shells() {
        assert_eq!(code_of(SIGINT), 130);
        assert_eq!(code_of(SIGTERM), 143);
        assert_eq!(code_of(SIGHUP), 129);
    }
}

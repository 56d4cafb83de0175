//! Ending a job whose container died, under a runtime that does not end its exec.
//!
//! Under runc an exec's output stream ends when its container dies (an OOM kill, `docker kill`),
//! and the job's outcome follows. Under gVisor it does not: the sandbox is gone, `runsc exec`
//! loses it (`urpc method "containerManager.WaitPID" failed: EOF`), and the engine keeps the
//! exec's stream open for ever (measured with Debian's 2022 runsc and Docker 20.10; `docker exec`
//! hangs the same way). So for a job under a sandbox runtime a thread waits for the container to
//! stop and then closes the job's stream, whose outcome is then read from the container
//! (`ContainerDied`, with its exit code and OOM flag), as under runc.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use super::Canceller;
use crate::engine::{Engine, WaitCondition};
use crate::Error;

/// How long one wait on the engine lasts before the thread looks whether the job is over: the
/// longest a finished job's thread outlives it (a wait that sees the container stop returns at
/// once, so a death is noticed within milliseconds).
const TURN: Duration = Duration::from_secs(1);

/// Watches `container` until the returned sender is dropped (the job is over) and tells the
/// job's `canceller` when the container stopped.
pub(crate) fn watch_container(
    engine: Engine,
    container: String,
    canceller: Canceller,
) -> mpsc::Sender<()> {
    let (over, rx) = mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("herdctl-job-container-watch".into())
        .spawn(move || loop {
            match engine.wait_container(&container, WaitCondition::NotRunning, Some(TURN)) {
                Ok(_) | Err(Error::NotFound { .. }) => {
                    canceller.container_stopped();
                    return;
                }
                Err(Error::Timeout { .. }) => {
                    if !matches!(rx.try_recv(), Err(mpsc::TryRecvError::Empty)) {
                        return;
                    }
                }
                // The engine did not answer: try again a turn later, unless the job is over.
                Err(_) => {
                    if !matches!(rx.recv_timeout(TURN), Err(RecvTimeoutError::Timeout)) {
                        return;
                    }
                }
            }
        });
    // Without the thread a dead sandbox leaves the job waiting on its stream, as a job with no
    // deadline would wait on a silent agent: not worth failing a job that may well end.
    drop(spawned);
    over
}

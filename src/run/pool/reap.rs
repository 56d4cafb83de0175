//! What processes that are gone left of their pools: idle containers of an owner whose lock is
//! free are removed; a container whose `warm` or `retire` claim was let go is removed (no job
//! ever ran in it); one whose `job` claim was let go while it still runs lost its process
//! mid-job and is stopped (kept for inspection, like any ephemeral container after its job).
//! Run by `gc` and by the first pool of each process.

use std::path::Path;

use super::files::{self, Claim, ClaimState, Held, Purpose};
use crate::engine::{ContainerSummary, Engine};
use crate::labels;
use crate::run::owner::{self, Liveness};
use crate::run::prune_report::PruneReport;
use crate::Result;

/// One list call, then one engine call per container to act on.
pub(crate) fn reap(engine: &Engine, state_dir: &Path) -> Result<PruneReport> {
    let found =
        engine.list_containers(&[(labels::MANAGED, Some("1")), (labels::POOL, None)], true)?;
    let mut report = PruneReport::default();
    let mut me: Option<std::sync::Arc<owner::Owner>> = None;
    for c in &found {
        let Some(name) = c.names.first().map(|n| n.trim_start_matches('/')) else {
            continue;
        };
        let owner = c.labels.get(labels::POOL).map_or("", String::as_str);
        let running = matches!(
            c.state.as_str(),
            "running" | "created" | "restarting" | "paused"
        );
        match files::claim_state(state_dir, name) {
            ClaimState::Held => {}
            ClaimState::Free(held) => reap_released(engine, c, name, running, held, &mut report),
            ClaimState::None if running => match owner::liveness(state_dir, owner) {
                Liveness::Alive | Liveness::Unknown => {}
                // The dead owner's lock stays held (`_dead`) while its container goes.
                Liveness::Dead(_dead) => {
                    let me = match &me {
                        Some(m) => m.clone(),
                        None => me.insert(owner::current(state_dir)?.0).clone(),
                    };
                    retire_idle(engine, state_dir, c, name, &me, &mut report);
                }
            },
            // Stopped and never claimed: retention removes it (`Role::Dead`).
            ClaimState::None => {}
        }
    }
    let names = found
        .iter()
        .filter_map(|c| c.names.first().map(|n| n.trim_start_matches('/')));
    // The dead owners' lock files go with the owner reaper's sweep, once no running pool
    // container names them.
    files::sweep_claims(state_dir, &files::claim_paths(state_dir, names));
    Ok(report)
}

/// A container whose claim its holder let go (the caller now holds the claim file, `held`):
/// what the claim was for says whether a job ever ran in it. One a job took is stopped if it
/// still runs (its process is gone mid-job, and the container is kept for inspection); one
/// that was being warmed or retired never ran a job, so it is removed, and its claim file with
/// it.
fn reap_released(
    engine: &Engine,
    c: &ContainerSummary,
    name: &str,
    running: bool,
    mut held: Held,
    report: &mut PruneReport,
) {
    match held.purpose() {
        Some(Purpose::Job) => {
            if running {
                // Its job's process is gone. The tombstone stays with the container, so
                // its warmer never hands it out again.
                match engine.stop_container(&c.id, 2) {
                    Ok(_) => report.stopped.push(c.id.clone()),
                    Err(e) => report.warnings.push(format!(
                        "stop pool container {name} (its job's process is gone): {e}"
                    )),
                }
            }
        }
        _ => match engine.remove_container(&c.id, true) {
            Ok(_) => {
                report.removed.push(c.id.clone());
                held.forget();
            }
            Err(e) => {
                report
                    .warnings
                    .push(format!("remove pool container {name}: {e}"));
            }
        },
    }
}

/// An idle container of a dead owner's pool: removed under a `retire` claim taken first, since
/// a live process may be taking it from the pool right now (then the claim is not had, and the
/// container is left to that process).
fn retire_idle(
    engine: &Engine,
    state_dir: &Path,
    c: &ContainerSummary,
    name: &str,
    me: &owner::Owner,
    report: &mut PruneReport,
) {
    match Claim::take(state_dir, name, Purpose::Retire, me.id()) {
        Ok(Some(claim)) => match engine.remove_container(&c.id, true) {
            Ok(_) => {
                report.removed.push(c.id.clone());
                claim.release();
            }
            Err(e) => {
                report
                    .warnings
                    .push(format!("remove pool container {name}: {e}"));
            }
        },
        Ok(None) => {}
        Err(e) => {
            report
                .warnings
                .push(format!("claim pool container {name}: {e}"));
        }
    }
}

//! Which containers retention removes, and removing them. The choice ([`choose_removals`],
//! [`choose_gc`]) is pure, with no engine calls, and unit-tested as such; `prune`, `gc` and the
//! prune after each job list the containers and remove the chosen ones through the engine.
//!
//! The rule (from the design seed): keep the newest `keep` containers of each agent, by creation
//! time; of the older ones remove those that are stopped and not used by an in-flight job. A running
//! container is never removed, even past the limit: it may be another process's job, and the next
//! prune after it stops will take it. Agents are compared by their exact label value, so agent
//! `foo` never touches agent `foo-bar`'s containers (herdctl's name-prefix filter did).
//!
//! Running ephemeral containers are a different matter: one runs only while its job does, so one
//! that runs with no job in it was leaked, by a process that died (or whose stop failed).
//! `gc` (and a process's first runner) stops those whose owner is proven gone, by a lock file
//! per process under the state directory that the kernel releases when the process dies; they are
//! then stopped containers like any other.
//!
//! Warm pool containers count apart: an idle one (or one being warmed or retired) is neither
//! counted nor removed here (its pool and `gc` see to it), and one that stopped before any job
//! took it is removed whatever the limit, having nothing to inspect. One that a job took is an
//! ordinary ephemeral container.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use crate::engine::{ContainerSummary, RemoveOutcome};
use crate::labels::{self, Mode};
use crate::run::owner::{self, Liveness, Owner};
use crate::run::pool::{self, Role};
pub use crate::run::prune_report::PruneReport;
use crate::run::shared::Shared;
use crate::{Error, Result};

/// A container in state `created` this young may be another process's, between its create and
/// its start: treat it as running.
const STARTING_GRACE: Duration = Duration::from_secs(300);

/// One container as retention sees it: what the list call and this process know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The engine's container id.
    pub id: String,
    /// The agent's qualified name (the `dev.herdctl.agent` label).
    pub agent: String,
    /// Creation time in unix milliseconds (the `dev.herdctl.created` label).
    pub created_ms: u64,
    /// Whether the engine reports it running (or restarting, or paused): such a container is kept.
    pub running: bool,
    /// Whether a job of this process is using it right now: such a container is kept.
    pub in_use: bool,
}

/// The ids to remove so that each agent keeps at most `keep` containers, oldest first.
///
/// Ties in creation time are broken by id, so two processes looking at the same list choose the
/// same containers (both then try to remove them; the loser sees "already gone", which is fine).
///
/// ```
/// use herdctl_container::retention::{choose_removals, Candidate};
/// let c = |id: &str, t| Candidate { id: id.into(), agent: "a".into(), created_ms: t, running: false, in_use: false };
/// let all = [c("old", 1), c("mid", 2), c("new", 3)];
/// assert_eq!(choose_removals(&all, 2), vec!["old".to_string()]);
/// ```
pub fn choose_removals(candidates: &[Candidate], keep: usize) -> Vec<String> {
    let mut by_agent: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for c in candidates {
        by_agent.entry(c.agent.as_str()).or_default().push(c);
    }
    let mut removals = Vec::new();
    for (_, mut group) in by_agent {
        if group.len() <= keep {
            continue;
        }
        // Newest first; the first `keep` stay whatever their state.
        group.sort_by(|a, b| {
            b.created_ms
                .cmp(&a.created_ms)
                .then_with(|| b.id.cmp(&a.id))
        });
        removals.extend(
            group[keep..]
                .iter()
                .filter(|c| !c.running && !c.in_use)
                .map(|c| c.id.clone()),
        );
    }
    removals
}

/// The ids a garbage collection removes: every stopped, unused container of an agent that is not in
/// `live_agents`, plus what [`choose_removals`] picks for the live ones.
pub fn choose_gc(candidates: &[Candidate], live_agents: &[String], keep: usize) -> Vec<String> {
    let (live, gone): (Vec<Candidate>, Vec<Candidate>) = candidates
        .iter()
        .cloned()
        .partition(|c| live_agents.iter().any(|a| a == &c.agent));
    let mut removals: Vec<String> = gone
        .into_iter()
        .filter(|c| !c.running && !c.in_use)
        .map(|c| c.id)
        .collect();
    removals.extend(choose_removals(&live, keep));
    removals
}

/// Prunes of one agent in this process: how many were asked for, how many a finished prune
/// covered, and whether one is running.
#[derive(Default)]
struct Prunes {
    asked: u64,
    covered: u64,
    running: bool,
}

/// Prunes by engine address and agent.
type PrunesByAgent = HashMap<(String, String), Prunes>;

/// The prunes of each agent this process pruned after a job, by engine and agent.
static PRUNES: LazyLock<(Mutex<PrunesByAgent>, Condvar)> = LazyLock::new(Default::default);

/// [`prune`] after a job's end. Jobs of one agent that end at once share prunes: while one
/// runs, the others wait for the next, which starts when it ends and sees every container
/// stopped meanwhile. Each prune lists the agent's containers and removes the same victims, so
/// without this 50 jobs ending together make 50 lists and up to 50 tries at each victim
/// (measured: 3 to 5 removes per job where 1 is needed). When it returns, a prune that began
/// after this job's container stopped has ended, as without sharing; warnings reach the job
/// whose thread ran the prune.
pub(crate) fn prune_after_job(shared: &Shared, agent: &str, keep: usize) -> Result<PruneReport> {
    let key = (shared.engine.host().address(), agent.to_string());
    let Some(mine) = ask_for_prune(&key) else {
        return Ok(PruneReport::default());
    };
    // Should a prune panic, the waiters must not wait for ever.
    let _unwinding = Unwinding(&key);
    let mut report = PruneReport::default();
    loop {
        let covers = prunes().get(&key).map_or(mine, |p| p.asked);
        let pruned = prune(shared, agent, keep);
        let last = record_covered(&key, covers);
        match pruned {
            Ok(r) => {
                report.removed.extend(r.removed);
                report.warnings.extend(r.warnings);
            }
            Err(e) if last => return Err(e),
            Err(e) => report
                .warnings
                .push(format!("retention for agent {agent}: {e}")),
        }
        if last {
            return Ok(report);
        }
    }
}

/// The prunes of every agent, locked. Plain counts: a panic elsewhere cannot leave them
/// half-made.
fn prunes() -> MutexGuard<'static, PrunesByAgent> {
    PRUNES.0.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts this job's ask for a prune of `key`'s agent. With one running already, it waits until
/// a prune that covers this ask has ended (or the running one panicked) and returns `None`; else
/// it marks a prune running, for the caller to run, and returns this ask's number.
fn ask_for_prune(key: &(String, String)) -> Option<u64> {
    let changed = &PRUNES.1;
    let mut all = prunes();
    let entry = all.entry(key.clone()).or_default();
    entry.asked += 1;
    let mine = entry.asked;
    if entry.running {
        // Wait for a prune that starts after this one asked (the running one may have listed
        // before this job's container stopped).
        while all.get(key).is_some_and(|p| p.running && p.covered < mine) {
            all = changed.wait(all).unwrap_or_else(|p| p.into_inner());
        }
        return None;
    }
    entry.running = true;
    drop(all);
    Some(mine)
}

/// Records that a prune covered the asks up to `covers` and wakes the waiters; whether it was
/// the last one needed (no ask came while it ran), in which case no prune is running any more.
fn record_covered(key: &(String, String), covers: u64) -> bool {
    let changed = &PRUNES.1;
    let mut all = prunes();
    let entry = all.entry(key.clone()).or_default();
    entry.covered = covers;
    let last = entry.asked == covers;
    if last {
        // In the same lock as the check: a job asking after this starts a prune of its own.
        // The entry stays (one per agent), so the counts never start over under a waiter.
        entry.running = false;
    }
    changed.notify_all();
    drop(all);
    last
}

/// Marks the prune of an agent no longer running should the thread running it panic, and wakes
/// the waiters, who would otherwise wait for ever.
struct Unwinding<'a>(&'a (String, String));

impl Drop for Unwinding<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let (map, changed) = &*PRUNES;
            if let Some(p) = map
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(self.0)
            {
                p.running = false;
            }
            changed.notify_all();
        }
    }
}

/// Applies [`choose_removals`] to one agent: one list call, then one remove per victim.
pub(crate) fn prune(shared: &Shared, agent: &str, keep: usize) -> Result<PruneReport> {
    let filters = [(labels::MANAGED, Some("1")), (labels::AGENT, Some(agent))];
    let found = shared.engine.list_containers(&filters, true)?;
    let (ordinary, mut removals) = by_role(shared, &found);
    removals.extend(choose_removals(&candidates(shared, &ordinary), keep));
    Ok(remove_all(shared, removals, &found))
}

/// Clears what dead processes left of their warm pools ([`pool::reap`]), stops the orphans
/// ([`reap_orphans`]), then applies [`choose_gc`] to every container this project made: one
/// list call for all agents.
pub(crate) fn gc(shared: &Shared, live_agents: &[String], keep: usize) -> Result<PruneReport> {
    // First, so that the owners of the pool containers it removes are swept below.
    let pooled = pool::reap(&shared.engine, &shared.options.state_dir);
    // Without an owner lock (a file system without flock) there is nothing to prove: say so
    // and collect the rest.
    let reaped = reap_orphans(shared).or_else(|e| match e {
        Error::Io { .. } => Ok(PruneReport {
            warnings: vec![format!("stop orphaned containers: {e}")],
            ..PruneReport::default()
        }),
        other => Err(other),
    })?;
    let found = shared
        .engine
        .list_containers(&[(labels::MANAGED, Some("1"))], true)?;
    let (ordinary, mut removals) = by_role(shared, &found);
    removals.extend(choose_gc(&candidates(shared, &ordinary), live_agents, keep));
    let mut report = remove_all(shared, removals, &found);
    report.stopped = reaped.stopped;
    report.warnings.extend(reaped.warnings);
    match pooled {
        Ok(p) => {
            report.removed.extend(p.removed);
            report.stopped.extend(p.stopped);
            report.warnings.extend(p.warnings);
        }
        Err(e) => report
            .warnings
            .push(format!("warm pools of processes that are gone: {e}")),
    }
    Ok(report)
}

/// Stops the running ephemeral containers that no live process owns: those whose owner's lock
/// under this state directory is free (the process died), and this process's own that no job of
/// it is using (a stop that failed). A container whose owner lives, or cannot be judged (no lock
/// file here: another state directory's, or one from before owners were recorded), is left alone.
/// Once every container of a dead owner is stopped, its lock file is removed, unless a running
/// warm pool container still names it ([`labels::POOL`]): its pool's reap needs it to prove the
/// owner gone.
pub(crate) fn reap_orphans(shared: &Shared) -> Result<PruneReport> {
    let state_dir = &shared.options.state_dir;
    let (me, _) = owner::current(state_dir)?;
    // Pool containers carry no owner label: they are listed only to keep their owners' files.
    let filters = [
        (labels::MANAGED, Some("1")),
        (labels::MODE, Some(Mode::Ephemeral.as_str())),
    ];
    let running = shared.engine.list_containers(&filters, false)?;
    let pool_owners: HashSet<&str> = running
        .iter()
        .filter_map(|c| c.labels.get(labels::POOL).map(String::as_str))
        .collect();
    let mut report = PruneReport::default();
    let mut unfinished = HashSet::new();
    for (id, containers) in by_owner(&running) {
        let orphaned = if id == me.id() {
            None
        } else {
            match owner::liveness(state_dir, id) {
                Liveness::Dead(orphaned) => Some(orphaned),
                Liveness::Alive | Liveness::Unknown => continue,
            }
        };
        let ours = orphaned.is_none();
        let all_stopped = stop_unused(shared, &me, ours, &containers, &mut report);
        match orphaned {
            Some(orphaned) if all_stopped && !pool_owners.contains(id) => orphaned.forget(),
            Some(_) => {
                unfinished.insert(id.to_string());
            }
            None if !all_stopped => me.set_leaked(),
            None => {}
        }
    }
    unfinished.extend(pool_owners.iter().map(|o| o.to_string()));
    owner::sweep(state_dir, &unfinished);
    Ok(report)
}

/// The running ephemeral containers by the process that owns them ([`labels::OWNER`]), in the
/// order of the owners' ids; warm pool containers, which carry no owner label, are left out.
fn by_owner(running: &[ContainerSummary]) -> BTreeMap<&str, Vec<&ContainerSummary>> {
    let mut by_owner: BTreeMap<&str, Vec<&ContainerSummary>> = BTreeMap::new();
    for c in running {
        if let Some(o) = c.labels.get(labels::OWNER) {
            by_owner.entry(o.as_str()).or_default().push(c);
        }
    }
    by_owner
}

/// Stops one owner's running containers, except, when the owner is this process (`ours`), those
/// a job of it is using; whether every stop it tried succeeded (a failure is a warning).
fn stop_unused(
    shared: &Shared,
    me: &Owner,
    ours: bool,
    containers: &[&ContainerSummary],
    report: &mut PruneReport,
) -> bool {
    let mut all_stopped = true;
    for c in containers {
        let name = c.names.first().map(|n| n.trim_start_matches('/'));
        let ours_in_use =
            ours && (name.is_some_and(|n| me.is_in_flight(n)) || shared.is_held(&c.id));
        if ours_in_use {
            continue;
        }
        match shared.engine.stop_container(&c.id, 2) {
            Ok(_) => report.stopped.push(c.id.clone()),
            Err(e) => {
                all_stopped = false;
                report.warnings.push(format!(
                    "stop container {} (no live process owns it): {e}",
                    name.unwrap_or(&c.id)
                ));
            }
        }
    }
    all_stopped
}

/// The ordinary containers (warm pool containers a job took included, with the time it took
/// them), and the ids of pool containers that stopped before any job took them (removed
/// whatever the limit). Idle pool containers are in neither.
fn by_role<'a>(
    shared: &Shared,
    found: &'a [ContainerSummary],
) -> (Vec<(&'a ContainerSummary, Option<u64>)>, Vec<String>) {
    let mut ordinary = Vec::with_capacity(found.len());
    let mut dead = Vec::new();
    for c in found {
        match pool::role(&shared.options.state_dir, c) {
            Role::Ordinary => ordinary.push((c, None)),
            Role::Taken(at) => ordinary.push((c, Some(at))),
            Role::Dead => dead.push(c.id.clone()),
            Role::Idle | Role::Busy => {}
        }
    }
    (ordinary, dead)
}

fn candidates(shared: &Shared, found: &[(&ContainerSummary, Option<u64>)]) -> Vec<Candidate> {
    let now_ms = labels::now_ms();
    found
        .iter()
        .filter_map(|&(c, taken_ms)| {
            let agent = c.labels.get(labels::AGENT)?.clone();
            // The label is ours and exact; the engine's own `Created` (seconds) is the fallback
            // for a container whose label was tampered with.
            let created_ms = taken_ms.unwrap_or_else(|| {
                c.labels
                    .get(labels::CREATED)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(c.created.max(0) as u64 * 1000)
            });
            let starting = c.state == "created"
                && now_ms.saturating_sub(created_ms) < STARTING_GRACE.as_millis() as u64;
            Some(Candidate {
                id: c.id.clone(),
                agent,
                created_ms,
                running: matches!(c.state.as_str(), "running" | "restarting" | "paused")
                    || starting,
                in_use: shared.is_held(&c.id),
            })
        })
        .collect()
}

fn remove_all(shared: &Shared, ids: Vec<String>, found: &[ContainerSummary]) -> PruneReport {
    let mut report = PruneReport::default();
    for id in ids {
        // Never forced: a container that started since the list answers 409 and stays.
        match shared.engine.remove_container(&id, false) {
            Ok(RemoveOutcome::Removed) => {
                // A pool container's claim goes with it.
                if let Some(c) = found.iter().find(|c| c.id == id) {
                    pool::forget(&shared.options.state_dir, c);
                }
                report.removed.push(id)
            }
            Ok(RemoveOutcome::Gone) => {}
            Err(Error::Conflict { .. }) => {}
            Err(e) => report.warnings.push(format!("remove container {id}: {e}")),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, agent: &str, t: u64) -> Candidate {
        Candidate {
            id: id.into(),
            agent: agent.into(),
            created_ms: t,
            running: false,
            in_use: false,
        }
    }

    #[test]
    fn keeps_the_newest_per_agent() {
        let all: Vec<_> = (0..8).map(|i| c(&format!("c{i}"), "a", i)).collect();
        let mut got = choose_removals(&all, 3);
        got.sort();
        assert_eq!(got, ["c0", "c1", "c2", "c3", "c4"]);
    }

    #[test]
    fn never_removes_running_or_in_use() {
        let mut all: Vec<_> = (0..5).map(|i| c(&format!("c{i}"), "a", i)).collect();
        all[0].running = true;
        all[1].in_use = true;
        let mut got = choose_removals(&all, 1);
        got.sort();
        assert_eq!(got, ["c2", "c3"]);
    }

    #[test]
    fn running_containers_count_towards_the_limit() {
        // The newest is running: it is one of the `keep`, so the older stopped one goes.
        let mut all = vec![c("old", "a", 1), c("new", "a", 2)];
        all[1].running = true;
        assert_eq!(choose_removals(&all, 1), ["old"]);
    }

    #[test]
    fn agents_with_a_common_prefix_are_separate() {
        let all = vec![c("f1", "foo", 1), c("f2", "foo", 2), c("b1", "foo-bar", 0)];
        assert_eq!(choose_removals(&all, 1), ["f1"]);
    }

    #[test]
    fn ties_are_broken_by_id() {
        let all = vec![c("b", "a", 1), c("a", "a", 1), c("c", "a", 1)];
        assert_eq!(choose_removals(&all, 2), ["a"]);
    }

    #[test]
    fn keep_zero_removes_every_stopped_one() {
        let all = vec![c("x", "a", 1), c("y", "a", 2)];
        assert_eq!(choose_removals(&all, 0).len(), 2);
    }

    #[test]
    fn gc_removes_gone_agents_and_applies_the_limit() {
        let mut all = vec![
            c("g1", "gone", 1),
            c("g2", "gone", 2),
            c("l1", "live", 1),
            c("l2", "live", 2),
        ];
        all[1].running = true;
        let mut got = choose_gc(&all, &["live".to_string()], 1);
        got.sort();
        assert_eq!(got, ["g1", "l1"]);
    }
}

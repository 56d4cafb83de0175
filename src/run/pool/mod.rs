//! Warm pools: a fresh container per job at the speed of reuse.
//!
//! A cold ephemeral job spends most of its start in the engine's container create and start
//! (about 150 ms of a 200 ms start, measured). A warm pool does that ahead of need: per agent
//! and config hash, up to N containers created, checked (the inspect against the create body and
//! the exec that reads `/proc/self/status`) and started in the background, with the agent's
//! mounts, labels and security settings, never used by a job. An ephemeral job takes one (a few
//! system calls: see [`files`]) and its replacement is warmed in the background, so the job gets
//! a container no job ran in, at the cost of an exec into a running one. After the job it is
//! stopped and kept like any ephemeral container.
//!
//! The interface is small: [`claim`] (a job's acquire tries the pool first; on a miss the
//! returned [`Taken::going_cold`] holds the refill back while the cold container is made),
//! [`prewarm`], [`close`] and [`close_all`], [`reap`] (`gc` and the first pool of a process:
//! what dead processes left), and [`role`] for retention and listings.
//!
//! Pools live in this process (one per engine, state directory and agent, shared by all its
//! runners), and their containers are visible to every process sharing the state directory:
//! another process may take an idle one when its own pool is empty (the claim is atomic across
//! processes). A pool is retired (its idle containers removed) when its agent's config hash
//! changes, by [`close`] (`Runner::close`), and at exit where the host allows (the CLI and the
//! Node package do); a process that dies leaves its idle containers to the next `gc` or pool
//! start, which removes them once the owner's lock proves it gone.
//!
//! Refills wait while this process is making cold containers for the agent, and briefly after
//! the last acquire (see [`QUIET`]): the engine serialises part of create and start, so a refill
//! racing a burst's cold jobs would only slow them.

mod files;
mod keeper;
mod reap;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::engine::create_models::ContainerCreate;
use crate::engine::{ContainerSummary, Engine};
use crate::labels;
use crate::plan;
use crate::plan::MountPlan;
use crate::run::inside;
use crate::run::isolation;
use crate::run::prune_report::PruneReport;
use crate::{Error, Result};

pub(crate) use files::Claim;
use files::Purpose;
pub(crate) use reap::reap;

use crate::run::owner::{self, Owner};

pub use crate::run::options::MAX_WARM_POOL;

/// How long after the last acquire of an agent a refill waits, so it does not compete with a
/// burst of jobs for the engine. Short next to an agent job (seconds to minutes).
const QUIET: Duration = Duration::from_millis(150);
/// The longest a refill waits for quiet: under a steady stream of claims the pool still refills
/// (it always waits out this process's cold acquires of the agent, though: see `keeper`).
const MAX_DEFER: Duration = Duration::from_secs(2);
/// How long [`close`] waits for a pool's containers to be removed.
const CLOSE_BUDGET: Duration = Duration::from_secs(60);

/// What the pool needs to make containers exactly like a job's own.
pub(crate) struct Want<'a> {
    /// How many idle containers to keep.
    pub target: usize,
    pub agent: &'a str,
    pub sanitized: &'a str,
    pub hash: &'a str,
    /// The job's create body (its labels get the pool's own added).
    pub body: &'a ContainerCreate,
    pub expected: &'a plan::Expected,
    /// What the exec check must find inside; checked when a container is warmed.
    pub inside: inside::Inside,
    /// The job's user, as the check's exec runs.
    pub user: &'a str,
    /// The job's mounts, whose sources' identity ([`labels::MOUNT_IDS`]) must not change
    /// between the warm and the claim.
    pub mounts: &'a MountPlan,
    /// That identity now.
    pub mount_ids: &'a str,
    /// The sandbox runtime a process inside must prove, when the container is warmed.
    pub runtime: Option<&'a isolation::Checked>,
}

/// A pool container a job now holds.
#[derive(Debug)]
pub(crate) struct Claimed {
    pub id: String,
    pub name: String,
    /// Held for the job's life; a tombstone afterwards.
    pub claim: Claim,
    /// What the checks at warm time reported (a limit the engine dropped), as a fresh
    /// container's job would hear.
    pub warnings: Vec<String>,
}

/// What [`claim`] found.
pub(crate) struct Taken {
    pub claimed: Option<Claimed>,
    /// A problem of the pool worth the job's warnings (a refill that failed).
    pub warning: Option<String>,
    pool: Option<Arc<Pool>>,
}

impl Taken {
    /// For a miss: holds the refill back until the returned guard is dropped, so it does not
    /// compete with the cold container the job is about to make.
    pub(crate) fn going_cold(&self) -> Cold {
        if let Some(pool) = &self.pool {
            let mut st = pool.lock();
            st.cold += 1;
            st.last_activity = Instant::now();
        }
        Cold(self.pool.clone())
    }
}

/// A cold acquire in progress; see [`Taken::going_cold`].
pub(crate) struct Cold(Option<Arc<Pool>>);

impl Drop for Cold {
    fn drop(&mut self) {
        if let Some(pool) = &self.0 {
            let mut st = pool.lock();
            st.cold = st.cold.saturating_sub(1);
            st.last_activity = Instant::now();
            drop(st);
            pool.changed.notify_all();
        }
    }
}

/// Which pool: one per engine, state directory and agent in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    engine: String,
    state_dir: PathBuf,
    agent: String,
}

/// What the pool's containers are made from: the latest job's plan for its config hash.
struct Template {
    hash: String,
    sanitized: String,
    body: ContainerCreate,
    expected: plan::Expected,
    inside: inside::Inside,
    user: String,
    mounts: MountPlan,
    runtime: Option<isolation::Checked>,
}

impl Template {
    fn of(want: &Want<'_>) -> Template {
        Template {
            hash: want.hash.to_string(),
            sanitized: want.sanitized.to_string(),
            body: want.body.clone(),
            expected: want.expected.clone(),
            inside: want.inside,
            user: want.user.to_string(),
            mounts: want.mounts.clone(),
            runtime: want.runtime.cloned(),
        }
    }
}

/// A warmed container, ready for a job.
#[derive(Debug)]
struct Warm {
    id: String,
    name: String,
    mount_ids: String,
    warnings: Vec<String>,
}

struct State {
    template: Arc<Template>,
    target: usize,
    idle: VecDeque<Warm>,
    /// Containers being warmed now (by the keeper).
    warming: usize,
    /// This process's containers to remove (a changed config, a stale mount, a close).
    retire: Vec<Warm>,
    /// Cold acquires of this agent in progress in this process.
    cold: usize,
    last_activity: Instant,
    /// Since when the pool holds fewer than its target.
    short_since: Option<Instant>,
    /// Refill now, without waiting for quiet ([`prewarm`]).
    urgent: bool,
    failures: u32,
    retry_at: Option<Instant>,
    /// The last failed warm, for the next job's warnings.
    last_error: Option<String>,
    /// The same, for [`prewarm`] to return.
    last_failure: Option<Error>,
    closing: bool,
    /// The keeper thread runs.
    running: bool,
    /// What retiring removed, for [`close`].
    report: PruneReport,
}

/// One agent's pool in this process.
pub(crate) struct Pool {
    key: Key,
    engine: Engine,
    owner: Arc<Owner>,
    state: Mutex<State>,
    /// Notified on every change the keeper or a waiter cares about.
    changed: Condvar,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain counts and lists: a panic elsewhere cannot leave them half-made.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every pool of this process.
static POOLS: Mutex<Vec<Arc<Pool>>> = Mutex::new(Vec::new());
/// The (engine, state directory) pairs whose leftovers this process has reaped.
static REAPED: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());

fn pools() -> MutexGuard<'static, Vec<Arc<Pool>>> {
    POOLS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The pool for `want`'s agent, made (and its keeper started) on first use. A different config
/// hash retires the idle containers of the old one.
fn pool_for(engine: &Engine, state_dir: &Path, want: &Want<'_>) -> Result<Arc<Pool>> {
    let key = Key {
        engine: engine.host().address(),
        state_dir: state_dir.to_path_buf(),
        agent: want.agent.to_string(),
    };
    let mut all = pools();
    if let Some(pool) = all.iter().find(|p| p.key == key) {
        let mut st = pool.lock();
        st.retarget(want);
        drop(st);
        pool.changed.notify_all();
        return Ok(pool.clone());
    }
    let (owner, _) = owner::current(state_dir)?;
    let pool = Arc::new(Pool {
        key: key.clone(),
        engine: engine.clone(),
        owner,
        state: Mutex::new(State::new(want)),
        changed: Condvar::new(),
    });
    let reap_first = first_reap(&key);
    keeper::spawn(pool.clone(), reap_first)?;
    all.push(pool.clone());
    Ok(pool)
}

impl State {
    /// A new pool's state: empty, its keeper about to run.
    fn new(want: &Want<'_>) -> State {
        State {
            template: Arc::new(Template::of(want)),
            target: want.target,
            idle: VecDeque::new(),
            warming: 0,
            retire: Vec::new(),
            cold: 0,
            last_activity: Instant::now(),
            short_since: None,
            urgent: false,
            failures: 0,
            retry_at: None,
            last_error: None,
            last_failure: None,
            closing: false,
            running: true,
            report: PruneReport::default(),
        }
    }

    /// Takes a runner's wish for an existing pool: its target, and, when the config hash or the
    /// runner's opt-in (which the config hash does not cover) differs, its template, retiring
    /// the idle containers made from the old one and forgetting the old one's failures.
    fn retarget(&mut self, want: &Want<'_>) {
        self.target = want.target;
        // A pool checked with the runner's opt-in is not handed to a runner without it.
        if self.template.hash != want.hash || self.template.expected.allow != want.expected.allow {
            let old: Vec<Warm> = self.idle.drain(..).collect();
            self.retire.extend(old);
            self.template = Arc::new(Template::of(want));
            self.failures = 0;
            self.retry_at = None;
            self.last_error = None;
            self.last_failure = None;
        }
    }
}

/// Whether this is the first pool of this process on `key`'s engine and state directory, which
/// then reaps what processes that are gone left there ([`reap`]) before it warms. Answers yes
/// once per pair.
fn first_reap(key: &Key) -> bool {
    let mut done = REAPED.lock().unwrap_or_else(|p| p.into_inner());
    let pair = (key.engine.clone(), key.state_dir.clone());
    let first = !done.contains(&pair);
    if first {
        done.push(pair);
    }
    first
}

/// A job's try at the pool: an idle container of this process's pool whose mounts are the same
/// host directories as now, else one of another live or dead process sharing the state
/// directory. Either way a replacement is warmed in the background. Never fails the job: a
/// problem of the pool comes back as a warning and the job makes its own container.
pub(crate) fn claim(engine: &Engine, state_dir: &Path, want: &Want<'_>) -> Taken {
    let pool = match pool_for(engine, state_dir, want) {
        Ok(p) => p,
        Err(e) => {
            return Taken {
                claimed: None,
                warning: Some(format!("warm pool of agent {}: {e}", want.agent)),
                pool: None,
            }
        }
    };
    let now_ids = want.mount_ids;
    let mut warning = None;
    let mut claimed = None;
    loop {
        let next = {
            let mut st = pool.lock();
            st.last_activity = Instant::now();
            if warning.is_none() {
                warning = st.last_error.take();
            }
            st.idle.pop_front()
        };
        let Some(warm) = next else { break };
        if warm.mount_ids != now_ids {
            // A host directory it mounts was replaced since it was made: it would not see the
            // host's files. Never handed out; removed in the background.
            pool.lock().retire.push(warm);
            continue;
        }
        match Claim::take(state_dir, &warm.name, Purpose::Job, pool.owner.id()) {
            Ok(Some(claim)) => {
                claimed = Some(Claimed {
                    id: warm.id,
                    name: warm.name,
                    claim,
                    warnings: warm.warnings,
                });
                break;
            }
            // Another process took it.
            Ok(None) => continue,
            Err(e) => {
                pool.lock().idle.push_front(warm);
                warning = Some(format!("warm pool of agent {}: {e}", want.agent));
                break;
            }
        }
    }
    if claimed.is_none() {
        claimed = claim_foreign(&pool, state_dir, want, now_ids);
    }
    pool.changed.notify_all();
    Taken {
        claimed,
        warning,
        pool: Some(pool),
    }
}

/// An idle container of another process's pool for the same agent and config, when this
/// process has none: one list call, on a path that would otherwise create a container.
fn claim_foreign(pool: &Pool, state_dir: &Path, want: &Want<'_>, now_ids: &str) -> Option<Claimed> {
    let filters = [
        (labels::MANAGED, Some("1")),
        (labels::AGENT, Some(want.agent)),
        (labels::CONFIG_HASH, Some(want.hash)),
        (labels::POOL, None),
    ];
    let found = pool.engine.list_containers(&filters, false).ok()?;
    for c in found {
        let Some(owner) = c.labels.get(labels::POOL) else {
            continue;
        };
        // Ours are in our queue (or being warmed); an owner whose lock is not in this state
        // directory is another directory's, whose claims we cannot see.
        if owner == pool.owner.id() || !owner::known(state_dir, owner) {
            continue;
        }
        // Checked with an opt-in this runner does not have: not for its jobs.
        let checked_loose = c.labels.contains_key(labels::POOL_LOOSE);
        if c.state != "running"
            || c.labels.get(labels::MOUNT_IDS).map(String::as_str) != Some(now_ids)
            || (checked_loose && !want.expected.allow)
        {
            continue;
        }
        let Some(name) = c.names.first().map(|n| n.trim_start_matches('/')) else {
            continue;
        };
        if files::is_claimed(state_dir, name) {
            continue;
        }
        if let Ok(Some(claim)) = Claim::take(state_dir, name, Purpose::Job, pool.owner.id()) {
            return Some(Claimed {
                id: c.id,
                name: name.to_string(),
                claim,
                warnings: Vec::new(),
            });
        }
    }
    None
}

/// Makes sure the pool for `want`'s agent exists and holds its target, waiting up to
/// `timeout`. Fails with the last warm's error when warming keeps failing.
pub(crate) fn prewarm(
    engine: &Engine,
    state_dir: &Path,
    want: &Want<'_>,
    timeout: Duration,
) -> Result<()> {
    let pool = pool_for(engine, state_dir, want)?;
    let give_up = Instant::now() + timeout;
    let mut st = pool.lock();
    st.urgent = true;
    pool.changed.notify_all();
    loop {
        if st.idle.len() >= st.target || st.closing {
            st.urgent = false;
            return Ok(());
        }
        if let Some(e) = st.last_failure.take() {
            st.urgent = false;
            return Err(e);
        }
        let now = Instant::now();
        if now >= give_up {
            st.urgent = false;
            return Err(Error::Timeout {
                phase: crate::TimeoutPhase::PoolWarm {
                    agent: want.agent.to_string(),
                },
                after: timeout,
            });
        }
        st = pool
            .changed
            .wait_timeout(st, give_up - now)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// How many idle containers the pool of `agent` holds in this process (0 when there is none).
pub(crate) fn idle_count(engine: &Engine, state_dir: &Path, agent: &str) -> usize {
    let address = engine.host().address();
    pools()
        .iter()
        .find(|p| p.key.agent == agent && p.key.state_dir == state_dir && p.key.engine == address)
        .map_or(0, |p| p.lock().idle.len())
}

/// Retires the pools of these agents (all when `agents` is `None`) of this process over this
/// engine and state directory: their idle containers are removed, waiting up to a minute.
/// Later jobs of those agents start new pools.
pub(crate) fn close(engine: &Engine, state_dir: &Path, agents: Option<&[String]>) -> PruneReport {
    let address = engine.host().address();
    close_matching(|k| {
        k.engine == address
            && k.state_dir == state_dir
            && agents.is_none_or(|a| a.iter().any(|x| x == &k.agent))
    })
}

/// Retires every pool of this process (at exit).
pub fn close_all() -> PruneReport {
    close_matching(|_| true)
}

fn close_matching(matches: impl Fn(&Key) -> bool) -> PruneReport {
    let closing: Vec<Arc<Pool>> = {
        let mut all = pools();
        let (going, staying) = all.drain(..).partition(|p| matches(&p.key));
        *all = staying;
        going
    };
    let mut report = PruneReport::default();
    for pool in &closing {
        pool.lock().closing = true;
        pool.changed.notify_all();
    }
    let give_up = Instant::now() + CLOSE_BUDGET;
    for pool in closing {
        let mut st = pool.lock();
        while st.running {
            let now = Instant::now();
            if now >= give_up {
                report.warnings.push(format!(
                    "warm pool of agent {}: still retiring after {CLOSE_BUDGET:?}; the next gc removes what is left",
                    pool.key.agent
                ));
                break;
            }
            st = pool
                .changed
                .wait_timeout(st, give_up - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        report.removed.append(&mut st.report.removed);
        report.warnings.append(&mut st.report.warnings);
    }
    report
}

/// How retention and listings treat a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Not a pool container: an ordinary container.
    Ordinary,
    /// A pool container a job took, at this time (unix milliseconds): an ordinary ephemeral
    /// container, as new as its job (its `created` label is the warm's).
    Taken(u64),
    /// An idle pool container, ready for a job: not counted, not removed (the pool and `gc`
    /// see to it).
    Idle,
    /// A pool container being warmed or retired: not counted, not removed, not to be taken.
    Busy,
    /// A pool container that stopped before any job took it: nothing to inspect, removed by the
    /// next prune whatever the limit.
    Dead,
}

/// The role of a listed container, by its labels, state and claim file.
pub(crate) fn role(state_dir: &Path, c: &ContainerSummary) -> Role {
    if !c.labels.contains_key(labels::POOL) {
        return Role::Ordinary;
    }
    let Some(name) = c.names.first().map(|n| n.trim_start_matches('/')) else {
        return Role::Ordinary;
    };
    match files::claim_purpose(state_dir, name) {
        Some((Some(Purpose::Job), since)) => Role::Taken(since),
        Some(_) => Role::Busy,
        None if c.state == "running" => Role::Idle,
        None if matches!(c.state.as_str(), "created" | "restarting" | "paused") => Role::Busy,
        None => Role::Dead,
    }
}

/// Removes the claim tombstone of a pool container that was removed.
pub(crate) fn forget(state_dir: &Path, c: &ContainerSummary) {
    if c.labels.contains_key(labels::POOL) {
        if let Some(name) = c.names.first() {
            files::forget_claim(state_dir, name.trim_start_matches('/'));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn summary(name: &str, state: &str, pool: bool) -> ContainerSummary {
        let mut labels = BTreeMap::new();
        if pool {
            labels.insert(labels::POOL.to_string(), "1-0123456789abcdef".to_string());
        }
        serde_json::from_value(serde_json::json!({
            "Id": "x", "Names": [format!("/{name}")], "Labels": labels, "State": state,
        }))
        .unwrap()
    }

    #[test]
    fn roles_follow_the_label_the_state_and_the_claim() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path();
        assert_eq!(role(dir, &summary("a", "running", false)), Role::Ordinary);
        assert_eq!(role(dir, &summary("a", "exited", false)), Role::Ordinary);
        assert_eq!(role(dir, &summary("a", "running", true)), Role::Idle);
        assert_eq!(role(dir, &summary("a", "created", true)), Role::Busy);
        assert_eq!(role(dir, &summary("a", "exited", true)), Role::Dead);
        let me = "1-0123456789abcdef";
        let job = Claim::take(dir, "a", Purpose::Job, me).unwrap().unwrap();
        assert!(matches!(
            role(dir, &summary("a", "running", true)),
            Role::Taken(_)
        ));
        drop(job);
        assert!(matches!(
            role(dir, &summary("a", "exited", true)),
            Role::Taken(_)
        ));
        forget(dir, &summary("a", "exited", true));
        assert_eq!(role(dir, &summary("a", "exited", true)), Role::Dead);
        let warm = Claim::take(dir, "b", Purpose::Warm, me).unwrap().unwrap();
        assert_eq!(role(dir, &summary("b", "running", true)), Role::Busy);
        warm.release();
    }
}

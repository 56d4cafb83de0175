//! Which container a job gets, and what happens to it after the job.
//!
//! Ephemeral: a fresh container per job, stopped (not removed) after it so a failed job can be
//! inspected. Persistent: one container per agent and config hash under a deterministic name, so
//! every runner, in this process or another, and after a restart, finds the same one; when two race
//! to create it, the engine's 409 tells the loser to use the winner's. A container that was created
//! but failed to start is removed: it would only confuse the next look.
//!
//! A persistent container is found by name, but its mounts were resolved when it started: if a
//! host directory it mounts was deleted and recreated since, it still sees the deleted one (runc
//! then refuses every exec, "possible container breakout detected", or the agent's session file is
//! missing). Each container records the `dev:inode` of its mount sources in a label; one whose
//! record differs from the host's now is renamed out of the way and replaced, and the old one is
//! stopped when idle and left to retention.
//!
//! An ephemeral job of a runner with a warm pool takes a container from the pool first (see
//! [`crate::run::pool`]); only when there is none does it make its own.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::create_models::ContainerCreate;
use crate::engine::{ContainerInspect, StartOutcome};
use crate::labels::{self, Mode};
use crate::run::options::PullPolicy;
use crate::run::owner::{InFlight, Owner};
use crate::run::shared::Shared;
use crate::run::{pool, retention};
use crate::{plan, Error, Result};

/// How long a persistent acquire may chase a container that others are creating or removing.
const RACE_BUDGET: Duration = Duration::from_secs(30);

/// What a job needs from the lifecycle.
pub(crate) struct Request<'a> {
    pub agent: &'a str,
    pub sanitized_agent: &'a str,
    pub mode: Mode,
    pub config_hash: &'a str,
    pub image: &'a str,
    pub body: ContainerCreate,
    /// What the inspect after create may show beyond the body.
    pub expected: plan::Expected,
    pub keep: usize,
    /// The [`labels::MOUNT_IDS`] value for the job's mounts as the host has them now.
    pub mount_ids: &'a str,
    /// For an ephemeral job: this process's owner, whose label is in `body`.
    pub owner: Option<Arc<Owner>>,
    /// Set as soon as the job has a container (created or found), so that an error after that
    /// point can be reported as the job's failure rather than as a job that never got a
    /// container.
    pub reached: &'a Cell<Option<Reached>>,
    /// For an ephemeral job of a runner with a warm pool: what the pool needs.
    pub pool: Option<pool::Want<'a>>,
}

/// The container a job reached, for the report of a job that failed in it before its command
/// ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reached {
    pub id: String,
    pub name: String,
    /// Its config hash (its `dev.herdctl.config-hash` label).
    pub config_hash: String,
}

/// A container a job holds. While a lease lives, this process's retention will not remove the
/// container; [`Lease::release`] ends the job's use of it.
pub(crate) struct Lease {
    shared: Arc<Shared>,
    id: String,
    name: String,
    agent: String,
    mode: Mode,
    keep: usize,
    /// This acquire created the container (so no earlier job's state is in it).
    created: bool,
    /// Whether this lease still counts as a use of the container.
    held: bool,
    /// An ephemeral container's place in its owner's in-flight set, until it is stopped.
    in_flight: Option<InFlight>,
    /// For a container taken from a warm pool: the claim on it, held while the job runs.
    claim: Option<pool::Claim>,
}

/// A lease and what getting it cost.
pub(crate) struct Acquired {
    pub lease: Lease,
    pub create: Option<Duration>,
    pub start: Option<Duration>,
    pub warnings: Vec<String>,
}

impl Lease {
    fn new(
        shared: &Arc<Shared>,
        id: String,
        name: String,
        req: &Request<'_>,
        created: bool,
        in_flight: Option<InFlight>,
    ) -> Lease {
        shared.hold(&id);
        req.reached.set(Some(Reached {
            id: id.clone(),
            name: name.clone(),
            config_hash: req.config_hash.to_string(),
        }));
        Lease {
            shared: shared.clone(),
            id,
            name,
            agent: req.agent.to_string(),
            mode: req.mode,
            keep: req.keep,
            created,
            held: true,
            in_flight,
            claim: None,
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Whether this acquire created the container (or took it fresh from a warm pool).
    pub(crate) fn created(&self) -> bool {
        self.created
    }

    /// Whether the container came from a warm pool (checked when it was warmed).
    pub(crate) fn pooled(&self) -> bool {
        self.claim.is_some()
    }

    /// Removes a pool container that turned out unusable before the job ran in it (it died
    /// while idle), so the job can be given another.
    pub(crate) fn discard(&mut self) {
        let _ = self.shared.engine.remove_container(&self.id, true);
        if let Some(claim) = self.claim.take() {
            claim.release();
        }
        self.let_go();
    }

    /// Ends the job's use: stops an ephemeral container, then applies retention to the agent.
    /// Failures here do not change the job's outcome; they come back as warnings.
    ///
    /// A container that could not be stopped is left running with no job in it: this process
    /// notes the leak and stops it at its next release or `gc`; should the process die first, the
    /// next runner does (see [`crate::run::owner`]).
    pub(crate) fn release(&mut self) -> Vec<String> {
        let mut warnings = Vec::new();
        let engine = &self.shared.engine;
        if self.mode == Mode::Ephemeral {
            // Out of the in-flight set only once stopped (or known leaked).
            let in_flight = self.in_flight.take();
            let owner = in_flight.as_ref().map(|f| f.owner().clone());
            // PID 1 is an init that forwards SIGTERM to `sleep`, so this returns in milliseconds;
            // the timeout is only a bound for a misbehaving image.
            match engine.stop_container(&self.id, 2) {
                Ok(_) => {
                    if owner.as_ref().is_some_and(|o| o.take_leaked()) {
                        match retention::reap_orphans(&self.shared) {
                            Ok(reaped) => warnings.extend(reaped.warnings),
                            Err(e) => {
                                if let Some(o) = &owner {
                                    o.set_leaked();
                                }
                                warnings.push(format!("stop this process's leaked containers: {e}"))
                            }
                        }
                    }
                }
                Err(e) => {
                    if let Some(o) = &owner {
                        o.set_leaked();
                    }
                    warnings.push(format!(
                        "stop container {}: {e}; it is left running with no job in it, and will be stopped by this process's next job or gc, or by the next runner after this process exits",
                        self.name
                    ));
                }
            }
            drop(in_flight);
        }
        // A pool container's claim stays as a tombstone: its warmer never hands it out again.
        drop(self.claim.take());
        self.let_go();
        match retention::prune_after_job(&self.shared, &self.agent, self.keep) {
            Ok(report) => warnings.extend(report.warnings),
            Err(e) => warnings.push(format!("retention for agent {}: {e}", self.agent)),
        }
        warnings
    }
}

impl Lease {
    /// Ends this lease's count on the container, once: another job may still hold it.
    fn let_go(&mut self) {
        if std::mem::take(&mut self.held) {
            self.shared.release(&self.id);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.let_go();
    }
}

/// Gets the container for a job: a new one for an ephemeral job, the agent's current one for a
/// persistent job (started if it was stopped, created if there is none).
pub(crate) fn acquire(shared: &Arc<Shared>, req: &Request<'_>) -> Result<Acquired> {
    if shared.options.pull == PullPolicy::Always {
        pull(shared, req.image)?;
    }
    match req.mode {
        Mode::Ephemeral => {
            let mut pool_warning = None;
            let _cold = match &req.pool {
                Some(want) => {
                    let taken = pool::claim(&shared.engine, &shared.options.state_dir, want);
                    pool_warning = taken.warning.clone();
                    if let Some(c) = taken.claimed {
                        let mut lease = Lease::new(shared, c.id, c.name, req, true, None);
                        lease.claim = Some(c.claim);
                        let mut warnings = c.warnings;
                        warnings.extend(pool_warning);
                        return Ok(Acquired {
                            lease,
                            create: None,
                            start: None,
                            warnings,
                        });
                    }
                    Some(taken.going_cold())
                }
                None => None,
            };
            let name = labels::ephemeral_name(req.sanitized_agent, labels::now_ms());
            let in_flight = req.owner.as_ref().map(|o| o.track(&name));
            let mut acquired = create_and_start(shared, req, &name, in_flight)?;
            acquired.warnings.extend(pool_warning);
            Ok(acquired)
        }
        Mode::Persistent => acquire_persistent(shared, req),
    }
}

fn acquire_persistent(shared: &Arc<Shared>, req: &Request<'_>) -> Result<Acquired> {
    let name = labels::persistent_name(req.sanitized_agent, req.config_hash);
    // Each turn either returns or saw the container vanish or appear under it. The common case
    // is a race of creators: the engine reserves the name at once (the losers get 409) but
    // answers 404 to an inspect until the winner's create has finished, so the losers wait a
    // little and look again. Bounded, so a container that keeps vanishing is an error.
    let give_up = Instant::now() + RACE_BUDGET;
    let mut pause = Duration::from_millis(10);
    let mut warnings = Vec::new();
    while Instant::now() < give_up {
        match shared.engine.inspect_container(&name) {
            Ok(found) => {
                if let Some(acquired) = use_found(shared, req, &name, &found, &mut warnings)? {
                    return Ok(acquired);
                }
            }
            Err(Error::NotFound { .. }) => match create_and_start(shared, req, &name, None) {
                Ok(mut acquired) => {
                    stop_idle_superseded(shared, req, &name);
                    warnings.append(&mut acquired.warnings);
                    acquired.warnings = warnings;
                    return Ok(acquired);
                }
                Err(Error::Conflict { .. }) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
    Err(Error::Conflict {
        call: format!("acquire persistent container {name}"),
        message: format!("it kept appearing and disappearing for {RACE_BUDGET:?} while this job tried to use it; another process is removing it"),
    })
}

/// One look that found a container under the persistent name: the job's, started if it is not
/// running. `None` when the caller must look again: the container was replaced (its mounts are
/// stale) or vanished before its start. Warnings gather in `warnings` across looks and go with
/// the container acquired.
fn use_found(
    shared: &Arc<Shared>,
    req: &Request<'_>,
    name: &str,
    found: &ContainerInspect,
    warnings: &mut Vec<String>,
) -> Result<Option<Acquired>> {
    check_ours(found, req)?;
    if stale_mounts(found, req) {
        let retired = retire(shared, found, req)?;
        warnings.push(format!(
            "container {name} was replaced: a host directory or file it mounts was deleted and recreated since it was created, so it no longer saw the host's; the old one is now {retired}, stopped once idle and left to retention"
        ));
        return Ok(None);
    }
    let lease = Lease::new(shared, found.id.clone(), name.to_string(), req, false, None);
    warnings.extend(unbounded(found));
    if found.state.running {
        return Ok(Some(Acquired {
            lease,
            create: None,
            start: None,
            warnings: std::mem::take(warnings),
        }));
    }
    let t = Instant::now();
    match shared.engine.start_container(&found.id) {
        Ok(_) => Ok(Some(Acquired {
            lease,
            create: None,
            start: Some(t.elapsed()),
            warnings: std::mem::take(warnings),
        })),
        // Gone before its start: look again (the lease lets go as it drops).
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A container under our deterministic name that is not this agent's (a user's, or one from a
/// hash collision) must not run the job.
fn check_ours(found: &ContainerInspect, req: &Request<'_>) -> Result<()> {
    let l = &found.config.labels;
    let ours = l.get(labels::MANAGED).map(String::as_str) == Some("1")
        && l.get(labels::AGENT).map(String::as_str) == Some(req.agent)
        && l.get(labels::CONFIG_HASH).map(String::as_str) == Some(req.config_hash);
    if ours {
        Ok(())
    } else {
        Err(Error::Conflict {
            call: format!("acquire persistent container {}", found.name),
            message: format!(
                "a container with that name exists but is not agent {}'s container for this config; remove or rename it",
                req.agent
            ),
        })
    }
}

/// Whether the container's mounts point at host directories that have since been replaced. A
/// container from before the label existed cannot tell, and is reused as before.
fn stale_mounts(found: &ContainerInspect, req: &Request<'_>) -> bool {
    found
        .config
        .labels
        .get(labels::MOUNT_IDS)
        .is_some_and(|recorded| recorded != req.mount_ids)
}

/// Moves a stale persistent container out of its deterministic name, so the next look creates a
/// fresh one. Jobs running in it go on (they started with its mounts); it is stopped once idle by
/// [`stop_idle_superseded`] and removed by retention like any stopped container. Two processes
/// that retire it at once both succeed (a rename by id), and then race to create as usual.
fn retire(shared: &Arc<Shared>, found: &ContainerInspect, req: &Request<'_>) -> Result<String> {
    let retired = labels::ephemeral_name(
        &format!("{}-retired", req.sanitized_agent),
        labels::now_ms(),
    );
    match shared.engine.rename_container(&found.id, &retired) {
        Ok(()) | Err(Error::NotFound { .. }) => Ok(retired),
        Err(e) => Err(e),
    }
}

fn create_and_start(
    shared: &Arc<Shared>,
    req: &Request<'_>,
    name: &str,
    in_flight: Option<InFlight>,
) -> Result<Acquired> {
    let t = Instant::now();
    let id = match shared.engine.create_container(name, &req.body) {
        Err(Error::NotFound { .. }) if shared.options.pull == PullPolicy::IfMissing => {
            pull(shared, req.image)?;
            shared.engine.create_container(name, &req.body)
        }
        other => other,
    }
    .map_err(|e| image_hint(e, req.image))?;
    let create = t.elapsed();
    let lease = Lease::new(shared, id.clone(), name.to_string(), req, true, in_flight);
    let mut warnings = Vec::new();
    let verified = shared.engine.inspect_container(&id).and_then(|got| {
        let mut w = plan::verify(&req.body, &req.expected, &got, &crate::host::ThisHost)?;
        w.extend(unbounded(&got));
        Ok(w)
    });
    let t = Instant::now();
    let started = verified.and_then(|w| {
        warnings = w;
        shared.engine.start_container(&id)
    });
    match started {
        Ok(StartOutcome::Started) | Ok(StartOutcome::AlreadyRunning) => Ok(Acquired {
            lease,
            create: Some(create),
            start: Some(t.elapsed()),
            warnings,
        }),
        Err(e) => {
            // Nobody can use a container that never started; keeping it would only confuse.
            let _ = shared.engine.remove_container(&id, true);
            Err(e)
        }
    }
}

/// Limits the runner always sets that the container does not have: a `host_config` override
/// can remove them (`Memory: 0`, `PidsLimit: -1`), which the check against the create body cannot
/// see (the engine did what it was asked). Read from the engine's inspect, so they hold however
/// the override spelled its keys. The job runs; every job in such a container says so.
fn unbounded(got: &ContainerInspect) -> Vec<String> {
    let have = &got.host_config;
    let mut warnings = Vec::new();
    if have.memory <= 0 {
        warnings.push(format!(
            "the container has no memory limit (HostConfig.Memory {}, from docker.host_config): a job can use all of the host's memory",
            have.memory
        ));
    } else if have.memory_swap < 0 || have.memory_swap > have.memory {
        warnings.push(format!(
            "the container may swap beyond its memory limit (HostConfig.MemorySwap {} with Memory {}, from docker.host_config)",
            have.memory_swap, have.memory
        ));
    }
    match have.pids_limit {
        Some(p) if p > 0 => {}
        other => warnings.push(format!(
            "the container has no pids limit (HostConfig.PidsLimit {}, from docker.host_config): a job can exhaust the host's processes",
            other.map_or("unset".to_string(), |p| p.to_string())
        )),
    }
    warnings
}

/// An exec that could not be created or started in a container that is not running (the engine
/// says 409 at create, 500 at start, depending on when it noticed): the container stopped right
/// after it started (a broken entrypoint, no `sleep`), or it was stopped under us. Say so with its
/// exit code and last output, and remove it when this job created it: like a container that
/// failed to start, it is of no use, and no earlier job's state is lost.
pub(crate) fn explain_exec_failure(shared: &Arc<Shared>, lease: &Lease, e: Error) -> Error {
    let Ok(found) = shared.engine.inspect_container(lease.id()) else {
        return e;
    };
    if found.state.running {
        return e;
    }
    let output: Vec<u8> = shared
        .engine
        .container_logs(lease.id(), true, true, Some(5))
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(_, bytes)| bytes)
        .collect();
    let output = String::from_utf8_lossy(&output).trim().to_string();
    if lease.created {
        let _ = shared.engine.remove_container(lease.id(), true);
    }
    Error::ContainerExited {
        container: lease.name().to_string(),
        exit_code: found.state.exit_code,
        output: if output.is_empty() {
            String::new()
        } else {
            format!(": {output}")
        },
    }
}

fn pull(shared: &Arc<Shared>, image: &str) -> Result<()> {
    let progress = shared.options.pull_progress.clone();
    shared.engine.image_pull(image, &mut |p| {
        if let Some(report) = &progress {
            report(p);
        }
    })
}

/// The engine's 404 on create means the image is missing: say which and how to get it.
fn image_hint(e: Error, image: &str) -> Error {
    match e {
        Error::NotFound { call, .. } => Error::NotFound {
            call,
            kind: "image",
            name: image.to_string(),
            hint: format!(
                "; build it (docker build -t {image} .) or pull it (docker pull {image}), or let the runner pull it: HERDCTL_CONTAINER_PULL=if-missing in herdctl's environment (or ContainerRunner's pull option), --pull if-missing on the CLI"
            ),
        },
        other => other,
    }
}

/// After a config change, or a stale container's retirement, the agent's old persistent
/// container would run forever (retention never removes a running container). Stop the ones with
/// no job in them (only PID 1 and its `sleep`); retention then removes them like any stopped
/// container. The current container is the one under `current_name`: a retired one has the same
/// config hash but another name.
fn stop_idle_superseded(shared: &Arc<Shared>, req: &Request<'_>, current_name: &str) {
    let filters = [
        (labels::MANAGED, Some("1")),
        (labels::AGENT, Some(req.agent)),
        (labels::MODE, Some(Mode::Persistent.as_str())),
    ];
    let Ok(found) = shared.engine.list_containers(&filters, false) else {
        return;
    };
    for c in found {
        let current = c
            .names
            .iter()
            .any(|n| n.trim_start_matches('/') == current_name);
        if current || shared.is_held(&c.id) {
            continue;
        }
        let idle = shared
            .engine
            .container_top(&c.id)
            .is_ok_and(|top| top.processes.len() <= 2);
        if idle {
            let _ = shared.engine.stop_container(&c.id, 2);
        }
    }
}

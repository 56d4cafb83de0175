//! Starting one job, in three phases that [`Runner::start`](crate::Runner::start) reads as:
//! **plan** (the runtime the engine must have, the host's side of the mounts, then the pure
//! [`JobPlan`]), **acquire** (a container: fresh, reused or from the warm pool, checked from
//! inside) and **exec** (the job's process started in it and handed over as a [`Job`]).

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{gate_override, EngineSockets, Gate};
use crate::credentials::Credentials;
use crate::engine::{EngineOptions, ExecAbort, ExecInput, ExecOutput, ExecSpec, ExecStream, Host};
use crate::labels::{self, Mode};
use crate::plan::job::{JobPlan, PlanInput};
use crate::plan::{MountPlan, MountRequest};
use crate::redact::Redactor;
use crate::run::inside::{self, Inside};
use crate::run::isolation;
use crate::run::job::{
    records, run_argv, watch_container, Canceller, Job, JobGroup, Started, Timings,
};
use crate::run::lifecycle::{self, Lease, Reached, Request};
use crate::run::owner::{self, Owner};
use crate::run::pool;
use crate::run::shared::{Shared, CHECKED_INSIDE};
use crate::run::spec::JobSpec;
use crate::{Error, Result};

/// A job's plan and what the runner learnt making it.
pub(crate) struct Planned {
    pub job: JobPlan,
    pub mounts: MountPlan,
    pub inside: Inside,
    /// The [`labels::MOUNT_IDS`] value of the mounts as the host has them now.
    pub mount_ids: String,
    /// For an ephemeral job: this process's owner, whose label is in the create request.
    pub owner: Option<Arc<Owner>>,
    /// The sandbox runtime a process inside must prove it runs under, if any.
    pub runtime: Option<isolation::Checked>,
    /// Whether the engine is on this machine (else the credentials go to the exec).
    pub local: bool,
    /// What the job should hear about its plan (an owner lock that could not be had).
    pub warnings: Vec<String>,
}

impl Planned {
    /// What the warm pool of `agent` needs to make containers like this job's.
    pub(crate) fn want<'a>(&'a self, agent: &'a str, target: usize) -> pool::Want<'a> {
        pool::Want {
            target,
            agent,
            sanitized: &self.job.sanitized,
            hash: &self.job.hash,
            body: &self.job.body,
            expected: &self.job.expected,
            inside: self.inside,
            user: &self.job.user,
            mounts: &self.mounts,
            mount_ids: &self.mount_ids,
            runtime: self.runtime.as_ref(),
        }
    }
}

/// Phase one: what a job's container looks like. The runtime is checked against the engine's
/// list, the host prepares the mounts (and is checked for dangerous sources), then the plan is
/// made from what the host said. Nothing is created on the engine.
pub(crate) fn plan(
    shared: &Shared,
    spec: &mut JobSpec,
    credentials: &Credentials,
) -> Result<Planned> {
    if spec.config.runtime.is_none() {
        spec.config.runtime = shared.options.runtime.clone();
    }
    // The opt-in: the agent's config, or this runner's option or environment.
    let allow = spec.config.allow_unsafe_host_config || shared.options.allow_unsafe_host_config;
    let runtime = check_runtime(shared, spec, allow)?;
    // On another machine's engine, bind mounts name that machine's paths: the injected
    // tools' sockets and the credentials copy of this one cannot be mounted there (the
    // credentials go to the exec instead; see `Credentials::remote_exec_env`).
    let local = shared.engine.options().is_local();
    let sockets = EngineSockets::find(match shared.engine.host() {
        Host::Unix(path) => Some(path.as_path()),
        Host::Tcp(_) | Host::Ssh(_) => None,
    });
    let mounts = prepare_mounts(shared, spec, credentials, local, &sockets, allow)?;
    let mount_ids = crate::host::mount_ids(&mounts);
    let (owner, warnings) = owner_of(shared, spec.config.ephemeral);
    let gate = Gate {
        allow,
        network: spec.config.network,
        sockets: &sockets,
    };
    let host_config = gate_override(&spec.config, &gate)?;
    let job = JobPlan::new(&PlanInput {
        agent: &spec.agent,
        config: &spec.config,
        mounts: &mounts,
        mount_ids: &mount_ids,
        owner: owner.as_deref().map(Owner::id),
        created_ms: labels::now_ms(),
        allow,
        host_config: host_config.as_ref(),
    })?;
    Ok(Planned {
        inside: Inside::of(&job.body),
        job,
        mounts,
        mount_ids,
        owner,
        runtime,
        local,
        warnings,
    })
}

/// Before anything is made: a runtime the engine does not list, or one that cannot give the
/// job what its config asks for, is refused here. Only a sandbox needs the proof.
fn check_runtime(
    shared: &Shared,
    spec: &JobSpec,
    allow: bool,
) -> Result<Option<isolation::Checked>> {
    let checked = match spec.config.runtime.as_deref() {
        Some(name) => isolation::with_runtimes(&shared.engine, Some(name), |engine| {
            isolation::check(&spec.config, engine, allow)
        })?,
        None => None,
    };
    Ok(checked.filter(isolation::Checked::needs_proof))
}

/// The host's side of the mounts: made, then refused when a source is dangerous (the engine's
/// socket, a kernel file system, the state directory exposed), then checked for the container
/// user's access (whose advice must never be given for `/sys` or a socket).
fn prepare_mounts(
    shared: &Shared,
    spec: &JobSpec,
    credentials: &Credentials,
    local: bool,
    sockets: &EngineSockets,
    allow: bool,
) -> Result<MountPlan> {
    let state_dir = shared.options.state_dir.to_string_lossy().into_owned();
    let mounts = MountPlan::build(&MountRequest {
        config: &spec.config,
        workspace: &spec.workspace,
        state_dir: &state_dir,
        agent: &spec.agent,
        layout: shared.options.session_layout,
        credentials: local.then_some(credentials),
    })?;
    let mounts = if local {
        mounts
    } else {
        mounts.without_mcp_sockets()
    };
    crate::host::check_mount_sources(&mounts, sockets, allow)?;
    mounts.check_workspace_access(&spec.config)?;
    Ok(mounts)
}

/// This process's owner, for an ephemeral container's label, or why there is none.
fn owner_of(shared: &Shared, ephemeral: bool) -> (Option<Arc<Owner>>, Vec<String>) {
    if !ephemeral {
        return (None, Vec::new());
    }
    match owner::current(&shared.options.state_dir) {
        Ok((owner, _)) => (Some(owner), Vec::new()),
        Err(e) => (None, vec![format!(
            "no owner lock for this job's container ({e}): should this process die mid-job, no other runner can prove it orphaned and stop it"
        )]),
    }
}

/// A container with the job's exec started in it.
pub(crate) struct Opened {
    lease: Lease,
    group: Option<JobGroup>,
    stream: ExecStream,
    exec_id: String,
    create: Option<Duration>,
    start: Option<Duration>,
    warnings: Vec<String>,
    /// When the exec was asked for: the end of the acquire.
    exec_asked: Instant,
}

/// Phases two and three: acquires the job's container and starts `exec` in it. A pool
/// container that died while idle is found when the job's exec cannot be made in it: it is
/// removed and the job gets a container of its own (never the dead one).
pub(crate) fn acquire_and_open(
    shared: &Arc<Shared>,
    spec: &JobSpec,
    planned: &Planned,
    exec: &mut ExecSpec,
    reached: &Cell<Option<Reached>>,
) -> Result<Opened> {
    let mut try_pool = planned.job.mode == Mode::Ephemeral && shared.warm_pool > 0;
    let mut warnings = planned.warnings.clone();
    loop {
        let acquired = acquire(shared, spec, planned, try_pool, reached)?;
        let lifecycle::Acquired {
            mut lease,
            create,
            start,
            warnings: mut acquired_warnings,
        } = acquired;
        let group = make_ready(shared, &mut lease, spec, planned)?;
        if let Some(g) = &group {
            exec.cmd = run_argv(g.gid(), &spec.argv);
            exec.user = Some(format!("{}:{}", spec.config.user.uid, g.gid()));
        }
        let exec_asked = Instant::now();
        let opened = shared
            .engine
            .exec_create(lease.id(), exec)
            .and_then(|exec_id| Ok((shared.engine.exec_start(&exec_id)?, exec_id)));
        match opened {
            Ok((stream, exec_id)) => {
                warnings.append(&mut acquired_warnings);
                return Ok(Opened {
                    lease,
                    group,
                    stream,
                    exec_id,
                    create,
                    start,
                    warnings,
                    exec_asked,
                });
            }
            Err(e) if lease.pooled() => {
                lease.discard();
                warnings.push(format!(
                    "the warm pool's container {} could not run the job ({e}); it was removed and the job got a container of its own",
                    lease.name()
                ));
                try_pool = false;
            }
            Err(e) => {
                let e = lifecycle::explain_exec_failure(shared, &lease, e);
                // The job never ran: give the container back the way a finished job would.
                lease.release();
                return Err(e);
            }
        }
    }
}

/// One acquire of the job's container (see [`lifecycle::acquire`]), from the warm pool when
/// `try_pool`.
fn acquire(
    shared: &Arc<Shared>,
    spec: &JobSpec,
    planned: &Planned,
    try_pool: bool,
    reached: &Cell<Option<Reached>>,
) -> Result<lifecycle::Acquired> {
    let want = try_pool.then(|| planned.want(&spec.agent, shared.warm_pool));
    if try_pool {
        shared.used_pool(&spec.agent);
    }
    let job = &planned.job;
    lifecycle::acquire(
        shared,
        &Request {
            agent: &spec.agent,
            sanitized_agent: &job.sanitized,
            mode: job.mode,
            config_hash: &job.hash,
            image: &spec.config.image,
            body: job.body.clone(),
            expected: job.expected.clone(),
            keep: spec.config.max_containers as usize,
            mount_ids: &planned.mount_ids,
            owner: planned.owner.clone(),
            reached,
            pool: want,
        },
    )
    .map_err(|e| remote_mount_hint(e, shared.engine.options()))
}

/// Makes an acquired container ready for the job: checked from inside (once), and in a
/// persistent container, which other jobs share, a group id of the job's own, the mark by which
/// its cancel and its end find exactly its processes (see `job/group.rs`), under `kill.sh`,
/// which kills what it left behind when it exits. An ephemeral container runs only this job and
/// is stopped after it.
fn make_ready(
    shared: &Arc<Shared>,
    lease: &mut Lease,
    spec: &JobSpec,
    planned: &Planned,
) -> Result<Option<JobGroup>> {
    let mode = planned.job.mode;
    let checked = check_inside_once(
        shared,
        lease,
        mode,
        &planned.job.user,
        planned.inside,
        planned.runtime.as_ref(),
    );
    if let Err(e) = checked {
        // A container that died at start (its exec failed, or was cut short) says why.
        let e = lifecycle::explain_exec_failure(shared, lease, e);
        if lease.created() {
            // No job may run in it, and no earlier job's state is in it.
            let _ = shared.engine.remove_container(lease.id(), true);
        } else {
            lease.release();
        }
        return Err(e);
    }
    match mode {
        Mode::Ephemeral => Ok(None),
        Mode::Persistent => match JobGroup::claim(lease.id(), spec.config.user.gid) {
            Ok(g) => Ok(Some(g)),
            Err(e) => {
                lease.release();
                Err(e)
            }
        },
    }
}

/// The job, once its exec runs: its stream split into stdin and output, its canceller, the
/// watch on a sandboxed container, and what its record will say.
pub(crate) fn into_job(
    shared: &Shared,
    spec: JobSpec,
    planned: Planned,
    opened: Opened,
    redactor: Redactor,
    started: (Instant, u64),
) -> Result<Job> {
    let timings = opened.timings(started.0);
    let Opened {
        mut lease,
        group,
        stream,
        exec_id,
        warnings,
        ..
    } = opened;
    let (abort, input, output) = match split(stream) {
        Ok(parts) => parts,
        Err(e) => {
            lease.release();
            return Err(e);
        }
    };
    let job_id = labels::ephemeral_name("job", labels::now_ms());
    let mode = planned.job.mode;
    let job = (job_id.clone(), spec.config.user.to_string());
    let (canceller, container_watch) =
        cancel_and_watch(shared, &lease, &planned, job, group, abort);
    Ok(Job::new(Started {
        engine: shared.engine.clone(),
        exec_id,
        input,
        output,
        stdin: spec.stdin,
        stdin_open: spec.stdin_open,
        canceller,
        redactor,
        deadline: spec.deadline,
        max_line: shared.options.max_line_bytes,
        started: started.0,
        timings,
        warnings,
        image: spec.config.image,
        config_hash: planned.job.hash,
        lease,
        paths: planned.mounts.path_map(),
        record: records::Head {
            state_dir: shared.options.state_dir.clone(),
            agent: spec.agent,
            job: job_id,
            mode,
            started_ms: started.1,
            keep: spec.config.max_containers as usize,
        },
        container_watch,
    }))
}

/// The job's canceller, and for a sandboxed container the watch that cancels the job at once
/// should the container die.
fn cancel_and_watch(
    shared: &Shared,
    lease: &Lease,
    planned: &Planned,
    job: (String, String),
    group: Option<JobGroup>,
    abort: ExecAbort,
) -> (Canceller, Option<std::sync::mpsc::Sender<()>>) {
    let engine = &shared.engine;
    let (job_id, user) = job;
    let canceller = Canceller::new(
        engine.clone(),
        lease.id().into(),
        planned.job.mode,
        job_id,
        user,
        group,
        abort,
    );
    let watch = (planned.runtime.as_ref())
        .map(|_| watch_container(engine.clone(), lease.id().into(), canceller.clone()));
    (canceller, watch)
}

impl Opened {
    /// What getting the container and the exec cost, from the job's start.
    fn timings(&self, started: Instant) -> Timings {
        Timings {
            acquire: Some(self.exec_asked.duration_since(started)),
            create: self.create,
            start: self.start,
            exec_start: Some(self.exec_asked.elapsed()),
            ..Timings::default()
        }
    }
}

/// The exec's stream as the job's stdin, its output, and the handle that aborts the output.
fn split(stream: ExecStream) -> Result<(ExecAbort, ExecInput, ExecOutput)> {
    let (input, output) = stream.split()?;
    Ok((output.abort_handle()?, input, output))
}

/// An engine's refusal of a bind mount whose source is missing, with what to do when the engine
/// is another machine's (where the path must exist).
fn remote_mount_hint(e: Error, engine: &EngineOptions) -> Error {
    match e {
        Error::Api {
            call,
            status,
            message,
        } if !engine.is_local() && message.contains("bind source path does not exist") => {
            Error::Api {
                call,
                status,
                message: format!(
                    "{message}; the engine at {} runs on another machine, where the workspace and the state directory must exist at the same paths (see the README's \"Engines\")",
                    engine.host
                ),
            }
        }
        other => other,
    }
}

/// Checks a container's processes from inside ([`inside::check_inside`]) once: every fresh
/// container (a pool's when it was warmed), and a reused persistent one the first time this
/// process uses it. Jobs that reach an unchecked persistent container at once wait for one
/// check instead of each making one: the answer cannot differ between them (the check runs as
/// the configured user, in a container whose settings were fixed at create).
/// The same exec proves a sandbox `runtime` by the kernel it reports (its runtime cannot change
/// while the container exists).
fn check_inside_once(
    shared: &Shared,
    lease: &lifecycle::Lease,
    mode: Mode,
    user: &str,
    want: inside::Inside,
    runtime: Option<&isolation::Checked>,
) -> Result<()> {
    if (!want.is_needed() && runtime.is_none()) || lease.pooled() {
        return Ok(());
    }
    let id = lease.id();
    if mode == Mode::Ephemeral {
        inside::check_inside(&shared.engine, id, lease.name(), user, want, runtime)?;
        return Ok(());
    }
    // Ids only: a few per agent and config, for the life of the process.
    let cell = CHECKED_INSIDE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(id.to_string())
        .or_default()
        .clone();
    let mut checked = cell.lock().unwrap_or_else(|p| p.into_inner());
    if *checked && !lease.created() {
        return Ok(());
    }
    inside::check_inside(&shared.engine, id, lease.name(), user, want, runtime)?;
    *checked = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16: on another machine's engine, a missing bind source says where it is missing.
    #[test]
    fn a_missing_bind_source_on_another_machine_says_where() {
        let refusal = || Error::Api {
            call: "POST /containers/create".into(),
            status: 400,
            message:
                "invalid mount config for type \"bind\": bind source path does not exist: /srv/repo"
                    .into(),
        };
        let remote = EngineOptions::for_address("ssh://fleet@build-1").unwrap();
        let e = remote_mount_hint(refusal(), &remote).to_string();
        assert!(
            e.ends_with("/srv/repo; the engine at ssh://fleet@build-1 runs on another machine, where the workspace and the state directory must exist at the same paths (see the README's \"Engines\")"),
            "{e}"
        );
        let local = EngineOptions::default();
        assert!(remote_mount_hint(refusal(), &local)
            .to_string()
            .ends_with("/srv/repo"));
    }
}

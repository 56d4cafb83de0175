//! The entry point for running jobs: a [`Runner`] over an engine and a state directory.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{DockerConfig, EngineSockets, Gate, ALLOW_UNSAFE_ENV};
use crate::credentials::Credentials;
use crate::engine::{Engine, ExecSpec, Host, PullProgress};
use crate::job::{run_argv, Canceller, Job, JobGroup, JobReport, Started, Timings};
use crate::labels::{self, Mode};
use crate::lifecycle::{self, Reached, Request};
use crate::paths::{
    sanitize_agent_name, MountPlan, MountRequest, SessionLayout, CONTAINER_WORKSPACE,
};
use crate::redact::Redactor;
use crate::retention::{self, PruneReport};
use crate::{plan, records, Error, Result};

/// When the runner may pull an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Never: a missing image is an error that says how to build or pull it. The default, so
    /// nothing reaches out to a registry unless asked to.
    #[default]
    Never,
    /// Pull when the engine does not have the image.
    IfMissing,
    /// Pull before every container is created.
    Always,
}

impl std::str::FromStr for PullPolicy {
    type Err = Error;

    /// `never`, `if-missing` or `always`.
    fn from_str(s: &str) -> Result<PullPolicy> {
        match s {
            "never" => Ok(PullPolicy::Never),
            "if-missing" => Ok(PullPolicy::IfMissing),
            "always" => Ok(PullPolicy::Always),
            other => Err(Error::invalid(
                "pull",
                format!("{other:?} is not a pull policy; expected never, if-missing or always"),
            )),
        }
    }
}

/// Receives each progress line of an image pull.
pub type PullProgressFn = Arc<dyn Fn(&PullProgress) + Send + Sync>;

/// How a [`Runner`] behaves. Plain data with documented defaults.
#[derive(Clone)]
pub struct RunnerOptions {
    /// herdctl's state directory (`.herdctl/`); session directories live under
    /// `<state_dir>/docker-sessions/`. No default: it must be given.
    pub state_dir: PathBuf,
    /// When to pull images. Default: [`PullPolicy::Never`].
    pub pull: PullPolicy,
    /// Where pull progress goes. Default: nowhere.
    pub pull_progress: Option<PullProgressFn>,
    /// The longest stdout line a job may print; a longer one ends the job with
    /// [`Error::LineTooLong`]. Default: 64 MiB (an agent's tool result can be large).
    pub max_line_bytes: usize,
    /// Session directory per agent (default) or one shared directory (herdctl's layout).
    pub session_layout: SessionLayout,
    /// Lets every agent's `host_config` (and volumes) loosen the container, as each config's own
    /// `allow_unsafe_host_config` does for its agent: privileged mode, added capabilities, host
    /// namespaces, non-GPU devices, the engine's socket, ... [`Runner::new`] also turns it on
    /// when the environment variable [`ALLOW_UNSAFE_ENV`]
    /// (`HERDCTL_CONTAINER_ALLOW_UNSAFE_HOST_CONFIG`) is `1` or `true`, so an unmodified herdctl
    /// can opt in. Default: false.
    pub allow_unsafe_host_config: bool,
}

impl RunnerOptions {
    /// Options with every default and the given state directory.
    pub fn new(state_dir: impl Into<PathBuf>) -> RunnerOptions {
        RunnerOptions {
            state_dir: state_dir.into(),
            pull: PullPolicy::Never,
            pull_progress: None,
            max_line_bytes: 64 << 20,
            session_layout: SessionLayout::PerAgent,
            allow_unsafe_host_config: false,
        }
    }
}

impl std::fmt::Debug for RunnerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerOptions")
            .field("state_dir", &self.state_dir)
            .field("pull", &self.pull)
            .field("pull_progress", &self.pull_progress.is_some())
            .field("max_line_bytes", &self.max_line_bytes)
            .field("session_layout", &self.session_layout)
            .field("allow_unsafe_host_config", &self.allow_unsafe_host_config)
            .finish()
    }
}

/// One job to run.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The agent's qualified name (exact; it becomes the `dev.herdctl.agent` label).
    pub agent: String,
    /// The agent's resolved docker config.
    pub config: DockerConfig,
    /// The host directory mounted at `/workspace`.
    pub workspace: String,
    /// The program and its arguments; no shell is involved.
    pub argv: Vec<String>,
    /// Bytes written to the program's stdin, then closed. Any size.
    pub stdin: Vec<u8>,
    /// Keep the program's stdin open for the caller instead: the runner writes nothing (not
    /// `stdin` either), and the caller takes the stdin with [`crate::Job::take_stdin`] and writes
    /// as long as the job runs (a live session, [`crate::session`]). Default: false.
    pub stdin_open: bool,
    /// Extra environment for this job only, as `KEY=value`.
    pub env: Vec<String>,
    /// The working directory inside the container. Default: `/workspace`.
    pub working_dir: Option<String>,
    /// Cancel the job when it runs longer than this. Default: none.
    pub deadline: Option<Duration>,
    /// The credentials; `None` discovers them in this process's environment (env var first, then
    /// the Claude credentials file) at the job's start, so a refreshed token is picked up, and
    /// runs without any when none are configured.
    pub credentials: Option<Credentials>,
    /// More values to redact from everything the job reports (its errors, warnings and stderr
    /// tail), besides the credentials and the values of the config's env entries whose names
    /// look secret: secrets the job is given some other way (on stdin, say). Default: none.
    pub secrets: Vec<String>,
}

impl JobSpec {
    /// A job with no stdin, env, deadline or explicit credentials.
    pub fn new(
        agent: impl Into<String>,
        config: DockerConfig,
        workspace: impl Into<String>,
        argv: impl IntoIterator<Item = impl Into<String>>,
    ) -> JobSpec {
        JobSpec {
            agent: agent.into(),
            config,
            workspace: workspace.into(),
            argv: argv.into_iter().map(Into::into).collect(),
            stdin: Vec::new(),
            stdin_open: false,
            env: Vec::new(),
            working_dir: None,
            deadline: None,
            credentials: None,
            secrets: Vec::new(),
        }
    }

    /// Every env value the job's exec gets from its config and its own env, whatever its name.
    fn env_values(&self) -> Vec<&str> {
        let own = self
            .env
            .iter()
            .filter_map(|e| e.split_once('='))
            .map(|(_, v)| v);
        self.config
            .env
            .values()
            .map(String::as_str)
            .chain(own)
            .collect()
    }

    /// The redactor of this job's secrets, given its credentials.
    pub(crate) fn redactor(&self, credentials: &Credentials) -> Redactor {
        // The job's own `KEY=value` env is treated like the config's (the CLI's `--env`).
        let job_env: Vec<(String, String)> = self
            .env
            .iter()
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        credentials
            .redactor()
            .with_env(&self.config.env)
            .with_env(job_env.iter().map(|(k, v)| (k, v)))
            .with_secrets(&self.secrets)
    }
}

/// Runs jobs in containers. Cheap to clone; share one per process.
///
/// ```no_run
/// use herdctl_container::{resolve_docker_config, Engine, JobSpec, Runner, RunnerOptions};
/// # fn main() -> herdctl_container::Result<()> {
/// let runner = Runner::new(Engine::connect()?, RunnerOptions::new("/tmp/herdctl-state"))?;
/// let config = resolve_docker_config(&serde_json::json!({"image": "node:20", "network": "none"}))?;
/// let mut job = runner.start(JobSpec::new("fleet.agent", config, "/tmp/work", ["cat"]))?;
/// while let Some(line) = job.next_line() {
///     println!("{}", String::from_utf8_lossy(line));
/// }
/// println!("{}", job.finish().outcome.describe());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Runner {
    shared: Arc<Shared>,
}

/// What every job and lease of a runner shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub engine: Engine,
    pub options: RunnerOptions,
    /// Containers this process's jobs are using, with a count of jobs per container.
    in_use: Mutex<HashMap<String, usize>>,
    /// Persistent containers whose processes this runner has checked from inside.
    checked_inside: Mutex<HashSet<String>>,
}

impl Shared {
    pub(crate) fn hold(&self, id: &str) {
        *self.lock().entry(id.to_string()).or_default() += 1;
    }

    /// Lets go of one hold.
    pub(crate) fn release(&self, id: &str) {
        let mut held = self.lock();
        if let Some(n) = held.get_mut(id) {
            *n -= 1;
            if *n == 0 {
                held.remove(id);
            }
        }
    }

    pub(crate) fn is_held(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        // The map holds plain counts: a panic elsewhere cannot leave it inconsistent.
        self.in_use.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Runner {
    /// A runner over `engine`, keeping its files under `options.state_dir`. Reads
    /// [`ALLOW_UNSAFE_ENV`] (see [`RunnerOptions::allow_unsafe_host_config`]); a value other than
    /// `1`, `true`, `0`, `false` or empty is an error.
    ///
    /// The first runner of a process over a state directory takes this process's owner lock
    /// there (`<state_dir>/owners/`, held until the process exits) and stops the running
    /// ephemeral containers of processes that died mid-job (one list call when there are none).
    pub fn new(engine: Engine, mut options: RunnerOptions) -> Result<Runner> {
        options.allow_unsafe_host_config |= allow_from_env(std::env::var_os(ALLOW_UNSAFE_ENV))?;
        // Mount sources must be absolute; a relative state directory means "from here".
        options.state_dir = std::path::absolute(&options.state_dir).map_err(|e| {
            Error::io(
                format!("resolve state directory {}", options.state_dir.display()),
                e,
            )
        })?;
        std::fs::create_dir_all(&options.state_dir).map_err(|e| {
            Error::io(
                format!("create state directory {}", options.state_dir.display()),
                e,
            )
        })?;
        // A state directory whose file system refuses the lock costs only the reaping: jobs run,
        // and each says that its container has no owner.
        let first = crate::owner::current(&options.state_dir).is_ok_and(|(_, first)| first);
        let runner = Runner {
            shared: Arc::new(Shared {
                engine,
                options,
                in_use: Mutex::new(HashMap::new()),
                checked_inside: Mutex::new(HashSet::new()),
            }),
        };
        if first {
            // The first runner of this process over this state directory: stop the ephemeral
            // containers whose process died (killed mid-job) before it could. Best effort: an
            // engine that does not answer now fails the first job with a clearer error, and
            // `gc` tries again.
            let _ = retention::reap_orphans(&runner.shared);
        }
        Ok(runner)
    }

    /// The state directory, absolute.
    pub fn state_dir(&self) -> &std::path::Path {
        &self.shared.options.state_dir
    }

    /// The engine this runner talks to.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// How session directories are laid out.
    pub fn session_layout(&self) -> SessionLayout {
        self.shared.options.session_layout
    }

    /// Starts a job: acquires its container, starts the exec and begins writing its stdin.
    /// Errors here mean the job never ran (bad config, no engine, missing image, a container that
    /// would not start); once this returns, every ending is an [`crate::Outcome`].
    ///
    /// Every error is redacted with the job's secrets: an engine or a proxy may quote a request
    /// (the exec's, env and all) in its answer.
    pub fn start(&self, spec: JobSpec) -> Result<Job> {
        self.start_tracked(spec, &Cell::new(None))
    }

    /// [`Runner::start`], setting `reached` to the container the job got as soon as it has one:
    /// an error after that is the job's failure in a container that exists.
    pub(crate) fn start_tracked(
        &self,
        mut spec: JobSpec,
        reached: &Cell<Option<Reached>>,
    ) -> Result<Job> {
        let credentials = match spec.credentials.take() {
            Some(c) => c,
            None => Credentials::discover(|k| std::env::var(k).ok()).map_err(|e| {
                // No credentials to redact with: what the environment holds, then.
                let known = Redactor::from_process_env();
                e.redact(&known.with_env(&spec.config.env).with_secrets(&spec.secrets))
            })?,
        };
        let redactor = spec.redactor(&credentials);
        // An engine or proxy that quotes the exec's request body quotes every env value in it,
        // and a name is a poor guess at which are secret (`DATABASE_URL`): from an error that
        // can carry the engine's words, every value goes. (Config errors are the runner's own
        // words, and output tails keep the name rule, which spares the job's text.)
        let every_value = redactor.with_secrets(spec.env_values());
        self.start_job(spec, credentials, redactor.clone(), reached)
            .map_err(|e| match e {
                Error::InvalidConfig { .. } => e.redact(&redactor),
                e => e.redact(&every_value),
            })
    }

    /// [`Runner::start`] once the credentials and the redactor are known; its errors are not
    /// yet redacted.
    fn start_job(
        &self,
        spec: JobSpec,
        credentials: Credentials,
        redactor: Redactor,
        reached: &Cell<Option<Reached>>,
    ) -> Result<Job> {
        let started = Instant::now();
        let started_ms = labels::now_ms();
        let shared = &self.shared;
        let state_dir = shared.options.state_dir.to_string_lossy().into_owned();
        let mounts = MountPlan::build(&MountRequest {
            config: &spec.config,
            workspace: &spec.workspace,
            state_dir: &state_dir,
            agent: &spec.agent,
            layout: shared.options.session_layout,
            credentials: Some(&credentials),
        })?;
        // The opt-in: the agent's config, or this runner's option or environment.
        let allow = spec.config.allow_unsafe_host_config || shared.options.allow_unsafe_host_config;
        let own_socket = match shared.engine.host() {
            Host::Unix(path) => Some(path.as_path()),
            Host::Tcp(_) => None,
        };
        let sockets = EngineSockets::find(own_socket);
        plan::check_mount_sources(&mounts, &sockets, allow)?;
        mounts.check_workspace_access(&spec.config)?;
        let gate = Gate {
            allow,
            network: spec.config.network,
            sockets: &sockets,
        };
        let hash = crate::hash::config_hash(&spec.config, &mounts);
        let mode = if spec.config.ephemeral {
            Mode::Ephemeral
        } else {
            Mode::Persistent
        };
        let mut labels = labels::container_labels(
            &spec.agent,
            mode,
            &hash,
            labels::now_ms(),
            &spec.config.labels,
        );
        let mount_ids = lifecycle::mount_ids(&mounts);
        labels.insert(labels::MOUNT_IDS.into(), mount_ids.clone());
        let mut warnings = Vec::new();
        let owner = match mode {
            Mode::Ephemeral => match crate::owner::current(&shared.options.state_dir) {
                Ok((owner, _)) => {
                    labels.insert(labels::OWNER.into(), owner.id().to_string());
                    Some(owner)
                }
                Err(e) => {
                    warnings.push(format!(
                        "no owner lock for this job's container ({e}): should this process die mid-job, no other runner can prove it orphaned and stop it"
                    ));
                    None
                }
            },
            Mode::Persistent => None,
        };
        let body = plan::create_body(&spec.config, &mounts, &labels, &gate)?;
        let inside = plan::Inside::of(&body);
        let sanitized = sanitize_agent_name(&spec.agent);
        let acquired = lifecycle::acquire(
            shared,
            &Request {
                agent: &spec.agent,
                sanitized_agent: &sanitized,
                mode,
                config_hash: &hash,
                image: &spec.config.image,
                body,
                expected: plan::Expected::new(allow, &mounts),
                keep: spec.config.max_containers as usize,
                mount_ids: &mount_ids,
                owner,
                reached,
            },
        )?;
        let mut lease = acquired.lease;
        if let Err(e) =
            check_inside_once(shared, &lease, mode, &spec.config.user.to_string(), inside)
        {
            // A container that died at start (its exec failed, or was cut short) says why.
            let e = lifecycle::explain_exec_failure(shared, &lease, e);
            if lease.created() {
                // No job may run in it, and no earlier job's state is in it.
                let _ = shared.engine.remove_container(lease.id(), true);
            } else {
                lease.release();
            }
            return Err(e);
        }
        let mut timings = Timings {
            acquire: Some(started.elapsed()),
            create: acquired.create,
            start: acquired.start,
            ..Timings::default()
        };

        let job_id = labels::ephemeral_name("job", labels::now_ms());
        let job_id_for_record = job_id.clone();
        let mut env = spec
            .config
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>();
        env.extend(credentials.exec_env());
        env.extend(spec.env.iter().cloned());

        let mut exec = ExecSpec::new(spec.argv.iter().map(String::as_str));
        exec.env = env;
        exec.user = Some(spec.config.user.to_string());
        exec.working_dir = Some(
            spec.working_dir
                .unwrap_or_else(|| CONTAINER_WORKSPACE.into()),
        );
        exec.attach_stdin = true;
        // In a persistent container, which other jobs share, the job runs with a group id of its
        // own, the mark by which its cancel and its end find exactly its processes (see
        // `job/group.rs`), under `kill.sh`, which kills what it left behind when it exits. An
        // ephemeral container runs only this job and is stopped after it. The job's own argv is
        // checked first, so an error names its arguments, not the wrapper's.
        let group = match exec.check().and_then(|()| match mode {
            Mode::Ephemeral => Ok(None),
            Mode::Persistent => JobGroup::claim(lease.id(), spec.config.user.gid).map(Some),
        }) {
            Ok(group) => group,
            Err(e) => {
                lease.release();
                return Err(e);
            }
        };
        if let Some(g) = &group {
            exec.cmd = run_argv(g.gid(), &spec.argv);
            exec.user = Some(format!("{}:{}", spec.config.user.uid, g.gid()));
        }

        let t = Instant::now();
        let opened = shared
            .engine
            .exec_create(lease.id(), &exec)
            .and_then(|exec_id| Ok((shared.engine.exec_start(&exec_id)?, exec_id)));
        let (stream, exec_id) = match opened {
            Ok(o) => o,
            Err(e) => {
                let e = lifecycle::explain_exec_failure(shared, &lease, e);
                // The job never ran: give the container back the way a finished job would.
                lease.release();
                return Err(e);
            }
        };
        timings.exec_start = Some(t.elapsed());
        let parts = stream
            .split()
            .and_then(|(input, output)| Ok((output.abort_handle()?, input, output)));
        let (abort, input, output) = match parts {
            Ok(parts) => parts,
            Err(e) => {
                lease.release();
                return Err(e);
            }
        };
        let canceller = Canceller::new(
            shared.engine.clone(),
            lease.id().to_string(),
            mode,
            job_id,
            spec.config.user.to_string(),
            group,
            abort,
        );
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
            started,
            timings,
            warnings: warnings.into_iter().chain(acquired.warnings).collect(),
            image: spec.config.image,
            config_hash: hash,
            lease,
            paths: mounts.path_map(),
            record: records::Head {
                state_dir: shared.options.state_dir.clone(),
                agent: spec.agent,
                job: job_id_for_record,
                mode,
                started_ms,
                keep: spec.config.max_containers as usize,
            },
        }))
    }

    /// Runs a job to its end, handing each stdout line to `on_line`.
    pub fn run(&self, spec: JobSpec, mut on_line: impl FnMut(&[u8])) -> Result<JobReport> {
        let mut job = self.start(spec)?;
        while let Some(line) = job.next_line() {
            on_line(line);
        }
        Ok(job.finish())
    }

    /// Removes the agent's oldest stopped containers so that at most `keep` remain.
    pub fn prune(&self, agent: &str, keep: usize) -> Result<PruneReport> {
        let mut report = retention::prune(&self.shared, agent, keep)?;
        // The agent's job records get the same bound (at least the newest one stays).
        if let Err(e) = records::prune(self.state_dir(), agent, keep.max(1)) {
            report.warnings.push(format!("job records: {e}"));
        }
        Ok(report)
    }

    /// Removes every stopped container of an agent not in `live_agents`, and prunes the live
    /// agents to `keep` each. Safe to run from several processes at once.
    pub fn gc(&self, live_agents: &[String], keep: usize) -> Result<PruneReport> {
        let mut report = retention::gc(&self.shared, live_agents, keep)?;
        // Records go with their agents; those of a container that is still there stay.
        let existing = self.list(None).map(|found| {
            found
                .into_iter()
                .map(|c| c.id)
                .collect::<std::collections::HashSet<_>>()
        });
        let pruned =
            existing.and_then(|ids| records::gc(self.state_dir(), live_agents, keep.max(1), &ids));
        if let Err(e) = pruned {
            report.warnings.push(format!("job records: {e}"));
        }
        Ok(report)
    }

    /// This project's containers, optionally of one agent, newest first.
    pub fn list(&self, agent: Option<&str>) -> Result<Vec<ManagedContainer>> {
        let mut filters = vec![(labels::MANAGED, Some("1"))];
        if let Some(a) = agent {
            filters.push((labels::AGENT, Some(a)));
        }
        let mut found: Vec<ManagedContainer> = self
            .shared
            .engine
            .list_containers(&filters, true)?
            .into_iter()
            .map(|c| ManagedContainer {
                name: c
                    .names
                    .first()
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                agent: c.labels.get(labels::AGENT).cloned().unwrap_or_default(),
                mode: c.labels.get(labels::MODE).cloned().unwrap_or_default(),
                config_hash: c
                    .labels
                    .get(labels::CONFIG_HASH)
                    .cloned()
                    .unwrap_or_default(),
                created_ms: c
                    .labels
                    .get(labels::CREATED)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                state: c.state,
                id: c.id,
            })
            .collect();
        found.sort_by_key(|c| std::cmp::Reverse(c.created_ms));
        Ok(found)
    }
}

/// Checks a container's processes from inside ([`plan::check_inside`]) once: every fresh
/// container, and a reused persistent one the first time this runner uses it.
fn check_inside_once(
    shared: &Shared,
    lease: &lifecycle::Lease,
    mode: Mode,
    user: &str,
    want: plan::Inside,
) -> Result<()> {
    if !want.is_needed() {
        return Ok(());
    }
    let id = lease.id();
    let seen = || {
        shared
            .checked_inside
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    };
    if mode == Mode::Persistent && !lease.created() && seen().contains(id) {
        return Ok(());
    }
    plan::check_inside(&shared.engine, id, lease.name(), user, want)?;
    if mode == Mode::Persistent {
        // Ids only: a few per agent and config, for the life of the process.
        seen().insert(id.to_string());
    }
    Ok(())
}

/// Reads the opt-in environment variable: absent, empty, `0` or `false` is off; `1` or `true` on.
fn allow_from_env(value: Option<std::ffi::OsString>) -> Result<bool> {
    let Some(value) = value else {
        return Ok(false);
    };
    match value.to_str().map(str::trim) {
        Some("" | "0" | "false") => Ok(false),
        Some("1" | "true") => Ok(true),
        _ => Err(Error::invalid(
            ALLOW_UNSAFE_ENV,
            format!(
                "{:?} is not a switch; expected 1 or true to allow host_config settings that loosen the container, 0, false or empty for no",
                value.to_string_lossy()
            ),
        )),
    }
}

/// One of this project's containers, as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ManagedContainer {
    /// The engine's id.
    pub id: String,
    /// The name, without the engine's leading `/`.
    pub name: String,
    /// The agent's qualified name.
    pub agent: String,
    /// `ephemeral` or `persistent`.
    pub mode: String,
    /// The config hash it was created for.
    pub config_hash: String,
    /// Creation time, unix milliseconds.
    pub created_ms: u64,
    /// The engine's state: `running`, `exited`, `created`, ...
    pub state: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opt_in_variable_is_a_strict_switch() {
        let read = |v: Option<&str>| allow_from_env(v.map(Into::into));
        for (v, on) in [
            (None, false),
            (Some(""), false),
            (Some("0"), false),
            (Some("false"), false),
            (Some("1"), true),
            (Some("true"), true),
            (Some(" 1 "), true),
        ] {
            assert_eq!(read(v).unwrap(), on, "{v:?}");
        }
        assert_eq!(
            read(Some("yes")).unwrap_err().to_string(),
            "invalid HERDCTL_CONTAINER_ALLOW_UNSAFE_HOST_CONFIG: \"yes\" is not a switch; expected 1 or true to allow host_config settings that loosen the container, 0, false or empty for no"
        );
    }
}

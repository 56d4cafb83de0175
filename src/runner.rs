//! The entry point for running jobs: a [`Runner`] over an engine and a state directory.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::DockerConfig;
use crate::credentials::Credentials;
use crate::engine::{Engine, ExecSpec, PullProgress};
use crate::job::{run_argv, Canceller, Job, JobGroup, JobReport, Started, Timings};
use crate::labels::{self, Mode};
use crate::lifecycle::{self, Request};
use crate::paths::{
    sanitize_agent_name, MountPlan, MountRequest, SessionLayout, CONTAINER_WORKSPACE,
};
use crate::retention::{self, PruneReport};
use crate::{isolation, plan, Error, Result};

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
    /// The OCI runtime of every job whose docker config names none ([`DockerConfig::runtime`]),
    /// like `runsc` for gVisor: checked and proven as if the config had named it. A config that
    /// names a runtime keeps its own. Default: none (the engine's default runtime).
    pub runtime: Option<String>,
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
            runtime: None,
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
            .field("runtime", &self.runtime)
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
            env: Vec::new(),
            working_dir: None,
            deadline: None,
            credentials: None,
        }
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
    /// Persistent containers this runner has proven to run under their sandbox runtime.
    proven: Mutex<HashSet<String>>,
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
    /// A runner over `engine`, keeping its files under `options.state_dir`.
    pub fn new(engine: Engine, mut options: RunnerOptions) -> Result<Runner> {
        if let Some(name) = options.runtime.take() {
            options.runtime =
                crate::config::runtime_name("runtime", &serde_json::Value::String(name))?;
        }
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
        Ok(Runner {
            shared: Arc::new(Shared {
                engine,
                options,
                in_use: Mutex::new(HashMap::new()),
                proven: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// The state directory, absolute.
    pub fn state_dir(&self) -> &std::path::Path {
        &self.shared.options.state_dir
    }

    /// The engine this runner talks to.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Starts a job: acquires its container, starts the exec and begins writing its stdin.
    /// Errors here mean the job never ran (bad config, no engine, missing image, a container that
    /// would not start); once this returns, every ending is an [`crate::Outcome`].
    pub fn start(&self, mut spec: JobSpec) -> Result<Job> {
        let started = Instant::now();
        let shared = &self.shared;
        if spec.config.runtime.is_none() {
            spec.config.runtime = shared.options.runtime.clone();
        }
        // Before anything is made: a runtime the engine does not list, or one that cannot give
        // the job what its config asks for, is refused here.
        let runtime = match spec.config.runtime.as_deref() {
            Some(name) => isolation::with_runtimes(&shared.engine, Some(name), |engine| {
                isolation::check(&spec.config, engine, spec.config.allow_unsafe_host_config)
            })?,
            None => None,
        };
        let credentials = match spec.credentials.take() {
            Some(c) => c,
            None => Credentials::discover(|k| std::env::var(k).ok())?,
        };
        let state_dir = shared.options.state_dir.to_string_lossy().into_owned();
        let mounts = MountPlan::build(&MountRequest {
            config: &spec.config,
            workspace: &spec.workspace,
            state_dir: &state_dir,
            agent: &spec.agent,
            layout: shared.options.session_layout,
            credentials: Some(&credentials),
        })?;
        let hash = crate::hash::config_hash(&spec.config, &mounts);
        let mode = if spec.config.ephemeral {
            Mode::Ephemeral
        } else {
            Mode::Persistent
        };
        let labels = labels::container_labels(
            &spec.agent,
            mode,
            &hash,
            labels::now_ms(),
            &spec.config.labels,
        );
        let body = plan::create_body(&spec.config, &mounts, &labels)?;
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
                keep: spec.config.max_containers as usize,
            },
        )?;
        let mut lease = acquired.lease;
        if let Some(checked) = runtime.as_ref().filter(|c| c.needs_proof()) {
            let user = spec.config.user.to_string();
            if let Err(e) = prove_once(shared, &lease, mode, &user, checked) {
                // A sandbox that died at start (a pids limit below what gVisor itself needs)
                // fails the proof's exec: say that the container stopped, and how.
                let e = lifecycle::explain_exec_failure(shared, &lease, e);
                if lease.created() {
                    // No job may run in it, and no earlier job's state is in it.
                    let _ = shared.engine.remove_container(lease.id(), true);
                } else {
                    lease.release();
                }
                return Err(e);
            }
        }
        let mut timings = Timings {
            acquire: Some(started.elapsed()),
            create: acquired.create,
            start: acquired.start,
            ..Timings::default()
        };

        let job_id = labels::ephemeral_name("job", labels::now_ms());
        // Redact the values of configured env entries whose names look secret; the credentials'
        // own values are always redacted.
        let redactor = credentials.redactor().with_env(&spec.config.env);
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
        let container_watch = runtime.as_ref().filter(|c| c.needs_proof()).map(|_| {
            isolation::watch_container(
                shared.engine.clone(),
                lease.id().to_string(),
                canceller.clone(),
            )
        });
        Ok(Job::new(Started {
            engine: shared.engine.clone(),
            exec_id,
            input,
            output,
            stdin: spec.stdin,
            canceller,
            redactor,
            deadline: spec.deadline,
            max_line: shared.options.max_line_bytes,
            started,
            timings,
            warnings: acquired.warnings,
            lease,
            paths: mounts.path_map(),
            container_watch,
        }))
    }

    /// Refuses a job with injected MCP servers (whose sockets are mounted into its container)
    /// under a runtime that cannot connect to them; see [`isolation::check_host_sockets`].
    pub(crate) fn check_host_sockets(&self, config: &DockerConfig) -> Result<()> {
        let name = config
            .runtime
            .as_deref()
            .or(self.shared.options.runtime.as_deref());
        isolation::with_runtimes(&self.shared.engine, name, |engine| {
            isolation::check_host_sockets(name, engine)
        })
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
        retention::prune(&self.shared, agent, keep)
    }

    /// Removes every stopped container of an agent not in `live_agents`, and prunes the live
    /// agents to `keep` each. Safe to run from several processes at once.
    pub fn gc(&self, live_agents: &[String], keep: usize) -> Result<PruneReport> {
        retention::gc(&self.shared, live_agents, keep)
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

/// Proves, once per container, that a job's container runs under its sandbox runtime
/// ([`isolation::prove`]): every fresh container, and a reused persistent one the first time
/// this runner uses it (its runtime cannot change while it exists).
fn prove_once(
    shared: &Shared,
    lease: &lifecycle::Lease,
    mode: Mode,
    user: &str,
    checked: &isolation::Checked,
) -> Result<()> {
    let id = lease.id();
    let seen = || shared.proven.lock().unwrap_or_else(|p| p.into_inner());
    if mode == Mode::Persistent && !lease.created() && seen().contains(id) {
        return Ok(());
    }
    isolation::prove(&shared.engine, id, lease.name(), user, checked)?;
    if mode == Mode::Persistent {
        // Ids only: a few per agent and config, for the life of the process.
        seen().insert(id.to_string());
    }
    Ok(())
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

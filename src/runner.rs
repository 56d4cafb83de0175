//! The entry point for running jobs: a [`Runner`] over an engine and a state directory.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::DockerConfig;
use crate::credentials::Credentials;
use crate::engine::{Engine, EngineOptions, ExecSpec, PullProgress};
use crate::job::{run_argv, Canceller, Job, JobGroup, JobReport, Started, Timings};
use crate::labels::{self, Mode};
use crate::lifecycle::{self, Request};
use crate::paths::{
    sanitize_agent_name, MountPlan, MountRequest, SessionLayout, CONTAINER_WORKSPACE,
};
use crate::retention::{self, PruneReport};
use crate::{plan, Error, Result};

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
    /// Agents whose containers live on another engine than the runner's own: the agent's
    /// qualified name (exact) and how to reach its engine ([`EngineOptions::for_address`]).
    /// Placement is this configuration, not a scheduler: an agent always runs where it is put.
    /// Agents with the same address share one engine handle and its pool of connections; each
    /// engine is connected when its first agent needs it (a failure fails that job and is tried
    /// again by the next). Default: none, every agent on the runner's engine.
    pub agent_engines: BTreeMap<String, EngineOptions>,
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
            agent_engines: BTreeMap::new(),
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
            .field(
                "agent_engines",
                &self
                    .agent_engines
                    .iter()
                    .map(|(agent, o)| (agent, o.describe()))
                    .collect::<Vec<_>>(),
            )
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
    /// The runner's own engine, where every agent not placed elsewhere runs.
    shared: Arc<Shared>,
    engines: Arc<Engines>,
}

/// The engines of [`RunnerOptions::agent_engines`], by address: one [`Shared`] (engine handle,
/// connection pool, containers in use) each, the runner's own included.
#[derive(Debug)]
struct Engines {
    /// Agent -> the key of its engine.
    placement: BTreeMap<String, String>,
    /// Key -> how to reach it.
    options: BTreeMap<String, EngineOptions>,
    /// Key -> the connected engine.
    connected: Mutex<HashMap<String, Arc<Shared>>>,
}

impl Engines {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Shared>>> {
        // The map holds handles only: a panic elsewhere cannot leave it inconsistent.
        self.connected.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Two options with the same key reach the same engine the same way.
fn engine_key(o: &EngineOptions) -> String {
    format!("{} {:?}", o.describe(), o.ssh_options)
}

/// What every job and lease of a runner shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub engine: Engine,
    pub options: RunnerOptions,
    /// Containers this process's jobs are using, with a count of jobs per container.
    in_use: Mutex<HashMap<String, usize>>,
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
        let mut engines = Engines {
            placement: BTreeMap::new(),
            options: BTreeMap::new(),
            connected: Mutex::new(HashMap::new()),
        };
        for (agent, o) in &options.agent_engines {
            let key = engine_key(o);
            engines.placement.insert(agent.clone(), key.clone());
            engines.options.insert(key, o.clone());
        }
        let own_key = engine_key(engine.options());
        let shared = Arc::new(Shared {
            engine,
            options,
            in_use: Mutex::new(HashMap::new()),
        });
        engines.lock().insert(own_key, shared.clone());
        Ok(Runner {
            shared,
            engines: Arc::new(engines),
        })
    }

    /// What the jobs of `agent` share: its engine's, connected when first needed.
    fn shared_for(&self, agent: &str) -> Result<Arc<Shared>> {
        match self.engines.placement.get(agent) {
            None => Ok(self.shared.clone()),
            Some(key) => self.connect(key),
        }
    }

    /// The engine of this key, connected (without holding the map's lock while connecting, so a
    /// slow engine does not hold up the others).
    fn connect(&self, key: &str) -> Result<Arc<Shared>> {
        if let Some(s) = self.engines.lock().get(key) {
            return Ok(s.clone());
        }
        let engine = Engine::with_options(self.engines.options[key].clone())?;
        let mut connected = self.engines.lock();
        let shared = connected.entry(key.to_string()).or_insert_with(|| {
            Arc::new(Shared {
                engine,
                options: self.shared.options.clone(),
                in_use: Mutex::new(HashMap::new()),
            })
        });
        Ok(shared.clone())
    }

    /// Every engine of the runner: its own first, then those agents are placed on.
    fn all_engines(&self) -> Vec<Result<Arc<Shared>>> {
        let mut all = vec![Ok(self.shared.clone())];
        let own = engine_key(self.shared.engine.options());
        for key in self.engines.options.keys().filter(|k| **k != own) {
            all.push(self.connect(key));
        }
        all
    }

    /// The engine the jobs of `agent` run on (connecting it, when it is placed on another engine
    /// not connected yet).
    pub fn engine_for(&self, agent: &str) -> Result<Engine> {
        Ok(self.shared_for(agent)?.engine.clone())
    }

    /// The state directory, absolute.
    pub fn state_dir(&self) -> &std::path::Path {
        &self.shared.options.state_dir
    }

    /// The runner's own engine, where agents not in [`RunnerOptions::agent_engines`] run.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Starts a job: acquires its container, starts the exec and begins writing its stdin.
    /// Errors here mean the job never ran (bad config, no engine, missing image, a container that
    /// would not start); once this returns, every ending is an [`crate::Outcome`].
    pub fn start(&self, spec: JobSpec) -> Result<Job> {
        let started = Instant::now();
        let shared = &self.shared_for(&spec.agent)?;
        // On another machine's engine, bind mounts name that machine's paths: the injected
        // tools' sockets and the credentials copy of this one cannot be mounted there (the
        // credentials go to the exec instead; see `Credentials::remote_exec_env`).
        let local = shared.engine.options().is_local();
        let credentials = match spec.credentials {
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
            credentials: local.then_some(&credentials),
        })?;
        let mounts = if local {
            mounts
        } else {
            mounts.without_mcp_sockets()
        };
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
        )
        .map_err(|e| remote_mount_hint(e, shared.engine.options()))?;
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
        env.extend(if local {
            credentials.exec_env()
        } else {
            credentials.remote_exec_env()
        });
        env.extend(spec.env.iter().cloned());

        let mut lease = acquired.lease;
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
            canceller,
            redactor,
            deadline: spec.deadline,
            max_line: shared.options.max_line_bytes,
            started,
            timings,
            warnings: acquired.warnings,
            lease,
            paths: mounts.path_map(),
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
        retention::prune(&*self.shared_for(agent)?, agent, keep)
    }

    /// Removes every stopped container of an agent not in `live_agents`, and prunes the live
    /// agents to `keep` each, on every engine of the runner. Safe to run from several processes
    /// at once. An engine agents are placed on that cannot be reached is a warning, not an error,
    /// so one machine down does not stop the others' collection.
    pub fn gc(&self, live_agents: &[String], keep: usize) -> Result<PruneReport> {
        let mut all = self.all_engines().into_iter();
        // The runner's own engine comes first, and is connected already.
        let own = all.next().expect("the runner's own engine")?;
        let mut report = retention::gc(&own, live_agents, keep)?;
        for shared in all {
            match shared.and_then(|s| retention::gc(&s, live_agents, keep)) {
                Ok(r) => {
                    report.removed.extend(r.removed);
                    report.warnings.extend(r.warnings);
                }
                Err(e) => report.warnings.push(format!("gc skipped an engine: {e}")),
            }
        }
        Ok(report)
    }

    /// This project's containers, optionally of one agent (on its engine), else of every engine
    /// of the runner; newest first.
    pub fn list(&self, agent: Option<&str>) -> Result<Vec<ManagedContainer>> {
        let mut filters = vec![(labels::MANAGED, Some("1"))];
        if let Some(a) = agent {
            filters.push((labels::AGENT, Some(a)));
        }
        let engines = match agent {
            Some(a) => vec![self.shared_for(a)?],
            None => self.all_engines().into_iter().collect::<Result<_>>()?,
        };
        let mut listed = Vec::new();
        for shared in engines {
            listed.extend(shared.engine.list_containers(&filters, true)?);
        }
        let mut found: Vec<ManagedContainer> = listed
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

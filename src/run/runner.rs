//! The entry point for running jobs: a [`Runner`] over an engine and a state directory.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::config::{DockerConfig, EngineSockets, Gate, ALLOW_UNSAFE_ENV};
use crate::credentials::Credentials;
use crate::engine::{Engine, EngineOptions, ExecSpec, Host, PullProgress};
use crate::labels::{self, Mode};
use crate::paths::{
    sanitize_agent_name, MountPlan, MountRequest, SessionLayout, CONTAINER_WORKSPACE,
};
use crate::redact::Redactor;
use crate::run::job::{run_argv, Canceller, Job, JobGroup, JobReport, Started, Timings};
use crate::run::lifecycle::{self, Reached, Request};
use crate::run::retention::{self, PruneReport};
use crate::run::{inside, isolation, pool, records};
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

    /// `never`, `if-missing` or `always`; an error names the argument `pull`.
    fn from_str(s: &str) -> Result<PullPolicy> {
        PullPolicy::parse_as(s, "pull")
    }
}

/// The environment variable that sets a pull policy where the caller gives none (herdctl builds
/// its runners without options, so this is how a herdctl user sets it).
pub const PULL_ENV: &str = "HERDCTL_CONTAINER_PULL";

impl PullPolicy {
    /// `never`, `if-missing` or `always`, given as the argument `field` (an
    /// [`Error::InvalidArgument`] naming it otherwise).
    pub fn parse_as(value: &str, field: &str) -> Result<PullPolicy> {
        PullPolicy::parse(value).ok_or_else(|| Error::argument(field, PullPolicy::problem(value)))
    }

    /// The policy [`PULL_ENV`] holds: `None` when it is empty; an [`Error::InvalidConfig`]
    /// naming the variable when it holds no policy.
    pub fn from_env_value(value: &str) -> Result<Option<PullPolicy>> {
        if value.is_empty() {
            return Ok(None);
        }
        match PullPolicy::parse(value) {
            Some(p) => Ok(Some(p)),
            None => Err(Error::invalid(PULL_ENV, PullPolicy::problem(value))),
        }
    }

    fn parse(value: &str) -> Option<PullPolicy> {
        match value {
            "never" => Some(PullPolicy::Never),
            "if-missing" => Some(PullPolicy::IfMissing),
            "always" => Some(PullPolicy::Always),
            _ => None,
        }
    }

    fn problem(value: &str) -> String {
        format!("{value:?} is not a pull policy; expected \"never\", \"if-missing\" or \"always\"")
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
    /// The OCI runtime of every job whose docker config names none ([`DockerConfig::runtime`]),
    /// like `runsc` for gVisor: checked and proven as if the config had named it. A config that
    /// names a runtime keeps its own. Default: none (the engine's default runtime).
    pub runtime: Option<String>,
    /// How many idle containers to keep warm per ephemeral agent (see [`Runner::warm`] and the
    /// README's "Warm pools"): an ephemeral job then takes a container that was created,
    /// checked and started ahead of need, and a replacement is warmed in the background. Each
    /// idle container costs host memory (about 1.5 MiB in the engine's shim and the container;
    /// see BENCHMARKS.md). Persistent agents have no pool. `None` reads the environment
    /// variable [`WARM_POOL_ENV`] (`HERDCTL_CONTAINER_WARM_POOL`), so an unmodified herdctl can
    /// turn it on; at most [`MAX_WARM_POOL`](crate::MAX_WARM_POOL). Ignored with
    /// [`PullPolicy::Always`], which wants a fresh pull for every container. Default: `None`,
    /// and without the variable 0 (no pool).
    pub warm_pool: Option<usize>,
    /// Agents whose containers live on another engine than the runner's own: the agent's
    /// qualified name (exact) and how to reach its engine ([`EngineOptions::for_address`]).
    /// Placement is this configuration, not a scheduler: an agent always runs where it is put.
    /// Agents with the same address share one engine handle and its pool of connections; each
    /// engine is connected when its first agent needs it (a failure fails that job and is tried
    /// again by the next). Default: none, every agent on the runner's engine.
    pub agent_engines: BTreeMap<String, EngineOptions>,
}

/// The environment variable that sizes the warm pool when [`RunnerOptions::warm_pool`] is
/// `None`: a whole number from 0 to [`MAX_WARM_POOL`](crate::MAX_WARM_POOL).
pub const WARM_POOL_ENV: &str = "HERDCTL_CONTAINER_WARM_POOL";

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
            runtime: None,
            warm_pool: None,
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
            .field("allow_unsafe_host_config", &self.allow_unsafe_host_config)
            .field("runtime", &self.runtime)
            .field("warm_pool", &self.warm_pool)
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
    /// Keep the program's stdin open for the caller instead: the runner writes nothing (not
    /// `stdin` either), and the caller takes the stdin with [`crate::Job::take_stdin`] and writes
    /// as long as the job runs (a live session, [`crate::herdctl::session`]). Default: false.
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
    /// The warm pool's size per ephemeral agent: the option or its environment variable, 0
    /// with [`PullPolicy::Always`].
    pub warm_pool: usize,
    /// Agents whose warm pools this runner used, for [`Runner::close`].
    pools_used: Mutex<HashSet<String>>,
}

/// Containers this process's jobs are using (in any runner: herdctl makes one per job), with a
/// count of jobs per container. Ids, which no two engines share in practice.
static IN_USE: LazyLock<Mutex<HashMap<String, usize>>> = LazyLock::new(Mutex::default);

/// Persistent containers this process has checked from inside (any runner), each with the lock
/// that the first of several jobs arriving at once holds while it checks, so the others wait
/// for its answer instead of each making the check's exec.
static CHECKED_INSIDE: LazyLock<Mutex<HashMap<String, Arc<Mutex<bool>>>>> =
    LazyLock::new(Mutex::default);

impl Shared {
    fn new(engine: Engine, options: RunnerOptions, warm_pool: usize) -> Shared {
        Shared {
            engine,
            options,
            warm_pool,
            pools_used: Mutex::new(HashSet::new()),
        }
    }

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

    /// Notes that this runner used the warm pool of `agent`.
    pub(crate) fn used_pool(&self, agent: &str) {
        let mut used = self.pools_used.lock().unwrap_or_else(|p| p.into_inner());
        if !used.contains(agent) {
            used.insert(agent.to_string());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'static, HashMap<String, usize>> {
        // The map holds plain counts: a panic elsewhere cannot leave it inconsistent.
        IN_USE.lock().unwrap_or_else(|p| p.into_inner())
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
        if let Some(name) = options.runtime.take() {
            options.runtime = runtime_argument(&name, "runtime")?;
        }
        let warm_pool = match options.warm_pool {
            Some(n) => check_pool_size("warm_pool", &n.to_string())?,
            None => match std::env::var_os(WARM_POOL_ENV) {
                Some(v) => check_pool_size(WARM_POOL_ENV, &v.to_string_lossy())?,
                None => 0,
            },
        };
        let warm_pool = if options.pull == PullPolicy::Always {
            0
        } else {
            warm_pool
        };
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
        let first = crate::run::owner::current(&options.state_dir).is_ok_and(|(_, first)| first);
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
        let shared = Arc::new(Shared::new(engine, options, warm_pool));
        engines.lock().insert(own_key, shared.clone());
        let runner = Runner {
            shared,
            engines: Arc::new(engines),
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

    /// What the jobs of `agent` share: its engine's, connected when first needed.
    fn shared_for(&self, agent: &str) -> Result<Arc<Shared>> {
        match self.engines.placement.get(agent) {
            None => Ok(self.shared.clone()),
            Some(key) => self.connect(key),
        }
    }

    /// The engine of this key, connected (without holding the map's lock while connecting, so a
    /// slow engine does not hold up the others). The first connect reaps the engine's orphaned
    /// ephemeral containers, as [`Runner::new`] does on the runner's own.
    fn connect(&self, key: &str) -> Result<Arc<Shared>> {
        if let Some(s) = self.engines.lock().get(key) {
            return Ok(s.clone());
        }
        let engine = Engine::with_options(self.engines.options[key].clone())?;
        let (shared, fresh) = {
            let mut connected = self.engines.lock();
            match connected.get(key) {
                Some(s) => (s.clone(), false),
                None => {
                    let s = Arc::new(Shared::new(
                        engine,
                        self.shared.options.clone(),
                        self.shared.warm_pool,
                    ));
                    connected.insert(key.to_string(), s.clone());
                    (s, true)
                }
            }
        };
        if fresh {
            // Best effort, as in `Runner::new`.
            let _ = retention::reap_orphans(&shared);
        }
        Ok(shared)
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
                Error::InvalidConfig { .. } | Error::InvalidArgument { .. } => e.redact(&redactor),
                e => e.redact(&every_value),
            })
    }

    /// [`Runner::start`] once the credentials and the redactor are known; its errors are not
    /// yet redacted.
    fn start_job(
        &self,
        mut spec: JobSpec,
        credentials: Credentials,
        redactor: Redactor,
        reached: &Cell<Option<Reached>>,
    ) -> Result<Job> {
        let started = Instant::now();
        let started_ms = labels::now_ms();
        let shared = &self.shared_for(&spec.agent)?;
        let planned = self.plan(shared, &mut spec, &credentials)?;
        let Planned {
            mounts,
            hash,
            mode,
            body,
            inside,
            sanitized,
            expected,
            user,
            mount_ids,
            owner,
            runtime,
            local,
            warnings: plan_warnings,
        } = &planned;
        let (mode, inside) = (*mode, *inside);

        let job_id = labels::ephemeral_name("job", labels::now_ms());
        let job_id_for_record = job_id.clone();
        let mut env = spec
            .config
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>();
        env.extend(if *local {
            credentials.exec_env()
        } else {
            credentials.remote_exec_env()
        });
        env.extend(spec.env.iter().cloned());

        let mut exec = ExecSpec::new(spec.argv.iter().map(String::as_str));
        exec.env = env;
        exec.user = Some(user.clone());
        exec.working_dir = Some(
            spec.working_dir
                .unwrap_or_else(|| CONTAINER_WORKSPACE.into()),
        );
        exec.attach_stdin = true;
        // The job's own argv is checked before any container is made or taken, so an error names
        // its arguments (not a wrapper's) and leaves nothing behind.
        exec.check()?;

        // A pool container that died while idle is found when the job's exec cannot be made in
        // it: it is removed and the job gets a container of its own (never the dead one).
        let mut try_pool = mode == Mode::Ephemeral && shared.warm_pool > 0;
        let mut early_warnings = plan_warnings.clone();
        let (create, start, mut warnings, mut lease, group, opened, exec_started) = loop {
            let want = try_pool.then(|| planned.want(&spec.agent, shared.warm_pool));
            if try_pool {
                shared.used_pool(&spec.agent);
            }
            let lifecycle::Acquired {
                mut lease,
                create,
                start,
                warnings,
            } = lifecycle::acquire(
                shared,
                &Request {
                    agent: &spec.agent,
                    sanitized_agent: sanitized,
                    mode,
                    config_hash: hash,
                    image: &spec.config.image,
                    body: body.clone(),
                    expected: expected.clone(),
                    keep: spec.config.max_containers as usize,
                    mount_ids,
                    owner: owner.clone(),
                    reached,
                    pool: want,
                },
            )
            .map_err(|e| remote_mount_hint(e, shared.engine.options()))?;
            if let Err(e) = check_inside_once(shared, &lease, mode, user, inside, runtime.as_ref())
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
            // In a persistent container, which other jobs share, the job runs with a group id of
            // its own, the mark by which its cancel and its end find exactly its processes (see
            // `job/group.rs`), under `kill.sh`, which kills what it left behind when it exits. An
            // ephemeral container runs only this job and is stopped after it.
            let group = match mode {
                Mode::Ephemeral => None,
                Mode::Persistent => match JobGroup::claim(lease.id(), spec.config.user.gid) {
                    Ok(g) => Some(g),
                    Err(e) => {
                        lease.release();
                        return Err(e);
                    }
                },
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
            match opened {
                Ok(o) => break (create, start, warnings, lease, group, o, t),
                Err(e) if lease.pooled() => {
                    lease.discard();
                    early_warnings.push(format!(
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
        };
        early_warnings.append(&mut warnings);
        let warnings = early_warnings;
        let mut timings = Timings {
            acquire: Some(exec_started.duration_since(started)),
            create,
            start,
            ..Timings::default()
        };
        let (stream, exec_id) = opened;
        let t = exec_started;
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
        let container_watch = runtime.as_ref().map(|_| {
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
            stdin_open: spec.stdin_open,
            canceller,
            redactor,
            deadline: spec.deadline,
            max_line: shared.options.max_line_bytes,
            started,
            timings,
            warnings,
            image: spec.config.image,
            config_hash: hash.clone(),
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
            container_watch,
        }))
    }

    /// What a job's container looks like: its mounts (prepared on the host), config hash, mode,
    /// create body and what the checks expect.
    fn plan(
        &self,
        shared: &Shared,
        spec: &mut JobSpec,
        credentials: &Credentials,
    ) -> Result<Planned> {
        if spec.config.runtime.is_none() {
            spec.config.runtime = shared.options.runtime.clone();
        }
        // Before anything is made: a runtime the engine does not list, or one that cannot give
        // the job what its config asks for, is refused here. Only a sandbox needs the proof.
        let allow = spec.config.allow_unsafe_host_config || shared.options.allow_unsafe_host_config;
        let runtime = match spec.config.runtime.as_deref() {
            Some(name) => isolation::with_runtimes(&shared.engine, Some(name), |engine| {
                isolation::check(&spec.config, engine, allow)
            })?,
            None => None,
        }
        .filter(isolation::Checked::needs_proof);
        // On another machine's engine, bind mounts name that machine's paths: the injected
        // tools' sockets and the credentials copy of this one cannot be mounted there (the
        // credentials go to the exec instead; see `Credentials::remote_exec_env`).
        let local = shared.engine.options().is_local();
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
        // The opt-in: the agent's config, or this runner's option or environment.
        let allow = spec.config.allow_unsafe_host_config || shared.options.allow_unsafe_host_config;
        let own_socket = match shared.engine.host() {
            Host::Unix(path) => Some(path.as_path()),
            Host::Tcp(_) | Host::Ssh(_) => None,
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
            Mode::Ephemeral => match crate::run::owner::current(&shared.options.state_dir) {
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
        let inside = inside::Inside::of(&body);
        let sanitized = sanitize_agent_name(&spec.agent);
        let expected = plan::Expected::new(allow, &mounts);
        let user = spec.config.user.to_string();
        Ok(Planned {
            mounts,
            hash,
            mode,
            body,
            inside,
            sanitized,
            expected,
            user,
            mount_ids,
            owner,
            runtime,
            local,
            warnings,
        })
    }

    /// Fills the warm pool of `spec`'s agent for `spec`'s config (the containers its ephemeral
    /// jobs will take) and waits until it holds [`RunnerOptions::warm_pool`] idle containers,
    /// or `timeout` passes ([`Error::Timeout`]). Without it a pool starts warming after the
    /// agent's first job, which makes its own container. Fails, naming the field, for a
    /// persistent agent or a runner without a pool, and with the engine's error when a
    /// container cannot be warmed (a missing image, a failed check).
    pub fn warm(&self, spec: &JobSpec, timeout: Duration) -> Result<()> {
        let shared = &self.shared_for(&spec.agent)?;
        if !spec.config.ephemeral {
            return Err(Error::invalid(
                "docker.ephemeral",
                "false: a persistent agent reuses its container and has no warm pool",
            ));
        }
        if shared.warm_pool == 0 {
            return Err(Error::invalid(
                "warm_pool",
                format!("this runner has no warm pool; set RunnerOptions::warm_pool or {WARM_POOL_ENV} (and a pull policy other than always)"),
            ));
        }
        let credentials = match &spec.credentials {
            Some(c) => c.clone(),
            None => Credentials::discover(|k| std::env::var(k).ok())?,
        };
        let redactor = spec.redactor(&credentials);
        let planned = self
            .plan(shared, &mut spec.clone(), &credentials)
            .map_err(|e| e.redact(&redactor))?;
        shared.used_pool(&spec.agent);
        pool::prewarm(
            &shared.engine,
            &shared.options.state_dir,
            &planned.want(&spec.agent, shared.warm_pool),
            timeout,
        )
        .map_err(|e| e.redact(&redactor))
    }

    /// Retires the warm pools this runner used: their idle containers are removed (waiting up
    /// to a minute). The pools are shared by every runner of the process, so another runner's
    /// next job of such an agent starts a new one. Containers that jobs took are not touched.
    /// Call it before the process exits; what a process that died left is removed by the next
    /// [`Runner::gc`], or when a pool next starts over this state directory.
    pub fn close(&self) -> PruneReport {
        let connected: Vec<Arc<Shared>> = self.engines.lock().values().cloned().collect();
        let mut report = PruneReport::default();
        for shared in connected {
            let agents: Vec<String> = shared
                .pools_used
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain()
                .collect();
            if agents.is_empty() {
                continue;
            }
            let r = pool::close(&shared.engine, &shared.options.state_dir, Some(&agents));
            report.removed.extend(r.removed);
            report.stopped.extend(r.stopped);
            report.warnings.extend(r.warnings);
        }
        report
    }

    /// How many idle containers this process's warm pool of `agent` holds right now.
    pub fn warm_pool_idle(&self, agent: &str) -> usize {
        match self.shared_for(agent) {
            Ok(shared) => pool::idle_count(&shared.engine, &shared.options.state_dir, agent),
            // An engine that cannot be reached has no pool this process could count.
            Err(_) => 0,
        }
    }

    /// Refuses a job with injected MCP servers (whose sockets are mounted into its container)
    /// under a runtime that cannot connect to them; see [`isolation::check_host_sockets`].
    pub(crate) fn check_host_sockets(&self, engine: &Engine, config: &DockerConfig) -> Result<()> {
        let name = config
            .runtime
            .as_deref()
            .or(self.shared.options.runtime.as_deref());
        isolation::with_runtimes(engine, name, |engine| {
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
        let mut report = retention::prune(&*self.shared_for(agent)?, agent, keep)?;
        // The agent's job records get the same bound (at least the newest one stays).
        if let Err(e) = records::prune(self.state_dir(), agent, keep.max(1)) {
            report.warnings.push(format!("job records: {e}"));
        }
        Ok(report)
    }

    /// Removes every stopped container of an agent not in `live_agents`, and prunes the live
    /// agents to `keep` each, on every engine of the runner. Safe to run from several processes
    /// at once. An engine agents are placed on that cannot be reached is a warning, not an error,
    /// so one machine down does not stop the others' collection.
    pub fn gc(&self, live_agents: &[String], keep: usize) -> Result<PruneReport> {
        let mut report = retention::gc(&self.shared, live_agents, keep)?;
        for shared in self.all_engines().into_iter().skip(1) {
            match shared.and_then(|s| retention::gc(&s, live_agents, keep)) {
                Ok(r) => {
                    report.removed.extend(r.removed);
                    report.warnings.extend(r.warnings);
                }
                Err(e) => report.warnings.push(format!("gc skipped an engine: {e}")),
            }
        }
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
            .map(|c| {
                let role = pool::role(self.state_dir(), &c);
                ManagedContainer {
                    mode: match role {
                        pool::Role::Idle => "pool".to_string(),
                        pool::Role::Busy => "warming".to_string(),
                        _ => c.labels.get(labels::MODE).cloned().unwrap_or_default(),
                    },
                    name: c
                        .names
                        .first()
                        .map(|n| n.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
                    agent: c.labels.get(labels::AGENT).cloned().unwrap_or_default(),
                    config_hash: c
                        .labels
                        .get(labels::CONFIG_HASH)
                        .cloned()
                        .unwrap_or_default(),
                    // A pool container is as new as the job that took it.
                    created_ms: match role {
                        pool::Role::Taken(at) => at,
                        _ => c
                            .labels
                            .get(labels::CREATED)
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0),
                    },
                    state: c.state,
                    id: c.id,
                }
            })
            .collect();
        found.sort_by_key(|c| std::cmp::Reverse(c.created_ms));
        Ok(found)
    }
}

/// A job's container as [`Runner::plan`] works it out.
struct Planned {
    mounts: MountPlan,
    hash: String,
    mode: Mode,
    body: serde_json::Value,
    inside: inside::Inside,
    sanitized: String,
    expected: plan::Expected,
    user: String,
    /// The [`labels::MOUNT_IDS`] value of the mounts as the host has them now.
    mount_ids: String,
    /// For an ephemeral job: this process's owner, whose label is in `body`.
    owner: Option<Arc<crate::run::owner::Owner>>,
    /// The sandbox runtime a process inside must prove it runs under, if any.
    runtime: Option<isolation::Checked>,
    /// Whether the engine is on this machine (else the credentials go to the exec).
    local: bool,
    /// What the job should hear about its plan (an owner lock that could not be had).
    warnings: Vec<String>,
}

impl Planned {
    /// What the warm pool of `agent` needs to make containers like this job's.
    fn want<'a>(&'a self, agent: &'a str, target: usize) -> pool::Want<'a> {
        pool::Want {
            target,
            agent,
            sanitized: &self.sanitized,
            hash: &self.hash,
            body: &self.body,
            expected: &self.expected,
            inside: self.inside,
            user: &self.user,
            mounts: &self.mounts,
            mount_ids: &self.mount_ids,
            runtime: self.runtime.as_ref(),
        }
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

/// A warm pool size from the option or its environment variable: a whole number from 0 to
/// [`pool::MAX_WARM_POOL`]; empty is 0.
fn check_pool_size(field: &str, value: &str) -> Result<usize> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(0);
    }
    match v.parse::<usize>() {
        Ok(n) if n <= pool::MAX_WARM_POOL => Ok(n),
        _ => Err(Error::invalid(
            field,
            format!(
                "{value:?} is not a warm pool size; expected a whole number from 0 to {}",
                pool::MAX_WARM_POOL
            ),
        )),
    }
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

/// An OCI runtime's name given as the argument `field` (like [`RunnerOptions::runtime`]),
/// checked as a docker config's `runtime` is: `Ok(None)` for `""`, an
/// [`Error::InvalidArgument`] naming `field` for a name no engine could list.
pub fn runtime_argument(name: &str, field: &str) -> Result<Option<String>> {
    crate::config::runtime_name(field, &serde_json::Value::String(name.into()))
        .map_err(Error::into_argument)
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
    /// `ephemeral` or `persistent`; for a warm pool container no job has taken yet, `pool`
    /// when it is ready and `warming` while it is being made (or removed).
    pub mode: String,
    /// The config hash it was created for.
    pub config_hash: String,
    /// Creation time, unix milliseconds; for a warm pool container a job took, when it took it.
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

//! The entry point for running jobs: a [`Runner`] over an engine and a state directory.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{DockerConfig, ALLOW_UNSAFE_ENV};
use crate::credentials::Credentials;
use crate::engine::{Engine, EngineOptions};
use crate::labels::{self};
use crate::plan::job::{job_exec, ExecRequest};
use crate::plan::SessionLayout;
use crate::redact::Redactor;
use crate::run::job::records;
use crate::run::job::{Job, JobReport};
use crate::run::lifecycle::Reached;
use crate::run::options::{
    allow_from_env, check_pool_size, runtime_argument, PullPolicy, RunnerOptions, WARM_POOL_ENV,
};
use crate::run::retention::{self, PruneReport};
use crate::run::shared::Shared;
use crate::run::spec::JobSpec;
use crate::run::start;
use crate::run::{isolation, pool};
use crate::{Error, Result};

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
    /// yet redacted. Three phases: plan (nothing made on the engine), acquire a container and
    /// open the exec, hand over the job.
    fn start_job(
        &self,
        mut spec: JobSpec,
        credentials: Credentials,
        redactor: Redactor,
        reached: &Cell<Option<Reached>>,
    ) -> Result<Job> {
        let started = (Instant::now(), labels::now_ms());
        let shared = &self.shared_for(&spec.agent)?;
        let planned = start::plan(shared, &mut spec, &credentials)?;
        let mut exec = job_exec(&ExecRequest {
            config: &spec.config,
            argv: &spec.argv,
            env: &spec.env,
            working_dir: spec.working_dir.as_deref(),
            credentials: &credentials,
            local: planned.local,
        })?;
        let opened = start::acquire_and_open(shared, &spec, &planned, &mut exec, reached)?;
        start::into_job(shared, spec, planned, opened, redactor, started)
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
        let planned = start::plan(shared, &mut spec.clone(), &credentials)
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
}

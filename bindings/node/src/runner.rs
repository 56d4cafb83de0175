//! `ContainerRunnerCore`: the native half of `ContainerRunner` (npm/index.js). It holds one
//! core [`Runner`] and turns JS requests into core calls; the policy (what a job is, which
//! container it gets, how it ends) is the core's.
//!
//! No engine call runs on the JS thread: the constructor only validates (the engine is
//! connected by the first job or task that needs it, on its own thread), jobs stream through
//! [`MessageStream`], and list/prune/gc are [`Blocking`] tasks on libuv's pool.

// napi's registration of these items is not compiled into the unit-test build.
#![cfg_attr(test, allow(dead_code))]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herdctl_container::agent::{AgentJob, AgentRequest, Command, ExecuteOptions};
use herdctl_container::engine::{log_level_from_env, stderr_logger, EngineOptions, Host, LogLevel};
use herdctl_container::invocation::Strategy;
use herdctl_container::mcp::ToolHandler;
use herdctl_container::{
    DockerConfig, Engine, Error, PullPolicy, Runner, RunnerOptions, SessionLayout, PULL_ENV,
};
use napi::bindgen_prelude::{AsyncTask, Uint8Array};
use napi::{Env, Result};
use napi_derive::napi;
use serde_json::Value;

use crate::buffer::{Buffer, Capacity};
use crate::errors::{config_secrets, guarded, secrets, throw, Blocking, Secrets};
use crate::hooks::{call_observer, pull_progress, Callback, EngineCallEvent, PullProgressEvent};
use crate::session::{pump, SessionCore, Slot};
use crate::stream::MessageStream;
use crate::tool_calls::{CloseOnDrop, ToolCalls};
use herdctl_container::session::{AgentSession, SessionRequest};

/// How a `ContainerRunner` reaches the engine and runs jobs. Every field is optional; a field of
/// the wrong type, or one not listed here, throws with code `INVALID_ARGUMENT`.
#[napi(object)]
#[derive(Default)]
pub struct ContainerRunnerOptions {
    /// The engine: `unix:///path/to/docker.sock`, `tcp://host:port` (TLS when
    /// `DOCKER_TLS_VERIFY` is set, with the files of `DOCKER_CERT_PATH`, as `docker -H` takes
    /// it), `ssh://user@host[:port]`, or a docker context's name. Default: the docker CLI's
    /// (`DOCKER_HOST`, `DOCKER_CONTEXT`, the current context, else `/var/run/docker.sock`). At
    /// most one of this and `socketPath`.
    pub docker_host: Option<String>,
    /// A unix socket path, like `/var/run/docker.sock`.
    pub socket_path: Option<String>,
    /// Agents placed on other engines: an agent's qualified name, and its engine's address as
    /// `dockerHost` takes it (or a docker context's name). Other agents run on the runner's own
    /// engine; agents with one address share its connections. Default: none.
    pub engines: Option<HashMap<String, String>>,
    /// When to pull the image: `"never"` (a missing image is an error saying how to get it),
    /// `"if-missing"` or `"always"`. Default: the `HERDCTL_CONTAINER_PULL` environment variable
    /// (same values; herdctl builds its runners without options, so this is how a herdctl user
    /// sets it), else `"never"`.
    pub pull: Option<String>,
    /// Cancel a job that runs longer than this many milliseconds; it then ends with an error
    /// message whose outcome is `timed_out`. Default: no limit.
    pub job_timeout_ms: Option<f64>,
    /// Rewrite container paths in messages (`/workspace/src/main.rs`) to the host's. Default:
    /// false (herdctl's own messages carry container paths).
    pub translate_paths: Option<bool>,
    /// `"per-agent"` (default: `<stateDir>/docker-sessions/<agent>/`, so one agent cannot read
    /// another's transcripts) or `"flat"` (`<stateDir>/docker-sessions/`, where herdctl's session
    /// discovery looks today).
    pub session_layout: Option<String>,
    /// Lets every agent's `host_config` (and volumes) loosen the container: privileged mode,
    /// added capabilities, host namespaces, non-GPU devices, the engine's socket, security
    /// profiles, keys the runner does not know. Without it a job asking for one of these is
    /// refused with `INVALID_CONFIG`, saying how to opt in. The environment variable
    /// `HERDCTL_CONTAINER_ALLOW_UNSAFE_HOST_CONFIG=1` does the same; one agent can opt in with
    /// `allow_unsafe_host_config: true` in its docker config. Default: false.
    pub allow_unsafe_host_config: Option<bool>,
    /// The OCI runtime of every job whose docker config names none, like `"runsc"` for gVisor;
    /// checked against the engine's runtimes and proven from inside each container, as a
    /// config's own `runtime` is. Default: the engine's default runtime (runc).
    pub runtime: Option<String>,
    /// How many idle containers to keep warm per ephemeral agent, from 0 to 64: an ephemeral job
    /// then takes a container that was created, checked and started ahead of need (at the cost
    /// of an exec into a running container instead of a create and start), and a replacement is
    /// warmed in the background. Pools are shared by every `ContainerRunner` of the process and
    /// retired by `close()` and when the process exits. Each idle container costs host memory.
    /// Default: the environment variable `HERDCTL_CONTAINER_WARM_POOL`, else 0 (no pool).
    pub warm_pool: Option<u32>,
}

/// One execute call, as `npm/index.js` hands it over.
#[napi(object)]
pub struct ExecuteRequest {
    /// `"cli"` or `"sdk"` (herdctl's runtimes), or `"raw"` (a runtime's own `containerCommand`).
    pub strategy: String,
    /// herdctl's agent object, as JSON text.
    pub agent: String,
    /// herdctl's execute options without `agent` and `abortController`, as JSON text
    /// (`injectedMcpServers` without the handlers, which `JSON.stringify` drops).
    pub options: String,
    /// For `"raw"`: the program and its arguments, as JSON text (an array of strings).
    pub argv: Option<String>,
    /// For `"raw"`: the bytes written to its stdin.
    pub stdin: Option<Uint8Array>,
}

/// One `openSession` call, as `npm/index.js` hands it over.
#[napi(object)]
pub struct OpenSessionRequest {
    /// `"cli"` or `"sdk"`: the wrapped runtime.
    pub strategy: String,
    /// herdctl's agent object, as JSON text.
    pub agent: String,
    /// herdctl's session options as JSON text: the execute options, whose `prompt` (the first
    /// turn) may be empty.
    pub options: String,
    /// The hooks the agent reports, as JSON text `[{event, matcher?}]`.
    pub hooks: Option<String>,
}

/// One of this project's containers.
#[napi(object)]
pub struct ContainerInfo {
    /// The engine's id.
    pub id: String,
    /// The container's name.
    pub name: String,
    /// The agent's qualified name.
    pub agent: String,
    /// `"ephemeral"` or `"persistent"`; for a warm pool container no job has taken yet, `"pool"`
    /// when it is ready and `"warming"` while it is being made (or removed).
    pub mode: String,
    /// The hash of the config it was created for.
    pub config_hash: String,
    /// Creation time, unix milliseconds (for a warm pool container a job took, when it took it).
    pub created_ms: f64,
    /// The engine's state: `running`, `exited`, `created`, ...
    pub state: String,
}

/// What a prune or gc removed.
#[napi(object)]
pub struct PruneResult {
    /// Ids of the containers removed.
    pub removed: Vec<String>,
    /// Ids of running ephemeral containers that `gc` stopped because no live process owned
    /// them (their process was killed mid-job, or its stop failed); always empty for `prune`.
    pub stopped: Vec<String>,
    /// Containers chosen but not removed or stopped, and why.
    pub warnings: Vec<String>,
}

struct Core {
    engine: EngineOptions,
    agent_engines: BTreeMap<String, EngineOptions>,
    pull_progress: Option<herdctl_container::PullProgressFn>,
    pull: PullPolicy,
    deadline: Option<Duration>,
    translate_paths: bool,
    session_layout: SessionLayout,
    allow_unsafe_host_config: bool,
    runtime: Option<String>,
    warm_pool: Option<usize>,
    state_dir: PathBuf,
    config: DockerConfig,
    runner: Mutex<Option<Runner>>,
    /// What an error of this runner is redacted with besides a job's own secrets.
    secrets: Secrets,
}

impl Core {
    /// The runner, connecting to the engine the first time (off the JS thread: every caller is
    /// a job or task thread). A failed connect is not remembered, so a later call retries.
    fn runner(&self) -> herdctl_container::Result<Runner> {
        // The slot holds a plain Option: a panic elsewhere cannot leave it inconsistent.
        let mut slot = self.runner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = slot.as_ref() {
            return Ok(r.clone());
        }
        let engine = Engine::with_options(self.engine.clone())?;
        let mut options = RunnerOptions::new(&self.state_dir);
        options.pull = self.pull;
        options.pull_progress = self.pull_progress.clone();
        options.session_layout = self.session_layout;
        options.allow_unsafe_host_config = self.allow_unsafe_host_config;
        options.runtime = self.runtime.clone();
        options.warm_pool = self.warm_pool;
        options.agent_engines = self.agent_engines.clone();
        let runner = Runner::new(engine, options)?;
        *slot = Some(runner.clone());
        Ok(runner)
    }
}

impl Core {
    /// Checks the docker config, the state directory and the options, in that order, and
    /// builds the runner's state; connects nothing.
    fn build(
        config: std::result::Result<&serde_json::Value, &serde_json::Error>,
        state_dir: &str,
        options: Option<&str>,
        logger: Option<Callback<EngineCallEvent>>,
        on_pull_progress: Option<Callback<PullProgressEvent>>,
    ) -> herdctl_container::Result<Core> {
        let value = config.map_err(|e| Error::invalid("docker", format!("not JSON: {e}")))?;
        let config = herdctl_container::resolve_docker_config(value)?;
        if state_dir.is_empty() {
            return Err(Error::argument(
                "stateDir",
                "empty; expected herdctl's state directory (.herdctl)",
            ));
        }
        let options = runner_options(options)?;
        let pull = pull_policy(options.pull.as_deref(), std::env::var(PULL_ENV).ok())?;
        let deadline = job_deadline(options.job_timeout_ms)?;
        let mut engine = engine_options(options.docker_host, options.socket_path)?;
        engine.tls_helper = tls_helper();
        engine.on_call = call_logger(logger, &config)?;
        let agent_engines = placed_engines(options.engines.unwrap_or_default(), &engine)?;
        let session_layout = match &options.session_layout {
            Some(layout) => SessionLayout::parse_as(layout, "options.sessionLayout")?,
            None => SessionLayout::PerAgent,
        };
        // Checked here, so a bad name throws from the constructor, not the first job.
        let runtime = match options.runtime {
            Some(name) => herdctl_container::runtime_argument(&name, "options.runtime")?,
            None => None,
        };
        Ok(Core {
            engine,
            agent_engines,
            pull_progress: on_pull_progress.map(pull_progress),
            pull,
            deadline,
            translate_paths: options.translate_paths.unwrap_or(false),
            session_layout,
            allow_unsafe_host_config: options.allow_unsafe_host_config.unwrap_or(false),
            runtime,
            warm_pool: options.warm_pool.map(|n| n as usize),
            state_dir: PathBuf::from(state_dir),
            secrets: secrets(config.env.clone()),
            config,
            runner: Mutex::new(None),
        })
    }
}

/// `options.jobTimeoutMs` as a deadline.
fn job_deadline(ms: Option<f64>) -> herdctl_container::Result<Option<Duration>> {
    match ms {
        None => Ok(None),
        Some(ms) if ms.is_finite() && ms > 0.0 => Ok(Some(Duration::from_secs_f64(ms / 1000.0))),
        Some(ms) => Err(Error::argument(
            "options.jobTimeoutMs",
            format!("{ms} is not a positive number of milliseconds"),
        )),
    }
}

/// What sees each engine call: the JS `logger`, else stderr when `HERDCTL_CONTAINER_LOG=debug`
/// (whatever the address came from, the env switch holds), else nothing.
fn call_logger(
    logger: Option<Callback<EngineCallEvent>>,
    config: &DockerConfig,
) -> herdctl_container::Result<Option<herdctl_container::engine::CallObserver>> {
    if let Some(logger) = logger {
        let secrets: Vec<String> = config
            .env
            .iter()
            .filter(|(k, _)| herdctl_container::is_secret_name(k))
            .map(|(_, v)| v.clone())
            .collect();
        return Ok(Some(call_observer(logger, &secrets)));
    }
    Ok(match log_level_from_env()? {
        LogLevel::Debug => Some(stderr_logger(
            "herdctl-container: ",
            herdctl_container::Redactor::new(
                std::env::vars()
                    .filter(|(k, _)| herdctl_container::is_secret_name(k))
                    .map(|(_, v)| v),
            ),
        )),
        LogLevel::Info => None,
    })
}

/// The engines of `options.engines`, each logged like the runner's own.
fn placed_engines(
    engines: HashMap<String, String>,
    own: &EngineOptions,
) -> herdctl_container::Result<BTreeMap<String, EngineOptions>> {
    let mut placed = BTreeMap::new();
    for (agent, address) in engines {
        let field = format!("options.engines[{agent:?}]");
        let mut engine = EngineOptions::for_address_as(&address, &field)?;
        engine.on_call = own.on_call.clone();
        engine.tls_helper = own.tls_helper.clone();
        placed.insert(agent, engine);
    }
    Ok(placed)
}

/// The native half of `ContainerRunner`: a runner over one engine and state directory, with one
/// agent's docker config. Use `ContainerRunner` from the package instead.
#[napi]
pub struct ContainerRunnerCore {
    core: Arc<Core>,
}

#[napi]
impl ContainerRunnerCore {
    /// Validates the docker config (YAML or resolved shape) and the options (a
    /// `ContainerRunnerOptions` without its functions), each as JSON text, and the engine
    /// address; connects nothing yet. `logger` receives one event per engine call (else
    /// `HERDCTL_CONTAINER_LOG=debug` prints them to stderr); `onPullProgress` each line of a pull.
    #[napi(constructor, catch_unwind)]
    pub fn new(
        env: &Env,
        config: String,
        state_dir: String,
        options: Option<String>,
        #[napi(ts_arg_type = "((event: EngineCallEvent) => void) | undefined | null")]
        logger: Option<Callback<EngineCallEvent>>,
        #[napi(ts_arg_type = "((event: PullProgressEvent) => void) | undefined | null")]
        on_pull_progress: Option<Callback<PullProgressEvent>>,
    ) -> Result<Self> {
        let parsed = serde_json::from_str::<serde_json::Value>(&config);
        let built = Core::build(
            parsed.as_ref(),
            &state_dir,
            options.as_deref(),
            logger,
            on_pull_progress,
        );
        let core = built.map_err(|e| {
            let raw = parsed.as_ref().ok().cloned().unwrap_or_default();
            throw(env, e, &*config_secrets(&raw))
        })?;
        Ok(ContainerRunnerCore {
            core: Arc::new(core),
        })
    }

    /// The resolved docker config, herdctl's camelCase shape, as JSON text.
    #[napi(catch_unwind)]
    pub fn resolved_config(&self) -> String {
        // Cannot fail: the config is plain data of strings, numbers and maps with string keys.
        serde_json::to_string(&self.core.config).unwrap_or_else(|_| "{}".into())
    }

    /// Starts one job on its own thread and streams its messages. Errors before the container
    /// exists end the stream with a coded error (so the first `next()` rejects); afterwards every
    /// ending is a message. `cancel()` kills the job's processes and releases its container.
    ///
    /// `toolCalls` carries the calls of the request's `injectedMcpServers` to JS; it closes when
    /// the job ends.
    #[napi(catch_unwind)]
    pub fn execute(
        &self,
        request: ExecuteRequest,
        tool_calls: Option<&ToolCalls>,
    ) -> Result<MessageStream> {
        let core = self.core.clone();
        let tool_calls = tool_calls.map(|t| t.queue.clone());
        let ExecuteRequest {
            strategy,
            agent,
            options,
            argv,
            stdin,
        } = request;
        let stdin = stdin.map(|b| b.to_vec()).unwrap_or_default();
        MessageStream::spawn("herdctl-job", Capacity::default(), move |sink| {
            let _close = tool_calls.clone().map(CloseOnDrop);
            if sink.is_cancelled() {
                return Ok(());
            }
            let request = guarded("reading the request", &*core.secrets, || {
                let mut request = core_request(&core, &strategy, &agent, &options, argv, stdin)?;
                request.tool_handler = tool_calls.map(|q| q as Arc<dyn ToolHandler>);
                Ok(request)
            })?;
            let mut job = guarded("starting the job", &*core.secrets, || {
                AgentJob::start(&core.runner()?, request)
            })?;
            // None: the job failed in its container before its command ran; its closing error
            // is all there is.
            if let Some(canceller) = job.canceller() {
                sink.on_cancel(move || {
                    // Canceller::cancel blocks while the processes are killed, and this runs on
                    // the JS thread. Should no thread be had, the producer still cancels the job
                    // when its next send fails; only a job that prints nothing more waits for
                    // its end.
                    let _ = std::thread::Builder::new()
                        .name("herdctl-job-cancel".into())
                        .spawn(move || {
                            let _ = canceller.cancel();
                        });
                });
            }
            while let Some(message) = job.next_message() {
                if sink.send(message).is_err() {
                    break;
                }
            }
            // Cancels a job whose consumer left, then releases its container.
            let _report = job.finish();
            Ok(())
        })
    }

    /// Opens a live session on its own thread and returns at once: control calls made before it
    /// is open wait for it, and fail with the coded error that kept it from opening (which the
    /// first `next()` rejects with too). `toolCalls` carries the calls of the request's
    /// `injectedMcpServers` to JS; it closes when the session ends.
    #[napi(catch_unwind)]
    pub fn open_session(
        &self,
        request: OpenSessionRequest,
        tool_calls: Option<&ToolCalls>,
    ) -> Result<SessionCore> {
        let core = self.core.clone();
        let tool_calls = tool_calls.map(|t| t.queue.clone());
        let slot = Arc::new(Slot::default());
        let opened = slot.clone();
        let buffer = Buffer::spawn("herdctl-session", Capacity::default(), move |sink| {
            let _close = tool_calls.clone().map(CloseOnDrop);
            let started = guarded("opening the session", &*core.secrets, || {
                let mut request = session_request(&core, &request)?;
                request.tool_handler = tool_calls.map(|q| q as Arc<dyn ToolHandler>);
                if sink.is_cancelled() {
                    // Closed before it opened: no container for nothing.
                    return Ok(None);
                }
                AgentSession::open(&core.runner()?, request).map(Some)
            });
            match started {
                Ok(Some(session)) => {
                    opened.open(&session.handle());
                    pump(session, sink);
                    Ok(())
                }
                Ok(None) => {
                    let closed = herdctl_container::Error::Session {
                        request: "open".into(),
                        detail: "the session was closed before it opened".into(),
                        ended: true,
                    };
                    opened.fail(&crate::errors::failure(closed, &*core.secrets));
                    Ok(())
                }
                Err(e) => {
                    opened.fail(&e);
                    Err(e)
                }
            }
        })
        .map_err(|e| napi::Error::from_reason(format!("start a session thread: {e}")))?;
        Ok(SessionCore {
            buffer,
            slot,
            secrets: self.core.secrets.clone(),
        })
    }

    /// This project's containers, optionally of one agent, newest first.
    #[napi(ts_return_type = "Promise<ContainerInfo[]>")]
    pub fn list_containers(
        &self,
        agent: Option<String>,
    ) -> AsyncTask<Blocking<Vec<ContainerInfo>>> {
        let core = self.core.clone();
        AsyncTask::new(Blocking::new(
            "listing containers",
            core.secrets.clone(),
            move || {
                let found = core.runner()?.list(agent.as_deref())?;
                Ok(found
                    .into_iter()
                    .map(|c| ContainerInfo {
                        id: c.id,
                        name: c.name,
                        agent: c.agent,
                        mode: c.mode,
                        config_hash: c.config_hash,
                        created_ms: c.created_ms as f64,
                        state: c.state,
                    })
                    .collect())
            },
        ))
    }

    /// Removes the agent's oldest stopped containers so that at most `keep` remain (default:
    /// the config's `maxContainers`).
    #[napi(ts_return_type = "Promise<PruneResult>")]
    pub fn prune(&self, agent: String, keep: Option<f64>) -> AsyncTask<Blocking<PruneResult>> {
        let core = self.core.clone();
        AsyncTask::new(Blocking::new(
            "pruning containers",
            core.secrets.clone(),
            move || {
                let keep = keep_count(keep, core.config.max_containers)?;
                let r = core.runner()?.prune(&agent, keep)?;
                Ok(PruneResult {
                    removed: r.removed,
                    stopped: r.stopped,
                    warnings: r.warnings,
                })
            },
        ))
    }

    /// Retires the warm pools this runner's jobs used: their idle containers are removed. Other
    /// runners of the process that use those agents start new pools at their next job.
    #[napi(ts_return_type = "Promise<PruneResult>")]
    pub fn close(&self) -> AsyncTask<Blocking<PruneResult>> {
        let core = self.core.clone();
        AsyncTask::new(Blocking::new(
            "closing the runner",
            core.secrets.clone(),
            move || {
                let runner = core
                    .runner
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let r = runner.map(|r| r.close()).unwrap_or_default();
                Ok(PruneResult {
                    removed: r.removed,
                    stopped: r.stopped,
                    warnings: r.warnings,
                })
            },
        ))
    }

    /// Stops the running ephemeral containers that no live process owns, then removes every
    /// stopped container of an agent not in `liveAgents` and prunes the live agents to `keep`
    /// each (default: the config's `maxContainers`).
    #[napi(ts_return_type = "Promise<PruneResult>")]
    pub fn gc(
        &self,
        live_agents: Vec<String>,
        keep: Option<f64>,
    ) -> AsyncTask<Blocking<PruneResult>> {
        let core = self.core.clone();
        AsyncTask::new(Blocking::new(
            "collecting containers",
            core.secrets.clone(),
            move || {
                let keep = keep_count(keep, core.config.max_containers)?;
                let r = core.runner()?.gc(&live_agents, keep)?;
                Ok(PruneResult {
                    removed: r.removed,
                    stopped: r.stopped,
                    warnings: r.warnings,
                })
            },
        ))
    }
}

/// The pull policy: the option, else `HERDCTL_CONTAINER_PULL`, else never. A bad value names
/// where it came from (the core's error: an argument, or the environment's config).
fn pull_policy(option: Option<&str>, env: Option<String>) -> herdctl_container::Result<PullPolicy> {
    let from_env = match (option, env) {
        (Some(p), _) => return PullPolicy::parse_as(p, "options.pull"),
        (None, Some(v)) => PullPolicy::from_env_value(&v)?,
        (None, None) => None,
    };
    Ok(from_env.unwrap_or(PullPolicy::Never))
}

/// Retires every warm pool of this process (their idle containers are removed), blocking until
/// done or a minute passed. `npm/index.js` calls it when the process exits.
#[napi(js_name = "_closeWarmPools", catch_unwind)]
pub fn close_warm_pools() -> PruneResult {
    let r = herdctl_container::close_warm_pools();
    PruneResult {
        removed: r.removed,
        stopped: r.stopped,
        warnings: r.warnings,
    }
}

/// How many containers to keep: `keep` when given (a whole number from 0 to 2^32 - 1), else the
/// config's `maxContainers`. A JS number may be NaN, infinite, fractional or negative: each is an
/// error here (napi's own conversion to an integer made NaN a 0, which removed every stopped
/// container).
fn keep_count(keep: Option<f64>, default: u32) -> herdctl_container::Result<usize> {
    match keep {
        None => Ok(default as usize),
        Some(n) if n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n <= f64::from(u32::MAX) => {
            Ok(n as usize)
        }
        Some(n) => Err(Error::argument(
            "keep",
            format!("{n} is not a count of containers; expected a whole number, 0 or more"),
        )),
    }
}

/// The runner options from their JSON text (`null` or absent: every default). Each field is
/// checked for its type here, so a wrong one is an `INVALID_ARGUMENT` error that names it.
fn runner_options(json: Option<&str>) -> herdctl_container::Result<ContainerRunnerOptions> {
    let value: Value = match json {
        None => Value::Null,
        Some(text) => serde_json::from_str(text)
            .map_err(|e| Error::argument("options", format!("not JSON: {e}")))?,
    };
    let map = match value {
        Value::Null => return Ok(ContainerRunnerOptions::default()),
        Value::Object(map) => map,
        _ => {
            return Err(Error::argument(
                "options",
                "expected an object of runner options",
            ))
        }
    };
    if let Some(unknown) = map.keys().find(|k| !KNOWN_OPTIONS.contains(&k.as_str())) {
        return Err(Error::argument(
            format!("options.{unknown}"),
            format!(
                "unknown option; expected one of {}",
                KNOWN_OPTIONS.join(", ")
            ),
        ));
    }
    let option = Options(&map);
    Ok(ContainerRunnerOptions {
        allow_unsafe_host_config: option.boolean("allowUnsafeHostConfig")?,
        runtime: option.string("runtime")?,
        docker_host: option.string("dockerHost")?,
        socket_path: option.string("socketPath")?,
        engines: option.engines()?,
        pull: option.string("pull")?,
        job_timeout_ms: option.number("jobTimeoutMs", "expected a number of milliseconds")?,
        translate_paths: option.boolean("translatePaths")?,
        session_layout: option.string("sessionLayout")?,
        warm_pool: option.warm_pool()?,
    })
}

/// The options a `ContainerRunner` takes (its `logger` and `onPullProgress` stay in JS).
const KNOWN_OPTIONS: [&str; 10] = [
    "allowUnsafeHostConfig",
    "runtime",
    "dockerHost",
    "socketPath",
    "engines",
    "pull",
    "jobTimeoutMs",
    "translatePaths",
    "sessionLayout",
    "warmPool",
];

/// The runner options' object, read field by field; `null` is absent.
struct Options<'a>(&'a serde_json::Map<String, Value>);

impl Options<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn string(&self, key: &str) -> herdctl_container::Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Error::argument(
                format!("options.{key}"),
                "expected a string",
            )),
        }
    }

    fn boolean(&self, key: &str) -> herdctl_container::Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(Error::argument(
                format!("options.{key}"),
                "expected true or false",
            )),
        }
    }

    /// Any JSON number, as an f64 (its range is the caller's to check).
    fn number(&self, key: &str, expected: &str) -> herdctl_container::Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(_) => Err(Error::argument(format!("options.{key}"), expected)),
        }
    }

    fn engines(&self) -> herdctl_container::Result<Option<HashMap<String, String>>> {
        let engines = match self.get("engines") {
            None => return Ok(None),
            Some(Value::Object(engines)) => engines,
            Some(_) => {
                return Err(Error::argument(
                    "options.engines",
                    "expected an object of agent names and engine addresses",
                ))
            }
        };
        let address = |(agent, address): (&String, &Value)| match address {
            Value::String(a) => Ok((agent.clone(), a.clone())),
            _ => Err(Error::argument(
                format!("options.engines[{agent:?}]"),
                "expected an engine address or a docker context's name, as a string",
            )),
        };
        engines
            .iter()
            .map(address)
            .collect::<herdctl_container::Result<_>>()
            .map(Some)
    }

    fn warm_pool(&self) -> herdctl_container::Result<Option<u32>> {
        let max = herdctl_container::MAX_WARM_POOL;
        let n = match self.get("warmPool") {
            None => return Ok(None),
            Some(Value::Number(n)) => n,
            Some(_) => {
                return Err(Error::argument(
                    "options.warmPool",
                    format!("expected a whole number from 0 to {max}"),
                ))
            }
        };
        match n.as_u64() {
            Some(k) if k <= max as u64 => Ok(Some(k as u32)),
            _ => Err(Error::argument(
                "options.warmPool",
                format!("{n} is not a warm pool size; expected a whole number from 0 to {max}"),
            )),
        }
    }
}

/// The herdctl-container CLI through which this addon reaches TLS engines: the addon is built
/// without TLS of its own (rustls would add 1.4 MB, over issue 13's 3 MiB). Set by index.js.
static TLS_HELPER: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Sets the herdctl-container CLI through which TLS engines are reached (`herdctl-container
/// dial-stdio`, a process per connection): the one beside this addon in its platform package.
/// Called by the package's index.js when it loads.
#[napi(js_name = "_setTlsHelper", catch_unwind)]
pub fn set_tls_helper(path: String) {
    // The slot holds a plain Option: a panic elsewhere cannot leave it inconsistent.
    *TLS_HELPER.lock().unwrap_or_else(|p| p.into_inner()) = Some(PathBuf::from(path));
}

/// The TLS helper, when index.js found one.
fn tls_helper() -> Option<PathBuf> {
    TLS_HELPER.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The engine address: `socketPath`, else `dockerHost`, else `DOCKER_HOST`.
fn engine_options(
    docker_host: Option<String>,
    socket_path: Option<String>,
) -> herdctl_container::Result<EngineOptions> {
    match (socket_path, docker_host) {
        (Some(_), Some(_)) => Err(Error::argument(
            "options",
            "both dockerHost and socketPath are set; give one",
        )),
        (Some(path), None) => Ok(EngineOptions {
            host: Host::Unix(PathBuf::from(path)),
            ..EngineOptions::default()
        }),
        (None, Some(host)) => EngineOptions::for_address_as(&host, "options.dockerHost"),
        (None, None) => EngineOptions::from_env(),
    }
}

/// A JSON text of the request: the agent's (the fleet's config) or the options' (the call's).
fn agent_json(text: &str) -> herdctl_container::Result<Value> {
    serde_json::from_str(text).map_err(|e| Error::invalid("agent", format!("not JSON: {e}")))
}

fn argument_json(field: &str, text: &str) -> herdctl_container::Result<Value> {
    serde_json::from_str(text).map_err(|e| Error::argument(field, format!("not JSON: {e}")))
}

/// The core's session request from the JS parts.
fn session_request(
    core: &Core,
    request: &OpenSessionRequest,
) -> herdctl_container::Result<SessionRequest> {
    let strategy = match request.strategy.as_str() {
        "raw" => {
            return Err(Error::argument(
                "runtime",
                "a runtime with its own containerCommand cannot hold a session; wrap a CLIRuntime or SDKRuntime",
            ))
        }
        other => Strategy::parse(other)?,
    };
    let mut session = SessionRequest::new(
        core.config.clone(),
        agent_json(&request.agent)?,
        ExecuteOptions::from_json(&argument_json("session options", &request.options)?)?,
        strategy,
    );
    session.hooks = crate::session::hooks(request.hooks.as_deref())?;
    session.translate_paths = core.translate_paths;
    Ok(session)
}

/// The core's request from the JS parts.
fn core_request(
    core: &Core,
    strategy: &str,
    agent: &str,
    options: &str,
    argv: Option<String>,
    stdin: Vec<u8>,
) -> herdctl_container::Result<AgentRequest> {
    let command = match strategy {
        "raw" => Command::raw(raw_argv(argv.as_deref())?, stdin)?,
        other => Command::Runtime(Strategy::parse(other)?),
    };
    Ok(AgentRequest {
        config: core.config.clone(),
        agent: agent_json(agent)?,
        options: ExecuteOptions::from_json(&argument_json("execute options", options)?)?,
        command,
        deadline: core.deadline,
        translate_paths: core.translate_paths,
        tool_handler: None,
    })
}

/// A raw runtime's `containerCommand` argv from its JSON text: an array of strings.
fn raw_argv(argv: Option<&str>) -> herdctl_container::Result<Vec<String>> {
    let field = "containerCommand.argv";
    let Value::Array(items) = argument_json(field, argv.unwrap_or("null"))? else {
        return Err(Error::argument(
            field,
            "expected an array of strings, like [\"node\", \"agent.js\"]",
        ));
    };
    let item = |(i, v): (usize, Value)| match v {
        Value::String(s) => Ok(s),
        _ => Err(Error::argument(
            format!("{field}[{i}]"),
            "expected a string",
        )),
    };
    items.into_iter().enumerate().map(item).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11.7: herdctl builds its runners without options, so the pull policy must be
    /// reachable from its environment.
    #[test]
    fn the_pull_policy_comes_from_the_option_then_the_environment() {
        let env = |v: &str| Some(v.to_string());
        assert_eq!(pull_policy(None, None).unwrap(), PullPolicy::Never);
        assert_eq!(pull_policy(None, env("")).unwrap(), PullPolicy::Never);
        assert_eq!(
            pull_policy(None, env("if-missing")).unwrap(),
            PullPolicy::IfMissing
        );
        assert_eq!(
            pull_policy(Some("always"), env("never")).unwrap(),
            PullPolicy::Always
        );
        assert_eq!(
            pull_policy(None, env("sometimes")).unwrap_err().to_string(),
            "invalid HERDCTL_CONTAINER_PULL: \"sometimes\" is not a pull policy; expected \"never\", \"if-missing\" or \"always\""
        );
        assert!(pull_policy(Some("x"), None)
            .unwrap_err()
            .to_string()
            .starts_with("invalid options.pull: \"x\""));
        // The core's errors, passed through: the option is an argument, the variable config.
        assert_eq!(
            pull_policy(Some("x"), None).unwrap_err().code(),
            "INVALID_ARGUMENT"
        );
        assert_eq!(
            pull_policy(None, env("x")).unwrap_err().code(),
            "INVALID_CONFIG"
        );
    }
}

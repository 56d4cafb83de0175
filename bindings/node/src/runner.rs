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
use herdctl_container::{DockerConfig, Engine, PullPolicy, Runner, RunnerOptions, SessionLayout};
use napi::bindgen_prelude::{AsyncTask, Uint8Array};
use napi::{Env, Result};
use napi_derive::napi;

use crate::buffer::{Buffer, Capacity};
use crate::errors::{config_secrets, guarded, secrets, throw, Blocking, Secrets};
use crate::hooks::{call_observer, pull_progress, Callback, EngineCallEvent, PullProgressEvent};
use crate::session::{pump, SessionCore, Slot};
use crate::stream::MessageStream;
use crate::tool_calls::{CloseOnDrop, ToolCalls};
use herdctl_container::session::{AgentSession, SessionRequest};

/// How a `ContainerRunner` reaches the engine and runs jobs. Every field is optional; a field of
/// the wrong type, or one not listed here, throws with code `INVALID_CONFIG`.
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
        let built = (|| {
            let value = parsed.as_ref().map_err(|e| {
                herdctl_container::Error::invalid("docker", format!("not JSON: {e}"))
            })?;
            let config = herdctl_container::resolve_docker_config(value)?;
            if state_dir.is_empty() {
                return Err(herdctl_container::Error::invalid(
                    "stateDir",
                    "empty; expected herdctl's state directory (.herdctl)",
                ));
            }
            let options = runner_options(options.as_deref())?;
            let pull = pull_policy(options.pull.as_deref(), std::env::var(PULL_ENV).ok())?;
            let deadline = match options.job_timeout_ms {
                None => None,
                Some(ms) if ms.is_finite() && ms > 0.0 => {
                    Some(Duration::from_secs_f64(ms / 1000.0))
                }
                Some(ms) => {
                    return Err(herdctl_container::Error::invalid(
                        "options.jobTimeoutMs",
                        format!("{ms} is not a positive number of milliseconds"),
                    ))
                }
            };
            let mut engine = engine_options(options.docker_host, options.socket_path)?;
            engine.tls_helper = tls_helper();
            engine.on_call = match logger {
                Some(logger) => {
                    let secrets: Vec<String> = config
                        .env
                        .iter()
                        .filter(|(k, _)| herdctl_container::is_secret_name(k))
                        .map(|(_, v)| v.clone())
                        .collect();
                    Some(call_observer(logger, &secrets))
                }
                // Whatever the address came from, the env switch holds.
                None => match log_level_from_env()? {
                    LogLevel::Debug => Some(stderr_logger(
                        "herdctl-container: ",
                        herdctl_container::Redactor::new(
                            std::env::vars()
                                .filter(|(k, _)| herdctl_container::is_secret_name(k))
                                .map(|(_, v)| v),
                        ),
                    )),
                    LogLevel::Info => None,
                },
            };
            // Agents placed on other engines are logged like the runner's own.
            let mut agent_engines = BTreeMap::new();
            for (agent, address) in options.engines.unwrap_or_default() {
                let field = format!("options.engines[{agent:?}]");
                let mut placed =
                    EngineOptions::for_address(&address).map_err(|e| as_field(e, &field))?;
                placed.on_call = engine.on_call.clone();
                placed.tls_helper = engine.tls_helper.clone();
                agent_engines.insert(agent, placed);
            }
            Ok(Core {
                engine,
                agent_engines,
                pull_progress: on_pull_progress.map(pull_progress),
                pull,
                deadline,
                translate_paths: options.translate_paths.unwrap_or(false),
                session_layout: match &options.session_layout {
                    Some(layout) => layout.parse().map_err(|_| {
                        herdctl_container::Error::invalid(
                            "options.sessionLayout",
                            format!("{layout:?} is not a session layout; expected \"per-agent\" or \"flat\""),
                        )
                    })?,
                    None => SessionLayout::PerAgent,
                },
                allow_unsafe_host_config: options.allow_unsafe_host_config.unwrap_or(false),
                // Checked here, so a bad name throws from the constructor, not the first job.
                runtime: match options.runtime {
                    Some(name) => runtime_option(name)?,
                    None => None,
                },
                warm_pool: options.warm_pool.map(|n| n as usize),
                state_dir: PathBuf::from(&state_dir),
                secrets: secrets(config.env.clone()),
                config,
                runner: Mutex::new(None),
            })
        })();
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

/// The environment variable that sets the pull policy when the options do not.
const PULL_ENV: &str = "HERDCTL_CONTAINER_PULL";

/// The pull policy: the option, else `HERDCTL_CONTAINER_PULL`, else never. A bad value names
/// where it came from.
fn pull_policy(option: Option<&str>, env: Option<String>) -> herdctl_container::Result<PullPolicy> {
    let (field, value) = match (option, env.as_deref().filter(|v| !v.is_empty())) {
        (Some(p), _) => ("options.pull", p),
        (None, Some(p)) => (PULL_ENV, p),
        (None, None) => return Ok(PullPolicy::Never),
    };
    value.parse::<PullPolicy>().map_err(|_| {
        herdctl_container::Error::invalid(
            field,
            format!(
                "{value:?} is not a pull policy; expected \"never\", \"if-missing\" or \"always\""
            ),
        )
    })
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
        Some(n) => Err(herdctl_container::Error::invalid(
            "keep",
            format!("{n} is not a count of containers; expected a whole number, 0 or more"),
        )),
    }
}

/// `options.runtime`, checked as a docker config's `runtime` is (`""` is none).
fn runtime_option(name: String) -> herdctl_container::Result<Option<String>> {
    let block = serde_json::json!({ "runtime": name });
    match herdctl_container::resolve_docker_config(&block) {
        Ok(config) => Ok(config.runtime),
        Err(herdctl_container::Error::InvalidConfig { problem, .. }) => Err(
            herdctl_container::Error::invalid("options.runtime", problem),
        ),
        Err(e) => Err(e),
    }
}

/// The runner options from their JSON text (`null` or absent: every default). Each field is
/// checked for its type here, so a wrong one is an `INVALID_CONFIG` error that names it.
fn runner_options(json: Option<&str>) -> herdctl_container::Result<ContainerRunnerOptions> {
    use serde_json::Value;
    fn invalid(field: impl Into<String>, problem: impl Into<String>) -> herdctl_container::Error {
        herdctl_container::Error::invalid(field, problem)
    }
    let value: Value = match json {
        None => Value::Null,
        Some(text) => {
            serde_json::from_str(text).map_err(|e| invalid("options", format!("not JSON: {e}")))?
        }
    };
    let map = match value {
        Value::Null => return Ok(ContainerRunnerOptions::default()),
        Value::Object(map) => map,
        _ => return Err(invalid("options", "expected an object of runner options")),
    };
    const KNOWN: [&str; 10] = [
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
    if let Some(unknown) = map.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(invalid(
            format!("options.{unknown}"),
            format!("unknown option; expected one of {}", KNOWN.join(", ")),
        ));
    }
    let string = |key: &str| match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("options.{key}"), "expected a string")),
    };
    let boolean = |key: &str| match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(format!("options.{key}"), "expected true or false")),
    };
    Ok(ContainerRunnerOptions {
        allow_unsafe_host_config: boolean("allowUnsafeHostConfig")?,
        runtime: string("runtime")?,
        docker_host: string("dockerHost")?,
        socket_path: string("socketPath")?,
        engines: match map.get("engines") {
            None | Some(Value::Null) => None,
            Some(Value::Object(engines)) => Some(
                engines
                    .iter()
                    .map(|(agent, address)| match address {
                        Value::String(a) => Ok((agent.clone(), a.clone())),
                        _ => Err(invalid(
                            format!("options.engines[{agent:?}]"),
                            "expected an engine address or a docker context's name, as a string",
                        )),
                    })
                    .collect::<herdctl_container::Result<_>>()?,
            ),
            Some(_) => {
                return Err(invalid(
                    "options.engines",
                    "expected an object of agent names and engine addresses",
                ))
            }
        },
        pull: string("pull")?,
        job_timeout_ms: match map.get("jobTimeoutMs") {
            None | Some(Value::Null) => None,
            // Any JSON number reads as an f64; the range is checked by the caller.
            Some(Value::Number(n)) => n.as_f64(),
            Some(_) => {
                return Err(invalid(
                    "options.jobTimeoutMs",
                    "expected a number of milliseconds",
                ))
            }
        },
        translate_paths: boolean("translatePaths")?,
        session_layout: string("sessionLayout")?,
        warm_pool: match map.get("warmPool") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(k) if k <= herdctl_container::MAX_WARM_POOL as u64 => Some(k as u32),
                _ => {
                    return Err(invalid(
                        "options.warmPool",
                        format!(
                            "{n} is not a warm pool size; expected a whole number from 0 to {}",
                            herdctl_container::MAX_WARM_POOL
                        ),
                    ))
                }
            },
            Some(_) => {
                return Err(invalid(
                    "options.warmPool",
                    format!(
                        "expected a whole number from 0 to {}",
                        herdctl_container::MAX_WARM_POOL
                    ),
                ))
            }
        },
    })
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
        (Some(_), Some(_)) => Err(herdctl_container::Error::invalid(
            "options",
            "both dockerHost and socketPath are set; give one",
        )),
        (Some(path), None) => Ok(EngineOptions {
            host: Host::Unix(PathBuf::from(path)),
            ..EngineOptions::default()
        }),
        (None, Some(host)) => {
            EngineOptions::for_address(&host).map_err(|e| as_field(e, "options.dockerHost"))
        }
        (None, None) => EngineOptions::from_env(),
    }
}

/// An invalid-input error of the core, named by the option it came from.
fn as_field(e: herdctl_container::Error, field: &str) -> herdctl_container::Error {
    match e {
        herdctl_container::Error::InvalidConfig { problem, .. } => {
            herdctl_container::Error::invalid(field, problem)
        }
        other => other,
    }
}

/// The core's session request from the JS parts.
fn session_request(
    core: &Core,
    request: &OpenSessionRequest,
) -> herdctl_container::Result<SessionRequest> {
    let json = |field: &str, text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| herdctl_container::Error::invalid(field, format!("not JSON: {e}")))
    };
    let strategy = match request.strategy.as_str() {
        "raw" => {
            return Err(herdctl_container::Error::invalid(
                "runtime",
                "a runtime with its own containerCommand cannot hold a session; wrap a CLIRuntime or SDKRuntime",
            ))
        }
        other => Strategy::parse(other)?,
    };
    let mut session = SessionRequest::new(
        core.config.clone(),
        json("agent", &request.agent)?,
        ExecuteOptions::from_json(&json("session options", &request.options)?)?,
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
    let json = |field: &str, text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| herdctl_container::Error::invalid(field, format!("not JSON: {e}")))
    };
    let command = match strategy {
        "raw" => {
            let field = "containerCommand.argv";
            let expected = "expected an array of strings, like [\"node\", \"agent.js\"]";
            let argv = match json(field, argv.as_deref().unwrap_or("null"))? {
                serde_json::Value::Array(items) => items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        serde_json::Value::String(s) => Ok(s),
                        _ => Err(herdctl_container::Error::invalid(
                            format!("{field}[{i}]"),
                            "expected a string",
                        )),
                    })
                    .collect::<herdctl_container::Result<Vec<String>>>()?,
                _ => return Err(herdctl_container::Error::invalid(field, expected)),
            };
            Command::raw(argv, stdin)?
        }
        other => Command::Runtime(Strategy::parse(other)?),
    };
    Ok(AgentRequest {
        config: core.config.clone(),
        agent: json("agent", agent)?,
        options: ExecuteOptions::from_json(&json("execute options", options)?)?,
        command,
        deadline: core.deadline,
        translate_paths: core.translate_paths,
        tool_handler: None,
    })
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
    }
}

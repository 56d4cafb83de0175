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
use herdctl_container::engine::{EngineOptions, Host};
use herdctl_container::invocation::Strategy;
use herdctl_container::mcp::ToolHandler;
use herdctl_container::{DockerConfig, Engine, PullPolicy, Runner, RunnerOptions, SessionLayout};
use napi::bindgen_prelude::{AsyncTask, Uint8Array};
use napi::{Env, Result};
use napi_derive::napi;

use crate::buffer::Capacity;
use crate::errors::{guarded, throw, Blocking};
use crate::stream::MessageStream;
use crate::tool_calls::{CloseOnDrop, ToolCalls};

/// How a `ContainerRunner` reaches the engine and runs jobs. Every field is optional.
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
    /// When to pull the image: `"never"` (default: a missing image is an error saying how to get
    /// it), `"if-missing"` or `"always"`.
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

/// One of this project's containers.
#[napi(object)]
pub struct ContainerInfo {
    /// The engine's id.
    pub id: String,
    /// The container's name.
    pub name: String,
    /// The agent's qualified name.
    pub agent: String,
    /// `"ephemeral"` or `"persistent"`.
    pub mode: String,
    /// The hash of the config it was created for.
    pub config_hash: String,
    /// Creation time, unix milliseconds.
    pub created_ms: f64,
    /// The engine's state: `running`, `exited`, `created`, ...
    pub state: String,
}

/// What a prune or gc removed.
#[napi(object)]
pub struct PruneResult {
    /// Ids of the containers removed.
    pub removed: Vec<String>,
    /// Containers chosen but not removed, and why.
    pub warnings: Vec<String>,
}

struct Core {
    engine: EngineOptions,
    agent_engines: BTreeMap<String, EngineOptions>,
    pull: PullPolicy,
    deadline: Option<Duration>,
    translate_paths: bool,
    session_layout: SessionLayout,
    state_dir: PathBuf,
    config: DockerConfig,
    runner: Mutex<Option<Runner>>,
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
        options.session_layout = self.session_layout;
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
    /// Validates the docker config (YAML or resolved shape, as JSON text) and the engine address;
    /// connects nothing yet.
    #[napi(constructor, catch_unwind)]
    pub fn new(
        env: &Env,
        config: String,
        state_dir: String,
        options: Option<ContainerRunnerOptions>,
    ) -> Result<Self> {
        let built = (|| {
            let value: serde_json::Value = serde_json::from_str(&config).map_err(|e| {
                herdctl_container::Error::invalid("docker", format!("not JSON: {e}"))
            })?;
            let config = herdctl_container::resolve_docker_config(&value)?;
            if state_dir.is_empty() {
                return Err(herdctl_container::Error::invalid(
                    "stateDir",
                    "empty; expected herdctl's state directory (.herdctl)",
                ));
            }
            let options = options.unwrap_or_default();
            let pull = match &options.pull {
                Some(p) => p.parse::<PullPolicy>().map_err(|_| {
                    herdctl_container::Error::invalid(
                        "options.pull",
                        format!("{p:?} is not a pull policy; expected \"never\", \"if-missing\" or \"always\""),
                    )
                })?,
                None => PullPolicy::Never,
            };
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
            let mut agent_engines = BTreeMap::new();
            for (agent, address) in options.engines.unwrap_or_default() {
                let field = format!("options.engines[{agent:?}]");
                let engine =
                    EngineOptions::for_address(&address).map_err(|e| as_field(e, &field))?;
                agent_engines.insert(agent, engine);
            }
            Ok(Core {
                engine: engine_options(options.docker_host, options.socket_path)?,
                agent_engines,
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
                state_dir: PathBuf::from(&state_dir),
                config,
                runner: Mutex::new(None),
            })
        })();
        let core = built.map_err(|e| throw(env, &e))?;
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
            let request = guarded("reading the request", || {
                let mut request = core_request(&core, &strategy, &agent, &options, argv, stdin)?;
                request.tool_handler = tool_calls.map(|q| q as Arc<dyn ToolHandler>);
                Ok(request)
            })?;
            let mut job = guarded("starting the job", || {
                AgentJob::start(&core.runner()?, request)
            })?;
            let canceller = job.canceller();
            sink.on_cancel(move || {
                // Canceller::cancel blocks while the processes are killed, and this runs on the
                // JS thread. Should no thread be had, the producer still cancels the job when its
                // next send fails; only a job that prints nothing more waits for its end.
                let _ = std::thread::Builder::new()
                    .name("herdctl-job-cancel".into())
                    .spawn(move || {
                        let _ = canceller.cancel();
                    });
            });
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

    /// This project's containers, optionally of one agent, newest first.
    #[napi(ts_return_type = "Promise<ContainerInfo[]>")]
    pub fn list_containers(
        &self,
        agent: Option<String>,
    ) -> AsyncTask<Blocking<Vec<ContainerInfo>>> {
        let core = self.core.clone();
        AsyncTask::new(Blocking::new("listing containers", move || {
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
        }))
    }

    /// Removes the agent's oldest stopped containers so that at most `keep` remain (default:
    /// the config's `maxContainers`).
    #[napi(ts_return_type = "Promise<PruneResult>")]
    pub fn prune(&self, agent: String, keep: Option<u32>) -> AsyncTask<Blocking<PruneResult>> {
        let core = self.core.clone();
        AsyncTask::new(Blocking::new("pruning containers", move || {
            let keep = keep.unwrap_or(core.config.max_containers) as usize;
            let r = core.runner()?.prune(&agent, keep)?;
            Ok(PruneResult {
                removed: r.removed,
                warnings: r.warnings,
            })
        }))
    }

    /// Removes every stopped container of an agent not in `liveAgents`, and prunes the live
    /// agents to `keep` each (default: the config's `maxContainers`).
    #[napi(ts_return_type = "Promise<PruneResult>")]
    pub fn gc(
        &self,
        live_agents: Vec<String>,
        keep: Option<u32>,
    ) -> AsyncTask<Blocking<PruneResult>> {
        let core = self.core.clone();
        AsyncTask::new(Blocking::new("collecting containers", move || {
            let keep = keep.unwrap_or(core.config.max_containers) as usize;
            let r = core.runner()?.gc(&live_agents, keep)?;
            Ok(PruneResult {
                removed: r.removed,
                warnings: r.warnings,
            })
        }))
    }
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

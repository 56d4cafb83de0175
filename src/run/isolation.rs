//! The OCI runtime a container runs under: whether the engine has it, what it isolates with,
//! what it can and cannot do for a job, and the proof, from inside, that a job runs under it.
//!
//! A container under runc shares the host's kernel: one kernel bug away from the host. gVisor
//! (`runsc`) puts a kernel of its own, in user space, between the job and the host's; Kata puts a
//! virtual machine there. A fleet asks for one with `docker.runtime` (or `host_config.Runtime`),
//! and, as for the capability drop, the runner does not take the engine's word for it: the
//! inspect after create must name the runtime, and a process of the job's own kind, exec'd in the
//! container as the job's user (the in-container check of `run/inside.rs`, whose `cat` reads
//! `/proc/version` too), must report a kernel other than the host's. A container that fails
//! either runs no job.
//!
//! What the runner reads from the engine (`GET /info`, at most every [`FRESH_FOR`] per engine and
//! process, and at once for a runtime not seen yet or before a refusal): the runtimes it lists (a
//! name it does not list is refused with the list), each one's program and arguments, and the
//! host's kernel release.

mod proof;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::config::runtime::{boundary_of_name, is_sandbox_name, Boundary};
use crate::config::{DockerConfig, NetworkMode, ALLOW_HOW, DEFAULT_PIDS_LIMIT};
use crate::engine::{Engine, EngineInfo, EngineRuntime};
use crate::{Error, Result};

pub(crate) use proof::{kernel_problem, KERNEL_FILE};

/// What the engine says a runtime is: by its program (what the engine's administrator
/// configured), else its containerd shim, else its name. `None`: unknown.
fn boundary_of(name: &str, entry: &EngineRuntime) -> Option<Boundary> {
    if !entry.path.is_empty() {
        return boundary_of_name(&entry.path);
    }
    if !entry.runtime_type.is_empty() {
        return boundary_of_name(&entry.runtime_type);
    }
    boundary_of_name(name)
}

/// The last value of a Go-style flag in `args` (`--name=v`, `-name=v`, `--name v`, `-name v`):
/// Go's flag package keeps the last one given.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let mut found = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(rest) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            continue;
        };
        if let Some(v) = rest.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            found = Some(v);
        } else if rest == name {
            found = it.next().map(String::as_str);
        }
    }
    found
}

/// The last value of a Go-style boolean flag in `args` (`--name` alone is true, `--name=false`
/// false); `None` when absent.
fn bool_flag(args: &[String], name: &str) -> Option<bool> {
    let mut found = None;
    for a in args {
        let Some(rest) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            continue;
        };
        if rest == name {
            found = Some(true);
        } else if let Some(v) = rest.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            found = Some(matches!(v, "true" | "1" | "t" | "T" | "TRUE" | "True"));
        }
    }
    found
}

/// What the engine offers, from one `GET /info`.
#[derive(Debug, Clone, Default)]
pub(crate) struct EngineRuntimes {
    /// The runtimes by name.
    pub runtimes: BTreeMap<String, EngineRuntime>,
    /// The runtime of a container that asks for none.
    pub default: String,
    /// The host kernel's release.
    pub kernel: String,
}

impl From<EngineInfo> for EngineRuntimes {
    fn from(info: EngineInfo) -> EngineRuntimes {
        EngineRuntimes {
            runtimes: info.runtimes,
            default: info.default_runtime,
            kernel: info.kernel_version,
        }
    }
}

impl EngineRuntimes {
    /// The names, comma-separated, for messages.
    fn names(&self) -> String {
        let names: Vec<&str> = self.runtimes.keys().map(String::as_str).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }
}

/// How long what the engine said about its runtimes is taken as still true. herdctl builds a
/// runner per job, so a per-runner cache would read `/info` (15-20 ms on a loaded engine) for
/// every job; a process-wide one reads it at most this often per engine, and at once for a
/// runtime name not seen yet or before refusing a job (the administrator may have just fixed
/// the engine's config).
const FRESH_FOR: Duration = Duration::from_secs(30);

/// What each engine (by address) said, and when.
type Said = HashMap<String, (Instant, Arc<EngineRuntimes>)>;

fn cache() -> &'static Mutex<Said> {
    static CACHE: OnceLock<Mutex<Said>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The engine's runtimes: from what this process read within [`FRESH_FOR`], unless `name` is
/// not among them or `fresh` is set; else read now.
pub(crate) fn engine_runtimes(
    engine: &Engine,
    name: Option<&str>,
    fresh: bool,
) -> Result<Arc<EngineRuntimes>> {
    let key = format!("{:?}", engine.host());
    if !fresh {
        // The map holds plain data: a panic elsewhere cannot leave it inconsistent.
        let said = cache().lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, known)) = said.get(&key) {
            if at.elapsed() < FRESH_FOR && name.is_none_or(|n| known.runtimes.contains_key(n)) {
                return Ok(known.clone());
            }
        }
    }
    // Read without the lock: one slow engine must not hold up jobs on another.
    let read = Arc::new(EngineRuntimes::from(engine.info()?));
    cache()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, (Instant::now(), read.clone()));
    Ok(read)
}

/// Runs `decide` on what the engine said; when it refuses, reads the engine again and decides
/// once more, so a refusal is never based on a stale answer.
pub(crate) fn with_runtimes<T>(
    engine: &Engine,
    name: Option<&str>,
    decide: impl Fn(&EngineRuntimes) -> Result<T>,
) -> Result<T> {
    match decide(&*engine_runtimes(engine, name, false)?) {
        Err(Error::InvalidConfig { .. }) => decide(&*engine_runtimes(engine, name, true)?),
        other => other,
    }
}

/// The runtime a job's container runs under, as checked against the engine before create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    /// The runtime's name.
    pub name: String,
    /// What it isolates with; `None` for a runtime this runner does not know (allowed only with
    /// the opt-in to unsafe settings).
    pub boundary: Option<Boundary>,
    /// The host kernel's release, which a sandbox's kernel must differ from.
    pub host_kernel: String,
}

impl Checked {
    /// Whether a process in the container must prove, by its kernel, that it is sandboxed.
    pub(crate) fn needs_proof(&self) -> bool {
        self.boundary.is_some_and(Boundary::is_sandbox)
    }
}

/// The lowest pids limit gVisor runs under. The limit counts the sandbox's host tasks, not the
/// job's processes: at rest (Debian's 2022 runsc, ptrace platform, the runner's three mounts)
/// the sandbox holds 68, every process of the job adds 6 to 7 (20 sleeping processes: 201), and
/// at the limit the whole sandbox dies rather than one fork failing. Below about 70 it cannot
/// start at all.
const GVISOR_MIN_PIDS: u64 = 128;

/// Checks `config.runtime` against the engine's runtimes before any container is created:
/// the engine must list it; a runtime this runner does not know needs `allow_unsafe`, the opt-in
/// of the host_config gate (it may ignore the capability drop or no-new-privileges, and nothing
/// inside could prove it is a sandbox); and gVisor must be able to give the job what its config asks for (a network).
/// `None` when the config names no runtime.
pub(crate) fn check(
    config: &DockerConfig,
    engine: &EngineRuntimes,
    allow_unsafe: bool,
) -> Result<Option<Checked>> {
    let Some(name) = config.runtime.as_deref() else {
        return Ok(None);
    };
    let Some(entry) = engine.runtimes.get(name) else {
        return Err(Error::invalid(
            "docker.runtime",
            format!(
                "\"{name}\" is not a runtime of this engine, which lists {}; {}",
                engine.names(),
                how_to_add(name)
            ),
        ));
    };
    let boundary = boundary_of(name, entry);
    if boundary.is_none() && !allow_unsafe {
        return Err(Error::invalid(
            "docker.runtime",
            format!(
                "\"{name}\" ({}) is a runtime this runner does not know to apply the container's security settings; {ALLOW_HOW}",
                program(entry)
            ),
        ));
    }
    if boundary == Some(Boundary::Gvisor)
        && config.network != NetworkMode::None
        && flag(&entry.runtime_args, "network") == Some("none")
    {
        return Err(Error::invalid(
            "docker.network",
            format!(
                "\"{}\" asks for a network, but the engine runs \"{name}\" with --network=none, which gives every container loopback only; set docker.network: none, or register gVisor without --network=none (see the README, Choosing gVisor)",
                config.network.as_str()
            ),
        ));
    }
    let pids = config.pids_limit.unwrap_or(DEFAULT_PIDS_LIMIT);
    if boundary == Some(Boundary::Gvisor) && pids < GVISOR_MIN_PIDS {
        return Err(Error::invalid(
            "docker.pids_limit",
            format!(
                "{pids} is too low for gVisor (\"{name}\"), whose sandbox takes about 70 of the container's pids limit itself and a few more for every process of the job; give at least {GVISOR_MIN_PIDS}"
            ),
        ));
    }
    Ok(Some(Checked {
        name: name.to_string(),
        boundary,
        host_kernel: engine.kernel.clone(),
    }))
}

/// Refuses a job with injected MCP servers whose runtime cannot connect to their sockets: gVisor
/// refuses `connect` on a bind-mounted unix socket (EPERM) unless it runs with `--host-uds=open`
/// (or `all`), and the agent would start without its tools, saying nothing. `runtime` is the
/// job's, `None` for the engine's default. An engine that does not report a gVisor runtime's
/// arguments is taken as giving none.
pub(crate) fn check_host_sockets(runtime: Option<&str>, engine: &EngineRuntimes) -> Result<()> {
    let name = runtime.unwrap_or(&engine.default);
    let Some(entry) = engine.runtimes.get(name) else {
        // `check` refuses it when the job starts, with the engine's list.
        return Ok(());
    };
    if boundary_of(name, entry) != Some(Boundary::Gvisor) {
        return Ok(());
    }
    let uds = flag(&entry.runtime_args, "host-uds");
    // Deprecated, the same as --host-uds=all.
    let legacy = bool_flag(&entry.runtime_args, "fsgofer-host-uds") == Some(true);
    if matches!(uds, Some("open" | "all")) || (legacy && uds.is_none()) {
        return Ok(());
    }
    Err(Error::invalid(
        "injectedMcpServers",
        format!(
            "the agent reaches injected MCP servers through a unix socket mounted into its container, and the engine runs \"{name}\" (gVisor) with {}, under which gVisor refuses to connect to it: the agent would run without its tools; add --host-uds=open to that runtime's runtimeArgs in /etc/docker/daemon.json and send the daemon SIGHUP (scripts/ensure-engine does), or run this agent under another runtime",
            match uds {
                Some(v) => format!("--host-uds={v}"),
                None => "no --host-uds".into(),
            }
        ),
    ))
}

/// Applies the runtime that herdctl's agent object asks for (`agent.docker.runtime`) to `config`.
///
/// herdctl's schema refuses `runtime` in `defaults.docker`, but lets it through in a fleet's
/// per-agent `overrides.docker`, and its `resolveDockerConfig` then drops it: an unmodified
/// herdctl hands this runner a config without the runtime the fleet asked for, and the agent
/// object with it. Taking it from there keeps that fleet's agents in their sandbox. Only as a
/// tightening, as for an agent's own config: a sandbox (gVisor, Kata) over a config without one;
/// any other difference from `config` is refused, never silently settled either way.
///
/// `asked` is the agent's `docker.runtime` as given (the caller reads the agent object).
pub(crate) fn runtime_from_agent(
    asked: Option<&serde_json::Value>,
    config: &mut DockerConfig,
) -> Result<()> {
    let Some(v) = asked else {
        return Ok(());
    };
    let field = "agent.docker.runtime";
    let Some(asked) = crate::config::runtime_name(field, v)? else {
        return Ok(());
    };
    match config.runtime.as_deref() {
        Some(have) if have == asked => Ok(()),
        have if is_sandbox_name(&asked) && !have.is_some_and(is_sandbox_name) => {
            config.runtime = Some(asked);
            Ok(())
        }
        have => Err(Error::invalid(
            field,
            format!(
                "\"{asked}\" differs from the runtime of the docker config this runner was given ({}); set docker.runtime in one place (with herdctl: host_config: {{Runtime: {asked}}} reaches the runner through its resolver)",
                have.map_or("none".to_string(), |h| format!("\"{h}\""))
            ),
        )),
    }
}

/// The program of a runtime, for messages.
fn program(entry: &EngineRuntime) -> &str {
    if !entry.path.is_empty() {
        &entry.path
    } else if !entry.runtime_type.is_empty() {
        &entry.runtime_type
    } else {
        "no program given"
    }
}

/// How to give a Docker engine gVisor, in one sentence: what the refusal of a missing `runsc`
/// and `herdctl-container doctor` say.
pub const ADD_GVISOR: &str = "to add gVisor: apt-get install runsc, add \"runtimes\": {\"runsc\": {\"path\": \"/usr/bin/runsc\", \"runtimeArgs\": [\"--host-uds=open\"]}} to /etc/docker/daemon.json (merged with what is there) and send dockerd SIGHUP, which rereads it without a restart (scripts/ensure-engine does all three)";

/// How to register a missing runtime, for the refusal.
fn how_to_add(name: &str) -> String {
    if boundary_of_name(name) == Some(Boundary::Gvisor) {
        ADD_GVISOR.into()
    } else {
        format!("to add it, register \"{name}\" under \"runtimes\" in /etc/docker/daemon.json and send dockerd SIGHUP")
    }
}

//! How a [`Runner`](crate::Runner)(crate::Runner) behaves: its options, plain data with documented defaults,
//! and the environment variables that stand in for them when herdctl builds a runner without.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::ALLOW_UNSAFE_ENV;
use crate::engine::{EngineOptions, PullProgress};
use crate::plan::SessionLayout;
use crate::{Error, Result};

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

/// An OCI runtime's name given as the argument `field` (like [`RunnerOptions::runtime`]),
/// checked as a docker config's `runtime` is: `Ok(None)` for `""`, an
/// [`Error::InvalidArgument`] naming `field` for a name no engine could list.
pub fn runtime_argument(name: &str, field: &str) -> Result<Option<String>> {
    crate::config::runtime_name(field, &serde_json::Value::String(name.into()))
        .map_err(Error::into_argument)
}

/// Receives each progress line of an image pull.
pub type PullProgressFn = Arc<dyn Fn(&PullProgress) + Send + Sync>;

/// The largest pool a runner may keep per agent: each idle container costs host memory (the
/// engine's shim and the container's init and `sleep`; see BENCHMARKS.md).
pub const MAX_WARM_POOL: usize = 64;

/// How a [`Runner`](crate::Runner) behaves. Plain data with documented defaults.
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
    /// namespaces, non-GPU devices, the engine's socket, ... [`Runner::new`](crate::Runner::new) also turns it on
    /// when the environment variable [`ALLOW_UNSAFE_ENV`]
    /// (`HERDCTL_CONTAINER_ALLOW_UNSAFE_HOST_CONFIG`) is `1` or `true`, so an unmodified herdctl
    /// can opt in. Default: false.
    pub allow_unsafe_host_config: bool,
    /// The OCI runtime of every job whose docker config names none ([`DockerConfig::runtime`](crate::DockerConfig::runtime)),
    /// like `runsc` for gVisor: checked and proven as if the config had named it. A config that
    /// names a runtime keeps its own. Default: none (the engine's default runtime).
    pub runtime: Option<String>,
    /// How many idle containers to keep warm per ephemeral agent (see [`Runner::warm`](crate::Runner::warm) and the
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

/// A warm pool size from the option or its environment variable: a whole number from 0 to
/// [`MAX_WARM_POOL`]; empty is 0.
pub(crate) fn check_pool_size(field: &str, value: &str) -> Result<usize> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(0);
    }
    match v.parse::<usize>() {
        Ok(n) if n <= MAX_WARM_POOL => Ok(n),
        _ => Err(Error::invalid(
            field,
            format!(
                "{value:?} is not a warm pool size; expected a whole number from 0 to {}",
                MAX_WARM_POOL
            ),
        )),
    }
}

/// Reads the opt-in environment variable: absent, empty, `0` or `false` is off; `1` or `true` on.
pub(crate) fn allow_from_env(value: Option<std::ffi::OsString>) -> Result<bool> {
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

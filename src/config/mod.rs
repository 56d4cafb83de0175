//! herdctl's `docker:` configuration: parsed, layered, validated and resolved.
//!
//! Pure logic, no engine calls. The input is herdctl's YAML shape (snake_case, as a
//! [`serde_json::Value`]) or the camelCase shape its `resolveDockerConfig` returns; the output is
//! one [`DockerConfig`] with every default applied and every field checked. Errors are
//! [`Error::InvalidConfig`](crate::Error::InvalidConfig) naming the field in YAML spelling
//! (`docker.memory`, `docker.volumes[1]`), the value and what is accepted.
//!
//! Who may set what (see [`resolve_layered`](crate::resolve_layered)): the fleet file (its `defaults.docker` and its
//! per-agent entries) may set every field; an agent's own `docker:` block lives in a workspace the
//! agent can write, so it may set only the fields in [`AGENT_FIELDS`], and only to tighten what the
//! fleet gives.

mod host_config;
mod input;
mod layer;
mod parse;
pub(crate) mod runtime;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Result;

pub(crate) use host_config::{
    check_device, gate_override, merge, no_new_privileges, parse_security_opt, EngineSockets, Gate,
    Passed, SecOpt, ALLOW_HOW,
};
pub use host_config::{merge_host_config, ALLOW_UNSAFE_ENV};
pub(crate) use input::runtime_name;
pub(crate) use layer::resolve_layered_for;
pub use layer::{DockerLayers, AGENT_FIELDS};
pub(crate) use parse::quote;
pub use parse::{
    format_memory, parse_memory_to_bytes, parse_port_binding, parse_tmpfs_mount, parse_user,
    parse_volume_mount,
};

/// The image used when the config names none: herdctl's runtime image, built locally by its users.
pub const DEFAULT_DOCKER_IMAGE: &str = "herdctl/runtime:latest";

/// The memory limit used when the config sets none, in herdctl's spelling.
pub const DEFAULT_MEMORY_LIMIT: &str = "2g";

/// [`DEFAULT_MEMORY_LIMIT`] in bytes.
pub const DEFAULT_MEMORY_BYTES: u64 = 2 << 30;

/// The smallest memory limit the engine accepts (dockerd refuses anything below 6 MiB at create).
pub const MIN_MEMORY_BYTES: u64 = 6 << 20;

/// How many containers retention keeps per agent when the config says nothing.
pub const DEFAULT_MAX_CONTAINERS: u32 = 5;

/// The CPU weight the engine gives a container without `cpu_shares`; an agent's own config may not
/// ask for more unless the fleet grants it.
pub const DEFAULT_CPU_SHARES: u64 = 1024;

/// The pids limit the runner applies at create time when the config sets none. It is not part of
/// the resolved config (herdctl leaves `pidsLimit` unset); the layering uses it as the ceiling for
/// an agent's own `pids_limit` when the fleet sets none, so an agent cannot lift the runner's default.
pub const DEFAULT_PIDS_LIMIT: u64 = 1024;

/// The user a container runs as when the config sets none and this process runs as root: root in
/// the container only when configured explicitly.
pub const DEFAULT_NON_ROOT_USER: UserSpec = UserSpec {
    uid: 1000,
    gid: Some(1000),
};

/// Network mode of the container. Default: [`NetworkMode::Bridge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// No network but loopback. The tightest.
    None,
    /// The engine's default bridge with NAT: full outbound access.
    Bridge,
    /// The host's network namespace. The loosest.
    Host,
}

impl NetworkMode {
    /// The engine's `HostConfig.NetworkMode` value.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::None => "none",
            NetworkMode::Bridge => "bridge",
            NetworkMode::Host => "host",
        }
    }
}

/// Read-only or read-write, for the workspace and for volumes. Default: [`AccessMode::Rw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessMode {
    /// Read-only. Tighter.
    Ro,
    /// Read-write.
    Rw,
}

impl AccessMode {
    /// True for [`AccessMode::Ro`]: the engine's `ReadOnly` flag.
    pub fn is_read_only(self) -> bool {
        self == AccessMode::Ro
    }

    /// `"ro"` or `"rw"`, herdctl's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::Ro => "ro",
            AccessMode::Rw => "rw",
        }
    }
}

/// A numeric container user, `UID` or `UID:GID` (names are not accepted: they would depend on the
/// image's `/etc/passwd`). Serialises as that string, like herdctl's `user`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct UserSpec {
    /// The user id.
    pub uid: u32,
    /// The group id; `None` lets the engine pick (the image's entry for the uid, else 0).
    pub gid: Option<u32>,
}

impl UserSpec {
    /// True when the container would run as root.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

impl fmt::Display for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.gid {
            Some(gid) => write!(f, "{}:{}", self.uid, gid),
            None => write!(f, "{}", self.uid),
        }
    }
}

impl From<UserSpec> for String {
    fn from(u: UserSpec) -> String {
        u.to_string()
    }
}

impl TryFrom<String> for UserSpec {
    type Error = crate::Error;
    fn try_from(s: String) -> Result<UserSpec> {
        parse_user(&s)
    }
}

/// One configured bind mount (`docker.volumes`), herdctl's `PathMapping`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// Absolute, normalised host path. Must exist when the mount plan is built.
    pub host_path: String,
    /// Absolute, normalised container path, clear of the paths the runner mounts.
    pub container_path: String,
    /// Read-only or read-write. Default: rw.
    pub mode: AccessMode,
}

/// One published port (`docker.ports`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortBinding {
    /// The port on the host, 1-65535.
    pub host_port: u16,
    /// The port in the container, 1-65535.
    pub container_port: u16,
}

/// One tmpfs mount (`docker.tmpfs`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TmpfsMount {
    /// Absolute, normalised container path.
    pub path: String,
    /// Mount options like `size=100m,mode=1777`, passed to the engine as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<String>,
}

/// The resolved docker config of one agent: every default applied, every field validated.
///
/// Serialises in the camelCase shape of herdctl's `resolveDockerConfig` (plus
/// `allowUnsafeHostConfig`); deserialises from that shape or from the YAML snake_case shape,
/// through [`resolve_docker_config`](crate::resolve_docker_config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "serde_json::Value")]
pub struct DockerConfig {
    /// Whether the agent runs in Docker at all. Default: false.
    pub enabled: bool,
    /// A fresh container per job (true) or one reused container per agent and config (false).
    /// Default: true.
    pub ephemeral: bool,
    /// The image. Default: [`DEFAULT_DOCKER_IMAGE`]; `base_image` is an alias.
    pub image: String,
    /// The network mode. Default: bridge.
    pub network: NetworkMode,
    /// The memory limit in bytes, at least [`MIN_MEMORY_BYTES`]. Default: 2 GiB.
    pub memory_bytes: u64,
    /// The relative CPU weight. Default: unset (the engine's 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u64>,
    /// The CFS period in microseconds, 1000-1000000. Default: unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_period: Option<u64>,
    /// The CFS quota in microseconds per period, at least 1000. Default: unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<u64>,
    /// The container user. Default: [`host_user`](crate::host_user) (this process's uid:gid, or
    /// [`DEFAULT_NON_ROOT_USER`] when this process is root).
    pub user: UserSpec,
    /// Containers retention keeps per agent. Default: [`DEFAULT_MAX_CONTAINERS`].
    pub max_containers: u32,
    /// Extra bind mounts. Default: none.
    pub volumes: Vec<VolumeMount>,
    /// How the workspace is mounted. Default: rw.
    pub workspace_mode: AccessMode,
    /// Extra environment. Given to each exec, never to the container's create config (which
    /// `docker inspect` shows): a guess at which values are secret by their names would miss
    /// `DATABASE_URL`. Default: empty.
    pub env: BTreeMap<String, String>,
    /// Published ports. Default: none.
    pub ports: Vec<PortBinding>,
    /// tmpfs mounts. Default: none.
    pub tmpfs: Vec<TmpfsMount>,
    /// The pids limit. Default: unset (the runner applies [`DEFAULT_PIDS_LIMIT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u64>,
    /// User labels; none may use the `dev.herdctl.` prefix. Default: empty.
    pub labels: BTreeMap<String, String>,
    /// The OCI runtime the container runs under (the engine's `HostConfig.Runtime`), by the name
    /// the engine lists it under: `runsc` for gVisor, whose own kernel stands between the agent
    /// and the host's. `host_config.Runtime` (the spelling herdctl's schema lets through) is read
    /// as this field. The runner refuses a name the engine does not list, and proves a sandbox
    /// runtime from inside each container before a job runs there (see the README, "Choosing
    /// gVisor"). Default: unset (the engine's default runtime, runc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Raw engine `HostConfig` merged over the generated one by [`merge_host_config`], with its
    /// keys in the engine's spelling (the engine reads keys in any letter case; resolving
    /// rewrites them, and refuses two keys for one field). Settings that can loosen the
    /// container are refused when a job starts unless opted in. Fleet only. Default: unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_config_override: Option<serde_json::Value>,
    /// Lets `host_config_override` (and `volumes`) loosen the container: `Privileged`, `CapAdd`,
    /// turning no-new-privileges off, host namespaces, devices other than GPUs, host paths
    /// beyond `volumes`, the engine's socket, security profiles, and keys the runner does not
    /// know. Fleet only. The runner's own opt-in ([`crate::RunnerOptions::allow_unsafe_host_config`],
    /// or [`ALLOW_UNSAFE_ENV`]) does the same for every agent. Default: false.
    #[serde(default)]
    pub allow_unsafe_host_config: bool,
}

/// [`crate::resolve_docker_config`] with the host's user given (the container user when the
/// block names none): resolution itself reads nothing from the host.
pub(crate) fn resolve_for(docker: &serde_json::Value, host_user: UserSpec) -> Result<DockerConfig> {
    input::DockerInput::from_value(docker)?.resolve(host_user)
}

#[cfg(test)]
mod tests;

//! The engine itself: is it there, which version, what kind of host.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::call::Req;
use super::{null_default, Engine};
use crate::Result;

/// What `GET /version` says (only the fields we read).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct EngineVersion {
    /// The engine's release, like `20.10.24+dfsg1`.
    #[serde(default)]
    pub version: String,
    /// The newest API version the engine speaks, like `1.41`.
    #[serde(default)]
    pub api_version: String,
    /// The oldest API version the engine accepts, when it says.
    #[serde(rename = "MinAPIVersion", default)]
    pub min_api_version: Option<String>,
    /// The engine's OS, like `linux`.
    #[serde(default)]
    pub os: String,
    /// The engine's CPU architecture, like `amd64`.
    #[serde(default)]
    pub arch: String,
    /// The host kernel's version, when it says.
    #[serde(default)]
    pub kernel_version: Option<String>,
}

/// What `GET /info` says (only the fields we read).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct EngineInfo {
    /// The host's name.
    #[serde(default)]
    pub name: String,
    /// The engine's release.
    #[serde(default)]
    pub server_version: String,
    /// The host OS, like `Debian GNU/Linux 12 (bookworm)`.
    #[serde(default)]
    pub operating_system: String,
    /// `linux` or `windows`: the kind of containers the engine runs.
    #[serde(rename = "OSType", default)]
    pub os_type: String,
    /// The host's CPU architecture, like `x86_64`.
    #[serde(default)]
    pub architecture: String,
    /// CPUs the engine can use.
    #[serde(rename = "NCPU", default)]
    pub ncpu: u64,
    /// Memory of the host, in bytes.
    #[serde(default)]
    pub mem_total: u64,
    /// `cgroupfs` or `systemd`.
    #[serde(default)]
    pub cgroup_driver: String,
    /// `1` or `2`, when the engine says (API 1.40 and later).
    #[serde(default)]
    pub cgroup_version: Option<String>,
    /// Security features, like `name=seccomp,profile=default` and `name=rootless`.
    #[serde(default, deserialize_with = "null_default")]
    pub security_options: Vec<String>,
    /// Containers the engine knows.
    #[serde(default)]
    pub containers: u64,
    /// Of those, the running ones.
    #[serde(default)]
    pub containers_running: u64,
    /// The host kernel's release, like `6.1.0-28-amd64`.
    #[serde(default, deserialize_with = "null_default")]
    pub kernel_version: String,
    /// The OCI runtimes a container may ask for (`HostConfig.Runtime`), by name.
    #[serde(default, deserialize_with = "null_default")]
    pub runtimes: BTreeMap<String, EngineRuntime>,
    /// The runtime of a container that asks for none, like `runc`.
    #[serde(default, deserialize_with = "null_default")]
    pub default_runtime: String,
}

/// One runtime of [`EngineInfo::runtimes`], as the engine was configured with it
/// (`daemon.json`'s `runtimes`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct EngineRuntime {
    /// The runtime's program, like `/usr/bin/runsc` (empty for a containerd shim given by
    /// [`EngineRuntime::runtime_type`]).
    #[serde(default, deserialize_with = "null_default")]
    pub path: String,
    /// The arguments the engine passes it, like `["--host-uds=open"]`.
    #[serde(default, deserialize_with = "null_default")]
    pub runtime_args: Vec<String>,
    /// A containerd shim, like `io.containerd.runsc.v1` (newer engines).
    #[serde(default, deserialize_with = "null_default")]
    pub runtime_type: String,
}

impl Engine {
    /// Checks that the engine answers (`GET /_ping`).
    pub fn ping(&self) -> Result<()> {
        let response = self.send(Req::new("GET", "/_ping"))?;
        if response.status() != 200 {
            return Err(response.error("", &[]));
        }
        response.finish()
    }

    /// The engine's version and API range (`GET /version`).
    pub fn version(&self) -> Result<EngineVersion> {
        let response = self.send(Req::new("GET", "/version"))?;
        if response.status() != 200 {
            return Err(response.error("", &[]));
        }
        response.json()
    }

    /// What kind of host the engine runs on (`GET /info`).
    pub fn info(&self) -> Result<EngineInfo> {
        let response = self.send(Req::new("GET", "/info"))?;
        if response.status() != 200 {
            return Err(response.error("", &[]));
        }
        response.json()
    }
}

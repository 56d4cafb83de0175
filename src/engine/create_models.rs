//! What the runner asks the engine to create: hand-written wire models of the `POST
//! /containers/create` body, with the fields the runner sets or reads back by name, and a
//! flattened map for the rest of what a `host_config` override may carry.
//!
//! Every field is optional and left out when unset, so the JSON the engine gets is what was
//! asked, key for key: the engine tells a missing key from an empty list for some fields, and a
//! check after create reads the presence of some (`Sysctls`). The keys are in the engine's own
//! spelling; the engine reads them in any letter case, so whoever fills [`HostConfig::other`]
//! must rewrite them first (a key there that folds to a field here would be a second value for
//! it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `ExposedPorts`: container ports (`80/tcp`), each with the engine's `{}`.
pub(crate) type ExposedPorts = BTreeMap<String, Empty>;

/// `PortBindings`: container port (`80/tcp`) to the host ports that publish it.
pub(crate) type PortBindings = BTreeMap<String, Vec<PortBinding>>;

/// The create body (only the fields the runner sends).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ContainerCreate {
    /// The image name.
    pub image: String,
    /// What PID 1 (or the init's child) runs.
    pub cmd: Vec<String>,
    /// The user, like `1000:1000`.
    pub user: String,
    /// `NAME=value` entries; visible to anyone who can inspect, so never a secret.
    pub env: Vec<String>,
    /// The working directory.
    pub working_dir: String,
    /// The labels.
    pub labels: BTreeMap<String, String>,
    /// Container ports (`80/tcp`) the container listens on.
    pub exposed_ports: ExposedPorts,
    /// Limits, mounts and security settings.
    pub host_config: HostConfig,
}

/// The engine's `{}` (a set member in `ExposedPorts`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Empty {}

/// The create body's `HostConfig`: the runner's own settings, and the fields a check after
/// create compares with the engine's inspect. Every other key an override passes through the
/// gate is in [`other`](HostConfig::other), as it was given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct HostConfig {
    /// Mounts, the runner's first; never `Binds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Mount>>,
    /// Memory limit in bytes (0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    /// Memory plus swap in bytes (equal to `memory`: no swap; -1: unlimited swap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<i64>,
    /// Pids limit (0 or -1: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    /// Relative CPU weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<i64>,
    /// CFS period in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_period: Option<i64>,
    /// CFS quota in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<i64>,
    /// Capabilities dropped, like `["ALL"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_drop: Option<Vec<String>>,
    /// Capabilities added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_add: Option<Vec<String>>,
    /// Capabilities that replace the default set (API 1.40-1.42).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// Whether it runs privileged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// Security options, like `no-new-privileges`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_opt: Option<Vec<String>>,
    /// `none`, `bridge`, `host` or a network name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// Cgroup namespace: `private` or `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroupns_mode: Option<String>,
    /// Whether an init runs as PID 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    /// Extra groups of the container's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_add: Option<Vec<String>>,
    /// The OCI runtime, like `runsc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// tmpfs mounts: container path to mount options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<BTreeMap<String, String>>,
    /// Published ports: container port (`80/tcp`) to host ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_bindings: Option<PortBindings>,
    /// Host devices (GPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<Device>>,
    /// Devices requested from a driver (GPUs). Kept as given: the runner only counts them (the
    /// inspect's model does the same), and the engine checks their fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_requests: Option<Vec<Value>>,
    /// Kernel parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sysctls: Option<BTreeMap<String, String>>,
    /// The other keys of an override (`ShmSize`, `Ulimits`, `Dns`, a key the runner does not
    /// know, ...), in the engine's spelling, as the gate passed them.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One entry of `HostConfig.Mounts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Mount {
    /// `bind`, `tmpfs`, `volume`, ...
    #[serde(rename = "Type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The host path (bind) or volume name; none for tmpfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The container path.
    pub target: String,
    /// Mounted read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// The rest of an override's mount (`BindOptions`, `TmpfsOptions`, ...), as given.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One host port of `HostConfig.PortBindings`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PortBinding {
    /// The host address (none: every address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    /// The host port, as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<String>,
    /// The rest of an override's entry, as given.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One entry of `HostConfig.Devices`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Device {
    /// The device on the host.
    pub path_on_host: String,
    /// Where it appears in the container (none: the same path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_in_container: Option<String>,
    /// `r`, `w` and `m` as the device cgroup allows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_permissions: Option<String>,
    /// The rest of an override's entry, as given.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unset_fields_are_left_out_and_other_keys_kept() {
        let hc = json!({
            "CapDrop": ["ALL"], "Sysctls": {}, "ShmSize": 1, "x-new": [1],
            "Mounts": [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Mode": 448}}],
            "Devices": [{"PathOnHost": "/dev/dri", "x": 1}],
            "PortBindings": {"80/tcp": [{"HostPort": "8080", "x": 2}]},
        });
        let typed: HostConfig = serde_json::from_value(hc.clone()).unwrap();
        assert_eq!(typed.cap_drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(typed.sysctls, Some(BTreeMap::new()));
        assert_eq!(typed.memory, None);
        assert_eq!(typed.other.keys().collect::<Vec<_>>(), ["ShmSize", "x-new"]);
        assert_eq!(serde_json::to_value(&typed).unwrap(), hc);
        assert_eq!(
            serde_json::to_value(HostConfig::default()).unwrap(),
            json!({})
        );
    }

    #[test]
    fn the_body_always_has_its_top_level_fields() {
        let body = ContainerCreate {
            exposed_ports: BTreeMap::from([("80/tcp".to_string(), Empty {})]),
            ..ContainerCreate::default()
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"Image": "", "Cmd": [], "User": "", "Env": [], "WorkingDir": "", "Labels": {},
                   "ExposedPorts": {"80/tcp": {}}, "HostConfig": {}})
        );
    }
}

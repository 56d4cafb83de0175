//! What the engine tells about containers: hand-written wire models with only the fields we read.
//! The engine sends `null` for many empty lists and maps; those read as empty here.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::null_default;

/// What `GET /containers/{id}/json` says (only the fields we read).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct ContainerInspect {
    /// The full id.
    pub id: String,
    /// The name, with the engine's leading `/`.
    #[serde(default)]
    pub name: String,
    /// When it was created (RFC 3339).
    #[serde(default)]
    pub created: String,
    /// The id of the image it was made from.
    #[serde(default)]
    pub image: String,
    /// Its config: labels, env, user, image name.
    #[serde(default, deserialize_with = "null_default")]
    pub config: ContainerConfig,
    /// Whether and how it runs.
    #[serde(default, deserialize_with = "null_default")]
    pub state: ContainerState,
    /// The limits and security settings it was created with.
    #[serde(default, deserialize_with = "null_default")]
    pub host_config: ContainerHostConfig,
    /// What is mounted where.
    #[serde(default, deserialize_with = "null_default")]
    pub mounts: Vec<MountPoint>,
}

/// The create-time config of a container (only the fields we read).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct ContainerConfig {
    /// The image name it was created with.
    #[serde(default, deserialize_with = "null_default")]
    pub image: String,
    /// Its labels.
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    /// `NAME=value` entries (visible to anyone who can inspect: never a secret here).
    #[serde(default, deserialize_with = "null_default")]
    pub env: Vec<String>,
    /// The user, like `1000:1000`, or empty for the image's default.
    #[serde(default, deserialize_with = "null_default")]
    pub user: String,
    /// Whether it has a TTY (then its output is not multiplexed).
    #[serde(default, deserialize_with = "null_default")]
    pub tty: bool,
    /// Its command.
    #[serde(default, deserialize_with = "null_default")]
    pub cmd: Vec<String>,
    /// Its entrypoint.
    #[serde(default, deserialize_with = "null_default")]
    pub entrypoint: Vec<String>,
    /// Its working directory.
    #[serde(default, deserialize_with = "null_default")]
    pub working_dir: String,
    /// The volumes it declares (the image's `VOLUME`s), by container path.
    #[serde(default, deserialize_with = "null_default")]
    pub volumes: BTreeMap<String, serde_json::Value>,
}

/// Whether and how a container runs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct ContainerState {
    /// `created`, `running`, `paused`, `restarting`, `removing`, `exited` or `dead`.
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    /// Whether it runs.
    #[serde(default, deserialize_with = "null_default")]
    pub running: bool,
    /// The main process's exit code (0 while running or never started).
    #[serde(default, deserialize_with = "null_default")]
    pub exit_code: i64,
    /// Whether the OOM killer ended it. Unreliable on its own (Podman never sets it): combine with
    /// exit code 137 and the memory limit.
    #[serde(rename = "OOMKilled", default, deserialize_with = "null_default")]
    pub oom_killed: bool,
    /// The main process's pid on the host (0 when not running).
    #[serde(default, deserialize_with = "null_default")]
    pub pid: i64,
    /// The engine's error starting or running it, if any.
    #[serde(default, deserialize_with = "null_default")]
    pub error: String,
    /// When it last started (RFC 3339; year 1 when never).
    #[serde(default, deserialize_with = "null_default")]
    pub started_at: String,
    /// When it last stopped (RFC 3339; year 1 when never).
    #[serde(default, deserialize_with = "null_default")]
    pub finished_at: String,
}

/// The limits and security settings of a container, as the engine applied them (only the fields
/// we verify).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct ContainerHostConfig {
    /// Memory limit in bytes (0: none).
    #[serde(default, deserialize_with = "null_default")]
    pub memory: i64,
    /// Memory plus swap limit in bytes (equal to `memory`: no swap; -1: unlimited swap).
    #[serde(default, deserialize_with = "null_default")]
    pub memory_swap: i64,
    /// Pids limit (`None` or 0: none).
    #[serde(default)]
    pub pids_limit: Option<i64>,
    /// Relative CPU weight (0: default).
    #[serde(default, deserialize_with = "null_default")]
    pub cpu_shares: i64,
    /// CFS period in microseconds (0: default).
    #[serde(default, deserialize_with = "null_default")]
    pub cpu_period: i64,
    /// CFS quota in microseconds (0: none).
    #[serde(default, deserialize_with = "null_default")]
    pub cpu_quota: i64,
    /// Capabilities dropped, like `["ALL"]`.
    #[serde(default, deserialize_with = "null_default")]
    pub cap_drop: Vec<String>,
    /// Capabilities added.
    #[serde(default, deserialize_with = "null_default")]
    pub cap_add: Vec<String>,
    /// Security options, like `no-new-privileges`.
    #[serde(default, deserialize_with = "null_default")]
    pub security_opt: Vec<String>,
    /// `none`, `bridge`, `host`, `default` or a network name.
    #[serde(default, deserialize_with = "null_default")]
    pub network_mode: String,
    /// Whether an init process runs as PID 1 (`None`: the engine's default).
    #[serde(default)]
    pub init: Option<bool>,
    /// Whether the root filesystem is read-only.
    #[serde(default, deserialize_with = "null_default")]
    pub readonly_rootfs: bool,
    /// Whether the engine removes the container when it exits.
    #[serde(default, deserialize_with = "null_default")]
    pub auto_remove: bool,
    /// tmpfs mounts: path to options.
    #[serde(default, deserialize_with = "null_default")]
    pub tmpfs: BTreeMap<String, String>,
    /// Whether it runs privileged.
    #[serde(default, deserialize_with = "null_default")]
    pub privileged: bool,
    /// Capabilities that replace the default set (API 1.40-1.42; ignored by later engines).
    #[serde(default, deserialize_with = "null_default")]
    pub capabilities: Vec<String>,
    /// Process namespace: empty (its own), `host` or `container:<id>`.
    #[serde(default, deserialize_with = "null_default")]
    pub pid_mode: String,
    /// IPC namespace: `private`, `shareable`, `none`, `host` or `container:<id>`.
    #[serde(default, deserialize_with = "null_default")]
    pub ipc_mode: String,
    /// Hostname namespace: empty (its own) or `host`.
    #[serde(rename = "UTSMode", default, deserialize_with = "null_default")]
    pub uts_mode: String,
    /// User namespace: empty (the engine's) or `host`.
    #[serde(default, deserialize_with = "null_default")]
    pub userns_mode: String,
    /// Cgroup namespace: `private` or `host` (`None`: an engine older than API 1.41).
    #[serde(default)]
    pub cgroupns_mode: Option<String>,
    /// Host devices given to it.
    #[serde(default, deserialize_with = "null_default")]
    pub devices: Vec<DeviceMapping>,
    /// Devices requested from a driver (GPUs), as the engine keeps them.
    #[serde(default, deserialize_with = "null_default")]
    pub device_requests: Vec<serde_json::Value>,
    /// Device cgroup rules, like `c 1:3 rwm`.
    #[serde(default, deserialize_with = "null_default")]
    pub device_cgroup_rules: Vec<String>,
    /// Extra groups of the container's user.
    #[serde(default, deserialize_with = "null_default")]
    pub group_add: Vec<String>,
    /// `/proc` and `/sys` paths hidden from it (`None`: not reported).
    #[serde(default)]
    pub masked_paths: Option<Vec<String>>,
    /// `/proc` and `/sys` paths it may read but not write (`None`: not reported).
    #[serde(default)]
    pub readonly_paths: Option<Vec<String>>,
    /// `host:container` bind mounts in the engine's short form.
    #[serde(default, deserialize_with = "null_default")]
    pub binds: Vec<String>,
    /// Containers whose volumes it mounts.
    #[serde(default, deserialize_with = "null_default")]
    pub volumes_from: Vec<String>,
    /// Kernel parameters set for it.
    #[serde(default, deserialize_with = "null_default")]
    pub sysctls: BTreeMap<String, String>,
    /// Whether every exposed port is published.
    #[serde(default, deserialize_with = "null_default")]
    pub publish_all_ports: bool,
    /// The OOM score adjustment (negative: the host's processes go first).
    #[serde(default, deserialize_with = "null_default")]
    pub oom_score_adj: i64,
    /// Its runtime, like `runc`.
    #[serde(default, deserialize_with = "null_default")]
    pub runtime: String,
}

/// One host device given to a container.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct DeviceMapping {
    /// The device on the host.
    #[serde(default, deserialize_with = "null_default")]
    pub path_on_host: String,
    /// Where it appears in the container.
    #[serde(default, deserialize_with = "null_default")]
    pub path_in_container: String,
    /// `r`, `w` and `m` (mknod) as the device cgroup allows them.
    #[serde(default, deserialize_with = "null_default")]
    pub cgroup_permissions: String,
}

/// One mount of a container, as mounted.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct MountPoint {
    /// `bind`, `volume` or `tmpfs`.
    #[serde(default, deserialize_with = "null_default")]
    pub r#type: String,
    /// The host path (bind) or the volume's path.
    #[serde(default, deserialize_with = "null_default")]
    pub source: String,
    /// The path inside the container.
    #[serde(default, deserialize_with = "null_default")]
    pub destination: String,
    /// Whether it is writable.
    #[serde(rename = "RW", default, deserialize_with = "null_default")]
    pub rw: bool,
    /// The mode string, like `ro` or `z`.
    #[serde(default, deserialize_with = "null_default")]
    pub mode: String,
    /// A volume's name (empty for other types).
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
}

/// One container in a list (`GET /containers/json`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct ContainerSummary {
    /// The full id.
    pub id: String,
    /// Its names, each with the engine's leading `/`.
    #[serde(default, deserialize_with = "null_default")]
    pub names: Vec<String>,
    /// The image name it was created with.
    #[serde(default, deserialize_with = "null_default")]
    pub image: String,
    /// Its labels.
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    /// `created`, `running`, `exited`, ...
    #[serde(default, deserialize_with = "null_default")]
    pub state: String,
    /// Human text like `Up 2 minutes`.
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    /// When it was created, in unix seconds.
    #[serde(default, deserialize_with = "null_default")]
    pub created: i64,
}

/// The processes of a container (`GET /containers/{id}/top`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct ProcessList {
    /// Column titles, like `UID`, `PID`, `CMD`.
    #[serde(default, deserialize_with = "null_default")]
    pub titles: Vec<String>,
    /// One row per process, in the order of the titles.
    #[serde(default, deserialize_with = "null_default")]
    pub processes: Vec<Vec<String>>,
}

impl ProcessList {
    /// The values of one column (like `CMD` or `PID`), one per process; empty when no column has
    /// that title.
    pub fn column(&self, title: &str) -> Vec<&str> {
        match self.titles.iter().position(|t| t == title) {
            Some(i) => self
                .processes
                .iter()
                .filter_map(|row| row.get(i).map(String::as_str))
                .collect(),
            None => Vec::new(),
        }
    }

    /// Each process's command line: Docker titles that column `CMD`, Podman `COMMAND`.
    pub fn commands(&self) -> Vec<&str> {
        let cmd = self.column("CMD");
        if cmd.is_empty() {
            self.column("COMMAND")
        } else {
            cmd
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_read_as_empty() {
        let json = r#"{"Id":"abc","Name":"/x","Config":{"Labels":null,"Env":null,"Cmd":null,"Tty":false},
            "State":{"Status":"exited","ExitCode":3,"OOMKilled":false,"Pid":0,"Error":""},
            "HostConfig":{"PidsLimit":null,"CapDrop":null,"Init":null,"SecurityOpt":null,"Tmpfs":null},
            "Mounts":null}"#;
        let c: ContainerInspect = serde_json::from_str(json).unwrap();
        assert_eq!(c.state.exit_code, 3);
        assert!(
            c.config.labels.is_empty() && c.mounts.is_empty() && c.host_config.cap_drop.is_empty()
        );
        assert_eq!(c.host_config.pids_limit, None);
        assert_eq!(c.host_config.init, None);
    }

    #[test]
    fn process_columns() {
        let p: ProcessList = serde_json::from_str(
            r#"{"Titles":["UID","PID","CMD"],"Processes":[["root","10","sleep 60"],["root","11"]]}"#,
        )
        .unwrap();
        assert_eq!(p.column("CMD"), vec!["sleep 60"]);
        assert_eq!(p.column("PID"), vec!["10", "11"]);
        assert!(p.column("NOPE").is_empty());
    }
}

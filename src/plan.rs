//! The container's create body: the config and the mount plan turned into what the engine is
//! asked for, with this project's security defaults, and the check that the engine did it.
//!
//! Defaults the runner adds (not the config): an init as PID 1 (signals are forwarded, so a stop
//! takes milliseconds instead of the stop timeout that `sleep` as PID 1 would wait out), all
//! capabilities dropped, no-new-privileges, swap equal to memory (no extra swap), a pids limit.
//!
//! Checked three times: the config's host paths before create ([`check_mount_sources`]), the
//! engine's inspect after create ([`verify`]), and the processes themselves once the container
//! runs ([`check_inside`](crate::run::inside::check_inside)).

mod config_hash;
pub(crate) mod job;
pub(crate) mod mounts;
mod verify;

pub use config_hash::config_hash;
pub use mounts::{agent_session_dir, Mount, MountPlan, MountRequest, MountRole, SessionLayout};

pub(crate) use verify::{verify, Expected, HostPaths};

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{DockerConfig, Passed, DEFAULT_PIDS_LIMIT};
use crate::engine::create_models::{
    ContainerCreate, Empty, ExposedPorts, HostConfig, Mount as EngineMount, PortBinding,
    PortBindings,
};
use crate::paths::{CONTAINER_HOME, CONTAINER_WORKSPACE};
use crate::{Error, Result};

/// What PID 1's child runs: a process that waits forever, so jobs can exec into the container.
/// `sleep infinity` exists in busybox and coreutils; the image's entrypoint still runs first.
const KEEPALIVE: [&str; 2] = ["sleep", "infinity"];

/// Where the override's errors point (the config's own name for it).
const OVERRIDE: &str = "docker.host_config";

/// The create body for one container.
///
/// No environment value goes in here: `docker inspect` shows create-time env to anyone who may
/// talk to the engine, and a name-based guess at which values are secret misses `DATABASE_URL`.
/// Every configured env entry and every credential is given to each exec instead.
pub(crate) fn create_body(
    config: &DockerConfig,
    mounts: &MountPlan,
    labels: &BTreeMap<String, String>,
    host_config: Option<&Passed>,
) -> Result<ContainerCreate> {
    let (exposed_ports, port_bindings) = ports(config);
    let mut host = runner_host_config(config, mounts)?;
    host.port_bindings = port_bindings;
    match (host_config, &config.host_config_override) {
        (Some(passed), _) => host = merge_override(&host, passed)?,
        // Never dropped unseen: what the user set either passed the gate or stops the job.
        (None, Some(_)) => {
            return Err(Error::invalid(
                OVERRIDE,
                "was not passed through the gate (config::gate_override) before the plan",
            ))
        }
        (None, None) => {}
    }
    Ok(ContainerCreate {
        image: config.image.clone(),
        cmd: KEEPALIVE.map(String::from).to_vec(),
        user: config.user.to_string(),
        env: vec![format!("HOME={CONTAINER_HOME}")],
        working_dir: CONTAINER_WORKSPACE.into(),
        labels: labels.clone(),
        exposed_ports,
        host_config: host,
    })
}

/// The runner's own HostConfig: the config's limits and mounts, and this project's defaults.
fn runner_host_config(config: &DockerConfig, mounts: &MountPlan) -> Result<HostConfig> {
    let memory = int("docker.memory", config.memory_bytes)?;
    let pids = config.pids_limit.unwrap_or(DEFAULT_PIDS_LIMIT);
    let opt = |field: &str, v: Option<u64>| v.map(|v| int(field, v)).transpose();
    Ok(HostConfig {
        mounts: Some(engine_mounts(mounts)?),
        memory: Some(memory),
        memory_swap: Some(memory),
        pids_limit: Some(int("docker.pids_limit", pids)?),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        network_mode: Some(config.network.as_str().into()),
        init: Some(true),
        // A job in a persistent container runs with a group id of its own (see `run/job/group.rs`):
        // the configured group stays one of its groups, so what it could reach through that
        // group it still can.
        group_add: config.user.gid.map(|gid| vec![gid.to_string()]),
        runtime: config.runtime.clone(),
        cpu_shares: opt("docker.cpu_shares", config.cpu_shares)?,
        cpu_period: opt("docker.cpu_period", config.cpu_period)?,
        cpu_quota: opt("docker.cpu_quota", config.cpu_quota)?,
        tmpfs: (!config.tmpfs.is_empty()).then(|| {
            config
                .tmpfs
                .iter()
                .map(|t| (t.path.clone(), t.options.clone().unwrap_or_default()))
                .collect()
        }),
        ..HostConfig::default()
    })
}

/// A limit as the engine reads it (Go's `int64`).
fn int(field: &str, v: u64) -> Result<i64> {
    i64::try_from(v)
        .map_err(|_| Error::invalid(field, format!("expected at most {}, got {v}", i64::MAX)))
}

/// The mount plan's entries, in the shape [`MountPlan::engine_mounts`] gives them.
fn engine_mounts(mounts: &MountPlan) -> Result<Vec<EngineMount>> {
    Vec::<EngineMount>::deserialize(Value::Array(mounts.engine_mounts()))
        .map_err(|e| Error::invalid("HostConfig.Mounts", format!("a planned mount: {e}")))
}

/// `ExposedPorts` and `PortBindings` for `docker.ports` (TCP; several host ports may publish
/// one container port).
fn ports(config: &DockerConfig) -> (ExposedPorts, Option<PortBindings>) {
    let mut exposed = ExposedPorts::new();
    if config.ports.is_empty() {
        return (exposed, None);
    }
    let mut bindings = PortBindings::new();
    for p in &config.ports {
        let key = format!("{}/tcp", p.container_port);
        exposed.insert(key.clone(), Empty {});
        bindings.entry(key).or_default().push(PortBinding {
            host_port: Some(p.host_port.to_string()),
            ..PortBinding::default()
        });
    }
    (exposed, Some(bindings))
}

/// The override merged over the runner's HostConfig. The merge works on JSON, as the engine
/// reads it (keys in any letter case); its result is read into the typed request here, the one
/// place where the override's keys become fields (the rest stay in [`HostConfig::other`]).
fn merge_override(host: &HostConfig, passed: &Passed) -> Result<HostConfig> {
    let generated = serde_json::to_value(host)
        .map_err(|e| Error::invalid("HostConfig", format!("cannot encode it: {e}")))?;
    let merged = crate::config::merge(&generated, passed)?;
    HostConfig::deserialize(&merged).map_err(|e| {
        // Name the key that does not read: the first that fails on its own.
        let bad = merged.as_object().into_iter().flatten().find(|(k, v)| {
            let one = Map::from_iter([((*k).clone(), (*v).clone())]);
            HostConfig::deserialize(&Value::Object(one)).is_err()
        });
        let field = bad.map_or(OVERRIDE.to_string(), |(k, _)| format!("{OVERRIDE}.{k}"));
        Error::invalid(field, format!("not what the engine reads there: {e}"))
    })
}

#[cfg(test)]
mod tests;

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

mod verify;

pub(crate) use verify::{verify, Expected};

use serde_json::{json, Map, Value};

use crate::config::{DockerConfig, EngineSockets, Gate, ALLOW_HOW, DEFAULT_PIDS_LIMIT};
use crate::paths::{MountPlan, MountRole, CONTAINER_HOME, CONTAINER_WORKSPACE};
use crate::{Error, Result};

/// What PID 1's child runs: a process that waits forever, so jobs can exec into the container.
/// `sleep infinity` exists in busybox and coreutils; the image's entrypoint still runs first.
const KEEPALIVE: [&str; 2] = ["sleep", "infinity"];

/// The create body for one container.
///
/// No environment value goes in here: `docker inspect` shows create-time env to anyone who may
/// talk to the engine, and a name-based guess at which values are secret misses `DATABASE_URL`.
/// Every configured env entry and every credential is given to each exec instead.
pub(crate) fn create_body(
    config: &DockerConfig,
    mounts: &MountPlan,
    labels: &std::collections::BTreeMap<String, String>,
    gate: &Gate<'_>,
) -> Result<Value> {
    let mut host = Map::new();
    host.insert("Mounts".into(), json!(mounts.engine_mounts()));
    host.insert("Memory".into(), json!(config.memory_bytes));
    host.insert("MemorySwap".into(), json!(config.memory_bytes));
    host.insert(
        "PidsLimit".into(),
        json!(config.pids_limit.unwrap_or(DEFAULT_PIDS_LIMIT)),
    );
    host.insert("CapDrop".into(), json!(["ALL"]));
    host.insert("SecurityOpt".into(), json!(["no-new-privileges"]));
    host.insert("NetworkMode".into(), json!(config.network.as_str()));
    host.insert("Init".into(), json!(true));
    // A job in a persistent container runs with a group id of its own (see `job/group.rs`):
    // the configured group stays one of its groups, so what it could reach through that group
    // it still can.
    if let Some(gid) = config.user.gid {
        host.insert("GroupAdd".into(), json!([gid.to_string()]));
    }
    if let Some(runtime) = &config.runtime {
        host.insert("Runtime".into(), json!(runtime));
    }
    if let Some(v) = config.cpu_shares {
        host.insert("CpuShares".into(), json!(v));
    }
    if let Some(v) = config.cpu_period {
        host.insert("CpuPeriod".into(), json!(v));
    }
    if let Some(v) = config.cpu_quota {
        host.insert("CpuQuota".into(), json!(v));
    }
    if !config.tmpfs.is_empty() {
        let tmpfs: Map<String, Value> = config
            .tmpfs
            .iter()
            .map(|t| (t.path.clone(), json!(t.options.clone().unwrap_or_default())))
            .collect();
        host.insert("Tmpfs".into(), Value::Object(tmpfs));
    }
    let mut exposed = Map::new();
    if !config.ports.is_empty() {
        let mut bindings = Map::new();
        for p in &config.ports {
            let key = format!("{}/tcp", p.container_port);
            exposed.insert(key.clone(), json!({}));
            bindings
                .entry(key)
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .expect("inserted as an array just above")
                .push(json!({"HostPort": p.host_port.to_string()}));
        }
        host.insert("PortBindings".into(), Value::Object(bindings));
    }
    let mut host = Value::Object(host);
    if config.host_config_override.is_some() {
        host = crate::config::merge(&host, config, gate)?;
    }
    Ok(json!({
        "Image": config.image,
        "Cmd": KEEPALIVE,
        "User": config.user.to_string(),
        "Env": [format!("HOME={CONTAINER_HOME}")],
        "WorkingDir": CONTAINER_WORKSPACE,
        "Labels": labels,
        "ExposedPorts": exposed,
        "HostConfig": host,
    }))
}

/// Refuses, without the opt-in, a workspace or volume whose host path is an engine's socket, a
/// directory holding one (under any name: the sockets are compared by inode), or any other unix
/// socket: a job that can reach the engine's socket can drive the engine, which is root on the
/// host, whatever the container's own settings (a read-only mount does not stop `connect`). The
/// same for a path on, or holding, one of the host's kernel file systems (`/proc`, `/sys`,
/// `/dev`, ...), and for one through which the job could change the runner's state directory
/// (see [`MountPlan::build`]).
pub(crate) fn check_mount_sources(
    mounts: &MountPlan,
    sockets: &EngineSockets,
    allow: bool,
) -> Result<()> {
    if allow {
        return Ok(());
    }
    let field = |role: MountRole| match role {
        MountRole::Workspace => Some("working_directory".to_string()),
        MountRole::Volume(i) => Some(format!("docker.volumes[{i}]")),
        // The runner's own files, under its state directory.
        _ => None,
    };
    for m in mounts.mounts() {
        let Some(field) = field(m.role) else {
            continue;
        };
        if let Some(why) = sockets.door(&m.source) {
            return Err(Error::invalid(field, format!("{why}; {ALLOW_HOW}")));
        }
    }
    if let Some((role, why)) = mounts.exposed_state_dir().first() {
        return Err(Error::invalid(
            field(*role).unwrap_or_default(),
            format!("{why}: a job could replace the runner's own files there (the session and socket directories its next containers mount, the credentials copy it writes), a way out of the container; keep the state directory outside the working directory and the volumes, or at the top of one (it is then hidden from the job), or mount that one read-only; {ALLOW_HOW}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

//! The container's create body: the config and the mount plan turned into what the engine is
//! asked for, with this project's security defaults, and the check that the engine did it.
//!
//! Defaults the runner adds (not the config): an init as PID 1 (signals are forwarded, so a stop
//! takes milliseconds instead of the stop timeout that `sleep` as PID 1 would wait out), all
//! capabilities dropped, no-new-privileges, swap equal to memory (no extra swap), a pids limit.

use serde_json::{json, Map, Value};

use crate::config::{DockerConfig, DEFAULT_PIDS_LIMIT};
use crate::engine::ContainerInspect;
use crate::paths::{MountPlan, CONTAINER_HOME, CONTAINER_WORKSPACE};
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
        host = crate::config::merge_host_config(&host, config)?;
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

/// The capabilities a container starts with by default (the same 14 in Docker and Podman).
const DEFAULT_CAPABILITIES: [&str; 14] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Whether the container has no capability: Docker reports the `ALL` it was given, Podman
/// reports each default capability it dropped instead.
fn drops_every_capability(drop: &[String], add: &[String]) -> bool {
    let dropped = |cap: &str| {
        drop.iter().any(|d| {
            let d = d.trim_start_matches("CAP_");
            d.eq_ignore_ascii_case("ALL") || d.eq_ignore_ascii_case(cap)
        })
    };
    add.is_empty() && (dropped("ALL") || DEFAULT_CAPABILITIES.iter().all(|c| dropped(c)))
}

/// Compares what the engine applied with what was asked. Security settings that did not take
/// are errors (the container must not run a job); limits that did not take are warnings.
pub(crate) fn verify(asked: &Value, got: &ContainerInspect) -> Result<Vec<String>> {
    let want = &asked["HostConfig"];
    let have = &got.host_config;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    if want["CapDrop"] == json!(["ALL"]) && !drops_every_capability(&have.cap_drop, &have.cap_add) {
        problems.push("CapDrop ALL".to_string());
    }
    if want["SecurityOpt"]
        .as_array()
        .is_some_and(|o| o.iter().any(|v| v == "no-new-privileges"))
        && !have
            .security_opt
            .iter()
            .any(|o| o.starts_with("no-new-privileges"))
    {
        problems.push("no-new-privileges".to_string());
    }
    if let Some(r) = want["Runtime"].as_str() {
        if have.runtime != r {
            problems.push(format!("runtime {r} (got {:?})", have.runtime));
        }
    }
    let want_user = asked["User"].as_str().unwrap_or_default();
    if got.config.user != want_user {
        problems.push(format!("user {want_user} (got {:?})", got.config.user));
    }
    if let Some(m) = want["Memory"].as_i64() {
        if have.memory != m {
            warnings.push(format!("memory limit {m} was applied as {}", have.memory));
        }
    }
    if let Some(m) = want["MemorySwap"].as_i64() {
        if have.memory_swap != m {
            warnings.push(format!(
                "swap limit {m} was applied as {}",
                have.memory_swap
            ));
        }
    }
    if let Some(p) = want["PidsLimit"].as_i64() {
        if have.pids_limit.unwrap_or(0) != p {
            warnings.push(format!(
                "pids limit {p} was applied as {:?}",
                have.pids_limit
            ));
        }
    }
    if !problems.is_empty() {
        return Err(Error::NotApplied {
            container: got.name.trim_start_matches('/').to_string(),
            what: problems.join(", "),
        });
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_capability_is_dropped_as_docker_or_podman_reports_it() {
        assert!(drops_every_capability(&caps(&["ALL"]), &[]));
        assert!(drops_every_capability(&caps(&DEFAULT_CAPABILITIES), &[]));
        let prefixed: Vec<String> = DEFAULT_CAPABILITIES
            .iter()
            .map(|c| format!("CAP_{c}"))
            .collect();
        assert!(drops_every_capability(&prefixed, &[]));
        assert!(!drops_every_capability(
            &caps(&["ALL"]),
            &caps(&["NET_ADMIN"])
        ));
        assert!(!drops_every_capability(&caps(&["CHOWN"]), &[]));
        assert!(!drops_every_capability(&[], &[]));
    }
}

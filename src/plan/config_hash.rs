//! The config hash: whether a persistent container still fits its agent's config (see
//! [`crate::hash`] for why SHA-256, and why env values are hashed on their own first).

use serde_json::{json, Map, Value};

use crate::config::DockerConfig;
use crate::hash::{hash_value, sha256_hex};
use crate::plan::MountPlan;

/// Bumped when the meaning of the hashed input changes, so old persistent containers are replaced.
/// 2: the configured gid as `GroupAdd` (persistent jobs run with a group of their own), the owner
/// and mount-id labels, and `host_config` keys rewritten to the engine's spelling.
const SCHEME: u64 = 2;

/// A stable hash (16 hex characters, 64 bits of SHA-256) of everything in `config` and `plan` that
/// shapes a container: image, network, memory, CPU, pids, user, ephemeral, env names and values
/// (values only through their own SHA-256), ports, tmpfs, labels, the runtime, the host config
/// override and its allow flag, and every mount (source, target, read-only). Not hashed: `enabled` and
/// `max_containers`, which change nothing inside a container.
///
/// The same inputs give the same hash in every process, on every run and with every Rust release.
/// A runner that adds create-time settings of its own can fold them in with [`hash_value`] over a
/// JSON value holding this hash and those settings.
pub fn config_hash(config: &DockerConfig, plan: &MountPlan) -> String {
    let env: Map<String, Value> = config
        .env
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(sha256_hex(v.as_bytes()))))
        .collect();
    let mounts: Vec<Value> = plan
        .mounts()
        .iter()
        .map(|m| json!([m.source, m.target, m.read_only]))
        .collect();
    let mut shape = json!({
        "scheme": SCHEME,
        "image": config.image,
        "network": config.network.as_str(),
        "memoryBytes": config.memory_bytes,
        "cpuShares": config.cpu_shares,
        "cpuPeriod": config.cpu_period,
        "cpuQuota": config.cpu_quota,
        "pidsLimit": config.pids_limit,
        "user": config.user.to_string(),
        "ephemeral": config.ephemeral,
        "env": env,
        "ports": config.ports.iter().map(|p| json!([p.host_port, p.container_port])).collect::<Vec<_>>(),
        "tmpfs": config.tmpfs.iter().map(|t| json!([t.path, t.options])).collect::<Vec<_>>(),
        "labels": config.labels,
        "hostConfigOverride": config.host_config_override,
        "allowUnsafeHostConfig": config.allow_unsafe_host_config,
        "mounts": mounts,
    });
    // Only when set, so that the hash of every config without a runtime stays what it was (and
    // an upgrade does not replace those persistent containers).
    if let Some(runtime) = &config.runtime {
        shape["runtime"] = json!(runtime);
    }
    hash_value(&shape)
}

#[cfg(test)]
mod tests;

//! Who this process is, learnt at the edge (the owner of `/proc/self`), and the public config
//! entry points that need it: a config that names no user runs as this process's user (never
//! root), and the pure resolution below ([`crate::config`]) is told that user instead of
//! looking it up.

use serde_json::Value;

use crate::config::{self, DockerConfig, DockerLayers, UserSpec, DEFAULT_NON_ROOT_USER};
use crate::Result;

/// The uid:gid of this process, read without unsafe code: the owner of `/proc/self` is the
/// process's effective uid and gid. `None` when `/proc` is not mounted (or not Linux) and a probe
/// file in the temp directory cannot be made either.
pub fn process_user() -> Option<UserSpec> {
    use std::os::unix::fs::MetadataExt;
    let from = |m: std::fs::Metadata| UserSpec {
        uid: m.uid(),
        gid: Some(m.gid()),
    };
    if let Ok(m) = std::fs::metadata("/proc/self") {
        return Some(from(m));
    }
    // Without procfs: a file we create is owned by our effective uid (its group may follow the
    // directory's on BSD-like systems; good enough where /proc is missing).
    let probe = tempfile_probe()?;
    let m = std::fs::metadata(&probe).ok();
    let _ = std::fs::remove_file(&probe);
    m.map(from)
}

fn tempfile_probe() -> Option<std::path::PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let p = std::env::temp_dir().join(format!(".herdctl-uid-probe-{}-{nanos}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .ok()
        .map(|_| p)
}

/// herdctl's `getHostUser`, made safe: this process's uid:gid, so files the agent writes in the
/// workspace belong to the host user; but when this process is root (or its user cannot be
/// read), [`DEFAULT_NON_ROOT_USER`]: a container runs as root only when `user` says so.
pub fn host_user() -> UserSpec {
    match process_user() {
        Some(u) if !u.is_root() => u,
        _ => DEFAULT_NON_ROOT_USER,
    }
}

/// herdctl's `resolveDockerConfig`: resolves one docker block that the fleet owns (all fields
/// allowed), in the YAML snake_case shape or the resolved camelCase shape. `null` gives every
/// default. Use [`resolve_layered`] when the fleet's and the agent's blocks are at hand separately.
///
/// In the camelCase shape every field counts as written, `user` included: herdctl's own resolver
/// fills `user` with its process's uid:gid, which is `"0:0"` when herdctl runs as root. To get the
/// non-root default in that case, pass the YAML block (`agent.docker`) rather than the resolved one.
///
/// ```
/// let c = herdctl_container::resolve_docker_config(&serde_json::json!({
///     "enabled": true, "memory": "512m", "network": "none", "user": "1000:1000"
/// })).unwrap();
/// assert_eq!(c.memory_bytes, 512 << 20);
/// assert_eq!(c.image, herdctl_container::DEFAULT_DOCKER_IMAGE);
/// ```
pub fn resolve_docker_config(docker: &Value) -> Result<DockerConfig> {
    config::resolve_for(docker, host_user())
}

/// Resolves an agent's docker config from its layers (see the module docs for the rules). Errors
/// name the field and say in which layer it is.
///
/// ```
/// use herdctl_container::{resolve_layered, DockerLayers, NetworkMode};
/// use serde_json::json;
/// let fleet = json!({"enabled": true, "memory": "4g", "network": "bridge"});
/// let agent = json!({"memory": "1g", "network": "none"});
/// let c = resolve_layered(&DockerLayers { fleet_defaults: Some(&fleet), agent: Some(&agent), ..Default::default() }).unwrap();
/// assert_eq!((c.memory_bytes, c.network), (1 << 30, NetworkMode::None));
///
/// let greedy = json!({"memory": "8g"});
/// let e = resolve_layered(&DockerLayers { fleet_defaults: Some(&fleet), agent: Some(&greedy), ..Default::default() }).unwrap_err();
/// assert!(e.to_string().starts_with("invalid docker.memory: the agent's own config asks for 8g"));
/// ```
pub fn resolve_layered(layers: &DockerLayers<'_>) -> Result<DockerConfig> {
    config::resolve_layered_for(layers, host_user())
}

/// [`resolve_docker_config`], for `serde_json::from_value`-style call sites.
impl TryFrom<Value> for DockerConfig {
    type Error = crate::Error;
    fn try_from(v: Value) -> Result<DockerConfig> {
        resolve_docker_config(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_user_is_never_root() {
        let real = process_user().expect("/proc/self is readable on the test machines");
        let h = host_user();
        assert!(!h.is_root());
        if real.is_root() {
            assert_eq!(h, DEFAULT_NON_ROOT_USER);
        } else {
            assert_eq!(h, real);
        }
        // The probe agrees with procfs about the uid.
        let probe = tempfile_probe().expect("temp dir is writable");
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata(&probe).unwrap().uid();
        std::fs::remove_file(&probe).unwrap();
        assert_eq!(uid, real.uid);
    }
}

//! herdctl's docker config helpers under their herdctl names, backed by the core's parsers.
//! Objects come back in herdctl's camelCase shapes; `resolveDockerConfig` crosses as JSON text
//! (`npm/index.js` stringifies and parses), since its shape has optional and free-form fields.

// napi's registration of these items is not compiled into the unit-test build.
#![cfg_attr(test, allow(dead_code))]

use napi::{Env, Result};
use napi_derive::napi;

use herdctl_container::Redactor;

use crate::errors::{config_secrets, throw};

/// The image used when the config names none.
#[napi]
pub const DEFAULT_DOCKER_IMAGE: &str = herdctl_container::DEFAULT_DOCKER_IMAGE;

/// The memory limit used when the config sets none, in herdctl's spelling (`"2g"`).
#[napi]
pub const DEFAULT_MEMORY_LIMIT: &str = herdctl_container::DEFAULT_MEMORY_LIMIT;

/// How many containers retention keeps per agent when the config says nothing.
#[napi]
pub const DEFAULT_MAX_CONTAINERS: u32 = herdctl_container::DEFAULT_MAX_CONTAINERS;

/// One published port, herdctl's shape.
#[napi(object)]
pub struct PortBinding {
    /// The port on the host.
    pub host_port: u32,
    /// The port in the container.
    pub container_port: u32,
}

/// One bind mount, herdctl's `PathMapping`.
#[napi(object)]
pub struct PathMapping {
    /// Absolute host path.
    pub host_path: String,
    /// Absolute container path.
    pub container_path: String,
    /// `"ro"` or `"rw"`.
    #[napi(ts_type = "'ro' | 'rw'")]
    pub mode: String,
}

/// One tmpfs mount.
#[napi(object)]
pub struct TmpfsMount {
    /// Absolute container path.
    pub path: String,
    /// Mount options like `size=100m,mode=1777`.
    pub options: Option<String>,
}

/// herdctl's `resolveDockerConfig`, on JSON text: the YAML (snake_case) or resolved (camelCase)
/// docker block in, the resolved camelCase config out.
#[napi(js_name = "_resolveDockerConfig", catch_unwind)]
pub fn resolve_docker_config(env: &Env, docker: String) -> Result<String> {
    let value: serde_json::Value = serde_json::from_str(&docker).map_err(|e| {
        throw(
            env,
            herdctl_container::Error::invalid("docker", format!("not JSON: {e}")),
            &Redactor::from_process_env,
        )
    })?;
    let config = herdctl_container::resolve_docker_config(&value)
        .map_err(|e| throw(env, e, &*config_secrets(&value)))?;
    serde_json::to_string(&config).map_err(|e| {
        throw(
            env,
            herdctl_container::Error::invalid("docker", format!("cannot be written as JSON: {e}")),
            &Redactor::from_process_env,
        )
    })
}

/// herdctl's `parseMemoryToBytes`: `"2g"`, `"512m"`, `"1.5g"`, `"2048"` (binary units; fractions
/// floored) to bytes.
#[napi(catch_unwind)]
pub fn parse_memory_to_bytes(env: &Env, memory: String) -> Result<f64> {
    // Exact up to 8 PiB (2^53 bytes); JS numbers cannot say more.
    herdctl_container::parse_memory_to_bytes(&memory)
        .map(|b| b as f64)
        .map_err(|e| throw(env, e, &Redactor::from_process_env))
}

/// herdctl's `parsePortBinding`: `"8080:80"` (host:container) or `"3000"`.
#[napi(catch_unwind)]
pub fn parse_port_binding(env: &Env, port: String) -> Result<PortBinding> {
    let p = herdctl_container::parse_port_binding(&port)
        .map_err(|e| throw(env, e, &Redactor::from_process_env))?;
    Ok(PortBinding {
        host_port: p.host_port.into(),
        container_port: p.container_port.into(),
    })
}

/// herdctl's `parseTmpfsMount`: `"/path"` or `"/path:options"`.
#[napi(catch_unwind)]
pub fn parse_tmpfs_mount(env: &Env, tmpfs: String) -> Result<TmpfsMount> {
    let t = herdctl_container::parse_tmpfs_mount(&tmpfs)
        .map_err(|e| throw(env, e, &Redactor::from_process_env))?;
    Ok(TmpfsMount {
        path: t.path,
        options: t.options,
    })
}

/// herdctl's `parseVolumeMount`: `"host:container"` or `"host:container:ro|rw"`, both paths
/// absolute.
#[napi(catch_unwind)]
pub fn parse_volume_mount(env: &Env, volume: String) -> Result<PathMapping> {
    let v = herdctl_container::parse_volume_mount(&volume)
        .map_err(|e| throw(env, e, &Redactor::from_process_env))?;
    Ok(PathMapping {
        host_path: v.host_path,
        container_path: v.container_path,
        mode: v.mode.as_str().to_string(),
    })
}

/// herdctl's `getHostUser`, made safe: this process's `"uid:gid"`, but a non-root default
/// (`"1000:1000"`) when this process is root, so a container runs as root only when configured.
#[napi(catch_unwind)]
pub fn get_host_user() -> String {
    herdctl_container::host_user().to_string()
}

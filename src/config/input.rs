//! One `docker:` block as written: every field `None` unless the block sets it, read from either
//! the YAML snake_case shape or herdctl's resolved camelCase shape; then resolution with defaults.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::parse::{
    container_path, memory_bytes, parse_user, port_binding, quote, tmpfs_mount, volume_from_parts,
    volume_mount,
};
use super::*;
use crate::{Error, Result};

/// Every field: its YAML name (used in errors) and the keys that spell it.
const FIELDS: &[(&str, &[&str])] = &[
    ("enabled", &["enabled"]),
    ("ephemeral", &["ephemeral"]),
    ("image", &["image"]),
    ("base_image", &["base_image", "baseImage"]),
    ("network", &["network"]),
    ("memory", &["memory", "memoryBytes", "memory_bytes"]),
    ("cpu_shares", &["cpu_shares", "cpuShares"]),
    ("cpu_period", &["cpu_period", "cpuPeriod"]),
    ("cpu_quota", &["cpu_quota", "cpuQuota"]),
    ("user", &["user"]),
    ("max_containers", &["max_containers", "maxContainers"]),
    ("volumes", &["volumes"]),
    ("workspace_mode", &["workspace_mode", "workspaceMode"]),
    ("env", &["env"]),
    ("ports", &["ports"]),
    ("tmpfs", &["tmpfs"]),
    ("pids_limit", &["pids_limit", "pidsLimit"]),
    ("labels", &["labels"]),
    ("runtime", &["runtime"]),
    ("host_config", &["host_config", "hostConfigOverride"]),
    (
        "allow_unsafe_host_config",
        &["allow_unsafe_host_config", "allowUnsafeHostConfig"],
    ),
];

/// The YAML name of the field a key spells, if any.
pub(crate) fn field_of_key(key: &str) -> Option<&'static str> {
    FIELDS
        .iter()
        .find(|(_, keys)| keys.contains(&key))
        .map(|(name, _)| *name)
}

/// A partial docker block. See the module docs.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DockerInput {
    pub enabled: Option<bool>,
    pub ephemeral: Option<bool>,
    /// `image`, else `base_image`, of this block.
    pub image: Option<String>,
    pub network: Option<NetworkMode>,
    pub memory_bytes: Option<u64>,
    pub cpu_shares: Option<u64>,
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<u64>,
    pub user: Option<UserSpec>,
    pub max_containers: Option<u32>,
    pub volumes: Option<Vec<VolumeMount>>,
    pub workspace_mode: Option<AccessMode>,
    pub env: Option<BTreeMap<String, String>>,
    pub ports: Option<Vec<PortBinding>>,
    pub tmpfs: Option<Vec<TmpfsMount>>,
    pub pids_limit: Option<u64>,
    pub labels: Option<BTreeMap<String, String>>,
    pub runtime: Option<String>,
    pub host_config: Option<Map<String, Value>>,
    pub allow_unsafe_host_config: Option<bool>,
}

impl DockerInput {
    /// Reads a block. `null` is an empty block; unknown keys are errors (they are typos, or
    /// options this library does not apply). A `null` field counts as unset.
    pub fn from_value(value: &Value) -> Result<DockerInput> {
        let map = match value {
            Value::Null => return Ok(DockerInput::default()),
            Value::Object(m) => m,
            other => {
                return Err(Error::invalid(
                    "docker",
                    format!("expected a map of docker options, got {}", describe(other)),
                ))
            }
        };
        let mut d = DockerInput::default();
        for (field, (key, v)) in by_field(map)? {
            d.set(field, key, v)?;
        }
        Ok(d)
    }

    /// Reads one field's value (`key` is how the block spelled `field`) into the block.
    fn set(&mut self, field: &'static str, key: &str, v: &Value) -> Result<()> {
        let d = self;
        let name = format!("docker.{field}");
        let f = name.as_str();
        match field {
            "enabled" => d.enabled = Some(boolean(f, v)?),
            "ephemeral" => d.ephemeral = Some(boolean(f, v)?),
            "image" => d.image = Some(image(f, v)?),
            "base_image" => {
                // herdctl: `image ?? base_image`.
                let img = image(f, v)?;
                d.image.get_or_insert(img);
            }
            "network" => d.network = Some(network(f, v)?),
            "memory" => d.memory_bytes = Some(memory(f, key, v)?),
            "cpu_shares" => d.cpu_shares = Some(positive(f, v)?),
            "cpu_period" => d.cpu_period = Some(positive(f, v)?),
            "cpu_quota" => d.cpu_quota = Some(positive(f, v)?),
            "user" => d.user = Some(user(v)?),
            "max_containers" => d.max_containers = Some(max_containers(f, v)?),
            "volumes" => d.volumes = Some(list(f, v, volume)?),
            "workspace_mode" => d.workspace_mode = Some(access_mode(f, v)?),
            "env" => d.env = Some(env(v)?),
            "ports" => d.ports = Some(list(f, v, port)?),
            "tmpfs" => d.tmpfs = Some(list(f, v, tmpfs)?),
            "pids_limit" => d.pids_limit = Some(positive(f, v)?),
            "labels" => d.labels = Some(labels(v)?),
            "runtime" => d.runtime = runtime_name(f, v)?,
            "host_config" => d.host_config = Some(host_config(f, v)?),
            "allow_unsafe_host_config" => d.allow_unsafe_host_config = Some(boolean(f, v)?),
            // Cannot happen: `field` comes from FIELDS, and every name there has an arm.
            _ => return Err(Error::invalid(f, "unhandled field")),
        }
        Ok(())
    }

    /// Applies defaults and the checks that involve several fields.
    pub fn resolve(self, host_user: UserSpec) -> Result<DockerConfig> {
        let memory_bytes = self.memory_bytes.unwrap_or(DEFAULT_MEMORY_BYTES);
        check_engine_minimums(memory_bytes, self.cpu_period, self.cpu_quota)?;
        let volumes = self.volumes.unwrap_or_default();
        let tmpfs = self.tmpfs.unwrap_or_default();
        one_mount_per_path(&volumes, &tmpfs)?;
        // The host_config override was read with its block; whether it needs the opt-in is
        // decided when a job starts, where the runner's own opt-in is known.
        let allow = self.allow_unsafe_host_config.unwrap_or(false);
        let runtime = one_runtime(self.runtime, self.host_config.as_ref())?;
        Ok(DockerConfig {
            enabled: self.enabled.unwrap_or(false),
            ephemeral: self.ephemeral.unwrap_or(true),
            image: self
                .image
                .unwrap_or_else(|| DEFAULT_DOCKER_IMAGE.to_string()),
            network: self.network.unwrap_or(NetworkMode::Bridge),
            memory_bytes,
            cpu_shares: self.cpu_shares,
            cpu_period: self.cpu_period,
            cpu_quota: self.cpu_quota,
            user: self.user.unwrap_or(host_user),
            max_containers: self.max_containers.unwrap_or(DEFAULT_MAX_CONTAINERS),
            volumes,
            workspace_mode: self.workspace_mode.unwrap_or(AccessMode::Rw),
            env: self.env.unwrap_or_default(),
            ports: self.ports.unwrap_or_default(),
            tmpfs,
            pids_limit: self.pids_limit,
            labels: self.labels.unwrap_or_default(),
            runtime,
            host_config_override: self.host_config.map(Value::Object),
            allow_unsafe_host_config: allow,
        })
    }
}

/// Each non-null field of a block with the key that spelled it, refusing an unknown key and a
/// field spelled twice (the two spellings would fight over one value).
fn by_field(map: &Map<String, Value>) -> Result<BTreeMap<&'static str, (&str, &Value)>> {
    let mut by_field: BTreeMap<&'static str, (&str, &Value)> = BTreeMap::new();
    for (key, v) in map {
        let Some(field) = field_of_key(key) else {
            let known: Vec<&str> = FIELDS.iter().map(|(n, _)| *n).collect();
            return Err(Error::invalid(
                format!("docker.{key}"),
                format!("unknown field; expected one of {}", known.join(", ")),
            ));
        };
        if v.is_null() {
            continue;
        }
        if let Some((other, _)) = by_field.insert(field, (key, v)) {
            return Err(Error::invalid(
                format!("docker.{field}"),
                format!("set twice, as \"{other}\" and as \"{key}\"; keep one"),
            ));
        }
    }
    Ok(by_field)
}

/// Refuses limits the engine would refuse at create, so the config fails when read, not when a
/// job starts.
fn check_engine_minimums(
    memory_bytes: u64,
    cpu_period: Option<u64>,
    cpu_quota: Option<u64>,
) -> Result<()> {
    if memory_bytes < MIN_MEMORY_BYTES {
        return Err(Error::invalid(
            "docker.memory",
            format!(
                "{} is below the engine's minimum of 6 MiB; expected at least \"6m\"",
                quote(&format_memory(memory_bytes))
            ),
        ));
    }
    if let Some(p) = cpu_period {
        if !(1000..=1_000_000).contains(&p) {
            return Err(Error::invalid(
                "docker.cpu_period",
                format!("{p} is out of range; expected microseconds from 1000 to 1000000"),
            ));
        }
    }
    if let Some(q) = cpu_quota {
        if q < 1000 {
            return Err(Error::invalid(
                "docker.cpu_quota",
                format!("{q} is below the engine's minimum; expected at least 1000 microseconds"),
            ));
        }
    }
    Ok(())
}

/// No two user mounts at one container path (the engine would refuse at create).
fn one_mount_per_path(volumes: &[VolumeMount], tmpfs: &[TmpfsMount]) -> Result<()> {
    let mut targets: BTreeMap<&str, String> = BTreeMap::new();
    let named = volumes
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("docker.volumes[{i}]"), v.container_path.as_str()))
        .chain(
            tmpfs
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("docker.tmpfs[{i}]"), t.path.as_str())),
        );
    for (field, target) in named {
        if let Some(first) = targets.get(target) {
            return Err(Error::invalid(
                &field,
                format!("container path {target} is already used by {first}; give each mount its own path"),
            ));
        }
        targets.insert(target, field);
    }
    Ok(())
}

/// The block's runtime, set once: `runtime` and `host_config.Runtime` are one field in two
/// spellings, and two different values would leave it unclear which one runs the job.
fn one_runtime(
    runtime: Option<String>,
    host_config: Option<&Map<String, Value>>,
) -> Result<Option<String>> {
    Ok(match (runtime, host_config_runtime(host_config)?) {
        (Some(key), Some(hc)) if key != hc => {
            return Err(Error::invalid(
                "docker.runtime",
                format!(
                    "{} differs from docker.host_config.Runtime {}; set the runtime once",
                    quote(&key),
                    quote(&hc)
                ),
            ))
        }
        (key, hc) => key.or(hc),
    })
}

/// `max_containers`: a positive count that fits the engine's and our `u32`.
fn max_containers(f: &str, v: &Value) -> Result<u32> {
    let n = positive(f, v)?;
    u32::try_from(n).map_err(|_| {
        Error::invalid(
            f,
            format!("{n} is too large; expected at most {}", u32::MAX),
        )
    })
}

/// `host_config`: a map, read as the engine will read it ([`super::host_config::read_override`]).
fn host_config(f: &str, v: &Value) -> Result<Map<String, Value>> {
    match v {
        Value::Object(m) => super::host_config::read_override(m),
        other => Err(Error::invalid(
            f,
            format!(
                "expected a map of engine HostConfig fields, got {}",
                describe(other)
            ),
        )),
    }
}

/// A value for an error message: strings quoted and cut, other scalars as written, containers by
/// kind. Never call it on a value that may be secret.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => quote(s),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a map".into(),
        other => other.to_string(),
    }
}

fn boolean(f: &str, v: &Value) -> Result<bool> {
    v.as_bool()
        .ok_or_else(|| Error::invalid(f, format!("expected true or false, got {}", describe(v))))
}

fn positive(f: &str, v: &Value) -> Result<u64> {
    match v.as_u64() {
        Some(n) if n > 0 => Ok(n),
        _ => Err(Error::invalid(
            f,
            format!("expected a positive integer, got {}", describe(v)),
        )),
    }
}

fn string<'v>(f: &str, v: &'v Value, what: &str) -> Result<&'v str> {
    v.as_str()
        .ok_or_else(|| Error::invalid(f, format!("expected {what}, got {}", describe(v))))
}

fn image(f: &str, v: &Value) -> Result<String> {
    let s = string(f, v, "an image reference like \"herdctl/runtime:latest\"")?;
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            f,
            format!(
                "{} is not an image reference; expected like \"herdctl/runtime:latest\"",
                quote(s)
            ),
        ));
    }
    Ok(s.to_string())
}

fn network(f: &str, v: &Value) -> Result<NetworkMode> {
    match v.as_str() {
        Some("none") => Ok(NetworkMode::None),
        Some("bridge") => Ok(NetworkMode::Bridge),
        Some("host") => Ok(NetworkMode::Host),
        _ => Err(Error::invalid(
            f,
            format!(
                "{} is not a network mode; expected \"none\", \"bridge\" or \"host\"",
                describe(v)
            ),
        )),
    }
}

fn access_mode(f: &str, v: &Value) -> Result<AccessMode> {
    match v.as_str() {
        Some("ro") => Ok(AccessMode::Ro),
        Some("rw") => Ok(AccessMode::Rw),
        _ => Err(Error::invalid(
            f,
            format!(
                "{} is not a mount mode; expected \"ro\" or \"rw\"",
                describe(v)
            ),
        )),
    }
}

fn memory(f: &str, key: &str, v: &Value) -> Result<u64> {
    match v {
        Value::String(s) if key == "memory" => memory_bytes(f, s),
        Value::Number(n) => n.as_u64().ok_or_else(|| {
            Error::invalid(
                f,
                format!(
                    "{n} is not a size; expected a whole number of bytes or a string like \"2g\""
                ),
            )
        }),
        other => Err(Error::invalid(
            f,
            format!(
                "expected a size like \"2g\" or a number of bytes, got {}",
                describe(other)
            ),
        )),
    }
}

fn user(v: &Value) -> Result<UserSpec> {
    match v {
        Value::String(s) => parse_user(s),
        Value::Number(n) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(uid) => Ok(UserSpec { uid, gid: None }),
            None => parse_user(&n.to_string()),
        },
        other => Err(Error::invalid(
            "docker.user",
            format!("expected \"UID\" or \"UID:GID\", got {}", describe(other)),
        )),
    }
}

fn list<T>(f: &str, v: &Value, item: fn(&str, &Value) -> Result<T>) -> Result<Vec<T>> {
    let items = v
        .as_array()
        .ok_or_else(|| Error::invalid(f, format!("expected a list, got {}", describe(v))))?;
    items
        .iter()
        .enumerate()
        .map(|(i, x)| item(&format!("{f}[{i}]"), x))
        .collect()
}

fn volume(f: &str, v: &Value) -> Result<VolumeMount> {
    match v {
        Value::String(s) => volume_mount(f, s),
        Value::Object(m) => {
            let part = |k: &str| m.get(k).and_then(Value::as_str);
            match (part("hostPath"), part("containerPath")) {
                (Some(h), Some(c)) => {
                    let mode = part("mode").unwrap_or("rw");
                    volume_from_parts(f, &format!("{h}:{c}:{mode}"), h, c, mode)
                }
                _ => Err(Error::invalid(
                    f,
                    "expected \"/HOST:/CONTAINER[:ro|rw]\" or {hostPath, containerPath, mode}",
                )),
            }
        }
        other => Err(Error::invalid(
            f,
            format!(
                "expected \"/HOST:/CONTAINER[:ro|rw]\", got {}",
                describe(other)
            ),
        )),
    }
}

fn port(f: &str, v: &Value) -> Result<PortBinding> {
    match v {
        Value::String(s) => port_binding(f, s),
        Value::Number(n) => port_binding(f, &n.to_string()),
        Value::Object(m) => {
            let p = |k: &str| m.get(k).map(|x| x.to_string()).unwrap_or_default();
            port_binding(f, &format!("{}:{}", p("hostPort"), p("containerPort")))
        }
        other => Err(Error::invalid(
            f,
            format!(
                "expected \"HOST:CONTAINER\" or \"PORT\", got {}",
                describe(other)
            ),
        )),
    }
}

fn tmpfs(f: &str, v: &Value) -> Result<TmpfsMount> {
    match v {
        Value::String(s) => tmpfs_mount(f, s),
        Value::Object(m) => {
            let path = m.get("path").and_then(Value::as_str).ok_or_else(|| {
                Error::invalid(f, "expected \"/PATH[:OPTIONS]\" or {path, options}")
            })?;
            let options = match m.get("options") {
                None | Some(Value::Null) => None,
                Some(Value::String(o)) => (!o.is_empty()).then(|| o.clone()),
                Some(other) => {
                    return Err(Error::invalid(
                        f,
                        format!(
                            "options: expected a string like \"size=100m\", got {}",
                            describe(other)
                        ),
                    ))
                }
            };
            let path = container_path(f, path, path, "\"/PATH\" or \"/PATH:OPTIONS\"")?;
            Ok(TmpfsMount { path, options })
        }
        other => Err(Error::invalid(
            f,
            format!("expected \"/PATH[:OPTIONS]\", got {}", describe(other)),
        )),
    }
}

/// A runtime's name as the engine lists it (`runsc`, `io.containerd.runsc.v1`); `""` is none (the
/// engine's default), as the engine reads it.
pub(crate) fn runtime_name(f: &str, v: &Value) -> Result<Option<String>> {
    let s = string(f, v, "a runtime's name like \"runsc\"")?;
    if s.is_empty() {
        return Ok(None);
    }
    let ok = s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    if !ok {
        return Err(Error::invalid(
            f,
            format!(
                "{} is not a runtime name; expected the name the engine lists it under, like \"runsc\" (letters, digits, '.', '_', '+', '-')",
                quote(s)
            ),
        ));
    }
    Ok(Some(s.to_string()))
}

/// The runtime `host_config` asks for. The engine reads JSON keys in any letter case, so
/// `runtime` and `RUNTIME` ask too; two of them are refused, since which one the engine keeps
/// depends on their order. ("Runtime" holds neither `k` nor `s`, the letters Go's case folding
/// also matches outside ASCII.)
pub(crate) fn host_config_runtime(hc: Option<&Map<String, Value>>) -> Result<Option<String>> {
    let mut found: Option<(&str, &Value)> = None;
    for (key, v) in hc.into_iter().flatten() {
        if !key.eq_ignore_ascii_case("Runtime") || v.is_null() {
            continue;
        }
        if let Some((first, _)) = found {
            return Err(Error::invalid(
                "docker.host_config.Runtime",
                format!("set twice, as \"{first}\" and as \"{key}\"; keep one"),
            ));
        }
        found = Some((key, v));
    }
    match found {
        Some((_, v)) => runtime_name("docker.host_config.Runtime", v),
        None => Ok(None),
    }
}

/// Env names and values. Values are never shown in errors: they may be secrets.
fn env(v: &Value) -> Result<BTreeMap<String, String>> {
    let m = v.as_object().ok_or_else(|| {
        Error::invalid(
            "docker.env",
            format!("expected a map of NAME: value, got {}", describe(v)),
        )
    })?;
    let mut out = BTreeMap::new();
    for (k, val) in m {
        let f = format!("docker.env.{k}");
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(Error::invalid(
                "docker.env",
                format!(
                    "{} is not a variable name; expected a name without '=' or NUL",
                    quote(k)
                ),
            ));
        }
        match val {
            Value::String(s) if !s.contains('\0') => {
                out.insert(k.clone(), s.clone());
            }
            Value::String(_) => {
                return Err(Error::invalid(
                    f,
                    "the value contains a NUL byte, which env cannot carry",
                ))
            }
            _ => {
                return Err(Error::invalid(
                    f,
                    "expected a string value (quote numbers and booleans)",
                ))
            }
        }
    }
    Ok(out)
}

fn labels(v: &Value) -> Result<BTreeMap<String, String>> {
    let m = v.as_object().ok_or_else(|| {
        Error::invalid(
            "docker.labels",
            format!("expected a map of key: value, got {}", describe(v)),
        )
    })?;
    let mut out = BTreeMap::new();
    for (k, val) in m {
        let f = format!("docker.labels.{k}");
        if k.is_empty() || k.to_ascii_lowercase().starts_with("dev.herdctl.") {
            return Err(Error::invalid(
                f,
                "label keys may not be empty or use the dev.herdctl. prefix, which the runner owns",
            ));
        }
        let s = val.as_str().ok_or_else(|| {
            Error::invalid(
                &f,
                format!("expected a string value, got {}", describe(val)),
            )
        })?;
        out.insert(k.clone(), s.to_string());
    }
    Ok(out)
}

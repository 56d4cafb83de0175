//! The fleet's raw `host_config`, merged over the `HostConfig` the runner generates.
//!
//! herdctl lets `host_config` override any generated field. We keep that, with these limits:
//!
//! - keys mean what they mean to the engine, which reads them in any letter case (see [`keys`]):
//!   each is rewritten to the engine's spelling, and two keys for one field are refused;
//! - an allowlist, not a denylist: keys known to be harmless pass (limits, DNS, `ShmSize`,
//!   `Init`, tmpfs mounts, GPU devices, ...); a key or value that can loosen the container, and
//!   any key this runner does not know, needs the opt-in ([`ALLOW_HOW`] says where to give it);
//! - the runner's mounts are never dropped (override `Mounts` are added, and may not reuse a
//!   target), and security lists are joined rather than replaced (`CapDrop`, `SecurityOpt`: an
//!   override that adds a seccomp profile does not silently lose `no-new-privileges`);
//! - `Binds` and `AutoRemove: true` are refused even with the opt-in (see [`read_override`]).
//!
//! The checks run twice: the shape when the config is read ([`read_override`], so a malformed
//! override fails before any job), and the gate when a job starts ([`gate`]), where the runner's
//! own opt-in is known and host paths (devices, sockets) can be looked at.

mod host_files;
mod keys;
mod security_opt;

use serde_json::{Map, Value};

use super::input::describe;
use super::{DockerConfig, NetworkMode};
use crate::paths::{normalize_path, reserved_conflict};
use crate::{Error, Result};

pub(crate) use host_files::{check_device, EngineSockets};
pub(crate) use security_opt::{no_new_privileges, parse as parse_security_opt, SecOpt};

const PREFIX: &str = "docker.host_config";

/// The environment variable that opts a runner in to host_config settings that loosen the
/// container (`1` or `true`; `0`, `false` or empty: no).
pub const ALLOW_UNSAFE_ENV: &str = "HERDCTL_CONTAINER_ALLOW_UNSAFE_HOST_CONFIG";

/// How to opt in, as the refusals say it: every way is reachable from an unmodified herdctl.
/// (herdctl's strict schema refuses `allow_unsafe_host_config` in `defaults.docker`; its
/// per-agent `overrides` are not checked, and reach `agent.docker` as they are.)
pub const ALLOW_HOW: &str = "to allow it, set allow_unsafe_host_config: true in the agent's docker block of the fleet file (for herdctl: agents[].overrides.docker), or HERDCTL_CONTAINER_ALLOW_UNSAFE_HOST_CONFIG=1 in the environment of the process that runs the jobs, or the runner option allowUnsafeHostConfig: true (Rust: RunnerOptions::allow_unsafe_host_config)";

/// Resource limits and settings that cannot loosen the container: they pass without the opt-in
/// (their types are still checked). A limit can be raised or removed here (`Memory: 0`), which
/// the runner reports after create; it is the fleet's to give.
const HARMLESS: &[&str] = &[
    "CpuShares",
    "Memory",
    "BlkioWeight",
    "BlkioWeightDevice",
    "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps",
    "CpuPeriod",
    "CpuQuota",
    "CpusetCpus",
    "CpusetMems",
    "KernelMemory",
    "KernelMemoryTCP",
    "MemoryReservation",
    "MemorySwap",
    "MemorySwappiness",
    "NanoCpus",
    "Init",
    "PidsLimit",
    "CpuCount",
    "CpuPercent",
    "IOMaximumIOps",
    "IOMaximumBandwidth",
    // Read by the docker CLI only; the engine ignores it.
    "ContainerIDFile",
    "ConsoleSize",
    // Joined with the runner's ["ALL"]: can only drop more.
    "CapDrop",
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "ExtraHosts",
    "ReadonlyRootfs",
    "ShmSize",
    // Container paths only (checked against the runner's mounts when read); tmpfs is memory.
    "Tmpfs",
    // GPUs through the engine's device drivers (NVIDIA's, CDI): the host's administrator
    // configured what a driver hands out; this does not loosen isolation the way Privileged or
    // CapAdd do (issue 11).
    "DeviceRequests",
    // Only `false` and `[]` get this far (see read_override).
    "AutoRemove",
    "Binds",
];

/// Resource limits a job may change with `Ulimits` without the opt-in. Not `nice`, `rtprio` or
/// `rttime`: with them a job can take real-time CPU from the host.
const HARMLESS_ULIMITS: [&str; 13] = [
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nofile",
    "nproc",
    "rss",
    "sigpending",
    "stack",
];

/// Log drivers that keep the job's output on this host (others send it over the network, even
/// from a container with network `none`).
const LOCAL_LOG_DRIVERS: [&str; 4] = ["", "json-file", "local", "none"];

/// Reads an override as the engine will (keys in its spelling at every level the runner reads,
/// `null`s dropped, types checked) and refuses what no opt-in allows:
///
/// - `Binds`: the engine creates a missing host directory for it, as root, and it bypasses the
///   mount checks; `docker.volumes` does the same job;
/// - `AutoRemove: true`: the runner keeps stopped containers for inspection and retention
///   removes them;
/// - a `Mounts` or `Tmpfs` target that overlaps the runner's own mounts.
pub(crate) fn read_override(over: &Map<String, Value>) -> Result<Map<String, Value>> {
    let mut out = keys::read(over, PREFIX)?;
    refuse_always(&out)?;
    canonical_nested(&mut out)?;
    clear_targets(&out)?;
    Ok(out)
}

/// Refuses what no opt-in allows: `Binds` (a missing host directory created as root, past the
/// mount checks) and `AutoRemove: true` (retention removes the stopped containers).
fn refuse_always(out: &Map<String, Value>) -> Result<()> {
    if out
        .get("Binds")
        .and_then(Value::as_array)
        .is_some_and(|b| !b.is_empty())
    {
        return Err(Error::invalid(
            format!("{PREFIX}.Binds"),
            "not accepted: Binds creates missing host directories as root and bypasses the mount checks; use docker.volumes",
        ));
    }
    if out.get("AutoRemove") == Some(&Value::Bool(true)) {
        return Err(Error::invalid(
            format!("{PREFIX}.AutoRemove"),
            "not accepted: the runner keeps stopped containers for inspection and removes them by retention (docker.max_containers)",
        ));
    }
    Ok(())
}

/// Rewrites the keys of the nested objects the runner reads (mounts, devices, ulimits, log and
/// restart settings) to the engine's spelling, as [`keys::read`] does for the top level: the
/// gate and the merge then look at the field the engine will use.
fn canonical_nested(out: &mut Map<String, Value>) -> Result<()> {
    let nested: [(&str, &[&str]); 4] = [
        ("Mounts", keys::MOUNT_FIELDS),
        ("Devices", keys::DEVICE_FIELDS),
        ("DeviceRequests", keys::DEVICE_REQUEST_FIELDS),
        ("Ulimits", keys::ULIMIT_FIELDS),
    ];
    for (key, names) in nested {
        if out.contains_key(key) {
            let items = keys::objects(out, key, names, PREFIX)?;
            out.insert(
                key.into(),
                Value::Array(items.into_iter().map(Value::Object).collect()),
            );
        }
    }
    for (key, names) in [
        ("LogConfig", keys::LOG_CONFIG_FIELDS),
        ("RestartPolicy", keys::RESTART_POLICY_FIELDS),
    ] {
        if let Some(Value::Object(m)) = out.get(key) {
            let m = keys::canonical_map(m, names, &format!("{PREFIX}.{key}"))?;
            out.insert(key.into(), Value::Object(m));
        }
    }
    Ok(())
}

/// Refuses a `Mounts` or `Tmpfs` target that overlaps the runner's own mounts (workspace,
/// session, credentials), which the override would otherwise hide.
fn clear_targets(out: &Map<String, Value>) -> Result<()> {
    for (i, m) in out
        .get("Mounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let f = format!("{PREFIX}.Mounts[{i}]");
        let target = m
            .get("Target")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid(&f, "expected a mount with an absolute \"Target\""))?;
        clear_of_runner_mounts(&f, "Target", target)?;
    }
    for path in out
        .get("Tmpfs")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.keys())
    {
        clear_of_runner_mounts(&format!("{PREFIX}.Tmpfs"), "path", path)?;
    }
    Ok(())
}

fn clear_of_runner_mounts(f: &str, what: &str, target: &str) -> Result<()> {
    let norm = normalize_path(target).ok_or_else(|| {
        Error::invalid(
            f,
            format!("{what} {} is not absolute", describe(&Value::from(target))),
        )
    })?;
    if let Some(r) = reserved_conflict(&norm) {
        return Err(Error::invalid(
            f,
            format!(
                "{what} {norm} overlaps {r}, where the runner mounts {}; use a path outside /workspace and /home/claude/.claude",
                crate::paths::reserved_role(r)
            ),
        ));
    }
    Ok(())
}

/// What the gate needs to know besides the override.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gate<'a> {
    /// The opt-in: the config's flag, the runner's option or its environment variable.
    pub allow: bool,
    /// `docker.network`, which `NetworkMode` may repeat or tighten to `none`.
    pub network: NetworkMode,
    /// The engine sockets of this host, which no mount may reach.
    pub sockets: &'a EngineSockets,
}

/// The gate: passes an override (read by [`read_override`]) whose every key is harmless, and
/// anything else only with the opt-in, naming the first setting that needs it and how to opt in.
pub(crate) fn gate(over: &Map<String, Value>, g: &Gate<'_>) -> Result<()> {
    let needs = |field: String, why: String| -> Result<()> {
        if g.allow {
            return Ok(());
        }
        Err(Error::invalid(field, format!("{why}; {ALLOW_HOW}")))
    };
    // Devices first: their groups are the ones `GroupAdd` may name.
    let device_gids = devices(over, &needs)?;
    for (key, v) in over {
        let k = key.as_str();
        if HARMLESS.contains(&k) {
            continue;
        }
        gate_key(k, v, format!("{PREFIX}.{k}"), g, &device_gids, &needs)?;
    }
    Ok(())
}

/// One key of the override (`f` its field name), by family: each family's check passes its
/// harmless values and says why the others need the opt-in; a key in no family needs it too (an
/// allowlist, not a denylist).
fn gate_key(
    k: &str,
    v: &Value,
    f: String,
    g: &Gate<'_>,
    device_gids: &[u32],
    needs: &dyn Fn(String, String) -> Result<()>,
) -> Result<()> {
    match k {
        "Privileged" | "CapAdd" | "Capabilities" | "SecurityOpt" => privileges(k, v, f, needs),
        "PidMode" | "UTSMode" | "UsernsMode" | "Cgroup" | "CgroupParent" | "VolumeDriver"
        | "IpcMode" | "CgroupnsMode" | "Isolation" => isolation(k, v, f, needs),
        "NetworkMode" | "PortBindings" | "PublishAllPorts" | "LogConfig" => {
            network(k, v, f, g, needs)
        }
        "OomScoreAdj" | "OomKillDisable" | "CpuRealtimePeriod" | "CpuRealtimeRuntime"
        | "StorageOpt" | "Ulimits" => host_resources(k, v, f, needs),
        "MaskedPaths" | "ReadonlyPaths" | "Links" | "VolumesFrom" | "DeviceCgroupRules"
        | "Sysctls" | "Annotations" | "RestartPolicy" => reach(k, v, f, needs),
        "Mounts" => mounts(v, g, needs),
        "GroupAdd" => group_add(v, f, device_gids, needs),
        // Checked in `devices`.
        "Devices" => Ok(()),
        // The config's runtime in herdctl's spelling (`DockerConfig::runtime`): checked against
        // the engine's runtimes when the job starts, by their programs, and a runtime not known
        // to apply the container's security settings needs the opt-in there.
        "Runtime" => Ok(()),
        _ => needs(
            f,
            "is not a HostConfig field this runner knows; an engine that knows it may read it in a way that loosens the container".into(),
        ),
    }
}

/// Settings that hand the job kernel powers the runner takes away (`CapDrop` ALL,
/// `no-new-privileges`).
fn privileges(
    k: &str,
    v: &Value,
    f: String,
    needs: &dyn Fn(String, String) -> Result<()>,
) -> Result<()> {
    match k {
        "Privileged" if v == &Value::Bool(true) => needs(
            f,
            "true gives the job every capability and every host device".into(),
        ),
        "CapAdd" | "Capabilities" if !as_list(v).is_empty() => needs(
            f,
            "adding capabilities gives the job back powers over the kernel that CapDrop ALL takes away".into(),
        ),
        "SecurityOpt" => {
            for (i, o) in as_list(v).iter().enumerate() {
                let o = o.as_str().unwrap_or_default();
                if let security_opt::SecOpt::Other(why) = security_opt::parse(o) {
                    needs(format!("{f}[{i}]"), format!("{} {why}", quote(o)))?;
                } else if !security_opt::no_new_privileges([o]) {
                    needs(
                        format!("{f}[{i}]"),
                        format!("{} turns no-new-privileges off: a setuid program in the image could make the job root", quote(o)),
                    )?;
                }
            }
            Ok(())
        }
        // Their harmless values.
        _ => Ok(()),
    }
}

/// Settings that share a namespace or cgroup with the host or another container, or isolate the
/// container in a way this runner does not know.
fn isolation(
    k: &str,
    v: &Value,
    f: String,
    needs: &dyn Fn(String, String) -> Result<()>,
) -> Result<()> {
    let text = as_text(v);
    match k {
        "PidMode" | "UTSMode" | "UsernsMode" | "Cgroup" | "CgroupParent" | "VolumeDriver"
            if !text.is_empty() =>
        {
            needs(f, namespace_why(k, &text))
        }
        "IpcMode" if !["", "private", "none", "shareable"].contains(&text.as_str()) => {
            needs(f, namespace_why(k, &text))
        }
        "CgroupnsMode" if !["", "private"].contains(&text.as_str()) => {
            needs(f, namespace_why(k, &text))
        }
        "Isolation" if !["", "default"].contains(&text.as_str()) => needs(
            f,
            format!("{} is an isolation this runner does not know", quote(&text)),
        ),
        // Their harmless values.
        _ => Ok(()),
    }
}

/// Settings that open the job to the network, or send its output over it, past
/// `docker.network`.
fn network(
    k: &str,
    v: &Value,
    f: String,
    g: &Gate<'_>,
    needs: &dyn Fn(String, String) -> Result<()>,
) -> Result<()> {
    match k {
        "NetworkMode" => {
            let n = as_text(v);
            if n != g.network.as_str() && n != "none" {
                return needs(
                    f,
                    format!(
                        "{} puts the container on another network than docker.network ({}); set docker.network to none, bridge or host instead",
                        quote(&n),
                        g.network.as_str()
                    ),
                );
            }
            Ok(())
        }
        "PortBindings" if v.as_object().is_some_and(|m| !m.is_empty()) => needs(
            f,
            "publishing ports opens the job to the network; use docker.ports".into(),
        ),
        "PublishAllPorts" if v == &Value::Bool(true) => needs(
            f,
            "true publishes every port the image exposes to the network".into(),
        ),
        "LogConfig" => {
            let driver = v.get("Type").and_then(Value::as_str).unwrap_or_default();
            if !LOCAL_LOG_DRIVERS.contains(&driver) {
                return needs(
                    format!("{f}.Type"),
                    format!("{} sends the job's output off this host, past docker.network (even none); json-file, local and none keep it here", quote(driver)),
                );
            }
            Ok(())
        }
        // Their harmless values.
        _ => Ok(()),
    }
}

/// Settings that let the job take the host's memory, CPU or storage from the host's own
/// processes.
fn host_resources(
    k: &str,
    v: &Value,
    f: String,
    needs: &dyn Fn(String, String) -> Result<()>,
) -> Result<()> {
    match k {
        "OomScoreAdj" if v.as_i64().is_some_and(|n| n < 0) => needs(
            f,
            "a negative value makes the host's OOM killer end host processes before this container".into(),
        ),
        "OomKillDisable" if v == &Value::Bool(true) => needs(
            f,
            "true turns the OOM killer off for the container: at its memory limit the job hangs instead of ending".into(),
        ),
        "CpuRealtimePeriod" | "CpuRealtimeRuntime" if v.as_i64() != Some(0) => needs(
            f,
            "real-time CPU time lets the job starve the host's processes".into(),
        ),
        "StorageOpt" if v.as_object().is_some_and(|m| m.keys().any(|k| k != "size")) => needs(
            f,
            "storage driver options other than size are not known to be harmless".into(),
        ),
        "Ulimits" => {
            for (i, u) in as_list(v).iter().enumerate() {
                let name = u.get("Name").and_then(Value::as_str).unwrap_or_default();
                // The engine upper-cases the name into RLIMIT_<NAME>.
                if !HARMLESS_ULIMITS.contains(&name.to_ascii_lowercase().as_str()) {
                    needs(
                        format!("{f}[{i}].Name"),
                        format!("{} is not a limit known to be harmless (nice, rtprio and rttime let the job take real-time CPU from the host)", quote(name)),
                    )?
                }
            }
            Ok(())
        }
        // Their harmless values.
        _ => Ok(()),
    }
}

/// Settings that reach past the container: into other containers, kernel parameters, the
/// runtime's reading of annotations, the engine's masked paths, or a restart after the runner
/// stopped it.
fn reach(
    k: &str,
    v: &Value,
    f: String,
    needs: &dyn Fn(String, String) -> Result<()>,
) -> Result<()> {
    match k {
        // Even a longer list replaces the engine's own, which differs between engines.
        "MaskedPaths" | "ReadonlyPaths" => needs(f, other_why(k).into()),
        "Links" | "VolumesFrom" | "DeviceCgroupRules" | "Sysctls" | "Annotations"
            if !is_empty(v) =>
        {
            needs(f, other_why(k).into())
        }
        "RestartPolicy" => {
            let name = v.get("Name").and_then(Value::as_str).unwrap_or_default();
            if !["", "no"].contains(&name) {
                return needs(
                    format!("{f}.Name"),
                    format!("{} restarts containers the runner stopped (an ephemeral job's container would run on)", quote(name)),
                );
            }
            Ok(())
        }
        // Their harmless values.
        _ => Ok(()),
    }
}

/// Checks `GroupAdd`: a group gives the job access to that group's host files and devices, so
/// only the numeric group of a device in `Devices` (a non-root user's GPU) passes.
fn group_add(
    v: &Value,
    f: String,
    device_gids: &[u32],
    needs: &dyn Fn(String, String) -> Result<()>,
) -> Result<()> {
    for (i, group) in as_list(v).iter().enumerate() {
        let group = group.as_str().unwrap_or_default();
        let gpu = group
            .parse::<u32>()
            .is_ok_and(|gid| device_gids.contains(&gid));
        if !gpu {
            needs(
                format!("{f}[{i}]"),
                format!("adding group {} gives the job that group's access to host files and devices (the numeric group of a device in Devices is allowed, for a non-root user's GPU)", quote(group)),
            )?
        }
    }
    Ok(())
}

/// A string setting's text (`""` for any other type: the types were checked when read).
fn as_text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// A list setting's items (none for any other type: the types were checked when read).
fn as_list(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

fn quote(s: &str) -> String {
    super::quote(s)
}

fn namespace_why(key: &str, value: &str) -> String {
    let v = quote(value);
    match key {
        "PidMode" => format!("{v} shares a process namespace: the job can see and signal other processes and read their environment"),
        "IpcMode" => format!("{v} shares an IPC namespace (shared memory) with the host or another container"),
        "UTSMode" => format!("{v} shares the host's hostname namespace"),
        "UsernsMode" => format!("{v} leaves the engine's user namespace: root in the container can be root on the host"),
        "CgroupnsMode" => format!("{v} shows the container the host's cgroup tree"),
        "Cgroup" => format!("{v} puts the container in another container's cgroup"),
        "CgroupParent" => format!("{v} moves the container out of the engine's cgroup, and its limits"),
        _ => format!("{v} mounts volumes of a driver that can carry any host path or file system"),
    }
}

fn other_why(key: &str) -> &'static str {
    match key {
        "Links" => "links reach into other containers",
        "VolumesFrom" => "mounts another container's volumes, which can be host paths",
        "DeviceCgroupRules" => "device rules let the job use host devices by number",
        "Sysctls" => "sets kernel parameters",
        "Annotations" => {
            "annotations are read by the runtime, which may loosen the container on them"
        }
        _ => {
            "replaces the engine's list of /proc and /sys paths the container may not see or write"
        }
    }
}

/// Checks `Devices`; returns the groups that own the allowed devices.
fn devices(
    over: &Map<String, Value>,
    needs: &dyn Fn(String, String) -> Result<()>,
) -> Result<Vec<u32>> {
    let mut gids = Vec::new();
    for (i, d) in over
        .get("Devices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let f = format!("{PREFIX}.Devices[{i}]");
        let path = d.get("PathOnHost").and_then(Value::as_str).ok_or_else(|| {
            Error::invalid(
                &f,
                "expected {PathOnHost, PathInContainer, CgroupPermissions} with PathOnHost a host path like \"/dev/dri/renderD128\"",
            )
        })?;
        if let Some(inside) = d.get("PathInContainer") {
            if !inside.as_str().is_some_and(|p| p.starts_with('/')) {
                return Err(Error::invalid(
                    format!("{f}.PathInContainer"),
                    format!("expected an absolute path, got {}", describe(inside)),
                ));
            }
        }
        if let Some(perms) = d.get("CgroupPermissions") {
            if !perms
                .as_str()
                .is_some_and(|p| p.chars().all(|c| "rwm".contains(c)))
            {
                return Err(Error::invalid(
                    format!("{f}.CgroupPermissions"),
                    format!("expected letters of \"rwm\", got {}", describe(perms)),
                ));
            }
        }
        match check_device(path) {
            // Group 0 is root's group: never handed out as a device's group.
            Ok(owners) => gids.extend(owners.into_iter().filter(|&gid| gid != 0)),
            // With the opt-in this passes, and the engine decides.
            Err(why) => needs(format!("{f}.PathOnHost"), why)?,
        }
    }
    Ok(gids)
}

/// Checks the override's `Mounts`: tmpfs passes; a host path or a volume needs the opt-in.
fn mounts(v: &Value, g: &Gate<'_>, needs: &dyn Fn(String, String) -> Result<()>) -> Result<()> {
    for (i, m) in v.as_array().into_iter().flatten().enumerate() {
        let f = format!("{PREFIX}.Mounts[{i}]");
        let kind = m.get("Type").and_then(Value::as_str).unwrap_or_default();
        let source = m.get("Source").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "tmpfs" => {}
            "bind" => {
                let why = match g.sockets.door(source) {
                    Some(door) => door,
                    None => format!(
                        "a bind mount of {} hands the job a host path without the runner's checks; use docker.volumes",
                        quote(source)
                    ),
                };
                needs(f, why)?
            }
            "volume" => needs(
                f,
                "a volume's driver options can mount any host path or file system; use docker.volumes for a host directory, or docker.tmpfs".into(),
            )?,
            other => needs(
                f,
                format!("{} mounts are not known to be harmless", quote(other)),
            )?,
        }
    }
    Ok(())
}

/// Merges `config.host_config_override` over the runner's `generated` HostConfig (a JSON object)
/// and returns the result. Keys are read as the engine reads them (in any letter case); every key
/// replaces the generated one, as in herdctl, except:
///
/// - `Mounts`: the override's mounts are appended; one whose `Target` the runner already mounts
///   (or that overlaps the workspace, session or credentials paths) is refused;
/// - `CapDrop`, `SecurityOpt`: joined with the generated lists; `no-new-privileges` is removed only
///   when the override turns it off (any spelling the engine reads as false) with the opt-in;
/// - `Memory` without `MemorySwap`: `MemorySwap` follows it, so "no extra swap" still holds;
/// - `Binds` and `AutoRemove: true` are refused; without `allow_unsafe_host_config` any setting
///   that can loosen the container (and any key the runner does not know) is refused by the
///   gate, which looks at this host's devices and engine sockets.
pub fn merge_host_config(generated: &Value, config: &DockerConfig) -> Result<Value> {
    let sockets = EngineSockets::find(None);
    let gate = Gate {
        allow: config.allow_unsafe_host_config,
        network: config.network,
        sockets: &sockets,
    };
    match gate_override(config, &gate)? {
        Some(passed) => merge(generated, &passed),
        None => generated_object(generated).map(Value::Object),
    }
}

/// A `host_config` override that passed the gate, its keys in the engine's spelling. Only
/// [`gate_override`] makes one, so the plan cannot merge an override nobody checked; and the
/// plan, which does no I/O, need not ask the host about sockets and devices itself.
#[derive(Debug, Clone)]
pub(crate) struct Passed {
    over: Map<String, Value>,
}

/// Reads the config's override and passes it through the gate (which looks at this host's
/// devices and engine sockets). `None` when the config has no override.
pub(crate) fn gate_override(config: &DockerConfig, g: &Gate<'_>) -> Result<Option<Passed>> {
    let Some(over) = config.host_config_override.as_ref() else {
        return Ok(None);
    };
    let over = over.as_object().ok_or_else(|| {
        Error::invalid(
            PREFIX,
            format!(
                "expected a map of engine HostConfig fields, got {}",
                describe(over)
            ),
        )
    })?;
    // Read again: a config built by hand never went through resolve.
    let over = read_override(over)?;
    gate(&over, g)?;
    Ok(Some(Passed { over }))
}

/// The generated HostConfig with an override that [passed the gate](gate_override) merged in.
pub(crate) fn merge(generated: &Value, passed: &Passed) -> Result<Value> {
    let mut out = generated_object(generated)?;
    let over = &passed.over;
    for (key, v) in over {
        match key.as_str() {
            "Mounts" => {
                let mounts = add_mounts(generated_list(&out, key), v)?;
                out.insert("Mounts".into(), Value::Array(mounts));
            }
            "CapDrop" | "SecurityOpt" => {
                let list = join_security_list(key, generated_list(&out, key), v);
                out.insert(key.clone(), Value::Array(list));
            }
            "Memory" => {
                out.insert(key.clone(), v.clone());
                if !over.contains_key("MemorySwap") && out.contains_key("MemorySwap") {
                    out.insert("MemorySwap".into(), v.clone());
                }
            }
            _ => {
                out.insert(key.clone(), v.clone());
            }
        }
    }
    Ok(Value::Object(out))
}

/// The generated HostConfig as a map (it is one: the runner made it).
fn generated_object(generated: &Value) -> Result<Map<String, Value>> {
    generated.as_object().cloned().ok_or_else(|| {
        Error::invalid(
            "HostConfig",
            "the generated HostConfig is not a JSON object",
        )
    })
}

/// The generated HostConfig's list under `key` (none if it has no such list).
fn generated_list(out: &Map<String, Value>, key: &str) -> Vec<Value> {
    out.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Appends the override's `Mounts` to the runner's: the runner's mounts are never dropped, so a
/// mount whose target the runner already uses is refused rather than replacing it.
fn add_mounts(mut mounts: Vec<Value>, over: &Value) -> Result<Vec<Value>> {
    let target = |m: &Value| {
        m.get("Target")
            .and_then(Value::as_str)
            .and_then(normalize_path)
    };
    for (i, m) in over.as_array().into_iter().flatten().enumerate() {
        let t = target(m);
        if mounts.iter().any(|g| target(g) == t) {
            return Err(Error::invalid(
                format!("{PREFIX}.Mounts[{i}]"),
                format!(
                    "Target {} is already mounted by the runner; use another path",
                    t.unwrap_or_default()
                ),
            ));
        }
        mounts.push(m.clone());
    }
    Ok(mounts)
}

/// Joins the override's `CapDrop` or `SecurityOpt` (`key`) with the generated list instead of
/// replacing it: an override that adds a seccomp profile does not silently lose
/// `no-new-privileges`. Only an override that turns it off (any spelling the engine reads as
/// false) removes the generated one.
fn join_security_list(key: &str, mut list: Vec<Value>, over: &Value) -> Vec<Value> {
    let extra = over.as_array().cloned().unwrap_or_default();
    let nnp_off = key == "SecurityOpt"
        && extra.iter().any(|x| {
            x.as_str().is_some_and(|s| {
                security_opt::parse(s) == security_opt::SecOpt::NoNewPrivileges(false)
            })
        });
    if nnp_off {
        // Only the opt-in gets here (the gate refused it otherwise).
        list.retain(|g| {
            !g.as_str().is_some_and(|s| {
                matches!(
                    security_opt::parse(s),
                    security_opt::SecOpt::NoNewPrivileges(_)
                )
            })
        });
    }
    for x in extra {
        if !list.contains(&x) {
            list.push(x);
        }
    }
    list
}

#[cfg(test)]
mod tests;

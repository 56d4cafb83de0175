//! After create: what the engine applied, read from its inspect, against what the gate passed.
//!
//! Every loosening the gate knows is looked for in the effective values, whether or not the
//! runner asked for the setting: a key the gate misread, an engine default, or an engine that
//! reads the create body differently than this runner all show up here, before the container
//! starts. Without the opt-in a loosening refuses the job (and the container is removed); a
//! limit that did not take is a warning.

use crate::config::{no_new_privileges, parse_security_opt, SecOpt};
use crate::engine::create_models::{ContainerCreate, HostConfig};
use crate::engine::{ContainerHostConfig, ContainerInspect};
use crate::plan::{MountPlan, MountRole};
use crate::{Error, Result};

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

/// `/proc` and `/sys` paths that Docker and Podman both hide by default: an inspect that reports
/// a list without one of them was given another list.
const MASKED: [&str; 9] = [
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// `/proc` paths that Docker and Podman both make read-only by default.
const READ_ONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// What the container may have beyond the create body: the opt-in, and the runner's own bind
/// mounts.
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    /// The opt-in was given: loosenings the gate passed are not problems.
    pub allow: bool,
    /// (host path, container path) of every bind mount the runner planned.
    pub binds: Vec<(String, String)>,
}

impl Expected {
    /// The expectations of a job with this mount plan.
    pub(crate) fn new(allow: bool, mounts: &MountPlan) -> Expected {
        Expected {
            allow,
            binds: mounts
                .mounts()
                .iter()
                .filter(|m| m.role != MountRole::StateDirMask)
                .map(|m| (m.source.clone(), m.target.clone()))
                .collect(),
        }
    }
}

/// What the check asks the host about paths the engine reported. Answering reads the host's
/// file system, so the caller (the run layer, on the machine the engine runs on) answers.
pub(crate) trait HostPaths {
    /// Whether two host paths name one file: an engine may report a bind's source with its
    /// symlinks resolved.
    fn same_file(&self, a: &str, b: &str) -> bool;
    /// `Err` with why a host device is not one a job may have without the opt-in (see
    /// [`check_device`](crate::config::check_device)).
    fn device(&self, path_on_host: &str) -> std::result::Result<(), String>;
}

/// Whether the container has no capability: Docker reports the `ALL` it was given, Podman
/// reports each default capability it dropped instead.
fn drops_every_capability(drop: &[String]) -> bool {
    let dropped = |cap: &str| {
        drop.iter().any(|d| {
            let d = d.trim_start_matches("CAP_");
            d.eq_ignore_ascii_case("ALL") || d.eq_ignore_ascii_case(cap)
        })
    };
    dropped("ALL") || DEFAULT_CAPABILITIES.iter().all(|c| dropped(c))
}

/// The strings of an optional list.
fn strs(list: &Option<Vec<String>>) -> impl Iterator<Item = &str> {
    list.iter().flatten().map(String::as_str)
}

/// Compares what the engine applied with what was asked and what may be there at all.
/// Security settings that did not take, and loosenings without the opt-in, are errors (the
/// container must not run a job); limits that did not take are warnings.
pub(crate) fn verify(
    asked: &ContainerCreate,
    expected: &Expected,
    got: &ContainerInspect,
    host: &dyn HostPaths,
) -> Result<Vec<String>> {
    let (want, have) = (&asked.host_config, &got.host_config);
    let mut problems = Vec::new();
    if !expected.allow {
        problems.extend(privileges(have));
        problems.extend(security_options(have));
        problems.extend(namespaces(have));
        problems.extend(engine_path_lists(have));
        problems.extend(host_access(want, have, host));
        problems.extend(unplanned_mounts(expected, got, host));
    }
    // Whatever the opt-in: the runner's own settings, and what the gate passed, must hold.
    problems.extend(runner_security(want, have, expected.allow));
    problems.extend(identity_and_modes(asked, got));
    problems.extend(asked_devices(want, have));
    if !problems.is_empty() {
        return Err(Error::NotApplied {
            container: got.name.trim_start_matches('/').to_string(),
            what: problems.join(", "),
        });
    }
    Ok(limits(want, have))
}

/// Loosenings: privileged, capabilities added.
fn privileges(have: &ContainerHostConfig) -> Vec<String> {
    let mut out = Vec::new();
    if have.privileged {
        out.push("Privileged false (got true)".into());
    }
    if !have.cap_add.is_empty() || !have.capabilities.is_empty() {
        out.push(format!(
            "no added capabilities (got {:?})",
            [have.cap_add.clone(), have.capabilities.clone()].concat()
        ));
    }
    out
}

/// Loosenings: security options other than no-new-privileges (seccomp, AppArmor, SELinux).
fn security_options(have: &ContainerHostConfig) -> Vec<String> {
    let other: Vec<&String> = have
        .security_opt
        .iter()
        .filter(|o| matches!(parse_security_opt(o), SecOpt::Other(_)))
        .collect();
    if other.is_empty() {
        return Vec::new();
    }
    vec![format!("no other security options (got {other:?})")]
}

/// Loosenings: a namespace shared with the host or another container.
fn namespaces(have: &ContainerHostConfig) -> Vec<String> {
    let modes = [
        ("PidMode", &have.pid_mode, &["", "private"][..]),
        ("UTSMode", &have.uts_mode, &["", "private"][..]),
        ("UsernsMode", &have.userns_mode, &["", "private"][..]),
        (
            "IpcMode",
            &have.ipc_mode,
            &["", "private", "none", "shareable"][..],
        ),
    ];
    modes
        .into_iter()
        .filter(|(_, value, fine)| !fine.contains(&value.as_str()))
        .map(|(what, value, _)| format!("{what} private (got {value:?})"))
        .collect()
}

/// Loosenings: `/proc` and `/sys` paths the engine would hide or make read-only, not so.
fn engine_path_lists(have: &ContainerHostConfig) -> Vec<String> {
    let mut out = Vec::new();
    for (what, list, required) in [
        ("MaskedPaths", &have.masked_paths, &MASKED[..]),
        ("ReadonlyPaths", &have.readonly_paths, &READ_ONLY[..]),
    ] {
        // An engine that does not report the list applied its own.
        let Some(list) = list else { continue };
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|p| !list.iter().any(|l| l == p))
            .collect();
        if !missing.is_empty() {
            out.push(format!(
                "{what} with the engine's defaults (missing {missing:?})"
            ));
        }
    }
    out
}

/// Loosenings: host devices, kernel parameters, other containers' volumes, published ports, the
/// host's OOM killer.
fn host_access(want: &HostConfig, have: &ContainerHostConfig, host: &dyn HostPaths) -> Vec<String> {
    let mut out = Vec::new();
    for d in &have.devices {
        if let Err(why) = host.device(&d.path_on_host) {
            out.push(format!("only GPU devices ({why})"));
        }
    }
    if !have.device_cgroup_rules.is_empty() {
        out.push(format!(
            "no device cgroup rules (got {:?})",
            have.device_cgroup_rules
        ));
    }
    if !have.volumes_from.is_empty() {
        out.push(format!("no VolumesFrom (got {:?})", have.volumes_from));
    }
    if !have.sysctls.is_empty() && want.sysctls.is_none() {
        out.push(format!("no sysctls (got {:?})", have.sysctls));
    }
    if have.publish_all_ports {
        out.push("PublishAllPorts false (got true)".into());
    }
    if have.oom_score_adj < 0 {
        out.push(format!("OomScoreAdj >= 0 (got {})", have.oom_score_adj));
    }
    out
}

/// Loosenings: mounts beyond the runner's bind mounts, tmpfs and the image's own volumes.
fn unplanned_mounts(
    expected: &Expected,
    got: &ContainerInspect,
    host: &dyn HostPaths,
) -> Vec<String> {
    let mut out = Vec::new();
    for m in &got.mounts {
        match m.r#type.as_str() {
            "bind" => {
                let planned = expected
                    .binds
                    .iter()
                    .any(|(s, t)| *t == m.destination && host.same_file(s, &m.source));
                if !planned {
                    out.push(format!(
                        "only the runner's bind mounts (got {} at {})",
                        m.source, m.destination
                    ));
                }
            }
            // The image's own VOLUMEs get anonymous volumes.
            "volume" if got.config.volumes.contains_key(&m.destination) => {}
            "tmpfs" => {}
            other => out.push(format!(
                "no {other} mount at {} (only the runner's bind mounts, tmpfs and the image's volumes)",
                m.destination
            )),
        }
    }
    out
}

/// The runner's own security settings: every capability dropped, no-new-privileges (turned off
/// only by the override, with the opt-in).
fn runner_security(want: &HostConfig, have: &ContainerHostConfig, allow: bool) -> Vec<String> {
    let mut out = Vec::new();
    if !drops_every_capability(&have.cap_drop) {
        out.push("CapDrop ALL".into());
    }
    let nnp = no_new_privileges(have.security_opt.iter().map(String::as_str));
    if !nnp && no_new_privileges(strs(&want.security_opt)) {
        out.push("no-new-privileges".into());
    } else if !nnp && !allow {
        out.push("no-new-privileges (turned off)".into());
    }
    if !have.binds.is_empty() {
        out.push(format!("no Binds (got {:?})", have.binds));
    }
    out
}

/// What was asked must be what the container has: its user, network, cgroup namespace, groups
/// and runtime.
fn identity_and_modes(asked: &ContainerCreate, got: &ContainerInspect) -> Vec<String> {
    let (want, have) = (&asked.host_config, &got.host_config);
    let mut out = Vec::new();
    if got.config.user != asked.user {
        out.push(format!("user {} (got {:?})", asked.user, got.config.user));
    }
    if let Some(n) = &want.network_mode {
        let same = |a: &str| if a == "default" { "bridge" } else { a }.to_string();
        if same(&have.network_mode) != same(n) {
            out.push(format!("network {n} (got {:?})", have.network_mode));
        }
    }
    if let (Some(n), Some(h)) = (&want.cgroupns_mode, &have.cgroupns_mode) {
        if n != h {
            out.push(format!("CgroupnsMode {n} (got {h:?})"));
        }
    }
    let groups: Vec<&str> = strs(&want.group_add).collect();
    if let Some(g) = have
        .group_add
        .iter()
        .find(|g| !groups.contains(&g.as_str()))
    {
        out.push(format!("no groups beyond GroupAdd (got {g:?})"));
    }
    if let Some(r) = &want.runtime {
        if have.runtime != *r {
            out.push(format!("runtime {r} (got {:?})", have.runtime));
        }
    }
    out
}

/// GPUs: what was asked must be there, or the job would run without it.
fn asked_devices(want: &HostConfig, have: &ContainerHostConfig) -> Vec<String> {
    let mut out = Vec::new();
    for d in want.devices.iter().flatten() {
        if !have
            .devices
            .iter()
            .any(|h| h.path_on_host == d.path_on_host)
        {
            out.push(format!("device {}", d.path_on_host));
        }
    }
    let requests = want.device_requests.as_ref().map_or(0, Vec::len);
    if have.device_requests.len() != requests {
        out.push(format!(
            "{requests} device requests (got {})",
            have.device_requests.len()
        ));
    }
    out
}

/// Warnings: limits that did not take (the job may still run).
fn limits(want: &HostConfig, have: &ContainerHostConfig) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(m) = want.memory.filter(|m| *m != have.memory) {
        out.push(format!("memory limit {m} was applied as {}", have.memory));
    }
    if let Some(m) = want.memory_swap.filter(|m| *m != have.memory_swap) {
        out.push(format!(
            "swap limit {m} was applied as {}",
            have.memory_swap
        ));
    }
    if let Some(p) = want
        .pids_limit
        .filter(|p| have.pids_limit.unwrap_or(0) != *p)
    {
        out.push(format!(
            "pids limit {p} was applied as {:?}",
            have.pids_limit
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn caps(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_capability_is_dropped_as_docker_or_podman_reports_it() {
        assert!(drops_every_capability(&caps(&["ALL"])));
        assert!(drops_every_capability(&caps(&DEFAULT_CAPABILITIES)));
        let prefixed: Vec<String> = DEFAULT_CAPABILITIES
            .iter()
            .map(|c| format!("CAP_{c}"))
            .collect();
        assert!(drops_every_capability(&prefixed));
        assert!(!drops_every_capability(&caps(&["CHOWN"])));
        assert!(!drops_every_capability(&[]));
    }

    /// An inspect as Docker 20.10 answers for the runner's own create body.
    fn inspect(host: Value) -> ContainerInspect {
        let mut hc = json!({
            "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges"], "NetworkMode": "none",
            "Memory": 1, "MemorySwap": 1, "PidsLimit": 5, "IpcMode": "private",
            "CgroupnsMode": "host", "Runtime": "runc",
            "MaskedPaths": MASKED, "ReadonlyPaths": READ_ONLY,
        });
        for (k, v) in host.as_object().unwrap() {
            hc[k] = v.clone();
        }
        serde_json::from_value(json!({
            "Id": "x", "Name": "/c", "Config": {"User": "1000:1000"}, "HostConfig": hc,
            "Mounts": [{"Type": "bind", "Source": "/ws", "Destination": "/workspace", "RW": true}],
        }))
        .unwrap()
    }

    fn asked() -> ContainerCreate {
        ContainerCreate {
            user: "1000:1000".into(),
            host_config: serde_json::from_value(json!({
                "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges"], "NetworkMode": "none",
                "Memory": 1, "MemorySwap": 1, "PidsLimit": 5}))
            .unwrap(),
            ..ContainerCreate::default()
        }
    }

    /// A host where paths are the same when spelled the same, and every `/dev` path is a GPU.
    struct FakeHost;

    impl HostPaths for FakeHost {
        fn same_file(&self, a: &str, b: &str) -> bool {
            a == b
        }
        fn device(&self, path: &str) -> std::result::Result<(), String> {
            match path.starts_with("/dev/") {
                true => Ok(()),
                false => Err(format!("{path} is not a device")),
            }
        }
    }

    fn verify(
        asked: &ContainerCreate,
        expected: &Expected,
        got: &ContainerInspect,
    ) -> Result<Vec<String>> {
        super::verify(asked, expected, got, &FakeHost)
    }

    fn expected(allow: bool) -> Expected {
        Expected {
            allow,
            binds: vec![("/ws".into(), "/workspace".into())],
        }
    }

    #[test]
    fn a_plain_container_passes() {
        assert_eq!(
            verify(&asked(), &expected(false), &inspect(json!({}))).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn every_loosening_is_found_whoever_asked_for_it() {
        for (host, what) in [
            (json!({"Privileged": true}), "Privileged false"),
            (json!({"CapAdd": ["SYS_ADMIN"]}), "no added capabilities"),
            (json!({"PidMode": "host"}), "PidMode private"),
            (json!({"IpcMode": "host"}), "IpcMode private"),
            (json!({"UTSMode": "host"}), "UTSMode private"),
            (json!({"UsernsMode": "host"}), "UsernsMode private"),
            (
                json!({"SecurityOpt": ["no-new-privileges", "seccomp=unconfined"]}),
                "no other security options",
            ),
            (
                json!({"SecurityOpt": ["no-new-privileges", "no-new-privileges=0"]}),
                "no-new-privileges",
            ),
            (
                json!({"MaskedPaths": []}),
                "MaskedPaths with the engine's defaults",
            ),
            (
                json!({"ReadonlyPaths": ["/proc/sys"]}),
                "ReadonlyPaths with the engine's defaults",
            ),
            (
                json!({"Devices": [{"PathOnHost": "/etc/passwd"}]}),
                "only GPU devices",
            ),
            (json!({"VolumesFrom": ["other"]}), "no VolumesFrom"),
            (json!({"Binds": ["/:/host"]}), "no Binds"),
            (json!({"NetworkMode": "host"}), "network none"),
            (json!({"GroupAdd": ["0"]}), "no groups beyond GroupAdd"),
            (json!({"CapDrop": []}), "CapDrop ALL"),
        ] {
            let e = verify(&asked(), &expected(false), &inspect(host.clone()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(what), "{host}: {e}");
            assert!(
                e.starts_with("container c: the engine did not apply "),
                "{e}"
            );
        }
        // A bind mount the runner did not plan.
        let mut got = inspect(json!({}));
        got.mounts.push(
            serde_json::from_value(json!({"Type": "bind", "Source": "/", "Destination": "/host"}))
                .unwrap(),
        );
        let e = verify(&asked(), &expected(false), &got)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("only the runner's bind mounts (got / at /host)"),
            "{e}"
        );
        assert!(verify(&asked(), &expected(true), &got).is_ok());
    }

    #[test]
    fn the_opt_in_passes_loosenings_but_not_a_dropped_runner_setting() {
        let got = inspect(
            json!({"Privileged": true, "CapAdd": ["NET_ADMIN"], "PidMode": "host",
                                 "SecurityOpt": ["no-new-privileges", "label=disable"]}),
        );
        assert!(verify(&asked(), &expected(true), &got).is_ok());
        // Asked for no-new-privileges and did not get it: refused even with the opt-in.
        let got = inspect(json!({"SecurityOpt": []}));
        assert!(verify(&asked(), &expected(true), &got).is_err());
        // Turned off on purpose, with the opt-in.
        let mut off = asked();
        off.host_config.security_opt = Some(vec!["no-new-privileges=false".into()]);
        let got = inspect(json!({"SecurityOpt": ["no-new-privileges=false"]}));
        assert!(verify(&off, &expected(true), &got).is_ok());
        assert!(verify(&off, &expected(false), &got).is_err());
    }

    #[test]
    fn gpus_asked_for_must_be_there() {
        let mut want = asked();
        want.host_config.devices = Some(vec![serde_json::from_value(
            json!({"PathOnHost": "/dev/null", "PathInContainer": "/dev/gpu", "CgroupPermissions": "rwm"}),
        )
        .unwrap()]);
        want.host_config.device_requests = Some(vec![json!({"Driver": "nvidia", "Count": -1})]);
        let got = inspect(json!({}));
        let e = verify(&want, &expected(false), &got)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("device /dev/null") && e.contains("1 device requests (got 0)"),
            "{e}"
        );
        let got = inspect(json!({
            "Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/gpu", "CgroupPermissions": "rwm"}],
            "DeviceRequests": [{"Driver": "nvidia", "Count": -1}],
        }));
        assert!(verify(&want, &expected(false), &got).is_ok());
    }

    #[test]
    fn limits_that_did_not_take_are_warnings() {
        let w = verify(
            &asked(),
            &expected(false),
            &inspect(json!({"Memory": 0, "PidsLimit": null})),
        )
        .unwrap();
        assert_eq!(
            w,
            [
                "memory limit 1 was applied as 0",
                "pids limit 5 was applied as None"
            ]
        );
    }
}

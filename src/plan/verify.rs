//! After create: what the engine applied, read from its inspect, against what the gate passed.
//!
//! Every loosening the gate knows is looked for in the effective values, whether or not the
//! runner asked for the setting: a key the gate misread, an engine default, or an engine that
//! reads the create body differently than this runner all show up here, before the container
//! starts. Without the opt-in a loosening refuses the job (and the container is removed); a
//! limit that did not take is a warning.

use serde_json::Value;

use crate::config::{check_device, no_new_privileges, parse_security_opt, SecOpt};
use crate::engine::ContainerInspect;
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

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// Compares what the engine applied with what was asked and what may be there at all.
/// Security settings that did not take, and loosenings without the opt-in, are errors (the
/// container must not run a job); limits that did not take are warnings.
pub(crate) fn verify(
    asked: &Value,
    expected: &Expected,
    got: &ContainerInspect,
) -> Result<Vec<String>> {
    let want = &asked["HostConfig"];
    let have = &got.host_config;
    let allow = expected.allow;
    let mut problems = Vec::new();
    let mut loosened = |what: String| {
        if !allow {
            problems.push(what);
        }
    };

    if have.privileged {
        loosened("Privileged false (got true)".into());
    }
    if !have.cap_add.is_empty() || !have.capabilities.is_empty() {
        loosened(format!(
            "no added capabilities (got {:?})",
            [have.cap_add.clone(), have.capabilities.clone()].concat()
        ));
    }
    let nnp = no_new_privileges(have.security_opt.iter().map(String::as_str));
    let other_opts: Vec<&String> = have
        .security_opt
        .iter()
        .filter(|o| matches!(parse_security_opt(o), SecOpt::Other(_)))
        .collect();
    if !other_opts.is_empty() {
        loosened(format!("no other security options (got {other_opts:?})"));
    }
    for (what, value, fine) in [
        ("PidMode", &have.pid_mode, &["", "private"][..]),
        ("UTSMode", &have.uts_mode, &["", "private"][..]),
        ("UsernsMode", &have.userns_mode, &["", "private"][..]),
        (
            "IpcMode",
            &have.ipc_mode,
            &["", "private", "none", "shareable"][..],
        ),
    ] {
        if !fine.contains(&value.as_str()) {
            loosened(format!("{what} private (got {value:?})"));
        }
    }
    for (what, list, required) in [
        ("MaskedPaths", &have.masked_paths, &MASKED[..]),
        ("ReadonlyPaths", &have.readonly_paths, &READ_ONLY[..]),
    ] {
        // An engine that does not report the list applied its own.
        if let Some(list) = list {
            let missing: Vec<&str> = required
                .iter()
                .copied()
                .filter(|p| !list.iter().any(|l| l == p))
                .collect();
            if !missing.is_empty() {
                loosened(format!(
                    "{what} with the engine's defaults (missing {missing:?})"
                ));
            }
        }
    }
    for d in &have.devices {
        if let Err(why) = check_device(&d.path_on_host) {
            loosened(format!("only GPU devices ({why})"));
        }
    }
    if !have.device_cgroup_rules.is_empty() {
        loosened(format!(
            "no device cgroup rules (got {:?})",
            have.device_cgroup_rules
        ));
    }
    if !have.volumes_from.is_empty() {
        loosened(format!("no VolumesFrom (got {:?})", have.volumes_from));
    }
    if !have.sysctls.is_empty() && want.get("Sysctls").is_none() {
        loosened(format!("no sysctls (got {:?})", have.sysctls));
    }
    if have.publish_all_ports {
        loosened("PublishAllPorts false (got true)".into());
    }
    if have.oom_score_adj < 0 {
        loosened(format!("OomScoreAdj >= 0 (got {})", have.oom_score_adj));
    }
    for m in &got.mounts {
        match m.r#type.as_str() {
            "bind" => {
                // An engine may report the source with its symlinks resolved.
                let same = |a: &str, b: &str| {
                    a == b
                        || std::fs::canonicalize(a)
                            .is_ok_and(|a| std::fs::canonicalize(b).is_ok_and(|b| a == b))
                };
                let planned = expected
                    .binds
                    .iter()
                    .any(|(s, t)| *t == m.destination && same(s, &m.source));
                if !planned {
                    loosened(format!(
                        "only the runner's bind mounts (got {} at {})",
                        m.source, m.destination
                    ));
                }
            }
            // The image's own VOLUMEs get anonymous volumes.
            "volume" if got.config.volumes.contains_key(&m.destination) => {}
            "tmpfs" => {}
            other => loosened(format!(
                "no {other} mount at {} (only the runner's bind mounts, tmpfs and the image's volumes)",
                m.destination
            )),
        }
    }

    // Whatever the opt-in: the runner's own settings, and what the gate passed, must hold.
    if !drops_every_capability(&have.cap_drop) {
        problems.push("CapDrop ALL".into());
    }
    if !nnp && no_new_privileges(strs(&want["SecurityOpt"])) {
        problems.push("no-new-privileges".into());
    } else if !nnp && !allow {
        problems.push("no-new-privileges (turned off)".into());
    }
    if !have.binds.is_empty() {
        problems.push(format!("no Binds (got {:?})", have.binds));
    }
    let want_user = asked["User"].as_str().unwrap_or_default();
    if got.config.user != want_user {
        problems.push(format!("user {want_user} (got {:?})", got.config.user));
    }
    if let Some(n) = want["NetworkMode"].as_str() {
        fn same(a: &str) -> &str {
            if a == "default" {
                "bridge"
            } else {
                a
            }
        }
        if same(&have.network_mode) != same(n) {
            problems.push(format!("network {n} (got {:?})", have.network_mode));
        }
    }
    if let (Some(n), Some(h)) = (want["CgroupnsMode"].as_str(), &have.cgroupns_mode) {
        if n != h {
            problems.push(format!("CgroupnsMode {n} (got {h:?})"));
        }
    }
    let groups = strs(&want["GroupAdd"]);
    if let Some(g) = have
        .group_add
        .iter()
        .find(|g| !groups.contains(&g.as_str()))
    {
        problems.push(format!("no groups beyond GroupAdd (got {g:?})"));
    }
    if let Some(r) = want["Runtime"].as_str() {
        if have.runtime != r {
            problems.push(format!("runtime {r} (got {:?})", have.runtime));
        }
    }
    // GPUs: what was asked must be there, or the job would run without it.
    for d in want["Devices"].as_array().into_iter().flatten() {
        let host = d["PathOnHost"].as_str().unwrap_or_default();
        if !have.devices.iter().any(|h| h.path_on_host == host) {
            problems.push(format!("device {host}"));
        }
    }
    let requests = want["DeviceRequests"].as_array().map_or(0, Vec::len);
    if have.device_requests.len() != requests {
        problems.push(format!(
            "{requests} device requests (got {})",
            have.device_requests.len()
        ));
    }

    let mut warnings = Vec::new();
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
    use serde_json::json;

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

    fn asked() -> Value {
        json!({"User": "1000:1000", "HostConfig": {
            "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges"], "NetworkMode": "none",
            "Memory": 1, "MemorySwap": 1, "PidsLimit": 5}})
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
        off["HostConfig"]["SecurityOpt"] = json!(["no-new-privileges=false"]);
        let got = inspect(json!({"SecurityOpt": ["no-new-privileges=false"]}));
        assert!(verify(&off, &expected(true), &got).is_ok());
        assert!(verify(&off, &expected(false), &got).is_err());
    }

    #[test]
    fn gpus_asked_for_must_be_there() {
        let mut want = asked();
        want["HostConfig"]["Devices"] = json!([{"PathOnHost": "/dev/null", "PathInContainer": "/dev/gpu", "CgroupPermissions": "rwm"}]);
        want["HostConfig"]["DeviceRequests"] = json!([{"Driver": "nvidia", "Count": -1}]);
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

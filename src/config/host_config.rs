//! The fleet's raw `host_config`, merged over the `HostConfig` the runner generates.
//!
//! herdctl lets `host_config` override any generated field. We keep that, with three limits:
//! the runner's mounts are never dropped (override `Mounts` are added, and may not reuse a target),
//! security lists are joined rather than replaced (`CapDrop`, `SecurityOpt`: an override that adds
//! a seccomp profile does not silently lose `no-new-privileges`), and settings that loosen
//! security need `allow_unsafe_host_config: true` in the fleet config.

use serde_json::{Map, Value};

use super::input::describe;
use super::DockerConfig;
use crate::paths::{normalize_path, reserved_conflict};
use crate::{Error, Result};

const PREFIX: &str = "docker.host_config";

/// Security options that undo a protection. Both engine spellings (`=` and `:`) are accepted.
const UNSAFE_SECURITY_OPTS: [&str; 4] = [
    "no-new-privileges=false",
    "seccomp=unconfined",
    "apparmor=unconfined",
    "label=disable",
];

fn normalise_opt(opt: &str) -> String {
    opt.replacen(':', "=", 1)
}

/// Checks an override on its own: settings that are always refused, and settings that loosen
/// security when `allow` is false. Called when the config is resolved, so a bad override fails
/// before any job runs.
pub(crate) fn check_override(over: &Map<String, Value>, allow: bool) -> Result<()> {
    let unsafe_ = |key: &str, what: &str| -> Result<()> {
        if allow {
            return Ok(());
        }
        Err(Error::invalid(
            format!("{PREFIX}.{key}"),
            format!("{what} loosens the container's security; set docker.allow_unsafe_host_config: true in the fleet config to allow it"),
        ))
    };
    for (key, v) in over {
        match key.as_str() {
            "Binds" => {
                return Err(Error::invalid(
                    format!("{PREFIX}.Binds"),
                    "not accepted: Binds creates missing host directories as root and bypasses the mount checks; use docker.volumes",
                ))
            }
            "AutoRemove" if v.as_bool() == Some(true) => {
                return Err(Error::invalid(
                    format!("{PREFIX}.AutoRemove"),
                    "not accepted: the runner keeps stopped containers for inspection and removes them by retention (docker.max_containers)",
                ))
            }
            "Privileged" if v.as_bool() == Some(true) => unsafe_(key, "true")?,
            "CapAdd" if v.as_array().is_some_and(|a| !a.is_empty()) => {
                unsafe_(key, "adding capabilities")?
            }
            "PidMode" | "IpcMode" | "UsernsMode" | "UTSMode" if v.as_str() == Some("host") => {
                unsafe_(key, "\"host\"")?
            }
            "Devices" | "DeviceCgroupRules" if v.as_array().is_some_and(|a| !a.is_empty()) => {
                unsafe_(key, "giving devices")?
            }
            "MaskedPaths" | "ReadonlyPaths" => unsafe_(key, "changing the masked /proc paths")?,
            "SecurityOpt" => {
                let Some(opts) = v.as_array() else {
                    return Err(Error::invalid(
                        format!("{PREFIX}.SecurityOpt"),
                        format!("expected a list of strings, got {}", describe(v)),
                    ));
                };
                for o in opts {
                    let s = o.as_str().map(normalise_opt).unwrap_or_default();
                    if UNSAFE_SECURITY_OPTS.contains(&s.as_str()) {
                        unsafe_(key, &format!("{o}"))?;
                    }
                }
            }
            "Mounts" => {
                let Some(items) = v.as_array() else {
                    return Err(Error::invalid(
                        format!("{PREFIX}.Mounts"),
                        format!("expected a list of mounts, got {}", describe(v)),
                    ));
                };
                for (i, m) in items.iter().enumerate() {
                    let f = format!("{PREFIX}.Mounts[{i}]");
                    let target = m.get("Target").and_then(Value::as_str).ok_or_else(|| {
                        Error::invalid(&f, "expected a mount with an absolute \"Target\"")
                    })?;
                    let norm = normalize_path(target).ok_or_else(|| {
                        Error::invalid(&f, format!("Target {} is not absolute", describe(&Value::from(target))))
                    })?;
                    if let Some(r) = reserved_conflict(&norm) {
                        return Err(Error::invalid(
                            &f,
                            format!("Target {norm} overlaps {r}, where the runner mounts {}; use a path outside /workspace and /home/claude/.claude", crate::paths::reserved_role(r)),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Merges `config.host_config_override` over the runner's `generated` HostConfig (a JSON object)
/// and returns the result. Every other key of the override replaces the generated one, as in
/// herdctl, except:
///
/// - `Mounts`: the override's mounts are appended; one whose `Target` the runner already mounts
///   (or that overlaps the workspace, session or credentials paths) is refused;
/// - `CapDrop`, `SecurityOpt`: joined with the generated lists; `no-new-privileges` is removed only
///   when the override says `no-new-privileges:false` and the fleet allows unsafe settings;
/// - `Memory` without `MemorySwap`: `MemorySwap` follows it, so "no extra swap" still holds;
/// - `Binds`, `AutoRemove: true`, and without `allow_unsafe_host_config`: `Privileged`, `CapAdd`,
///   host namespaces, devices, masked paths and unconfined profiles are refused.
pub fn merge_host_config(generated: &Value, config: &DockerConfig) -> Result<Value> {
    let mut out = generated.as_object().cloned().ok_or_else(|| {
        Error::invalid(
            "HostConfig",
            "the generated HostConfig is not a JSON object",
        )
    })?;
    let Some(over) = config.host_config_override.as_ref() else {
        return Ok(Value::Object(out));
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
    let allow = config.allow_unsafe_host_config;
    check_override(over, allow)?;
    for (key, v) in over {
        match key.as_str() {
            "Mounts" => {
                let mut mounts = out
                    .get("Mounts")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let target = |m: &Value| {
                    m.get("Target")
                        .and_then(Value::as_str)
                        .and_then(normalize_path)
                };
                // Cannot be other than an array: check_override verified it.
                for (i, m) in v.as_array().into_iter().flatten().enumerate() {
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
                out.insert("Mounts".into(), Value::Array(mounts));
            }
            "CapDrop" | "SecurityOpt" => {
                let mut list: Vec<Value> = out
                    .get(key)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let extra = v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]);
                for x in extra {
                    let nnp_off = x
                        .as_str()
                        .is_some_and(|s| normalise_opt(s) == "no-new-privileges=false");
                    if nnp_off && allow {
                        list.retain(|g| {
                            !g.as_str().is_some_and(|s| {
                                let s = normalise_opt(s);
                                s == "no-new-privileges" || s == "no-new-privileges=true"
                            })
                        });
                    }
                    if !list.contains(&x) {
                        list.push(x);
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::resolve_docker_config;
    use serde_json::json;

    fn generated() -> Value {
        json!({
            "Memory": 1073741824, "MemorySwap": 1073741824, "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"], "Init": true, "NetworkMode": "none",
            "Mounts": [
                {"Type": "bind", "Source": "/ws", "Target": "/workspace", "ReadOnly": false},
                {"Type": "bind", "Source": "/s", "Target": "/home/claude/.claude/projects/-workspace", "ReadOnly": false},
            ],
        })
    }

    fn config(hc: Value, allow: bool) -> Result<DockerConfig> {
        resolve_docker_config(&json!({"host_config": hc, "allow_unsafe_host_config": allow}))
    }

    fn merged(hc: Value, allow: bool) -> Result<Value> {
        merge_host_config(&generated(), &config(hc, allow)?)
    }

    #[test]
    fn plain_keys_override() {
        let m = merged(json!({"ShmSize": 67108864, "Init": false}), false).unwrap();
        assert_eq!(m["ShmSize"], 67108864);
        assert_eq!(m["Init"], false);
        assert_eq!(m["CapDrop"], json!(["ALL"]));
        // No override: the generated config as it is.
        let c = resolve_docker_config(&json!({})).unwrap();
        assert_eq!(merge_host_config(&generated(), &c).unwrap(), generated());
    }

    #[test]
    fn unsafe_settings_need_the_allow_flag() {
        for hc in [
            json!({"Privileged": true}),
            json!({"CapAdd": ["SYS_ADMIN"]}),
            json!({"SecurityOpt": ["no-new-privileges:false"]}),
            json!({"SecurityOpt": ["no-new-privileges=false"]}),
            json!({"SecurityOpt": ["seccomp=unconfined"]}),
            json!({"PidMode": "host"}),
            json!({"Devices": [{"PathOnHost": "/dev/kvm"}]}),
            json!({"MaskedPaths": []}),
        ] {
            let e = config(hc.clone(), false).unwrap_err().to_string();
            assert!(e.starts_with("invalid docker.host_config."), "{hc}: {e}");
            assert!(
                e.contains("set docker.allow_unsafe_host_config: true"),
                "{hc}: {e}"
            );
            assert!(merged(hc, true).is_ok());
        }
        assert_eq!(
            config(json!({"Privileged": true}), false).unwrap_err().to_string(),
            "invalid docker.host_config.Privileged: true loosens the container's security; set docker.allow_unsafe_host_config: true in the fleet config to allow it"
        );
        // Harmless values of the same keys pass.
        assert!(merged(
            json!({"Privileged": false, "CapAdd": [], "PidMode": ""}),
            false
        )
        .is_ok());
    }

    #[test]
    fn merge_refuses_unsafe_even_when_the_config_was_built_by_hand() {
        let mut c = resolve_docker_config(&json!({})).unwrap();
        c.host_config_override = Some(json!({"Privileged": true}));
        assert!(merge_host_config(&generated(), &c).is_err());
        c.allow_unsafe_host_config = true;
        assert_eq!(
            merge_host_config(&generated(), &c).unwrap()["Privileged"],
            true
        );
    }

    #[test]
    fn security_lists_are_joined() {
        let m = merged(
            json!({"SecurityOpt": ["seccomp=/p.json"], "CapDrop": ["NET_RAW"]}),
            false,
        )
        .unwrap();
        assert_eq!(
            m["SecurityOpt"],
            json!(["no-new-privileges", "seccomp=/p.json"])
        );
        assert_eq!(m["CapDrop"], json!(["ALL", "NET_RAW"]));
        // An empty CapDrop cannot bring capabilities back.
        assert_eq!(
            merged(json!({"CapDrop": []}), false).unwrap()["CapDrop"],
            json!(["ALL"])
        );
        // Allowed removal of no-new-privileges.
        let m = merged(json!({"SecurityOpt": ["no-new-privileges:false"]}), true).unwrap();
        assert_eq!(m["SecurityOpt"], json!(["no-new-privileges:false"]));
    }

    #[test]
    fn runner_mounts_are_never_dropped() {
        let m = merged(
            json!({"Mounts": [{"Type": "tmpfs", "Target": "/cache"}]}),
            false,
        )
        .unwrap();
        let targets: Vec<&str> = m["Mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Target"].as_str().unwrap())
            .collect();
        assert_eq!(
            targets,
            [
                "/workspace",
                "/home/claude/.claude/projects/-workspace",
                "/cache"
            ]
        );
        for hc in [
            json!({"Mounts": [{"Type": "bind", "Source": "/x", "Target": "/workspace"}]}),
            json!({"Mounts": [{"Type": "bind", "Source": "/x", "Target": "/workspace/sub"}]}),
            json!({"Mounts": [{"Type": "bind", "Source": "/x"}]}),
            json!({"Mounts": "x"}),
            json!({"Binds": ["/x:/y"]}),
            json!({"AutoRemove": true}),
        ] {
            let e = config(hc.clone(), true).unwrap_err().to_string();
            assert!(e.starts_with("invalid docker.host_config."), "{hc}: {e}");
        }
        // A target the runner mounts outside the reserved paths (say a user volume) is refused at
        // merge time.
        let mut g = generated();
        g["Mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"Type": "bind", "Source": "/d", "Target": "/data"}));
        let c = config(
            json!({"Mounts": [{"Type": "tmpfs", "Target": "/data/"}]}),
            false,
        )
        .unwrap();
        assert_eq!(
            merge_host_config(&g, &c).unwrap_err().to_string(),
            "invalid docker.host_config.Mounts[0]: Target /data is already mounted by the runner; use another path"
        );
    }

    #[test]
    fn memory_override_keeps_no_extra_swap() {
        let m = merged(json!({"Memory": 536870912}), false).unwrap();
        assert_eq!(
            (m["Memory"].clone(), m["MemorySwap"].clone()),
            (json!(536870912), json!(536870912))
        );
        let m = merged(json!({"Memory": 536870912, "MemorySwap": -1}), false).unwrap();
        assert_eq!(m["MemorySwap"], -1);
    }
}

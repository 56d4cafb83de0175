//! What a `host_config` key means to the engine.
//!
//! The engine decodes the create body with Go's `encoding/json`, which matches an object key to a
//! struct field case-insensitively, by Unicode simple case folding: `privileged`, `PRIVILEGED`
//! and `Privileged` all set `Privileged`, and so do `Bindſ` (U+017F, long s) for `Binds` and
//! `MasKedPaths` (U+212A, Kelvin sign) for `MaskedPaths`. Every key is therefore read here the
//! same way and rewritten to the engine's own spelling before anything looks at it; two keys that
//! fold to one field are refused, since which one the engine keeps depends on their order in the
//! JSON text.

use serde_json::{Map, Value};

use crate::config::input::describe;
use crate::{Error, Result};

/// Go's fold of a JSON object key (`encoding/json`'s `foldName`): ASCII letters upper-cased,
/// every other character replaced by the smallest character of its simple case-folding orbit.
/// The only orbits that reach ASCII are {k, K, U+212A} and {s, S, U+017F}; no HostConfig field
/// name holds any other non-ASCII character, so other characters are kept as they are (they
/// cannot make a key match a field).
pub(crate) fn fold(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{212A}' => 'K',
            '\u{017F}' => 'S',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// The value type a field must have (the engine refuses any other at create).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int,
    Str,
    StrList,
    StrMap,
    List,
    Object,
}

impl Kind {
    fn accepts(self, v: &Value) -> bool {
        match self {
            Kind::Bool => v.is_boolean(),
            Kind::Int => v.is_i64() || v.is_u64(),
            Kind::Str => v.is_string(),
            Kind::StrList => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            Kind::StrMap => v
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_string)),
            Kind::List => v.is_array(),
            Kind::Object => v.is_object(),
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::Bool => "true or false",
            Kind::Int => "a whole number",
            Kind::Str => "a string",
            Kind::StrList => "a list of strings",
            Kind::StrMap => "a map of strings",
            Kind::List => "a list",
            Kind::Object => "a map",
        }
    }
}

/// Every HostConfig field of the engine API up to 1.47 (Docker 27) and Podman's compat API, with
/// its type. Keys are matched against these names by [`fold`]; a key that matches none is
/// unknown to this runner (the engine may know it from a newer API version).
pub(crate) const FIELDS: &[(&str, Kind)] = &[
    // Resources.
    ("CpuShares", Kind::Int),
    ("Memory", Kind::Int),
    ("CgroupParent", Kind::Str),
    ("BlkioWeight", Kind::Int),
    ("BlkioWeightDevice", Kind::List),
    ("BlkioDeviceReadBps", Kind::List),
    ("BlkioDeviceWriteBps", Kind::List),
    ("BlkioDeviceReadIOps", Kind::List),
    ("BlkioDeviceWriteIOps", Kind::List),
    ("CpuPeriod", Kind::Int),
    ("CpuQuota", Kind::Int),
    ("CpuRealtimePeriod", Kind::Int),
    ("CpuRealtimeRuntime", Kind::Int),
    ("CpusetCpus", Kind::Str),
    ("CpusetMems", Kind::Str),
    ("Devices", Kind::List),
    ("DeviceCgroupRules", Kind::StrList),
    ("DeviceRequests", Kind::List),
    ("KernelMemory", Kind::Int),
    ("KernelMemoryTCP", Kind::Int),
    ("MemoryReservation", Kind::Int),
    ("MemorySwap", Kind::Int),
    ("MemorySwappiness", Kind::Int),
    ("NanoCpus", Kind::Int),
    ("OomKillDisable", Kind::Bool),
    ("Init", Kind::Bool),
    ("PidsLimit", Kind::Int),
    ("Ulimits", Kind::List),
    ("CpuCount", Kind::Int),
    ("CpuPercent", Kind::Int),
    ("IOMaximumIOps", Kind::Int),
    ("IOMaximumBandwidth", Kind::Int),
    // The rest of HostConfig.
    ("Binds", Kind::StrList),
    ("ContainerIDFile", Kind::Str),
    ("LogConfig", Kind::Object),
    ("NetworkMode", Kind::Str),
    ("PortBindings", Kind::Object),
    ("RestartPolicy", Kind::Object),
    ("AutoRemove", Kind::Bool),
    ("VolumeDriver", Kind::Str),
    ("VolumesFrom", Kind::StrList),
    ("Mounts", Kind::List),
    ("ConsoleSize", Kind::List),
    ("Annotations", Kind::StrMap),
    ("Capabilities", Kind::StrList),
    ("CapAdd", Kind::StrList),
    ("CapDrop", Kind::StrList),
    ("CgroupnsMode", Kind::Str),
    ("Dns", Kind::StrList),
    ("DnsOptions", Kind::StrList),
    ("DnsSearch", Kind::StrList),
    ("ExtraHosts", Kind::StrList),
    ("GroupAdd", Kind::StrList),
    ("IpcMode", Kind::Str),
    ("Cgroup", Kind::Str),
    ("Links", Kind::StrList),
    ("OomScoreAdj", Kind::Int),
    ("PidMode", Kind::Str),
    ("Privileged", Kind::Bool),
    ("PublishAllPorts", Kind::Bool),
    ("ReadonlyRootfs", Kind::Bool),
    ("SecurityOpt", Kind::StrList),
    ("StorageOpt", Kind::StrMap),
    ("Tmpfs", Kind::StrMap),
    ("UTSMode", Kind::Str),
    ("UsernsMode", Kind::Str),
    ("ShmSize", Kind::Int),
    ("Sysctls", Kind::StrMap),
    ("Runtime", Kind::Str),
    ("Isolation", Kind::Str),
    ("MaskedPaths", Kind::StrList),
    ("ReadonlyPaths", Kind::StrList),
];

/// The fields of the engine's structs nested in HostConfig that the gate reads: their keys are
/// folded the same way (Go decodes them case-insensitively too).
pub(crate) const MOUNT_FIELDS: &[&str] = &[
    "Type",
    "Source",
    "Target",
    "ReadOnly",
    "Consistency",
    "BindOptions",
    "VolumeOptions",
    "TmpfsOptions",
    "ImageOptions",
    "ClusterOptions",
];
/// `Devices[i]`.
pub(crate) const DEVICE_FIELDS: &[&str] = &["PathOnHost", "PathInContainer", "CgroupPermissions"];
/// `DeviceRequests[i]`.
pub(crate) const DEVICE_REQUEST_FIELDS: &[&str] =
    &["Driver", "Count", "DeviceIDs", "Capabilities", "Options"];
/// `Ulimits[i]`.
pub(crate) const ULIMIT_FIELDS: &[&str] = &["Name", "Soft", "Hard"];
/// `LogConfig`.
pub(crate) const LOG_CONFIG_FIELDS: &[&str] = &["Type", "Config"];
/// `RestartPolicy`.
pub(crate) const RESTART_POLICY_FIELDS: &[&str] = &["Name", "MaximumRetryCount"];

/// The engine's spelling of the field `key` folds to, among `names`.
pub(crate) fn canonical<'a>(key: &str, names: &[&'a str]) -> Option<&'a str> {
    let folded = fold(key);
    names.iter().copied().find(|n| fold(n) == folded)
}

/// The type of a top-level HostConfig field, by its engine spelling.
pub(crate) fn kind_of(name: &str) -> Option<Kind> {
    FIELDS.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
}

/// `map` with every key in the engine's spelling (keys no field matches are kept as written) and
/// `null` values dropped (the engine leaves a field it reads as `null` at its default, so a
/// `null` override would silently drop the runner's value, a limit or a security list, instead
/// of keeping it). Two keys that fold to the same name are refused. `prefix` names the map in
/// errors (`docker.host_config`, `docker.host_config.Mounts[0]`).
pub(crate) fn canonical_map(
    map: &Map<String, Value>,
    names: &[&str],
    prefix: &str,
) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    let mut written: Vec<(String, &str)> = Vec::new();
    for (key, v) in map {
        let name = canonical(key, names).map(str::to_string);
        let folded = fold(key);
        if let Some((_, first)) = written.iter().find(|(f, _)| *f == folded) {
            let field = name.as_deref().unwrap_or(key);
            // Sorted, so the message does not depend on the map's iteration order.
            let (a, b) = if *first < key.as_str() {
                (*first, key.as_str())
            } else {
                (key.as_str(), *first)
            };
            return Err(Error::invalid(
                format!("{prefix}.{field}"),
                format!(
                    "set twice, as \"{a}\" and as \"{b}\": the engine reads keys in any letter case as one field, and which value it keeps depends on their order; keep one"
                ),
            ));
        }
        written.push((folded, key));
        if v.is_null() {
            continue;
        }
        out.insert(name.unwrap_or_else(|| key.clone()), v.clone());
    }
    Ok(out)
}

/// Reads `host_config` as the engine will: keys in its spelling, types checked, `null`s dropped.
pub(crate) fn read(map: &Map<String, Value>, prefix: &str) -> Result<Map<String, Value>> {
    let names: Vec<&str> = FIELDS.iter().map(|(n, _)| *n).collect();
    let out = canonical_map(map, &names, prefix)?;
    for (key, v) in &out {
        if let Some(kind) = kind_of(key) {
            if !kind.accepts(v) {
                return Err(Error::invalid(
                    format!("{prefix}.{key}"),
                    format!("expected {}, got {}", kind.expected(), describe(v)),
                ));
            }
        }
    }
    Ok(out)
}

/// The items of list field `key` of `map` (already type-checked), each a map with its keys in
/// the engine's spelling among `names`.
pub(crate) fn objects(
    map: &Map<String, Value>,
    key: &str,
    names: &[&str],
    prefix: &str,
) -> Result<Vec<Map<String, Value>>> {
    let Some(items) = map.get(key).and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let f = format!("{prefix}.{key}[{i}]");
            let m = item.as_object().ok_or_else(|| {
                Error::invalid(&f, format!("expected a map, got {}", describe(item)))
            })?;
            canonical_map(m, names, &f)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_fold_as_go_reads_them() {
        for k in ["privileged", "PRIVILEGED", "pRiViLeGeD", "Privileged"] {
            assert_eq!(canonical(k, &["Privileged", "PidMode"]), Some("Privileged"));
        }
        assert_eq!(canonical("Bind\u{17F}", &["Binds"]), Some("Binds"));
        assert_eq!(
            canonical("Mas\u{212A}edPaths", &["MaskedPaths"]),
            Some("MaskedPaths")
        );
        assert_eq!(canonical("Privilegeds", &["Privileged"]), None);
        // No other character folds to ASCII: a dotted capital I is not an I.
        assert_eq!(canonical("\u{130}pcMode", &["IpcMode"]), None);
    }

    #[test]
    fn read_canonicalises_checks_types_and_refuses_collisions() {
        let m = json!({"privileged": true, "pidMode": "host", "binds": ["/:/host"], "memory": null, "x-unknown": 1});
        let out = read(m.as_object().unwrap(), "docker.host_config").unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"Privileged": true, "PidMode": "host", "Binds": ["/:/host"], "x-unknown": 1})
        );
        let m = json!({"Privileged": false, "PRIVILEGED": true});
        assert_eq!(
            read(m.as_object().unwrap(), "docker.host_config").unwrap_err().to_string(),
            "invalid docker.host_config.Privileged: set twice, as \"PRIVILEGED\" and as \"Privileged\": the engine reads keys in any letter case as one field, and which value it keeps depends on their order; keep one"
        );
        let m = json!({"privileged": "true"});
        assert_eq!(
            read(m.as_object().unwrap(), "docker.host_config")
                .unwrap_err()
                .to_string(),
            "invalid docker.host_config.Privileged: expected true or false, got \"true\""
        );
        let m = json!({"Mounts": [{"type": "bind", "TYPE": "tmpfs"}]});
        let hc = read(m.as_object().unwrap(), "docker.host_config").unwrap();
        assert!(objects(&hc, "Mounts", MOUNT_FIELDS, "docker.host_config").is_err());
    }
}

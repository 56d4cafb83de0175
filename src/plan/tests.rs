//! The create body pinned: the JSON the engine is sent for a few representative configs.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;
use crate::config::{gate_override, EngineSockets, Gate};
use crate::plan::Mount;
use crate::resolve_docker_config;

fn body(docker: Value, allow: bool) -> Value {
    let config = resolve_docker_config(&docker).unwrap();
    let mounts = MountPlan::from_mounts(vec![
        Mount {
            source: "/ws".into(),
            target: "/workspace".into(),
            read_only: false,
            role: MountRole::Workspace,
        },
        Mount {
            source: "/state/sessions".into(),
            target: "/home/claude/.claude/projects/-workspace".into(),
            read_only: false,
            role: MountRole::Sessions,
        },
        Mount {
            source: String::new(),
            target: "/workspace/.herdctl".into(),
            read_only: true,
            role: MountRole::StateDirMask,
        },
    ]);
    let labels = BTreeMap::from([("dev.herdctl.agent".to_string(), "a".to_string())]);
    let sockets = EngineSockets::default();
    let gate = Gate {
        allow,
        network: config.network,
        sockets: &sockets,
    };
    let passed = gate_override(&config, &gate).unwrap();
    let b = create_body(&config, &mounts, &labels, passed.as_ref()).unwrap();
    serde_json::to_value(b).unwrap()
}

/// The create body as JSON, compared with what today's runner sends (as values: key order is
/// not something the engine can tell).
fn assert_body(docker: Value, allow: bool, want: &str) {
    let want: Value = serde_json::from_str(want).unwrap();
    assert_eq!(body(docker, allow), want);
}

/// The runner's defaults only.
#[test]
fn a_plain_config() {
    assert_body(
        json!({"user": "1000:1000", "network": "none", "image": "img:1"}),
        false,
        r#"{"Cmd":["sleep","infinity"],"Env":["HOME=/home/claude"],"ExposedPorts":{},"HostConfig":{"CapDrop":["ALL"],"GroupAdd":["1000"],"Init":true,"Memory":2147483648,"MemorySwap":2147483648,"Mounts":[{"ReadOnly":false,"Source":"/ws","Target":"/workspace","Type":"bind"},{"ReadOnly":false,"Source":"/state/sessions","Target":"/home/claude/.claude/projects/-workspace","Type":"bind"},{"ReadOnly":true,"Target":"/workspace/.herdctl","Type":"tmpfs"}],"NetworkMode":"none","PidsLimit":1024,"SecurityOpt":["no-new-privileges"]},"Image":"img:1","Labels":{"dev.herdctl.agent":"a"},"User":"1000:1000","WorkingDir":"/workspace"}"#,
    );
}

/// Every config field that reaches HostConfig: ports (two on one container port), tmpfs, CPU,
/// the pids limit, the user's group and a runtime.
#[test]
fn ports_tmpfs_cpu_group_and_runtime() {
    assert_body(
        json!({"user": "1000:1001", "network": "bridge", "image": "img:1", "memory": "512m",
        "ports": ["8080:80", "8081:80", "9000:90"], "tmpfs": ["/tmp:size=64m", "/run"],
        "cpu_shares": 512, "cpu_period": 100000, "cpu_quota": 50000, "pids_limit": 64,
        "runtime": "runsc"}),
        false,
        r#"{"Cmd":["sleep","infinity"],"Env":["HOME=/home/claude"],"ExposedPorts":{"80/tcp":{},"90/tcp":{}},"HostConfig":{"CapDrop":["ALL"],"CpuPeriod":100000,"CpuQuota":50000,"CpuShares":512,"GroupAdd":["1001"],"Init":true,"Memory":536870912,"MemorySwap":536870912,"Mounts":[{"ReadOnly":false,"Source":"/ws","Target":"/workspace","Type":"bind"},{"ReadOnly":false,"Source":"/state/sessions","Target":"/home/claude/.claude/projects/-workspace","Type":"bind"},{"ReadOnly":true,"Target":"/workspace/.herdctl","Type":"tmpfs"}],"NetworkMode":"bridge","PidsLimit":64,"PortBindings":{"80/tcp":[{"HostPort":"8080"},{"HostPort":"8081"}],"90/tcp":[{"HostPort":"9000"}]},"Runtime":"runsc","SecurityOpt":["no-new-privileges"],"Tmpfs":{"/run":"","/tmp":"size=64m"}},"Image":"img:1","Labels":{"dev.herdctl.agent":"a"},"User":"1000:1001","WorkingDir":"/workspace"}"#,
    );
}

/// An override through the merge: keys in other letter cases, lists joined, `Memory` carrying
/// `MemorySwap`, nested items (Devices, DeviceRequests, Ulimits, Mounts) with unknown keys kept,
/// and keys the runner has no field for.
#[test]
fn a_host_config_override_with_the_opt_in() {
    assert_body(
        json!({"user": "1000:1000", "network": "none", "image": "img:1", "host_config": {
            "shmSize": 67108864, "memory": 1073741824, "capDrop": ["NET_RAW"],
            "SecurityOpt": ["no-new-privileges=false", "seccomp=unconfined"],
            "devices": [{"pathOnHost": "/dev/null", "PathInContainer": "/dev/gpu", "cgroupPermissions": "rw", "x-device": true}],
            "DeviceRequests": [{"driver": "nvidia", "Count": -1, "Capabilities": [["gpu"]]}],
            "Ulimits": [{"name": "nofile", "Soft": 1024, "Hard": 2048}],
            "Mounts": [{"Type": "tmpfs", "target": "/scratch", "TmpfsOptions": {"SizeBytes": 1000}},
                {"type": "bind", "Source": "/data", "Target": "/data", "readOnly": true,
                 "bindOptions": {"Propagation": "rprivate"}, "x-mount": 2}],
            "Sysctls": {"net.ipv4.ip_forward": "1"}, "GroupAdd": ["44"], "CgroupnsMode": "private",
            "PortBindings": {"22/tcp": [{"HostIp": "127.0.0.1", "HostPort": "2222"}]},
            "Privileged": false, "CapAdd": ["NET_ADMIN"], "x-unknown": {"a": 1}, "PidsLimit": -1,
        }}),
        true,
        r#"{"Cmd":["sleep","infinity"],"Env":["HOME=/home/claude"],"ExposedPorts":{},"HostConfig":{"CapAdd":["NET_ADMIN"],"CapDrop":["ALL","NET_RAW"],"CgroupnsMode":"private","DeviceRequests":[{"Capabilities":[["gpu"]],"Count":-1,"Driver":"nvidia"}],"Devices":[{"CgroupPermissions":"rw","PathInContainer":"/dev/gpu","PathOnHost":"/dev/null","x-device":true}],"GroupAdd":["44"],"Init":true,"Memory":1073741824,"MemorySwap":1073741824,"Mounts":[{"ReadOnly":false,"Source":"/ws","Target":"/workspace","Type":"bind"},{"ReadOnly":false,"Source":"/state/sessions","Target":"/home/claude/.claude/projects/-workspace","Type":"bind"},{"ReadOnly":true,"Target":"/workspace/.herdctl","Type":"tmpfs"},{"Target":"/scratch","TmpfsOptions":{"SizeBytes":1000},"Type":"tmpfs"},{"BindOptions":{"Propagation":"rprivate"},"ReadOnly":true,"Source":"/data","Target":"/data","Type":"bind","x-mount":2}],"NetworkMode":"none","PidsLimit":-1,"PortBindings":{"22/tcp":[{"HostIp":"127.0.0.1","HostPort":"2222"}]},"Privileged":false,"SecurityOpt":["no-new-privileges=false","seccomp=unconfined"],"ShmSize":67108864,"Sysctls":{"net.ipv4.ip_forward":"1"},"Ulimits":[{"Hard":2048,"Name":"nofile","Soft":1024}],"x-unknown":{"a":1}},"Image":"img:1","Labels":{"dev.herdctl.agent":"a"},"User":"1000:1000","WorkingDir":"/workspace"}"#,
    );
}

/// A value the engine could not read for a field the runner types is refused before create,
/// naming the field (the engine refused it at create).
#[test]
fn an_override_value_of_the_wrong_type_names_its_field() {
    let docker = json!({"user": "1000:1000", "network": "none", "host_config": {
        "Mounts": [{"Type": "tmpfs", "Target": "/scratch", "ReadOnly": "yes"}]}});
    let config = resolve_docker_config(&docker).unwrap();
    let sockets = EngineSockets::default();
    let gate = Gate {
        allow: false,
        network: config.network,
        sockets: &sockets,
    };
    let mounts = MountPlan::from_mounts(Vec::new());
    let passed = gate_override(&config, &gate).unwrap();
    let e = create_body(&config, &mounts, &BTreeMap::new(), passed.as_ref()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid docker.host_config.Mounts: not what the engine reads there: invalid type: string \"yes\", expected a boolean"
    );
}

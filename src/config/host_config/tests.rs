use super::*;
use crate::resolve_docker_config;
use serde_json::json;

/// The runner's two steps: the gate, then the merge.
fn gated_merge(generated: &Value, c: &DockerConfig, g: &Gate<'_>) -> Result<Value> {
    match gate_override(c, g)? {
        Some(passed) => merge(generated, &passed),
        None => Ok(generated.clone()),
    }
}

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
    resolve_docker_config(
        &json!({"host_config": hc, "allow_unsafe_host_config": allow, "network": "none"}),
    )
}

fn merged(hc: Value, allow: bool) -> Result<Value> {
    merge_host_config(&generated(), &config(hc, allow)?)
}

fn refusal(hc: Value) -> String {
    merged(hc.clone(), false)
        .expect_err(&format!("{hc} passed without the opt-in"))
        .to_string()
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
fn keys_mean_what_they_mean_to_the_engine_in_any_letter_case() {
    // Each of these ran a loosened job on the old exact-key gate.
    for (hc, field) in [
        (json!({"privileged": true}), "Privileged"),
        (json!({"PRIVILEGED": true}), "Privileged"),
        (json!({"pidMode": "host"}), "PidMode"),
        (json!({"ipcmode": "host"}), "IpcMode"),
        (json!({"capadd": ["SYS_ADMIN"]}), "CapAdd"),
        (
            json!({"securityopt": ["seccomp=unconfined"]}),
            "SecurityOpt[0]",
        ),
        (
            json!({"\u{17F}ecurityOpt": ["apparmor=unconfined"]}),
            "SecurityOpt[0]",
        ),
        (json!({"mas\u{212A}edpaths": []}), "MaskedPaths"),
    ] {
        let e = refusal(hc.clone());
        assert!(
            e.starts_with(&format!("invalid docker.host_config.{field}: ")),
            "{hc}: {e}"
        );
        assert!(e.ends_with(ALLOW_HOW), "{hc}: {e}");
        assert!(merged(hc, true).is_ok());
    }
    // Binds in any case: refused even with the opt-in.
    for hc in [
        json!({"binds": ["/:/host:ro"]}),
        json!({"BINDS": ["/:/host"]}),
    ] {
        let e = config(hc.clone(), true).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid docker.host_config.Binds: not accepted"),
            "{hc}: {e}"
        );
    }
    // A lower-case key merges onto the generated field instead of sitting beside it (the
    // engine would read both, and keep the last).
    let m = merged(json!({"capdrop": [], "memory": 536870912}), false).unwrap();
    assert_eq!(m["CapDrop"], json!(["ALL"]));
    assert_eq!(
        (m["Memory"].clone(), m["MemorySwap"].clone()),
        (json!(536870912), json!(536870912))
    );
    assert!(m.get("capdrop").is_none() && m.get("memory").is_none());
    // The resolved config carries the engine's spelling.
    assert_eq!(
        config(json!({"shmsize": 1}), false)
            .unwrap()
            .host_config_override,
        Some(json!({"ShmSize": 1}))
    );
}

#[test]
fn two_keys_for_one_field_are_refused() {
    for hc in [
        json!({"Privileged": false, "privileged": true}),
        json!({"CapDrop": ["ALL"], "capDrop": []}),
        json!({"Binds": [], "bind\u{17F}": ["/:/h"]}),
    ] {
        let e = config(hc.clone(), true).unwrap_err().to_string();
        assert!(e.contains(": set twice, as "), "{hc}: {e}");
    }
    // Nested structs are read the same way.
    let e = config(
        json!({"Mounts": [{"Type": "tmpfs", "type": "bind", "Target": "/x"}]}),
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("invalid docker.host_config.Mounts[0].Type: set twice"),
        "{e}"
    );
}

#[test]
fn the_refusal_says_exactly_how_to_opt_in() {
    assert_eq!(
        refusal(json!({"Privileged": true})),
        format!("invalid docker.host_config.Privileged: true gives the job every capability and every host device; {ALLOW_HOW}")
    );
    assert!(ALLOW_HOW.contains("agents[].overrides.docker"));
    assert!(ALLOW_HOW.contains("HERDCTL_CONTAINER_ALLOW_UNSAFE_HOST_CONFIG=1"));
    assert!(ALLOW_HOW.contains("allowUnsafeHostConfig: true"));
}

#[test]
fn an_allowlist_passes_harmless_keys_and_nothing_else() {
    let harmless = json!({
        "ShmSize": 1 << 26, "CpuShares": 512, "NanoCpus": 1_000_000_000, "CpusetCpus": "0",
        "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}, {"Name": "NPROC", "Soft": 1, "Hard": 1}],
        "Dns": ["127.0.0.1"],
        "ExtraHosts": ["a:127.0.0.1"], "ReadonlyRootfs": true, "PidsLimit": 100,
        "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}},
        "RestartPolicy": {"Name": "no"}, "Tmpfs": {"/cache": "size=10m"},
        "Mounts": [{"Type": "tmpfs", "Target": "/scratch"}],
        "DeviceRequests": [{"Driver": "nvidia", "Count": -1, "Capabilities": [["gpu"]]}],
        "Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/null-gpu", "CgroupPermissions": "rwm"}],
        "NetworkMode": "none", "IpcMode": "private", "CgroupnsMode": "private",
        "Privileged": false, "CapAdd": [], "PidMode": "", "OomScoreAdj": 100,
        "SecurityOpt": ["no-new-privileges=true"], "Runtime": "runc", "AutoRemove": false,
    });
    let m = merged(harmless, false).unwrap();
    assert_eq!(m["Devices"][0]["PathInContainer"], "/dev/null-gpu");
    for (hc, field) in [
        (json!({"Sysctls": {"net.ipv4.ip_forward": "1"}}), "Sysctls"),
        (json!({"UsernsMode": "host"}), "UsernsMode"),
        (json!({"UTSMode": "host"}), "UTSMode"),
        (json!({"CgroupnsMode": "host"}), "CgroupnsMode"),
        (json!({"CgroupParent": "/"}), "CgroupParent"),
        (json!({"VolumesFrom": ["other"]}), "VolumesFrom"),
        (json!({"ReadonlyPaths": []}), "ReadonlyPaths"),
        (
            json!({"DeviceCgroupRules": ["c *:* rwm"]}),
            "DeviceCgroupRules",
        ),
        (json!({"Capabilities": ["CAP_SYS_ADMIN"]}), "Capabilities"),
        (
            json!({"PortBindings": {"22/tcp": [{"HostPort": "2222"}]}}),
            "PortBindings",
        ),
        (json!({"NetworkMode": "host"}), "NetworkMode"),
        (json!({"NetworkMode": "container:other"}), "NetworkMode"),
        (json!({"LogConfig": {"type": "syslog"}}), "LogConfig.Type"),
        (
            json!({"Ulimits": [{"name": "rtprio", "Soft": 99, "Hard": 99}]}),
            "Ulimits[0].Name",
        ),
        (
            json!({"Ulimits": [{"Name": "RTPRIO", "Soft": 99, "Hard": 99}]}),
            "Ulimits[0].Name",
        ),
        (json!({"OomScoreAdj": -1000}), "OomScoreAdj"),
        (
            json!({"RestartPolicy": {"Name": "always"}}),
            "RestartPolicy.Name",
        ),
        (
            json!({"Mounts": [{"Type": "bind", "Source": "/", "Target": "/host"}]}),
            "Mounts[0]",
        ),
        (
            json!({"Mounts": [{"Type": "volume", "Target": "/v", "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": {"o": "bind", "device": "/"}}}}]}),
            "Mounts[0]",
        ),
        (json!({"GroupAdd": ["0"]}), "GroupAdd[0]"),
        (
            json!({"Devices": [{"PathOnHost": "/dev"}]}),
            "Devices[0].PathOnHost",
        ),
        // Unknown to this runner: maybe known to a newer engine.
        (json!({"FutureEscapeHatch": true}), "FutureEscapeHatch"),
        // A dotless i folds to no ASCII letter in Go (old or new): an unknown key, refused
        // all the same should an engine fold it further.
        (json!({"Pr\u{131}vileged": true}), "Pr\u{131}vileged"),
        // Values are read exactly as the engine reads them: it knows no `TMPFS`. (Nor `RUNC`:
        // `Runtime` is the config's runtime, checked against the engine's own list of runtimes
        // when the job starts; see `isolation/tests.rs`.)
        (
            json!({"Mounts": [{"type": "TMPFS", "Target": "/t"}]}),
            "Mounts[0]",
        ),
        (json!({"GroupAdd": ["disk"]}), "GroupAdd[0]"),
        (
            json!({"Devices": [{"PathOnHost": "/dev/mem"}]}),
            "Devices[0].PathOnHost",
        ),
    ] {
        let e = refusal(hc.clone());
        assert!(
            e.starts_with(&format!("invalid docker.host_config.{field}: ")),
            "{hc}: {e}"
        );
        assert!(merged(hc, true).is_ok());
    }
    // A tmpfs over the runner's mounts, however the path is spelt, is refused even with the
    // opt-in.
    for path in [
        "/workspace/../home/claude/.claude",
        "//home/claude/./.claude/",
        "/home",
    ] {
        let e = config(json!({"Tmpfs": {path: ""}}), true)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid docker.host_config.Tmpfs: path "),
            "{path}: {e}"
        );
    }
    // Types are checked, so the engine's create never fails on a mistyped override.
    assert_eq!(
        config(json!({"ShmSize": "64m"}), false)
            .unwrap_err()
            .to_string(),
        "invalid docker.host_config.ShmSize: expected a whole number, got \"64m\""
    );
}

#[test]
fn security_options_are_read_by_value() {
    for off in [
        "no-new-privileges=false",
        "no-new-privileges:false",
        "no-new-privileges=0",
        "no-new-privileges=f",
        "no-new-privileges=FALSE",
        "no-new-privileges=False",
    ] {
        let e = refusal(json!({"SecurityOpt": [off]}));
        assert!(
            e.starts_with(&format!(
                "invalid docker.host_config.SecurityOpt[0]: \"{off}\" turns no-new-privileges off"
            )),
            "{e}"
        );
        // With the opt-in, the runner's own no-new-privileges goes too, so the intent holds.
        let m = merged(json!({"SecurityOpt": [off]}), true).unwrap();
        assert_eq!(m["SecurityOpt"], json!([off]));
    }
    for opt in [
        "seccomp=unconfined",
        "seccomp=/p.json",
        "apparmor=unconfined",
        "label=disable",
        "label:disable",
        "disable",
        "systempaths=unconfined",
        "unmask=ALL",
        "writable-cgroups=true",
        "something-new=1",
    ] {
        let e = refusal(json!({"SecurityOpt": ["no-new-privileges", opt]}));
        assert!(
            e.starts_with("invalid docker.host_config.SecurityOpt[1]: "),
            "{opt}: {e}"
        );
    }
    // Only turning it on passes, and the lists are joined.
    let m = merged(
        json!({"SecurityOpt": ["no-new-privileges:true"], "CapDrop": ["NET_RAW"]}),
        false,
    )
    .unwrap();
    assert_eq!(
        m["SecurityOpt"],
        json!(["no-new-privileges", "no-new-privileges:true"])
    );
    assert_eq!(m["CapDrop"], json!(["ALL", "NET_RAW"]));
    // An empty CapDrop cannot bring capabilities back.
    assert_eq!(
        merged(json!({"CapDrop": []}), false).unwrap()["CapDrop"],
        json!(["ALL"])
    );
}

#[test]
fn merge_refuses_unsafe_even_when_the_config_was_built_by_hand() {
    let mut c = resolve_docker_config(&json!({})).unwrap();
    c.host_config_override = Some(json!({"privileged": true}));
    assert!(merge_host_config(&generated(), &c).is_err());
    c.allow_unsafe_host_config = true;
    assert_eq!(
        merge_host_config(&generated(), &c).unwrap()["Privileged"],
        true
    );
    c.host_config_override = Some(json!({"binds": ["/:/h"]}));
    assert!(merge_host_config(&generated(), &c).is_err());
}

#[test]
fn the_engine_socket_is_not_mounted_without_the_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("engine.sock");
    let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let sockets = EngineSockets::find(Some(&sock));
    let c = config(
        json!({"Mounts": [{"Type": "bind", "Source": sock.to_str().unwrap(), "Target": "/s"}]}),
        false,
    )
    .unwrap();
    let gate = |allow| Gate {
        allow,
        network: NetworkMode::None,
        sockets: &sockets,
    };
    let e = gated_merge(&generated(), &c, &gate(false))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("is the engine's socket") && e.contains("root on the host"),
        "{e}"
    );
    assert!(gated_merge(&generated(), &c, &gate(true)).is_ok());
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
        json!({"Mounts": [{"Type": "tmpfs", "target": "/workspace/sub"}]}),
        json!({"Mounts": [{"Type": "bind", "Source": "/x"}]}),
        json!({"Mounts": "x"}),
        json!({"Tmpfs": {"/home/claude/.claude": ""}}),
        json!({"Binds": ["/x:/y"]}),
        json!({"AutoRemove": true}),
        json!({"autoremove": true}),
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
    // A null is no override: the runner's limit stays (the engine would read null as none).
    let m = merged(json!({"Memory": null, "SecurityOpt": null}), false).unwrap();
    assert_eq!(m["Memory"], 1073741824);
    assert_eq!(m["SecurityOpt"], json!(["no-new-privileges"]));
}

/// A key twice in the JSON text itself (a fleet file read as JSON): the last one is the value,
/// as in Go's decoder, and that is what the gate reads and what the engine is sent (the body is
/// written anew, with the key once).
#[test]
fn a_key_twice_in_the_text_is_read_as_the_engine_reads_it() {
    let hc: Value = serde_json::from_str(r#"{"Privileged": false, "Privileged": true}"#).unwrap();
    assert!(refusal(hc.clone()).starts_with("invalid docker.host_config.Privileged: "));
    let m = merged(hc, true).unwrap();
    assert_eq!(m["Privileged"], true);
    // Labels in the runner's prefix, in any letter case, are the runner's.
    let e = resolve_docker_config(&json!({"labels": {"DEV.Herdctl.agent": "x"}}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("dev.herdctl. prefix"), "{e}");
}

use super::*;
use crate::{host_user, resolve_docker_config, resolve_layered};
use serde_json::{json, Value};

fn resolve(v: Value) -> Result<DockerConfig> {
    resolve_docker_config(&v)
}

fn err(v: Value) -> String {
    resolve(v).expect_err("expected an error").to_string()
}

#[test]
fn defaults_match_herdctl() {
    for empty in [Value::Null, json!({})] {
        let c = resolve(empty).unwrap();
        assert!(!c.enabled);
        assert!(c.ephemeral);
        assert_eq!(c.image, "herdctl/runtime:latest");
        assert_eq!(c.network, NetworkMode::Bridge);
        assert_eq!(c.memory_bytes, 2 * 1024 * 1024 * 1024);
        assert_eq!(c.max_containers, 5);
        assert_eq!(c.workspace_mode, AccessMode::Rw);
        assert_eq!(c.user, host_user());
        assert!(!c.user.is_root());
        assert_eq!(
            (c.cpu_shares, c.cpu_period, c.cpu_quota, c.pids_limit),
            (None, None, None, None)
        );
        assert!(c.host_config_override.is_none());
        assert!(c.volumes.is_empty() && c.ports.is_empty() && c.tmpfs.is_empty());
        assert!(c.env.is_empty() && c.labels.is_empty());
        assert!(!c.allow_unsafe_host_config);
    }
    assert_eq!(
        parse_memory_to_bytes(DEFAULT_MEMORY_LIMIT).unwrap(),
        DEFAULT_MEMORY_BYTES
    );
}

#[test]
fn yaml_shape_resolves_every_field() {
    let c = resolve(json!({
        "enabled": true, "ephemeral": false, "base_image": "old:1", "network": "none",
        "memory": "1.5g", "cpu_shares": 512, "cpu_period": 100000, "cpu_quota": 50000,
        "user": "0:0", "max_containers": 2, "volumes": ["/data:/data:ro", "/x:/y"],
        "workspace_mode": "ro", "env": {"A": "1"}, "ports": ["8080:80", 3000],
        "tmpfs": ["/tmp:size=100m"], "pids_limit": 64, "labels": {"team": "x"},
        "host_config": {"ShmSize": 1}, "allow_unsafe_host_config": false,
    }))
    .unwrap();
    assert!(c.enabled && !c.ephemeral);
    assert_eq!(c.image, "old:1");
    assert_eq!(c.network, NetworkMode::None);
    assert_eq!(c.memory_bytes, 1610612736);
    assert_eq!(
        (c.cpu_shares, c.cpu_period, c.cpu_quota),
        (Some(512), Some(100000), Some(50000))
    );
    assert!(
        c.user.is_root(),
        "root only when written explicitly, and then honoured"
    );
    assert_eq!(c.max_containers, 2);
    assert_eq!(c.volumes[0].mode, AccessMode::Ro);
    assert_eq!(c.volumes[1].container_path, "/y");
    assert_eq!(
        c.ports[1],
        PortBinding {
            host_port: 3000,
            container_port: 3000
        }
    );
    assert_eq!(c.tmpfs[0].options.as_deref(), Some("size=100m"));
    assert_eq!(c.pids_limit, Some(64));
    assert_eq!(c.host_config_override, Some(json!({"ShmSize": 1})));
    // image wins over base_image, as in herdctl.
    assert_eq!(
        resolve(json!({"image": "new:2", "base_image": "old:1"}))
            .unwrap()
            .image,
        "new:2"
    );
    // A numeric user (YAML `user: 1000`) and a numeric memory (bytes).
    let c = resolve(json!({"user": 1000, "memory": 8388608})).unwrap();
    assert_eq!(
        c.user,
        UserSpec {
            uid: 1000,
            gid: None
        }
    );
    assert_eq!(c.memory_bytes, 8 << 20);
}

/// What herdctl's `resolveDockerConfig` returns (camelCase, resolved), as JSON.
fn herdctl_resolved() -> Value {
    json!({
        "enabled": true, "ephemeral": true, "image": "herdctl/runtime:latest", "network": "bridge",
        "memoryBytes": 2147483648u64, "cpuShares": 512, "user": "1000:1000", "maxContainers": 5,
        "volumes": [{"hostPath": "/data", "containerPath": "/data", "mode": "ro"}],
        "workspaceMode": "rw", "env": {"GITHUB_TOKEN": "ghp_x"},
        "ports": [{"hostPort": 8080, "containerPort": 80}],
        "tmpfs": [{"path": "/tmp", "options": "size=1m"}, {"path": "/run"}],
        "pidsLimit": 100, "labels": {"a": "b"}, "hostConfigOverride": {"ShmSize": 1},
    })
}

#[test]
fn camel_case_shape_resolves_and_round_trips() {
    let c = resolve(herdctl_resolved()).unwrap();
    assert_eq!(c.memory_bytes, 2 << 30);
    assert_eq!(c.cpu_shares, Some(512));
    assert_eq!(
        c.volumes[0],
        VolumeMount {
            host_path: "/data".into(),
            container_path: "/data".into(),
            mode: AccessMode::Ro
        }
    );
    assert_eq!(
        c.ports[0],
        PortBinding {
            host_port: 8080,
            container_port: 80
        }
    );
    assert_eq!(
        c.tmpfs[1],
        TmpfsMount {
            path: "/run".into(),
            options: None
        }
    );
    assert_eq!(c.host_config_override, Some(json!({"ShmSize": 1})));

    // Serialises to herdctl's shape, and deserialises back to the same value.
    let out = serde_json::to_value(&c).unwrap();
    let mut want = herdctl_resolved();
    want["allowUnsafeHostConfig"] = json!(false);
    assert_eq!(out, want);
    let back: DockerConfig = serde_json::from_value(out).unwrap();
    assert_eq!(back, c);
    // Deserialising goes through the same validation.
    let bad: std::result::Result<DockerConfig, _> =
        serde_json::from_value(json!({"memoryBytes": 5}));
    assert!(bad
        .unwrap_err()
        .to_string()
        .starts_with("invalid docker.memory"));
}

#[test]
fn unknown_and_doubled_fields() {
    assert_eq!(
        err(json!({"memroy": "2g"})),
        "invalid docker.memroy: unknown field; expected one of enabled, ephemeral, image, base_image, network, memory, cpu_shares, cpu_period, cpu_quota, user, max_containers, volumes, workspace_mode, env, ports, tmpfs, pids_limit, labels, runtime, host_config, allow_unsafe_host_config"
    );
    assert_eq!(
        err(json!({"memory": "2g", "memoryBytes": 5})),
        "invalid docker.memory: set twice, as \"memory\" and as \"memoryBytes\"; keep one"
    );
    assert_eq!(
        err(json!([1])),
        "invalid docker: expected a map of docker options, got a list"
    );
}

#[test]
fn invalid_values_name_field_value_and_form() {
    let cases: &[(Value, &str)] = &[
        (json!({"network": "Bridge"}), "invalid docker.network: \"Bridge\" is not a network mode; expected \"none\", \"bridge\" or \"host\""),
        (json!({"network": "overlay"}), "invalid docker.network: \"overlay\" is not a network mode"),
        (json!({"memory": "1x"}), "invalid docker.memory: Invalid memory format: \"1x\" is not a size"),
        (json!({"memory": "-1g"}), "invalid docker.memory: Invalid memory format: \"-1g\" is not a size"),
        (json!({"memory": "g"}), "invalid docker.memory: Invalid memory format: \"g\" is not a size"),
        (json!({"memory": ""}), "invalid docker.memory: Invalid memory format: \"\" is not a size"),
        (json!({"memory": "1m"}), "invalid docker.memory: \"1m\" is below the engine's minimum of 6 MiB; expected at least \"6m\""),
        (json!({"memory": "6291455"}), "invalid docker.memory: \"6291455\" is below the engine's minimum"),
        (json!({"memory": true}), "invalid docker.memory: expected a size like \"2g\" or a number of bytes, got true"),
        (json!({"memoryBytes": "2g"}), "invalid docker.memory: expected a size"),
        (json!({"memory": -5}), "invalid docker.memory: -5 is not a size"),
        (json!({"user": "root"}), "invalid docker.user: \"root\" is not a numeric user"),
        (json!({"user": "1000:"}), "invalid docker.user: \"1000:\" is not a numeric user"),
        (json!({"user": -1}), "invalid docker.user: \"-1\" is not a numeric user"),
        (json!({"enabled": "yes"}), "invalid docker.enabled: expected true or false, got \"yes\""),
        (json!({"cpu_shares": 0}), "invalid docker.cpu_shares: expected a positive integer, got 0"),
        (json!({"cpu_shares": 1.5}), "invalid docker.cpu_shares: expected a positive integer, got 1.5"),
        (json!({"pids_limit": "100"}), "invalid docker.pids_limit: expected a positive integer, got \"100\""),
        (json!({"max_containers": 5000000000u64}), "invalid docker.max_containers: 5000000000 is too large"),
        (json!({"cpu_period": 999}), "invalid docker.cpu_period: 999 is out of range; expected microseconds from 1000 to 1000000"),
        (json!({"cpu_quota": 999}), "invalid docker.cpu_quota: 999 is below the engine's minimum"),
        (json!({"workspace_mode": "readonly"}), "invalid docker.workspace_mode: \"readonly\" is not a mount mode; expected \"ro\" or \"rw\""),
        (json!({"volumes": ["/a:/b", "/only/one"]}), "invalid docker.volumes[1]: Invalid volume format: \"/only/one\" is not a volume"),
        (json!({"volumes": ["/a:/b:rw2"]}), "invalid docker.volumes[0]: Invalid volume mode: \"rw2\" in \"/a:/b:rw2\" is neither"),
        (json!({"volumes": ["rel:/b"]}), "invalid docker.volumes[0]: \"rel:/b\": host path \"rel\" is not absolute"),
        (json!({"volumes": ["/a:rel"]}), "invalid docker.volumes[0]: \"/a:rel\": container path \"rel\" is not absolute"),
        (json!({"volumes": ["/a:/workspace"]}), "invalid docker.volumes[0]: \"/a:/workspace\": container path /workspace overlaps /workspace"),
        (json!({"volumes": ["/a:/home/claude/.claude/projects/-workspace/x"]}), "invalid docker.volumes[0]: \"/a:/home/claude/.claude/projects/-workspace/x\": container path /home/claude/.claude/projects/-workspace/x overlaps /home/claude/.claude/projects/-workspace, where the runner mounts the session directory"),
        (json!({"volumes": [{"hostPath": "/a", "containerPath": "/workspace"}]}), "invalid docker.volumes[0]: \"/a:/workspace:rw\": container path /workspace overlaps"),
        (json!({"volumes": "/a:/b"}), "invalid docker.volumes: expected a list, got \"/a:/b\""),
        (json!({"volumes": ["/a:/b", "/c:/b/"]}), "invalid docker.volumes[1]: container path /b is already used by docker.volumes[0]"),
        (json!({"volumes": ["/a:/t"], "tmpfs": ["/t"]}), "invalid docker.tmpfs[0]: container path /t is already used by docker.volumes[0]"),
        (json!({"ports": ["80:80:80"]}), "invalid docker.ports[0]: Invalid port format: \"80:80:80\" is not a port binding"),
        (json!({"ports": [0]}), "invalid docker.ports[0]: Invalid port format: \"0\" is not a port binding"),
        (json!({"ports": ["65536"]}), "invalid docker.ports[0]: Invalid port format: \"65536\" is not a port binding"),
        (json!({"ports": [{"hostPort": 1, "containerPort": 70000}]}), "invalid docker.ports[0]: Invalid port format: \"1:70000\" is not a port binding"),
        (json!({"tmpfs": ["tmp"]}), "invalid docker.tmpfs[0]: \"tmp\": container path \"tmp\" is not absolute"),
        (json!({"tmpfs": ["/workspace"]}), "invalid docker.tmpfs[0]: \"/workspace\": container path /workspace overlaps /workspace"),
        (json!({"tmpfs": [{"path": "/x", "options": 3}]}), "invalid docker.tmpfs[0]: options: expected a string"),
        (json!({"labels": {"dev.herdctl.agent": "x"}}), "invalid docker.labels.dev.herdctl.agent: label keys may not be empty or use the dev.herdctl. prefix"),
        (json!({"labels": {"a": 1}}), "invalid docker.labels.a: expected a string value, got 1"),
        (json!({"env": {"A=B": "x"}}), "invalid docker.env: \"A=B\" is not a variable name"),
        (json!({"env": {"TOKEN": 12345}}), "invalid docker.env.TOKEN: expected a string value (quote numbers and booleans)"),
        (json!({"host_config": "x"}), "invalid docker.host_config: expected a map of engine HostConfig fields, got \"x\""),
        (json!({"image": ""}), "invalid docker.image: \"\" is not an image reference"),
        (json!({"image": "a b"}), "invalid docker.image: \"a b\" is not an image reference"),
    ];
    for (input, want) in cases {
        let e = err(input.clone());
        assert!(e.starts_with(want), "{input}:\n  got  {e}\n  want {want}");
    }
}

#[test]
fn env_values_never_appear_in_errors() {
    let e = err(json!({"env": {"API_TOKEN": "sk-very-secret\u{0}"}}));
    assert!(!e.contains("sk-very-secret"), "{e}");
    assert_eq!(
        e,
        "invalid docker.env.API_TOKEN: the value contains a NUL byte, which env cannot carry"
    );
}

#[test]
fn user_spec_serde() {
    let u: UserSpec = serde_json::from_value(json!("1000:1000")).unwrap();
    assert_eq!(u, DEFAULT_NON_ROOT_USER);
    assert_eq!(serde_json::to_value(u).unwrap(), json!("1000:1000"));
    assert!(serde_json::from_value::<UserSpec>(json!("x")).is_err());
}

#[test]
fn runtime_is_one_field_in_two_spellings() {
    assert_eq!(resolve(json!({})).unwrap().runtime, None);
    let c = resolve(json!({"runtime": "runsc"})).unwrap();
    assert_eq!(c.runtime.as_deref(), Some("runsc"));
    // The resolved shape names it the same, and reads back.
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["runtime"], "runsc");
    assert_eq!(resolve(v).unwrap(), c);
    // herdctl's schema lets host_config through, in its resolved shape too, and the engine reads
    // the key in any letter case.
    for hc in [
        json!({"host_config": {"Runtime": "runsc"}}),
        json!({"hostConfigOverride": {"runtime": "runsc"}}),
        json!({"host_config": {"RUNTIME": "runsc"}, "runtime": "runsc"}),
    ] {
        assert_eq!(
            resolve(hc.clone()).unwrap().runtime.as_deref(),
            Some("runsc"),
            "{hc}"
        );
    }
    // Empty is the engine's default, as the engine reads it.
    assert_eq!(resolve(json!({"runtime": ""})).unwrap().runtime, None);
    assert_eq!(
        resolve(json!({"host_config": {"Runtime": ""}}))
            .unwrap()
            .runtime,
        None
    );
    let cases = [
        (json!({"runtime": "runsc", "host_config": {"Runtime": "runc"}}), "invalid docker.runtime: \"runsc\" differs from docker.host_config.Runtime \"runc\"; set the runtime once"),
        (json!({"host_config": {"Runtime": "runsc", "runtime": "runc"}}), "invalid docker.host_config.Runtime: set twice, as \"Runtime\" and as \"runtime\""),
        (json!({"runtime": 3}), "invalid docker.runtime: expected a runtime's name like \"runsc\", got 3"),
        (json!({"runtime": "run sc"}), "invalid docker.runtime: \"run sc\" is not a runtime name"),
        (json!({"runtime": "../runsc"}), "invalid docker.runtime: \"../runsc\" is not a runtime name"),
        (json!({"host_config": {"Runtime": ["runsc"]}}), "invalid docker.host_config.Runtime: expected a string, got a list"),
        (json!({"host_config": {"Runtime": "a/b"}}), "invalid docker.host_config.Runtime: \"a/b\" is not a runtime name"),
    ];
    for (input, want) in cases {
        let e = err(input.clone());
        assert!(e.starts_with(want), "{input}:\n  got  {e}\n  want {want}");
    }
}

#[test]
fn runtime_layers_as_one_field_and_an_agent_may_only_choose_a_sandbox() {
    let layered = |fleet: Value, entry: Value, agent: Value| {
        resolve_layered(&DockerLayers {
            fleet_defaults: Some(&fleet),
            fleet_agent: Some(&entry),
            agent: Some(&agent),
        })
    };
    // The fleet's entry replaces the defaults' runtime, in either spelling.
    let c = layered(
        json!({"host_config": {"Runtime": "runsc", "ShmSize": 1}}),
        json!({"runtime": "runc"}),
        json!({}),
    )
    .unwrap();
    assert_eq!(c.runtime.as_deref(), Some("runc"));
    assert_eq!(c.host_config_override, Some(json!({"ShmSize": 1})));
    let c = layered(
        json!({"runtime": "runc"}),
        json!({"host_config": {"Runtime": "runsc"}}),
        json!({}),
    )
    .unwrap();
    assert_eq!(c.runtime.as_deref(), Some("runsc"));
    // An agent may put itself in a sandbox, over the default or runc.
    for fleet in [
        json!({}),
        json!({"runtime": "runc"}),
        json!({"host_config": {"Runtime": "runc"}}),
    ] {
        let c = layered(fleet.clone(), json!({}), json!({"runtime": "runsc"})).unwrap();
        assert_eq!(c.runtime.as_deref(), Some("runsc"), "{fleet}");
    }
    // ...and keep the fleet's.
    assert!(layered(
        json!({"runtime": "runsc"}),
        json!({}),
        json!({"runtime": "runsc"})
    )
    .is_ok());
    // Never out of one, nor into another, nor into a runtime not known to be a sandbox.
    for (fleet, agent, gives) in [
        (json!({"runtime": "runsc"}), "runc", "\"runsc\""),
        (
            json!({"host_config": {"Runtime": "runsc"}}),
            "kata",
            "\"runsc\"",
        ),
        (json!({}), "crun", "default runtime"),
        (json!({}), "my-runtime", "default runtime"),
    ] {
        let e = layered(fleet, json!({}), json!({ "runtime": agent }))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!("invalid docker.runtime: the agent's own config asks for \"{agent}\", looser than the {gives} the fleet gives; an agent's own config may only tighten (a sandbox runtime such as runsc (gVisor) or kata over the default), or change it in the fleet config")
        );
    }
}

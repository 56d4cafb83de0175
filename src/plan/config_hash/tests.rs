use super::*;
use crate::plan::{Mount, MountRole};
use crate::resolve_docker_config;

fn base() -> (DockerConfig, MountPlan) {
    let config = resolve_docker_config(&json!({
        "enabled": true, "user": "1000:1000", "env": {"GITHUB_TOKEN": "ghp_secretvalue"},
        "labels": {"team": "a"}, "volumes": ["/data:/data:ro"],
    }))
    .unwrap();
    let plan = MountPlan::from_mounts(vec![
        Mount {
            source: "/srv/ws".into(),
            target: "/workspace".into(),
            read_only: false,
            role: MountRole::Workspace,
        },
        Mount {
            source: "/state/docker-sessions/a".into(),
            target: "/home/claude/.claude/projects/-workspace".into(),
            read_only: false,
            role: MountRole::Sessions,
        },
        Mount {
            source: "/data".into(),
            target: "/data".into(),
            read_only: true,
            role: MountRole::Volume(0),
        },
    ]);
    (config, plan)
}

/// Pinned: a change here means every persistent container in the field is replaced. Change it only
/// with the scheme number. The value was computed independently, with Python's `json.dumps(...,
/// sort_keys=True, separators=(",", ":"))` and `hashlib.sha256` over the same shape.
#[test]
fn hash_is_pinned() {
    let (c, p) = base();
    assert_eq!(config_hash(&c, &p), "0cee81448855756b");
}

#[test]
fn hash_changes_with_every_shaping_field() {
    let (c0, p0) = base();
    let h0 = config_hash(&c0, &p0);
    type Mutation = Box<dyn Fn(&mut DockerConfig, &mut Vec<Mount>)>;
    let mutations: Vec<(&str, Mutation)> = vec![
        ("image", Box::new(|c, _| c.image = "other:1".into())),
        (
            "network",
            Box::new(|c, _| c.network = crate::config::NetworkMode::None),
        ),
        ("memory", Box::new(|c, _| c.memory_bytes += 1)),
        ("cpu_shares", Box::new(|c, _| c.cpu_shares = Some(512))),
        ("cpu_period", Box::new(|c, _| c.cpu_period = Some(100_000))),
        ("cpu_quota", Box::new(|c, _| c.cpu_quota = Some(50_000))),
        ("pids_limit", Box::new(|c, _| c.pids_limit = Some(10))),
        ("user", Box::new(|c, _| c.user.gid = Some(1001))),
        ("ephemeral", Box::new(|c, _| c.ephemeral = !c.ephemeral)),
        (
            "env value",
            Box::new(|c, _| {
                c.env.insert("GITHUB_TOKEN".into(), "ghp_othervalue".into());
            }),
        ),
        (
            "env name",
            Box::new(|c, _| {
                c.env.insert("LANG".into(), "C".into());
            }),
        ),
        (
            "ports",
            Box::new(|c, _| {
                c.ports.push(crate::config::PortBinding {
                    host_port: 1,
                    container_port: 1,
                })
            }),
        ),
        (
            "tmpfs",
            Box::new(|c, _| {
                c.tmpfs.push(crate::config::TmpfsMount {
                    path: "/tmp".into(),
                    options: None,
                })
            }),
        ),
        (
            "tmpfs options",
            Box::new(|c, _| {
                c.tmpfs.push(crate::config::TmpfsMount {
                    path: "/tmp".into(),
                    options: Some("size=1m".into()),
                })
            }),
        ),
        (
            "labels",
            Box::new(|c, _| {
                c.labels.insert("team".into(), "b".into());
            }),
        ),
        (
            "host_config",
            Box::new(|c, _| c.host_config_override = Some(json!({"ShmSize": 1}))),
        ),
        (
            "allow flag",
            Box::new(|c, _| c.allow_unsafe_host_config = true),
        ),
        ("runtime", Box::new(|c, _| c.runtime = Some("runsc".into()))),
        (
            "mount source",
            Box::new(|_, m| m[0].source = "/srv/other".into()),
        ),
        (
            "mount target",
            Box::new(|_, m| m[2].target = "/data2".into()),
        ),
        ("mount mode", Box::new(|_, m| m[0].read_only = true)),
        (
            "mount added",
            Box::new(|_, m| {
                m.push(Mount {
                    source: "/c".into(),
                    target: "/home/claude/.claude/.credentials.json".into(),
                    read_only: true,
                    role: MountRole::Credentials,
                })
            }),
        ),
    ];
    let mut seen = std::collections::BTreeMap::new();
    seen.insert(h0.clone(), "base");
    for (name, mutate) in &mutations {
        let (mut c, p) = base();
        let mut mounts = p.mounts().to_vec();
        mutate(&mut c, &mut mounts);
        let h = config_hash(&c, &MountPlan::from_mounts(mounts));
        if let Some(prev) = seen.insert(h.clone(), name) {
            panic!("{name} gives the same hash as {prev}: {h}");
        }
    }
    // Fields that change nothing inside a container leave it alone.
    let (mut c, p) = base();
    c.enabled = false;
    c.max_containers = 1;
    assert_eq!(config_hash(&c, &p), h0);
}

#[test]
fn hash_hides_env_values() {
    let (c, p) = base();
    let h = config_hash(&c, &p);
    assert!(h.bytes().all(|b| b.is_ascii_hexdigit()) && h.len() == 16);
    assert!(!h.contains("ghp"));
}

//! The job's plan without an engine or a file system: made-up paths, the host's answers given.

use serde_json::Value;

use super::*;
use crate::config::{resolve_for, UserSpec};
use crate::plan::mounts::{MountSources, RealPaths};

const USER: UserSpec = UserSpec {
    uid: 1000,
    gid: Some(1000),
};

fn config(v: Value) -> DockerConfig {
    resolve_for(&v, USER).unwrap()
}

fn mounts(config: &DockerConfig) -> MountPlan {
    MountPlan::assemble(
        MountSources {
            workspace: "/nowhere/ws".into(),
            state_dir: "/nowhere/state".into(),
            session_dir: "/nowhere/state/docker-sessions/a".into(),
            mcp_dir: "/nowhere/state/mcp/a".into(),
            credentials_copy: None,
            config,
        },
        &RealPaths::default(),
    )
}

fn creds() -> Credentials {
    Credentials::discover(|k| (k == "ANTHROPIC_API_KEY").then(|| "sk-ant-test-0123456789".into()))
        .unwrap()
}

fn plan(config: &DockerConfig, owner: Option<&str>) -> JobPlan {
    JobPlan::new(&PlanInput {
        agent: "fleet.a",
        config,
        mounts: &mounts(config),
        mount_ids: "1:2,3:4",
        owner,
        created_ms: 1_700_000_000_000,
        allow: false,
        host_config: None,
    })
    .unwrap()
}

#[test]
fn labels_carry_mount_ids_and_only_an_ephemeral_container_has_an_owner() {
    let eph = config(serde_json::json!({"ephemeral": true}));
    let p = plan(&eph, Some("owner-1"));
    let labels = &p.body.labels;
    assert_eq!(p.mode, Mode::Ephemeral);
    assert_eq!(labels[labels::MOUNT_IDS], "1:2,3:4");
    assert_eq!(labels[labels::OWNER], "owner-1");
    assert_eq!(labels[labels::CREATED], "1700000000000");
    assert_eq!(labels[labels::CONFIG_HASH], p.hash);

    let per = config(serde_json::json!({"ephemeral": false}));
    let p = plan(&per, Some("owner-1"));
    assert_eq!(p.mode, Mode::Persistent);
    assert!(!p.body.labels.contains_key(labels::OWNER));
}

#[test]
fn no_env_value_is_in_the_create_request() {
    let c = config(serde_json::json!({"env": {"DATABASE_URL": "postgres://u:hunter2@db/x"}}));
    let p = plan(&c, None);
    let sent = serde_json::to_string(&p.body).unwrap();
    assert!(!sent.contains("hunter2"), "{sent}");
    let creds = creds();
    let exec = job_exec(&ExecRequest {
        config: &c,
        argv: &["claude".to_string()],
        env: &["EXTRA=1".to_string()],
        working_dir: None,
        credentials: &creds,
        local: true,
    })
    .unwrap();
    assert_eq!(
        exec.env.first().map(String::as_str),
        Some("DATABASE_URL=postgres://u:hunter2@db/x")
    );
    assert_eq!(exec.env.last().map(String::as_str), Some("EXTRA=1"));
    assert!(exec
        .env
        .iter()
        .any(|e| e == "ANTHROPIC_API_KEY=sk-ant-test-0123456789"));
    assert_eq!(exec.working_dir.as_deref(), Some(CONTAINER_WORKSPACE));
    assert_eq!(exec.user.as_deref(), Some("1000:1000"));
}

#[test]
fn a_bad_argv_is_refused_before_any_container() {
    let c = config(serde_json::json!({}));
    let creds = creds();
    let e = job_exec(&ExecRequest {
        config: &c,
        argv: &[],
        env: &[],
        working_dir: None,
        credentials: &creds,
        local: true,
    })
    .unwrap_err();
    assert!(e.to_string().contains("exec.cmd"), "{e}");
}

#[test]
fn an_override_that_skipped_the_gate_is_refused_not_dropped() {
    let c = config(serde_json::json!({"host_config": {"ShmSize": 1048576}}));
    let mounts = mounts(&c);
    let e = JobPlan::new(&PlanInput {
        agent: "fleet.a",
        config: &c,
        mounts: &mounts,
        mount_ids: "",
        owner: None,
        created_ms: 0,
        allow: false,
        host_config: None,
    })
    .unwrap_err();
    assert!(e.to_string().contains("docker.host_config"), "{e}");
}

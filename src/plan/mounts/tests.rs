//! The pure plan, with no file system: every path below is made up, and what the host would
//! say about symlinks is handed in.

use super::*;
use crate::config::{resolve_for, UserSpec};

const USER: UserSpec = UserSpec {
    uid: 1000,
    gid: Some(1000),
};

fn config(v: serde_json::Value) -> DockerConfig {
    resolve_for(&v, USER).unwrap()
}

fn sources<'a>(config: &'a DockerConfig, workspace: &str, state_dir: &str) -> MountSources<'a> {
    MountSources {
        workspace: workspace.into(),
        state_dir: state_dir.into(),
        session_dir: format!("{state_dir}/docker-sessions/a"),
        mcp_dir: format!("{state_dir}/mcp/a"),
        credentials_copy: None,
        config,
    }
}

#[test]
fn the_runner_mounts_come_first_then_the_volumes() {
    let c = config(serde_json::json!({"volumes": ["/nowhere/data:/data:ro"]}));
    let plan = MountPlan::assemble(
        sources(&c, "/nowhere/ws", "/elsewhere/state"),
        &RealPaths::default(),
    );
    let got: Vec<_> = plan
        .mounts()
        .iter()
        .map(|m| (m.role, m.target.as_str(), m.read_only))
        .collect();
    assert_eq!(
        got,
        [
            (MountRole::Workspace, CONTAINER_WORKSPACE, false),
            (MountRole::Sessions, CONTAINER_SESSION_DIR, false),
            (MountRole::McpSockets, CONTAINER_MCP_DIR, true),
            (MountRole::Volume(0), "/data", true),
        ]
    );
    assert!(plan.exposed_state_dir().is_empty());
}

#[test]
fn a_state_dir_at_the_top_of_the_workspace_is_masked() {
    let c = config(serde_json::json!({}));
    let plan = MountPlan::assemble(
        sources(&c, "/nowhere/ws", "/nowhere/ws/.herdctl"),
        &RealPaths::default(),
    );
    let mask = plan
        .mounts()
        .iter()
        .find(|m| m.role == MountRole::StateDirMask);
    assert_eq!(mask.map(|m| m.target.as_str()), Some("/workspace/.herdctl"));
    assert!(plan.exposed_state_dir().is_empty());
}

#[test]
fn a_symlink_the_host_resolved_is_what_the_plan_sees() {
    // The workspace is a symlink to the directory that holds the state directory: only the
    // host's answer shows it (the engine mounts what the symlink leads to).
    let c = config(serde_json::json!({}));
    let mask = |real: &RealPaths| {
        let plan = MountPlan::assemble(sources(&c, "/nowhere/link", "/nowhere/ws/.herdctl"), real);
        plan.mounts()
            .iter()
            .find(|m| m.role == MountRole::StateDirMask)
            .map(|m| m.target.clone())
    };
    assert_eq!(mask(&RealPaths::default()), None);
    let real = RealPaths(BTreeMap::from([(
        "/nowhere/link".to_string(),
        "/nowhere/ws".to_string(),
    )]));
    assert_eq!(mask(&real).as_deref(), Some("/workspace/.herdctl"));
}

#[test]
fn relative_paths_name_their_field() {
    let e = absolute("state_dir", "rel/path").unwrap_err();
    assert!(e.to_string().contains("state_dir"), "{e}");
    assert!(e.to_string().contains("not an absolute path"), "{e}");
}

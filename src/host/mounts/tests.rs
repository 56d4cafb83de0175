use super::*;
use crate::plan::SessionLayout;
use crate::CONTAINER_CREDENTIALS_FILE;
use crate::{resolve_docker_config, Credentials};
use serde_json::json;

struct Dirs {
    _root: tempfile::TempDir,
    ws: String,
    state: String,
    data: String,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().unwrap();
    let p = |s: &str| {
        let d = root.path().join(s);
        fs::create_dir_all(&d).unwrap();
        d.to_str().unwrap().to_string()
    };
    let ws = p("ws");
    // The workspace of a job is the container user's to write (checked by the plan).
    fs::set_permissions(&ws, fs::Permissions::from_mode(0o777)).unwrap();
    Dirs {
        ws,
        state: p("state"),
        data: p("data"),
        _root: root,
    }
}

/// `agent_dir_name("fleet.agent")`.
const AGENT_DIR: &str = "fleet.agent-153de8d6d426a323";

fn config(v: serde_json::Value) -> DockerConfig {
    resolve_docker_config(&v).unwrap()
}

fn build(
    d: &Dirs,
    config: &DockerConfig,
    layout: SessionLayout,
    creds: Option<&Credentials>,
) -> Result<MountPlan> {
    MountPlan::build(&MountRequest {
        config,
        workspace: &d.ws,
        state_dir: &d.state,
        agent: "fleet.agent",
        layout,
        credentials: creds,
    })
    .and_then(|plan| plan.check_workspace_access(config).map(|()| plan))
}

#[test]
fn plan_has_workspace_sessions_and_volumes() {
    let d = dirs();
    let c = config(
        json!({"workspace_mode": "ro", "volumes": [format!("{}:/data:ro", d.data), format!("{}/:/more", d.data)]}),
    );
    let plan = build(&d, &c, SessionLayout::PerAgent, None).unwrap();
    let session = format!("{}/docker-sessions/{AGENT_DIR}", d.state);
    assert_eq!(plan.session_dir(), session);
    assert_eq!(
        plan.engine_mounts(),
        vec![
            json!({"Type": "bind", "Source": d.ws, "Target": "/workspace", "ReadOnly": true}),
            json!({"Type": "bind", "Source": session, "Target": "/home/claude/.claude/projects/-workspace", "ReadOnly": false}),
            json!({"Type": "bind", "Source": format!("{}/mcp/{AGENT_DIR}", d.state), "Target": "/home/claude/.claude/herdctl-mcp", "ReadOnly": true}),
            json!({"Type": "bind", "Source": d.data, "Target": "/data", "ReadOnly": true}),
            json!({"Type": "bind", "Source": d.data, "Target": "/more", "ReadOnly": false}),
        ]
    );
    assert_eq!(plan.mounts()[4].role, MountRole::Volume(1));
    let meta = fs::metadata(&session).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o777, 0o700);
    let sockets = fs::metadata(format!("{}/mcp/{AGENT_DIR}", d.state)).unwrap();
    assert_eq!(sockets.mode() & 0o777, 0o711, "reachable, not listable");
    let root = fs::metadata(format!("{}/mcp", d.state)).unwrap();
    assert_eq!(root.mode() & 0o777, 0o700, "closed to other host users");
    assert!(
        plan.path_map()
            .to_host("/home/claude/.claude/herdctl-mcp/x.sock")
            .is_none(),
        "sockets are no paths for the host"
    );
    // Building again (the next job) is fine and gives the same plan.
    assert_eq!(build(&d, &c, SessionLayout::PerAgent, None).unwrap(), plan);
}

#[test]
fn flat_layout_shares_one_directory() {
    let d = dirs();
    let c = config(json!({}));
    let plan = build(&d, &c, SessionLayout::Flat, None).unwrap();
    assert_eq!(plan.session_dir(), format!("{}/docker-sessions", d.state));
}

#[test]
fn agents_in_different_sub_fleets_get_different_session_dirs() {
    let d = dirs();
    let c = config(json!({}));
    let dir_of = |agent: &str| {
        MountPlan::build(&MountRequest {
            config: &c,
            workspace: &d.ws,
            state_dir: &d.state,
            agent,
            layout: SessionLayout::PerAgent,
            credentials: None,
        })
        .unwrap()
        .session_dir()
        .to_string()
    };
    assert_ne!(dir_of("a.x"), dir_of("b.x"));
    assert_ne!(dir_of("a b"), dir_of("a-b"));
    // Issue 9.16: an agent named like another's sanitised name gets its own directory.
    let literal = crate::sanitize_agent_name("a b");
    assert_ne!(dir_of("a b"), dir_of(&literal));
    assert_eq!(
        dir_of("a b"),
        agent_session_dir(&d.state, "a b", SessionLayout::PerAgent)
    );
    assert!(dir_of("..").starts_with(&format!("{}/docker-sessions/", d.state)));
}

#[test]
fn session_dir_is_given_to_the_container_user() {
    let d = dirs();
    let c = config(json!({"user": "4321:4321"}));
    let result = build(&d, &c, SessionLayout::PerAgent, None);
    if process_user().unwrap().is_root() {
        let plan = result.unwrap();
        let meta = fs::metadata(plan.session_dir()).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (4321, 4321));
    } else {
        let e = result.unwrap_err().to_string();
        assert!(e.starts_with("invalid docker.user: the container runs as uid 4321, which cannot write the session directory"), "{e}");
    }
}

#[test]
fn missing_host_paths_are_errors() {
    let d = dirs();
    let c =
        config(json!({"volumes": [format!("{}:/data", d.data), format!("{}/nope:/nope", d.data)]}));
    assert_eq!(
        build(&d, &c, SessionLayout::PerAgent, None).unwrap_err().to_string(),
        format!("invalid docker.volumes[1]: host path {}/nope cannot be used (it does not exist); create it first (the engine refuses a missing source)", d.data)
    );
    let c = config(json!({}));
    let req = |ws: &str| {
        MountPlan::build(&MountRequest {
            config: &c,
            workspace: ws,
            state_dir: &d.state,
            agent: "a",
            layout: SessionLayout::PerAgent,
            credentials: None,
        })
        .unwrap_err()
        .to_string()
    };
    let missing = format!("{}/missing", d.ws);
    assert_eq!(req(&missing), format!("invalid working_directory: {missing} cannot be used (it does not exist); create it or fix the path"));
    assert_eq!(req("rel/ws"), "invalid working_directory: \"rel/ws\" is not an absolute path; expected a path starting with /");
    let file = format!("{}/f", d.ws);
    fs::write(&file, "x").unwrap();
    assert_eq!(
        req(&file),
        format!("invalid working_directory: {file} is not a directory")
    );
}

#[test]
fn credentials_file_is_mounted_read_only() {
    let d = dirs();
    let home = tempfile::tempdir().unwrap();
    fs::create_dir(home.path().join(".claude")).unwrap();
    fs::write(
        home.path().join(".claude/.credentials.json"),
        r#"{"claudeAiOauth": {"accessToken": "tok-1234", "refreshToken": "ref-5678"}}"#,
    )
    .unwrap();
    let h = home.path().to_str().unwrap().to_string();
    let creds = Credentials::resolve(|k| (k == "HOME").then(|| h.clone())).unwrap();
    let c = config(json!({}));
    let plan = build(&d, &c, SessionLayout::PerAgent, Some(&creds)).unwrap();
    let m = &plan.mounts()[3];
    assert_eq!(m.role, MountRole::Credentials);
    assert_eq!(m.target, CONTAINER_CREDENTIALS_FILE);
    assert!(m.read_only);
    assert_eq!(
        m.source,
        format!(
            "{}/docker-credentials/{AGENT_DIR}/.credentials.json",
            d.state
        )
    );
    let text = fs::read_to_string(&m.source).unwrap();
    assert!(text.contains("tok-1234") && !text.contains("ref-5678"));
    // The credentials mount is not part of path translation.
    assert_eq!(plan.path_map().to_host(CONTAINER_CREDENTIALS_FILE), None);

    let env_creds =
        Credentials::resolve(|k| (k == "ANTHROPIC_API_KEY").then(|| "sk-1234".to_string()))
            .unwrap();
    let plan = build(&d, &c, SessionLayout::PerAgent, Some(&env_creds)).unwrap();
    assert!(plan
        .mounts()
        .iter()
        .all(|m| m.role != MountRole::Credentials));
}

#[test]
fn path_map_of_a_plan() {
    let d = dirs();
    let c = config(json!({"volumes": [format!("{}:/data", d.data)]}));
    let plan = build(&d, &c, SessionLayout::PerAgent, None).unwrap();
    let map = plan.path_map();
    assert_eq!(
        map.to_host("/workspace/src/x.rs"),
        Some(format!("{}/src/x.rs", d.ws))
    );
    assert_eq!(map.to_host("/data/f"), Some(format!("{}/f", d.data)));
    assert_eq!(
        map.to_host("/home/claude/.claude/projects/-workspace/s.jsonl"),
        Some(format!("{}/docker-sessions/{AGENT_DIR}/s.jsonl", d.state))
    );
    assert_eq!(
        map.to_container(&format!("{}/a", d.ws)).as_deref(),
        Some("/workspace/a")
    );
    assert_eq!(map.to_host("/etc/passwd"), None);
}

#[test]
fn session_layouts_parse_by_name() {
    assert_eq!(
        "per-agent".parse::<SessionLayout>().unwrap(),
        SessionLayout::PerAgent
    );
    assert_eq!(
        "flat".parse::<SessionLayout>().unwrap(),
        SessionLayout::Flat
    );
    let e = "nested".parse::<SessionLayout>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid sessionLayout: \"nested\" is not a session layout; expected \"per-agent\" or \"flat\""
    );
}

/// Issue 11.4: a workspace the container user cannot use fails the job before any container,
/// saying what to do, instead of the agent meeting "Permission denied" halfway.
#[test]
fn a_workspace_the_container_user_cannot_write_fails_before_the_job() {
    let d = dirs();
    let build_as = |user: &str, mode: u32, ws_mode: &str| {
        fs::set_permissions(&d.ws, fs::Permissions::from_mode(mode)).unwrap();
        let c = config(json!({"user": user, "workspace_mode": ws_mode}));
        build(&d, &c, SessionLayout::PerAgent, None)
    };
    let meta = fs::metadata(&d.ws).unwrap();
    let owner = format!("{}:{}", meta.uid(), meta.gid());
    let other = if meta.uid() == 4321 {
        "4322:4322"
    } else {
        "4321:4321"
    };
    let e = build_as(other, 0o755, "rw").unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "invalid docker.user: the container runs as {other}, which cannot write the workspace {} (owned by {owner}, mode 755); set docker.user to \"{owner}\" in the fleet config (\"0:0\" runs the agent as root), or give the workspace to {other} (chown -R {other} {}), or mount it read-only (workspace_mode: ro)",
            d.ws, d.ws
        )
    );
    let e = build_as(other, 0o700, "ro").unwrap_err().to_string();
    assert!(e.contains("which cannot read the workspace"), "{e}");
    assert!(!e.contains("workspace_mode: ro"), "{e}");
    // Readable is enough for a read-only workspace; the owner, and anyone with 0o777, may write.
    let ok = |r: Result<MountPlan>| {
        if let Err(e) = r {
            // Only the session directory may refuse a foreign user when we are not root.
            assert!(e.to_string().contains("session directory"), "{e}");
        }
    };
    ok(build_as(other, 0o755, "ro"));
    ok(build_as(other, 0o777, "rw"));
    ok(build_as(&owner, 0o700, "rw"));
    // The group's bits count for the group.
    let group_only = format!(
        "{}:{}",
        if meta.uid() == 4321 { 4322 } else { 4321 },
        meta.gid()
    );
    ok(build_as(&group_only, 0o770, "rw"));
    // A fleet that adds capabilities has said it knows better.
    fs::set_permissions(&d.ws, fs::Permissions::from_mode(0o700)).unwrap();
    let c = config(json!({
        "user": other, "host_config": {"capAdd": ["DAC_OVERRIDE"]}, "allow_unsafe_host_config": true
    }));
    ok(build(&d, &c, SessionLayout::PerAgent, None));
    // Harmless values of those keys (the gate lets them through without the opt-in) loosen
    // nothing, so the check still holds.
    for harmless in [json!({"CapAdd": []}), json!({"privileged": false})] {
        let c = config(json!({"user": other, "host_config": harmless}));
        let e = build(&d, &c, SessionLayout::PerAgent, None).unwrap_err();
        assert!(e.to_string().contains("cannot write the workspace"), "{e}");
    }
}

/// The plan of agent `fleet.agent` with workspace `ws`, state directory `state` and `config`.
fn plan_in(ws: &str, state: &str, config: &DockerConfig) -> MountPlan {
    MountPlan::build(&MountRequest {
        config,
        workspace: ws,
        state_dir: state,
        agent: "fleet.agent",
        layout: SessionLayout::PerAgent,
        credentials: None,
    })
    .unwrap()
}

fn masks(plan: &MountPlan) -> Vec<Value> {
    plan.engine_mounts()
        .into_iter()
        .filter(|m| m["Type"] == "tmpfs")
        .collect()
}

fn exposed(plan: &MountPlan) -> Vec<String> {
    plan.exposed_state_dir()
        .iter()
        .map(|(role, why)| format!("{role:?}: {why}"))
        .collect()
}

/// herdctl keeps its state in `.herdctl` beside the fleet file, often inside an agent's working
/// directory: there the job could rename it and give the runner a state directory of its own,
/// whose session directory (a symlink to any host path) the runner would chown and mount.
#[test]
fn the_state_directory_is_masked_wherever_a_mount_shows_it() {
    let d = dirs();
    let c = config(json!({}));
    let state = format!("{}/.herdctl", d.ws);
    let plan = plan_in(&d.ws, &state, &c);
    assert_eq!(
        masks(&plan),
        [json!({"Type": "tmpfs", "Target": "/workspace/.herdctl", "ReadOnly": true})]
    );
    assert!(exposed(&plan).is_empty(), "{:?}", exposed(&plan));
    // Nothing of the mask reaches path translation.
    assert_eq!(
        plan.path_map().to_host("/workspace/.herdctl/x"),
        Some(format!("{state}/x"))
    );

    // Through a volume, read-only or not, and named through a symlink.
    let link = format!("{}/data-link", d.ws.trim_end_matches("/ws"));
    std::os::unix::fs::symlink(&d.data, &link).unwrap();
    let c = config(json!({"volumes": [format!("{link}:/data")]}));
    let plan = plan_in(&d.ws, &format!("{}/state", d.data), &c);
    assert_eq!(
        masks(&plan),
        [json!({"Type": "tmpfs", "Target": "/data/state", "ReadOnly": true})]
    );
    assert!(exposed(&plan).is_empty());

    // Deeper in a writable mount: a directory above it could be renamed and replaced.
    let deep = format!("{}/fleet/.herdctl", d.ws);
    let plan = plan_in(&d.ws, &deep, &config(json!({})));
    assert_eq!(masks(&plan)[0]["Target"], "/workspace/fleet/.herdctl");
    let e = exposed(&plan);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("Workspace: the runner's state directory")
            && e[0].ends_with("is fleet/.herdctl in it, below a directory the job could rename"),
        "{e:?}"
    );
    // A read-only one cannot be changed.
    let plan = plan_in(&d.ws, &deep, &config(json!({"workspace_mode": "ro"})));
    assert_eq!(masks(&plan).len(), 1);
    assert!(exposed(&plan).is_empty());

    // A workspace inside the state directory.
    let inside = format!("{}/projects/p", d.state);
    fs::create_dir_all(&inside).unwrap();
    let plan = plan_in(&inside, &d.state, &config(json!({"workspace_mode": "ro"})));
    assert!(masks(&plan).is_empty());
    let e = exposed(&plan);
    assert!(
        e.len() == 1 && e[0].contains("is inside the runner's state directory"),
        "{e:?}"
    );

    // A state directory named through a symlink inside the workspace: the job could replace it.
    let real = format!("{}/real-state", d.data);
    fs::create_dir_all(&real).unwrap();
    let via = format!("{}/.herdctl-link", d.ws);
    std::os::unix::fs::symlink(&real, &via).unwrap();
    let plan = plan_in(&d.ws, &via, &config(json!({})));
    let e = exposed(&plan);
    assert!(
        e.len() == 1 && e[0].contains("is reached through a symlink in it"),
        "{e:?}"
    );

    // Apart: nothing to do.
    let plan = plan_in(&d.ws, &d.state, &config(json!({})));
    assert!(masks(&plan).is_empty() && exposed(&plan).is_empty());
}

//! Live checks, against the real engine, of the two host-side choices of the mount plan that unit
//! tests can only approximate: the credentials copy is rewritten in place so that a running
//! container sees a refreshed token through its single-file bind mount (and a rename would not be
//! seen), and the session directory the plan prepares is writable by the container user.
//!
//! These use the `docker` CLI (installed with the engine by scripts/ensure-engine) so that they do
//! not depend on the engine client; every container gets a unique name and the test label, and is
//! removed by a drop guard.

use std::fs;
use std::process::Command;

use herdctl_container::{
    resolve_docker_config, Credentials, MountPlan, MountRequest, SessionLayout,
    CONTAINER_CREDENTIALS_FILE, CONTAINER_SESSION_DIR,
};

const IMAGE: &str = "herdctl-test/runtime:latest";

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI is installed with the engine (scripts/ensure-engine)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// A running container, removed on drop.
struct Container(String);

impl Container {
    fn start(plan: &MountPlan, user: &str) -> Container {
        let (ok, _) = docker(&["image", "inspect", IMAGE]);
        assert!(ok, "{IMAGE} is missing: run scripts/build-test-images");
        let name = format!(
            "herdctl-config-live-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let mut args: Vec<String> = [
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            "dev.herdctl.test=1",
            "--network",
            "none",
            "--user",
            user,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for m in plan.mounts() {
            args.push("--mount".into());
            let ro = if m.read_only { ",readonly" } else { "" };
            args.push(format!(
                "type=bind,source={},target={}{ro}",
                m.source, m.target
            ));
        }
        args.extend([IMAGE.to_string(), "sleep".into(), "600".into()]);
        let c = Container(name);
        let (ok, out) = docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(ok, "docker run failed: {out}");
        c
    }

    fn sh(&self, script: &str) -> (bool, String) {
        docker(&["exec", &self.0, "sh", "-c", script])
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

fn oauth(token: &str) -> String {
    format!(
        r#"{{"claudeAiOauth": {{"accessToken": "{token}", "refreshToken": "refresh-must-not-leak", "expiresAt": 1}}}}"#
    )
}

#[test]
fn refreshed_token_reaches_a_running_container_and_sessions_are_writable() {
    let root = tempfile::tempdir().unwrap();
    let (ws, state, home) = (
        root.path().join("ws"),
        root.path().join("state"),
        root.path().join("home"),
    );
    for d in [&ws, &state, &home.join(".claude")] {
        fs::create_dir_all(d).unwrap();
    }
    // The container user must be able to write its workspace: the plan checks.
    fs::set_permissions(&ws, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let host_file = home.join(".claude/.credentials.json");
    fs::write(&host_file, oauth("token-one")).unwrap();
    let home_s = home.to_str().unwrap().to_string();
    let lookup = |k: &str| (k == "HOME").then(|| home_s.clone());

    let config =
        resolve_docker_config(&serde_json::json!({"user": "1000:1000", "network": "none"}))
            .unwrap();
    let build = |creds: &Credentials| {
        MountPlan::build(&MountRequest {
            config: &config,
            workspace: ws.to_str().unwrap(),
            state_dir: state.to_str().unwrap(),
            agent: "live.agent",
            layout: SessionLayout::PerAgent,
            credentials: Some(creds),
        })
        .unwrap()
    };
    let plan = build(&Credentials::resolve(lookup).unwrap());
    let c = Container::start(&plan, "1000:1000");

    let read = format!("cat {CONTAINER_CREDENTIALS_FILE}");
    let (ok, seen) = c.sh(&read);
    assert!(ok, "uid 1000 reads the copy: {seen}");
    assert!(
        seen.contains("token-one") && !seen.contains("refresh-must-not-leak"),
        "{seen}"
    );
    let (ok, _) = c.sh(&format!("echo x > {CONTAINER_CREDENTIALS_FILE}"));
    assert!(!ok, "the copy is read-only in the container");

    // The host refreshes its token; the next job resolves and builds its plan again.
    fs::write(&host_file, oauth("token-two-a-little-longer")).unwrap();
    let again = build(&Credentials::resolve(lookup).unwrap());
    assert_eq!(again, plan, "same mounts, so the same container fits");
    let (_, seen) = c.sh(&read);
    assert!(
        seen.contains("token-two-a-little-longer"),
        "the running container sees the refresh: {seen}"
    );

    // The negative control: replacing the file by rename (a new inode) is not seen inside.
    let copy = &plan
        .mounts()
        .iter()
        .find(|m| m.target == CONTAINER_CREDENTIALS_FILE)
        .unwrap()
        .source;
    let tmp = format!("{copy}.new");
    fs::write(&tmp, oauth("token-by-rename")).unwrap();
    fs::rename(&tmp, copy).unwrap();
    let (_, seen) = c.sh(&read);
    assert!(
        !seen.contains("token-by-rename"),
        "a rename is invisible through a file bind mount: {seen}"
    );

    // The session directory is writable by the container user and shows up on the host.
    let (ok, out) = c.sh(&format!("echo '{{}}' > {CONTAINER_SESSION_DIR}/s.jsonl"));
    assert!(ok, "uid 1000 writes the session directory: {out}");
    assert_eq!(
        fs::read_to_string(format!("{}/s.jsonl", plan.session_dir())).unwrap(),
        "{}\n"
    );
}

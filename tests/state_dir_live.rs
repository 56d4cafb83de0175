//! The runner's state directory is out of a job's reach, against the real engine, when the
//! agent's working directory holds it (herdctl keeps `.herdctl` beside the fleet file, often in
//! the directory its agents work in).
//!
//! The state directory holds what the runner's next containers mount: a job that could rename
//! `.herdctl` and make its own, with a symlink as its session directory, had the runner (root)
//! chown any host path to the container's user and mount it into the agent's next container.

mod common;

use std::os::unix::fs::MetadataExt;

use common::fleet::{run_on, Fleet};
use herdctl_container::{sanitize_agent_name, JobSpec, Runner, RunnerOptions};
use serde_json::json;

#[test]
fn a_job_cannot_replace_the_state_directory_in_its_workspace() {
    let fleet = Fleet::new();
    // The workspace is the container user's (1000:1000, the default for a root runner), as an
    // agent's working directory is; the state directory is in it.
    let ws = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(ws.path(), Some(1000), Some(1000)).unwrap();
    let state = ws.path().join(".herdctl");
    let runner = Runner::new(fleet.runner.engine().clone(), RunnerOptions::new(&state)).unwrap();
    // A host directory the job must never see or own.
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("marker"), "host-only-marker\n").unwrap();

    let agent = fleet.agent("state-dir");
    let sessions = format!(".herdctl/docker-sessions/{}", sanitize_agent_name(&agent));
    let config = fleet.config(json!({}));
    let job =
        |argv: Vec<String>| JobSpec::new(&agent, config.clone(), ws.path().to_string_lossy(), argv);
    let sh = |script: String| vec!["sh".to_string(), "-c".to_string(), script];
    let (lines, report) = run_on(
        &runner,
        job(sh(format!(
            "cd /workspace; ls -A .herdctl | wc -l; \
             mv .herdctl .gone 2>/dev/null && echo moved; \
             mkdir -p .herdctl/docker-sessions 2>/dev/null && ln -s {} {sessions} && echo planted; \
             true",
            host.path().display()
        ))),
    );
    assert!(report.outcome.success(), "{}", report.outcome.describe());
    assert_eq!(
        lines,
        ["0"],
        "the job saw the runner's files, or replaced them"
    );

    let (lines, report) = run_on(
        &runner,
        job(sh(
            "cat /home/claude/.claude/projects/-workspace/marker 2>/dev/null || echo none".into(),
        )),
    );
    assert!(report.outcome.success(), "{}", report.outcome.describe());
    assert_eq!(lines, ["none"], "the host directory was mounted");
    assert_eq!(
        std::fs::metadata(host.path()).unwrap().uid(),
        0,
        "the host directory was given to the container's user"
    );
}

/// Deeper in the workspace, a directory above the state directory could be renamed and
/// replaced (only a mount point cannot be): refused before any container exists, saying how.
#[test]
fn a_state_directory_deeper_in_a_writable_workspace_is_refused() {
    let fleet = Fleet::new();
    let ws = tempfile::tempdir().unwrap();
    let state = ws.path().join("fleet/.herdctl");
    let runner = Runner::new(fleet.runner.engine().clone(), RunnerOptions::new(&state)).unwrap();
    let agent = fleet.agent("state-dir-deep");
    let spec = JobSpec::new(
        &agent,
        fleet.config(json!({})),
        ws.path().to_string_lossy(),
        ["true"],
    );
    let Err(e) = runner.start(spec).map(|_| ()) else {
        panic!("a job started");
    };
    let e = e.to_string();
    assert!(
        e.starts_with(&format!(
            "invalid working_directory: the runner's state directory {} is fleet/.herdctl in it, below a directory the job could rename: a job could replace the runner's own files there",
            state.display()
        )),
        "{e}"
    );
    assert!(e.contains("allow_unsafe_host_config: true"), "{e}");
    assert!(fleet.containers(&agent).is_empty());
}

//! Container operations against the real engine: every call round-trips, idempotent calls
//! return outcomes, and failures name what was missing or in conflict.

mod common;

use std::time::{Duration, Instant};

use common::{unique, Live, TEST_LABEL};
use herdctl_container::engine::{
    KillOutcome, RemoveOutcome, StartOutcome, StopOutcome, Stream, WaitCondition,
};
use herdctl_container::Error;
use serde_json::json;

#[test]
fn create_start_inspect_shows_what_was_asked() {
    let live = Live::new();
    let dir = tempfile::tempdir().unwrap();
    let run = unique("run");
    let c = live
        .container()
        .label("dev.herdctl.run", &run)
        .host("Memory", json!(64 * 1024 * 1024))
        .host("MemorySwap", json!(64 * 1024 * 1024))
        .host("PidsLimit", json!(64))
        .host("CapDrop", json!(["ALL"]))
        .host("SecurityOpt", json!(["no-new-privileges"]))
        .host("ReadonlyRootfs", json!(true))
        .host(
            "Mounts",
            json!([{ "Type": "bind", "Source": dir.path(), "Target": "/data", "ReadOnly": true }]),
        );
    let name = c.name.clone();
    let id = c.start();

    let info = live.engine.inspect_container(&id).unwrap();
    assert_eq!(info.id, id);
    assert_eq!(info.name, format!("/{name}"));
    assert!(!info.created.is_empty());
    assert_eq!(info.config.image, common::IMAGE);
    assert_eq!(info.config.labels.get("dev.herdctl.run"), Some(&run));
    assert_eq!(
        info.config.labels.get(TEST_LABEL).map(String::as_str),
        Some("1")
    );
    assert!(
        info.state.running && info.state.pid > 0 && info.state.status == "running",
        "{:?}",
        info.state
    );
    assert!(!info.state.oom_killed);
    let hc = &info.host_config;
    assert_eq!(
        (hc.memory, hc.memory_swap, hc.pids_limit),
        (64 << 20, 64 << 20, Some(64))
    );
    assert_eq!(hc.cap_drop, vec!["ALL"]);
    assert_eq!(hc.security_opt, vec!["no-new-privileges"]);
    assert_eq!(
        (hc.network_mode.as_str(), hc.init, hc.readonly_rootfs),
        ("none", Some(true), true)
    );
    assert_eq!(info.mounts.len(), 1);
    assert_eq!(
        (info.mounts[0].destination.as_str(), info.mounts[0].rw),
        ("/data", false)
    );

    assert_eq!(
        live.engine.start_container(&id).unwrap(),
        StartOutcome::AlreadyRunning
    );
    let top = live.engine.container_top(&id).unwrap();
    assert!(
        top.commands().iter().any(|c| c.contains("sleep 600")),
        "{top:?}"
    );
}

#[test]
fn list_finds_containers_by_exact_label_only() {
    let live = Live::new();
    let agent = unique("agent");
    let mine = live.container().label("dev.herdctl.agent", &agent).start();
    // A longer agent name sharing the prefix must not match (herdctl's name-prefix bug).
    let other = live
        .container()
        .label("dev.herdctl.agent", &format!("{agent}-bar"))
        .start();

    let found = live
        .engine
        .list_containers(
            &[(TEST_LABEL, None), ("dev.herdctl.agent", Some(&agent))],
            false,
        )
        .unwrap();
    assert_eq!(
        found.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        vec![mine.as_str()]
    );
    let c = &found[0];
    assert_eq!(
        (c.state.as_str(), c.labels.get("dev.herdctl.agent")),
        ("running", Some(&agent))
    );
    assert!(
        c.names[0].starts_with("/herdctl-test-c-") && c.created > 0,
        "{c:?}"
    );

    live.engine.stop_container(&mine, 5).unwrap();
    let running = live
        .engine
        .list_containers(&[("dev.herdctl.agent", Some(&agent))], false)
        .unwrap();
    assert!(running.is_empty());
    let all = live
        .engine
        .list_containers(&[("dev.herdctl.agent", Some(&agent))], true)
        .unwrap();
    assert_eq!((all.len(), all[0].state.as_str()), (1, "exited"));
    assert!(live
        .engine
        .list_containers(&[("dev.herdctl.agent", Some(&agent))], true)
        .unwrap()
        .iter()
        .all(|c| c.id != other));
}

#[test]
fn idempotent_calls_return_outcomes_not_errors() {
    let live = Live::new();
    let id = live.container().start();
    let start = Instant::now();
    assert_eq!(
        live.engine.stop_container(&id, 10).unwrap(),
        StopOutcome::Stopped
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "an init forwards SIGTERM: {:?}",
        start.elapsed()
    );
    assert_eq!(
        live.engine.stop_container(&id, 10).unwrap(),
        StopOutcome::AlreadyStopped
    );
    assert_eq!(
        live.engine.kill_container(&id, "SIGKILL").unwrap(),
        KillOutcome::NotRunning
    );
    assert_eq!(
        live.engine.remove_container(&id, false).unwrap(),
        RemoveOutcome::Removed
    );
    assert_eq!(
        live.engine.remove_container(&id, true).unwrap(),
        RemoveOutcome::Gone
    );
    assert_eq!(
        live.engine.stop_container(&id, 1).unwrap(),
        StopOutcome::Gone
    );
    assert_eq!(
        live.engine.kill_container(&id, "KILL").unwrap(),
        KillOutcome::Gone
    );

    let err = live.engine.inspect_container(&id).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("GET /containers/{id}/json: no such container {id}")
    );
    assert!(matches!(
        err,
        Error::NotFound {
            kind: "container",
            ..
        }
    ));
    assert!(matches!(
        live.engine.start_container(&id),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn kill_ends_a_running_container_and_wait_reports_137() {
    let live = Live::new();
    let id = live.container().start();
    assert_eq!(
        live.engine.kill_container(&id, "SIGKILL").unwrap(),
        KillOutcome::Killed
    );
    let status = live
        .engine
        .wait_container(
            &id,
            WaitCondition::NotRunning,
            Some(Duration::from_secs(20)),
        )
        .unwrap();
    assert_eq!(status.status_code, 137);
    assert_eq!(status.error, None);
    let running = live.container().start();
    assert_eq!(
        live.engine.remove_container(&running, true).unwrap(),
        RemoveOutcome::Removed
    );
}

#[test]
fn a_taken_name_is_a_conflict_naming_it() {
    let live = Live::new();
    let c = live.container();
    let name = c.name.clone();
    let body = c.body();
    c.create();
    let err = live.engine.create_container(&name, &body).unwrap_err();
    assert_eq!(err.code(), "CONFLICT");
    assert!(
        err.to_string().starts_with(&format!(
            "POST /containers/create: conflict: the name \"{name}\" is in use: "
        )),
        "{err}"
    );
}

#[test]
fn a_missing_image_is_not_found_naming_it() {
    let live = Live::new();
    let image = format!("herdctl-test/{}:nope", unique("missing"));
    let body = live.container().image(&image).body();
    let err = live
        .engine
        .create_container(&unique("c"), &body)
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { kind: "image", name, .. } if *name == image),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&format!("no such image {image}; build it")),
        "{err}"
    );
    assert!(live.engine.image_inspect(&image).unwrap().is_none());
}

#[test]
fn wait_begun_before_start_sees_the_exit_code() {
    let live = Live::new();
    let (code, id) = live.run_to_exit("echo err >&2; sleep 0.1; echo out; echo out2; exit 3");
    assert_eq!(code, 3);
    let info = live.engine.inspect_container(&id).unwrap();
    assert_eq!(
        (
            info.state.running,
            info.state.exit_code,
            info.state.status.as_str()
        ),
        (false, 3, "exited")
    );
    assert!(
        !info.state.finished_at.starts_with("0001"),
        "{:?}",
        info.state
    );
    // Not running already: returns at once.
    let status = live
        .engine
        .wait_container(&id, WaitCondition::NotRunning, Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(status.status_code, 3);

    // The engine copies stdout and stderr separately, so their order between the two streams
    // is not kept; within each it is.
    let logs = live.engine.container_logs(&id, true, true, None).unwrap();
    let joined = |which: Stream| -> Vec<u8> {
        logs.iter()
            .filter(|(s, _)| *s == which)
            .flat_map(|(_, b)| b.clone())
            .collect()
    };
    assert_eq!(joined(Stream::Stdout), b"out\nout2\n");
    assert_eq!(joined(Stream::Stderr), b"err\n");
    // tail counts lines of both streams before choosing one: the last line overall is out2.
    let tail = live
        .engine
        .container_logs(&id, true, false, Some(1))
        .unwrap();
    assert_eq!(tail, vec![(Stream::Stdout, b"out2\n".to_vec())]);
}

#[test]
fn logs_of_a_tty_container_are_raw() {
    let live = Live::new();
    let id = live
        .container()
        .tty()
        .cmd(["sh", "-c", "echo hello-tty"])
        .create();
    assert_eq!(live.start_and_wait(&id), 0);
    let logs = live.engine.container_logs(&id, true, true, None).unwrap();
    assert_eq!(logs, vec![(Stream::Stdout, b"hello-tty\r\n".to_vec())]);
}

#[test]
fn a_wait_with_a_timeout_gives_up_in_time() {
    let live = Live::new();
    let id = live.container().start();
    let start = Instant::now();
    let err = live
        .engine
        .wait_container(
            &id,
            WaitCondition::NotRunning,
            Some(Duration::from_millis(500)),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("wait for container {id} timed out after 500ms")
    );
    assert!(start.elapsed() < Duration::from_secs(3));
    // The engine is still fine afterwards.
    assert!(live.engine.inspect_container(&id).unwrap().state.running);
}

#[test]
fn bad_names_are_refused_before_any_call() {
    let live = Live::new();
    let err = live.engine.inspect_container("../images/x").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid container: \"../images/x\" is not a name or id"),
        "{err}"
    );
    let err = live.engine.kill_container("abc", "KILL; rm").unwrap_err();
    assert_eq!(err.code(), "INVALID_CONFIG");
}

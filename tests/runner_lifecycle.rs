//! Which container a job gets and what is left afterwards, against the real engine.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::thread;

use common::fleet::{run_on, Fleet};
use herdctl_container::Outcome;
use serde_json::json;

#[test]
fn ephemeral_containers_are_kept_stopped_and_retention_keeps_the_newest() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let agent = fleet.agent("eph");
    let config = fleet.config(json!({ "max_containers": 3 }));
    let mut names = Vec::new();
    for i in 0..8 {
        let (lines, report) = fleet.run(fleet.job(&agent, &config, ["echo", &format!("job {i}")]));
        assert!(report.outcome.success(), "{}", report.outcome.describe());
        assert_eq!(lines, [format!("job {i}")]);
        names.push(report.container_name);
    }
    let left = fleet.containers(&agent);
    let left_names: Vec<&str> = left.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        left_names,
        names[5..]
            .iter()
            .rev()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert!(left.iter().all(|c| c.state == "exited"), "{left:?}");
    assert!(left.iter().all(|c| c.mode == "ephemeral"));
    // Stopped by SIGTERM through the init (143), not killed after waiting out the stop timeout
    // (137): stopping does not wait.
    for c in &left {
        let state = fleet
            .runner
            .engine()
            .inspect_container(&c.id)
            .unwrap()
            .state;
        assert_eq!(state.exit_code, 143, "{}", c.name);
    }
}

#[test]
fn retention_of_foo_never_touches_foo_bar() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let foo = fleet.agent("foo");
    let foo_bar = format!("{foo}-bar");
    // Registered for cleanup through a second `agent` call would change the name: track by hand.
    let config = fleet.config(json!({ "max_containers": 5 }));
    for agent in [&foo, &foo_bar, &foo_bar] {
        let (_, report) = fleet.run(fleet.job(agent, &config, ["true"]));
        assert!(report.outcome.success());
    }
    let report = fleet.runner.prune(&foo, 0).unwrap();
    assert_eq!(report.removed.len(), 1);
    assert!(fleet.containers(&foo).is_empty());
    let bars = fleet.containers(&foo_bar);
    assert_eq!(
        bars.len(),
        2,
        "foo's prune removed foo-bar's containers: {bars:?}"
    );
    fleet.runner.prune(&foo_bar, 0).unwrap();
}

#[test]
fn persistent_container_is_reused_across_runner_instances() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let agent = fleet.agent("pers");
    let config = fleet.config(json!({ "ephemeral": false }));
    let (_, first) = fleet.run(fleet.job(&agent, &config, ["sh", "-c", "echo one > /tmp/mark"]));
    assert!(first.outcome.success(), "{}", first.outcome.describe());
    let second_runner = fleet.second_runner();
    let (lines, second) = run_on(
        &second_runner,
        fleet.job(&agent, &config, ["cat", "/tmp/mark"]),
    );
    assert!(second.outcome.success(), "{}", second.outcome.describe());
    assert_eq!(second.container_id, first.container_id);
    assert_eq!(lines, ["one"]);
    assert_eq!(
        second.timings.create, None,
        "a reused container is not created again"
    );
    let all = fleet.containers(&agent);
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].state, "running",
        "a persistent container keeps running between jobs"
    );
}

#[test]
fn a_stopped_persistent_container_is_started_again() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let agent = fleet.agent("restart");
    let config = fleet.config(json!({ "ephemeral": false }));
    let (_, first) = fleet.run(fleet.job(&agent, &config, ["true"]));
    fleet
        .runner
        .engine()
        .stop_container(&first.container_id, 1)
        .unwrap();
    let (_, second) = fleet.run(fleet.job(&agent, &config, ["true"]));
    assert!(second.outcome.success(), "{}", second.outcome.describe());
    assert_eq!(second.container_id, first.container_id);
    assert!(second.timings.start.is_some());
}

#[test]
fn persistent_container_is_reused_across_processes() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let agent = fleet.agent("procs");
    let run_cli = || {
        let out = Command::new(env!("CARGO_BIN_EXE_herdctl-container"))
            .args([
                "run",
                "--agent",
                &agent,
                "--image",
                common::IMAGE,
                "--network",
                "none",
            ])
            .args(["--memory", "256m", "--persistent", "--state-dir"])
            .arg(fleet.state.path())
            .arg("--workspace")
            .arg(fleet.workspace.path())
            .args(["--", "sh", "-c", "hostname"])
            .output()
            .expect("run the CLI");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run_cli();
    let second = run_cli();
    assert_eq!(first, second, "both processes ran in the same container");
    let config = fleet.config(json!({ "ephemeral": false }));
    // The CLI's config differs from the fleet helper's (no test label): a third container for
    // this process's config is expected, the CLI's one is shared.
    let mine = fleet.run(fleet.job(&agent, &config, ["true"])).1;
    assert!(mine.outcome.success());
    let all = fleet.containers(&agent);
    assert_eq!(all.len(), 2, "{all:?}");
}

#[test]
fn concurrent_persistent_jobs_end_with_one_container() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let agent = fleet.agent("race");
    let config = fleet.config(json!({ "ephemeral": false }));
    let ids: HashSet<String> = thread::scope(|s| {
        let handles: Vec<_> = (0..10)
            .map(|_| {
                // A runner each: nothing in one process's memory decides the race.
                let runner = fleet.second_runner();
                let spec = fleet.job(&agent, &config, ["true"]);
                s.spawn(move || {
                    let (_, report) = run_on(&runner, spec);
                    assert!(report.outcome.success(), "{}", report.outcome.describe());
                    report.container_id
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(fleet.containers(&agent).len(), 1);
}

#[test]
fn a_config_change_gets_a_new_persistent_container_and_stops_the_idle_old_one() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let agent = fleet.agent("change");
    let old = fleet.config(json!({ "ephemeral": false }));
    let new = fleet.config(json!({ "ephemeral": false, "memory": "300m" }));
    let (_, a) = fleet.run(fleet.job(&agent, &old, ["true"]));
    let (_, b) = fleet.run(fleet.job(&agent, &new, ["true"]));
    assert!(a.outcome.success() && b.outcome.success());
    assert_ne!(a.container_id, b.container_id);
    let all = fleet.containers(&agent);
    let state = |id: &str| all.iter().find(|c| c.id == id).map(|c| c.state.clone());
    assert_eq!(state(&b.container_id).as_deref(), Some("running"));
    assert_eq!(state(&a.container_id).as_deref(), Some("exited"));
}

#[test]
fn gc_removes_containers_of_agents_that_are_gone() {
    let _gc = common::gc_exclusive();
    let fleet = Fleet::new();
    let live = fleet.agent("live");
    let gone = fleet.agent("gone");
    let config = fleet.config(json!({}));
    for agent in [&live, &gone] {
        assert!(fleet
            .run(fleet.job(agent, &config, ["true"]))
            .1
            .outcome
            .success());
    }
    // Other tests' agents run at the same time: gc with every other agent counted as live.
    let mut keep_alive: Vec<String> = fleet
        .runner
        .list(None)
        .unwrap()
        .into_iter()
        .map(|c| c.agent)
        .filter(|a| a != &gone)
        .collect();
    keep_alive.push(live.clone());
    let report = fleet.runner.gc(&keep_alive, 100).unwrap();
    assert_eq!(report.removed.len(), 1, "{report:?}");
    assert!(fleet.containers(&gone).is_empty());
    assert_eq!(fleet.containers(&live).len(), 1);
}

#[test]
fn a_missing_image_is_a_clear_error() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let agent = fleet.agent("noimage");
    let config = fleet.config(json!({ "image": "herdctl-test/absent:never" }));
    let err = fleet
        .runner
        .start(fleet.job(&agent, &config, ["true"]))
        .unwrap_err();
    assert_eq!(err.code(), "NOT_FOUND");
    let text = err.to_string();
    assert!(
        text.contains("no such image herdctl-test/absent:never"),
        "{text}"
    );
    assert!(
        text.contains("docker build -t herdctl-test/absent:never"),
        "{text}"
    );
    assert!(fleet.containers(&agent).is_empty());
}

#[test]
fn a_container_that_fails_to_start_fails_the_job_and_is_removed() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let agent = fleet.agent("nostart");
    // The engine accepts this tmpfs at create; the runtime refuses it at start.
    let config = fleet.config(json!({ "tmpfs": ["/scratch:size=abc"] }));
    let err = fleet
        .runner
        .start(fleet.job(&agent, &config, ["true"]))
        .unwrap_err();
    assert_eq!(err.code(), "ENGINE_ERROR", "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("POST /containers/"),
        "names the call: {text}"
    );
    assert!(
        text.contains("size=abc: invalid argument"),
        "the engine's reason is kept: {text}"
    );
    assert!(
        fleet.containers(&agent).is_empty(),
        "the failed container was kept"
    );
}

#[test]
fn a_container_that_stops_right_after_start_fails_the_job_with_its_reason() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let live = common::Live::new();
    let agent = fleet.agent("nosleep");
    // An image with busybox but no `sleep` on PATH: the init starts, then exits with 127.
    let tag = common::unique("nosleep");
    let image = format!("herdctl-test/nosleep:{tag}");
    live.engine
        .image_import(
            common::tar::busybox_rootfs(&tag),
            "herdctl-test/nosleep",
            &tag,
            &[],
        )
        .unwrap();
    live.track_image(&image);
    let config = fleet.config(json!({ "image": image }));
    // Which of the two the job sees depends on whether its exec came before the init's exit.
    match fleet.runner.start(fleet.job(&agent, &config, ["true"])) {
        Err(err) => {
            assert_eq!(err.code(), "CONTAINER_EXITED", "{err}");
            let text = err.to_string();
            // Docker's init says "exec sleep failed" (exit 127), Podman's "failed to exec pid1".
            assert!(
                text.contains("stopped right after it started (exit "),
                "{text}"
            );
            assert!(text.contains("exec"), "the container's own words: {text}");
            assert!(
                fleet.containers(&agent).is_empty(),
                "the dead container was kept"
            );
        }
        Ok(job) => {
            let report = job.finish();
            assert!(!report.outcome.success(), "{:?}", report.outcome);
        }
    }
}

#[test]
fn security_defaults_are_applied_and_no_credential_is_in_the_container_config() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let agent = fleet.agent("sec");
    let config = fleet.config(json!({ "pids_limit": 200, "user": "1234:2345" }));
    let mut spec = fleet.job(
        &agent,
        &config,
        [
            "sh",
            "-c",
            "id -u; test -n \"$ANTHROPIC_API_KEY\" && echo has-key; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status",
        ],
    );
    spec.credentials = Some(
        herdctl_container::Credentials::resolve(|k| {
            (k == "ANTHROPIC_API_KEY").then(|| "sk-ant-test-secret-value".to_string())
        })
        .unwrap(),
    );
    let (lines, report) = fleet.run(spec);
    assert!(report.outcome.success(), "{}", report.outcome.describe());
    // What the job itself has: no capability at all, and no way to gain one.
    assert_eq!(
        lines,
        [
            "1234",
            "has-key",
            "CapEff:\t0000000000000000",
            "NoNewPrivs:\t1"
        ]
    );
    let c = fleet
        .runner
        .engine()
        .inspect_container(&report.container_id)
        .unwrap();
    assert_eq!(c.config.user, "1234:2345");
    assert!(c
        .host_config
        .security_opt
        .iter()
        .any(|o| o == "no-new-privileges"));
    assert_eq!(c.host_config.memory, 256 << 20);
    assert_eq!(c.host_config.memory_swap, 256 << 20);
    assert_eq!(c.host_config.pids_limit, Some(200));
    assert_eq!(c.host_config.network_mode, "none");
    assert_eq!(c.host_config.init, Some(true));
    assert_eq!(c.config.labels["dev.herdctl.agent"], agent);
    assert_eq!(c.config.labels["dev.herdctl.managed"], "1");
    let everything = serde_json::to_string(&c.config.env).unwrap();
    assert!(
        !everything.contains("sk-ant-test-secret-value"),
        "{everything}"
    );
    let labels = serde_json::to_string(&c.config.labels).unwrap();
    assert!(!labels.contains("sk-ant"), "{labels}");
    assert!(matches!(report.outcome, Outcome::Exited(0)));
}

#[test]
fn pull_policy_if_missing_pulls_from_a_registry_with_progress() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let live = common::Live::new();
    let registry = common::registry::Registry::start();
    let agent = fleet.agent("pull");
    let tag = common::unique("pull");
    let remote = registry.push(&live, common::tar::runnable_rootfs(&tag), "runnable", &tag);

    let config = fleet.config(json!({ "image": remote }));
    // The default policy never pulls: the job fails and says how to get the image.
    let err = fleet
        .runner
        .start(fleet.job(&agent, &config, ["true"]))
        .unwrap_err();
    // Issue 11.7: saying how in words a herdctl user can act on (herdctl passes no options).
    let text = err.to_string();
    assert!(
        text.contains("HERDCTL_CONTAINER_PULL=if-missing in herdctl's environment"),
        "{text}"
    );
    assert!(text.contains("--pull if-missing on the CLI"), "{text}");

    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let mut options = herdctl_container::RunnerOptions::new(fleet.state.path());
    options.pull = herdctl_container::PullPolicy::IfMissing;
    options.pull_progress = Some(std::sync::Arc::new(move |p| {
        seen.lock().unwrap().push(p.status.clone())
    }));
    let runner = herdctl_container::Runner::new(live.engine.clone(), options).unwrap();
    let (lines, report) = run_on(&runner, fleet.job(&agent, &config, ["echo", "pulled"]));
    assert!(report.outcome.success(), "{}", report.outcome.describe());
    assert_eq!(lines, ["pulled"]);
    let events = events.lock().unwrap();
    assert!(events.iter().any(|s| s == "Pull complete"), "{events:?}");
    assert!(
        events
            .iter()
            .any(|s| s.starts_with("Status: Downloaded newer image")),
        "{events:?}"
    );
}

//! What the runner recovers from, against the real engine: host directories replaced under a
//! persistent container, a process killed mid-job, an engine that stops answering before the
//! container is stopped, and limits a `host_config` override removed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::dying_proxy::Proxy;
use common::fleet::{run_on, Fleet};
use herdctl_container::{
    resolve_docker_config, Engine, JobSpec, ManagedContainer, Runner, RunnerOptions,
};
use serde_json::json;

/// Not a test of its own: the body of the child processes that the tests below start (this test
/// binary again, with `HERDCTL_TEST_CHILD` set). Run plainly, there is nothing for it to do.
///
/// `job`: starts an ephemeral job (`sleep 600`) of `HERDCTL_TEST_AGENT`, prints `started`, and
/// waits to be killed. `new-runner`: makes a runner over the state directory and exits.
#[test]
fn child_process() {
    let _gc = common::gc_shared();
    let Ok(role) = std::env::var("HERDCTL_TEST_CHILD") else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is set by the parent"));
    let engine = Engine::connect().expect("the engine");
    let runner = Runner::new(engine, RunnerOptions::new(var("HERDCTL_TEST_STATE"))).unwrap();
    match role.as_str() {
        "new-runner" => println!("child: ready"),
        "job" => {
            let config = resolve_docker_config(&json!({
                "image": common::IMAGE, "network": "none", "memory": "256m",
                "labels": {"herdctl-test": "1"},
            }))
            .unwrap();
            let spec = JobSpec::new(
                var("HERDCTL_TEST_AGENT"),
                config,
                var("HERDCTL_TEST_WORKSPACE"),
                ["sleep", "600"],
            );
            let _job = runner.start(spec).unwrap();
            println!("child: started");
            loop {
                std::thread::park();
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

/// A child process, killed when dropped (a failed assertion must not leave it running).
struct ChildProcess(Child);

impl ChildProcess {
    /// SIGKILL: nothing of the process runs after it, no destructor, no cleanup.
    fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }

    fn wait_success(&mut self) {
        let status = self.0.wait().unwrap();
        assert!(status.success(), "the child failed: {status}");
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts this test binary as a child in `role` over the fleet's state directory, and waits
/// until it said it is ready.
fn child(fleet: &Fleet, role: &str, agent: &str) -> ChildProcess {
    let mut child = ChildProcess(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("HERDCTL_TEST_CHILD", role)
            .env("HERDCTL_TEST_STATE", fleet.state.path())
            .env("HERDCTL_TEST_WORKSPACE", fleet.workspace.path())
            .env("HERDCTL_TEST_AGENT", agent)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the child process"),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    loop {
        match lines.next() {
            // libtest prints `test child_process ... ` on the same line first.
            Some(Ok(line))
                if line.ends_with("child: ready") || line.ends_with("child: started") =>
            {
                break
            }
            Some(Ok(_)) => {}
            other => panic!("child {role} ended before it was ready: {other:?}"),
        }
    }
    // Read the rest, so the child never writes to a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    child
}

fn only_container(fleet: &Fleet, agent: &str) -> ManagedContainer {
    let all = fleet.containers(agent);
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().unwrap()
}

fn running(fleet: &Fleet, id: &str) -> bool {
    fleet
        .runner
        .engine()
        .inspect_container(id)
        .unwrap()
        .state
        .running
}

/// gc with every agent on the engine counted as live: other tests run at the same time.
fn gc_everyone(runner: &Runner) -> herdctl_container::PruneReport {
    let everyone: Vec<String> = runner
        .list(None)
        .unwrap()
        .into_iter()
        .map(|c| c.agent)
        .collect();
    runner.gc(&everyone, 1000).unwrap()
}

#[test]
fn the_container_of_a_killed_process_is_stopped_by_the_next_runner() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let agent = fleet.agent("orphan");
    let mut owner = child(&fleet, "job", &agent);
    let container = only_container(&fleet, &agent);
    assert_eq!(container.state, "running");
    owner.kill();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        running(&fleet, &container.id),
        "nothing else stops it: the next runner must"
    );

    child(&fleet, "new-runner", "").wait_success();
    assert!(
        !running(&fleet, &container.id),
        "the next runner's start stopped the dead process's container"
    );
    // The dead owner's lock file went with its last container.
    let labels = fleet
        .runner
        .engine()
        .inspect_container(&container.id)
        .unwrap()
        .config
        .labels;
    let lock = fleet
        .state
        .path()
        .join("owners")
        .join(&labels["dev.herdctl.owner"]);
    assert!(!lock.exists(), "{}", lock.display());
}

#[test]
fn a_live_owners_container_is_never_reaped() {
    let _gc = common::gc_exclusive();
    let fleet = Fleet::new();
    let agent = fleet.agent("owned");
    let mut owner = child(&fleet, "job", &agent);
    let container = only_container(&fleet, &agent);

    // Another process's first runner, and gc from this one: the owner lives, so both leave it.
    child(&fleet, "new-runner", "").wait_success();
    let report = gc_everyone(&fleet.second_runner());
    assert!(!report.stopped.contains(&container.id), "{report:?}");
    assert!(running(&fleet, &container.id));

    owner.kill();
    let report = gc_everyone(&fleet.runner);
    assert_eq!(
        report.stopped,
        std::slice::from_ref(&container.id),
        "{report:?}"
    );
    assert!(!running(&fleet, &container.id));
}

#[test]
fn a_persistent_container_whose_mounts_were_replaced_is_replaced() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let agent = fleet.agent("stale");
    let config = fleet.config(json!({ "ephemeral": false }));
    let (_, first) = fleet.run(fleet.job(&agent, &config, ["ls", "/workspace"]));
    assert!(first.outcome.success(), "{}", first.outcome.describe());

    // Both directories deleted and made again at the same paths, as a redeploy or a cleanup
    // script would.
    for dir in [fleet.workspace.path(), fleet.state.path()] {
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::create_dir(dir).unwrap();
    }
    // Open to the container user again, as `Fleet::new` made it.
    std::fs::set_permissions(
        fleet.workspace.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::write(fleet.workspace.path().join("f"), "two\n").unwrap();

    let (lines, second) = fleet.run(fleet.job(&agent, &config, ["cat", "/workspace/f"]));
    assert!(
        second.outcome.success(),
        "{}: {}",
        second.outcome.describe(),
        second.stderr_tail
    );
    assert_eq!(lines, ["two"], "the new container sees the new workspace");
    assert_ne!(second.container_id, first.container_id);
    assert_eq!(second.container_name, first.container_name);
    assert!(
        second.warnings.iter().any(|w| w.contains("was replaced")),
        "{:?}",
        second.warnings
    );
    // The old one was renamed out of the way and, idle, stopped; retention takes it later.
    let old = fleet
        .runner
        .engine()
        .inspect_container(&first.container_id)
        .unwrap();
    assert!(old.name.contains("-retired-"), "{}", old.name);
    assert!(!old.state.running);

    // And the session directory works again: a third job reuses the new container.
    let (_, third) = fleet.run(fleet.job(&agent, &config, ["ls", "/home/claude/.claude"]));
    assert!(third.outcome.success(), "{}", third.outcome.describe());
    assert_eq!(third.container_id, second.container_id);
    assert!(third.warnings.is_empty(), "{:?}", third.warnings);
}

#[test]
fn limits_removed_by_host_config_are_reported_on_every_job() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let agent = fleet.agent("nolimits");
    let config = fleet.config(json!({
        "ephemeral": false,
        "host_config": {"Memory": 0, "PidsLimit": -1},
    }));
    for _ in 0..2 {
        let (_, report) = fleet.run(fleet.job(&agent, &config, ["true"]));
        assert!(report.outcome.success(), "{}", report.outcome.describe());
        let all = report.warnings.join("\n");
        assert!(all.contains("no memory limit"), "{all}");
        assert!(all.contains("no pids limit"), "{all}");
        assert_eq!(report.summary().warnings, report.warnings);
    }
    // The defaults warn about nothing.
    let (_, report) = fleet.run(fleet.job(&agent, &fleet.config(json!({})), ["true"]));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn a_stop_the_engine_does_not_answer_is_a_warning_and_the_container_is_stopped_later() {
    let _gc = common::gc_exclusive();
    let fleet = Fleet::new();
    let agent = fleet.agent("nostop");
    let proxy = Proxy::start("/stop?t=");
    let runner = Runner::new(
        Engine::unix(&proxy.path).unwrap(),
        RunnerOptions::new(fleet.state.path()),
    )
    .unwrap();
    let config = fleet.config(json!({}));
    let (lines, report) = run_on(&runner, fleet.job(&agent, &config, ["echo", "hi"]));
    assert_eq!(lines, ["hi"]);
    assert!(report.outcome.success(), "{}", report.outcome.describe());
    assert!(proxy.dead.load(std::sync::atomic::Ordering::SeqCst));
    let stop = report
        .warnings
        .iter()
        .find(|w| w.starts_with("stop container"))
        .unwrap_or_else(|| panic!("{:?}", report.warnings));
    assert!(stop.contains(&report.container_name), "{stop}");
    assert!(stop.contains("left running"), "{stop}");
    assert_eq!(report.summary().warnings, report.warnings);
    assert!(running(&fleet, &report.container_id));

    // The engine answers again (the fleet's runner talks to it directly): this process's next
    // gc stops the container its failed stop left running, and no job of it is using.
    let report_gc = gc_everyone(&fleet.runner);
    assert!(
        report_gc.stopped.contains(&report.container_id),
        "{report_gc:?}"
    );
    assert!(!running(&fleet, &report.container_id));
}

//! Warm pools against the real engine: claim, replace, retire, cleanup, and processes racing
//! for one pool container.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fleet::{run_on, Fleet};
use herdctl_container::{resolve_docker_config, DockerConfig, ManagedContainer, Runner};
use serde_json::json;

/// How long a pool may take to warm on a loaded machine.
const WAIT: Duration = Duration::from_secs(90);

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let give_up = Instant::now() + WAIT;
    while !ok() {
        assert!(Instant::now() < give_up, "waited {WAIT:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn with_mode<'a>(all: &'a [ManagedContainer], mode: &str) -> Vec<&'a ManagedContainer> {
    all.iter().filter(|c| c.mode == mode).collect()
}

#[test]
fn a_job_takes_a_warm_container_and_a_replacement_is_warmed() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let runner = fleet.pool_runner(1);
    let agent = fleet.agent("pool");
    let config = fleet.config(json!({}));
    let spec = fleet.job(&agent, &config, ["echo", "hi"]);
    runner.warm(&spec, WAIT).unwrap();
    assert_eq!(runner.warm_pool_idle(&agent), 1);
    let before = fleet.containers(&agent);
    let idle = with_mode(&before, "pool");
    assert_eq!(idle.len(), 1, "{before:?}");
    assert_eq!(idle[0].state, "running");

    let (lines, report) = run_on(&runner, spec);
    assert!(report.outcome.success(), "{}", report.outcome.describe());
    assert_eq!(lines, ["hi"]);
    assert_eq!(report.container_id, idle[0].id, "the job took the warm one");
    assert_eq!(
        report.timings.create, None,
        "nothing was created for the job"
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);

    wait_until("the replacement", || runner.warm_pool_idle(&agent) == 1);
    let after = fleet.containers(&agent);
    let taken = after.iter().find(|c| c.id == report.container_id).unwrap();
    assert_eq!(
        (taken.mode.as_str(), taken.state.as_str()),
        ("ephemeral", "exited"),
        "kept after its job like any ephemeral container"
    );
    let fresh = with_mode(&after, "pool");
    assert_eq!(fresh.len(), 1, "{after:?}");
    assert_ne!(fresh[0].id, report.container_id);
}

#[test]
fn a_pool_container_looks_to_its_job_like_a_fresh_one() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let runner = fleet.pool_runner(1);
    let agent = fleet.agent("same");
    let config = fleet.config(json!({}));
    let probe = "id; pwd; env | grep -v -e ^HOSTNAME= | sort; ls -A /tmp; \
                 grep -E '^(NoNewPrivs|CapEff|CapBnd)' /proc/self/status; touch /tmp/left";
    // The first job makes its own container (the pool is empty); the second takes a warm one.
    let (cold_lines, cold) = run_on(&runner, fleet.job(&agent, &config, ["sh", "-c", probe]));
    assert!(cold.timings.create.is_some());
    wait_until("a warm container", || runner.warm_pool_idle(&agent) == 1);
    let (warm_lines, warm) = run_on(&runner, fleet.job(&agent, &config, ["sh", "-c", probe]));
    assert!(cold.outcome.success() && warm.outcome.success());
    assert_eq!(warm.timings.create, None, "taken from the pool");
    assert_eq!(warm_lines, cold_lines);
    assert!(warm.warnings.is_empty(), "{:?}", warm.warnings);
}

#[test]
fn a_config_change_retires_the_pool() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let runner = fleet.pool_runner(2);
    let agent = fleet.agent("change");
    let old = fleet.config(json!({}));
    let new = fleet.config(json!({ "memory": "300m" }));
    runner
        .warm(&fleet.job(&agent, &old, ["true"]), WAIT)
        .unwrap();
    let old_hash = with_mode(&fleet.containers(&agent), "pool")[0]
        .config_hash
        .clone();
    let (_, report) = run_on(&runner, fleet.job(&agent, &new, ["true"]));
    assert!(report.outcome.success());
    assert!(
        report.timings.create.is_some(),
        "no container of the old config"
    );
    wait_until("the old pool's removal and the new one's warming", || {
        let all = fleet.containers(&agent);
        let pool = with_mode(&all, "pool");
        pool.len() == 2 && pool.iter().all(|c| c.config_hash != old_hash)
    });
    assert!(fleet
        .containers(&agent)
        .iter()
        .all(|c| c.config_hash != old_hash));
}

#[test]
fn a_pool_checked_with_the_runners_opt_in_is_not_for_a_runner_without_it() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let loose = fleet.pool_runner_with(1, true);
    let strict = fleet.pool_runner(1);
    let agent = fleet.agent("optin");
    let config = fleet.config(json!({}));
    loose
        .warm(&fleet.job(&agent, &config, ["true"]), WAIT)
        .unwrap();
    let warm = with_mode(&fleet.containers(&agent), "pool")[0].id.clone();
    let (_, report) = run_on(&strict, fleet.job(&agent, &config, ["true"]));
    assert!(report.outcome.success(), "{}", report.outcome.describe());
    assert_ne!(report.container_id, warm);
    assert!(report.timings.create.is_some());
    wait_until("the loose pool's retirement", || {
        fleet.containers(&agent).iter().all(|c| c.id != warm)
    });
}

#[test]
fn a_pool_container_that_died_is_never_handed_out() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let runner = fleet.pool_runner(1);
    let agent = fleet.agent("died");
    let config = fleet.config(json!({}));
    let spec = fleet.job(&agent, &config, ["echo", "ok"]);
    runner.warm(&spec, WAIT).unwrap();
    let dead = with_mode(&fleet.containers(&agent), "pool")[0].id.clone();
    runner.engine().kill_container(&dead, "KILL").unwrap();
    wait_until("the kill", || {
        fleet
            .containers(&agent)
            .iter()
            .any(|c| c.id == dead && c.state == "exited")
    });
    let (lines, report) = run_on(&runner, spec);
    assert!(report.outcome.success(), "{}", report.outcome.describe());
    assert_eq!(lines, ["ok"]);
    assert_ne!(report.container_id, dead);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("could not run the job")),
        "{:?}",
        report.warnings
    );
    assert!(
        fleet.containers(&agent).iter().all(|c| c.id != dead),
        "the dead one was removed"
    );
}

#[test]
fn a_pool_container_whose_mount_went_stale_is_never_handed_out() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let runner = fleet.pool_runner(1);
    let agent = fleet.agent("stale");
    let data = tempfile::tempdir().unwrap();
    let vol = data.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("mark"), "old\n").unwrap();
    let config = fleet.config(json!({ "volumes": [format!("{}:/data:ro", vol.display())] }));
    let spec = fleet.job(&agent, &config, ["cat", "/data/mark"]);
    runner.warm(&spec, WAIT).unwrap();
    let stale = with_mode(&fleet.containers(&agent), "pool")[0].id.clone();
    // The directory is replaced (as a checkout or a restore does): the warm container still
    // mounts the old one.
    std::fs::rename(&vol, data.path().join("old")).unwrap();
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("mark"), "new\n").unwrap();
    let (lines, report) = run_on(&runner, spec);
    assert!(report.outcome.success(), "{}", report.outcome.describe());
    assert_eq!(
        lines,
        ["new"],
        "the job saw the host's directory as it is now"
    );
    assert_ne!(report.container_id, stale);
    wait_until("the stale one's removal", || {
        fleet.containers(&agent).iter().all(|c| c.id != stale)
    });
}

#[test]
fn close_removes_the_idle_containers_and_keeps_the_jobs_ones() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let runner = fleet.pool_runner(2);
    let agent = fleet.agent("close");
    let config = fleet.config(json!({}));
    let spec = fleet.job(&agent, &config, ["true"]);
    runner.warm(&spec, WAIT).unwrap();
    let (_, report) = run_on(&runner, spec);
    assert!(report.outcome.success());
    let closed = runner.close();
    assert!(closed.warnings.is_empty(), "{:?}", closed.warnings);
    let left = fleet.containers(&agent);
    assert!(with_mode(&left, "pool").is_empty(), "{left:?}");
    assert!(
        !closed.removed.is_empty() && closed.removed.iter().all(|id| *id != report.container_id)
    );
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        (left[0].id.as_str(), left[0].state.as_str()),
        (report.container_id.as_str(), "exited")
    );
    // Nothing warms after the close, and a closed runner's next job starts a pool again.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fleet.containers(&agent).len(), 1);
}

#[test]
fn retention_counts_pool_containers_apart() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let runner = fleet.pool_runner(2);
    let agent = fleet.agent("keep");
    let config = fleet.config(json!({ "max_containers": 1 }));
    let mut last = String::new();
    for _ in 0..3 {
        let (_, report) = run_on(&runner, fleet.job(&agent, &config, ["true"]));
        assert!(report.outcome.success());
        last = report.container_id;
    }
    wait_until("a full pool", || runner.warm_pool_idle(&agent) == 2);
    let all = fleet.containers(&agent);
    let kept: Vec<_> = all.iter().filter(|c| c.mode == "ephemeral").collect();
    assert_eq!(kept.len(), 1, "{all:?}");
    assert_eq!(kept[0].id, last, "the newest job's container is kept");
    assert_eq!(with_mode(&all, "pool").len(), 2, "{all:?}");
    // A prune to zero removes the job's container, never an idle one.
    let pruned = runner.prune(&agent, 0).unwrap();
    assert_eq!(pruned.removed, [last]);
    assert_eq!(with_mode(&fleet.containers(&agent), "pool").len(), 2);
}

/// The CLI's docker block for `agent`, and the config a runner resolves from it: the same
/// config hash, so a CLI job can take a container of this process's pool.
fn cli_config() -> DockerConfig {
    resolve_docker_config(&json!({"image": common::IMAGE, "network": "none", "memory": "256m"}))
        .unwrap()
}

fn cli(fleet: &Fleet, agent: &str, pool: usize, argv: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herdctl-container"));
    cmd.args(["run", "--agent", agent, "--image", common::IMAGE])
        .args(["--network", "none", "--memory", "256m", "--state-dir"])
        .arg(fleet.state.path())
        .arg("--workspace")
        .arg(fleet.workspace.path())
        .args(["--warm-pool", &pool.to_string(), "--"])
        .args(argv)
        .env_remove("HERDCTL_CONTAINER_WARM_POOL");
    cmd
}

#[test]
fn processes_racing_for_one_pool_container_never_share_it() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let runner = fleet.pool_runner(1);
    let agent = fleet.agent("race");
    let config = cli_config();
    runner
        .warm(&fleet.job(&agent, &config, ["true"]), WAIT)
        .unwrap();
    let warm = with_mode(&fleet.containers(&agent), "pool")[0].id.clone();
    // Six processes at once; each prints the container it ran in and holds it a moment, so a
    // second job in the same container would run alongside the first.
    let children: Vec<Child> = (0..6)
        .map(|_| {
            cli(&fleet, &agent, 1, &["sh", "-c", "hostname; sleep 1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run the CLI")
        })
        .collect();
    let mut hosts = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        hosts.push(String::from_utf8(out.stdout).unwrap().trim().to_string());
    }
    let in_warm = hosts
        .iter()
        .filter(|h| warm.starts_with(h.as_str()))
        .count();
    assert_eq!(
        in_warm, 1,
        "exactly one job ran in the warm container: {hosts:?}"
    );
    let distinct: std::collections::HashSet<_> = hosts.iter().collect();
    assert_eq!(distinct.len(), hosts.len(), "{hosts:?}");
    // Every process removed its own idle containers when it ended; this one's pool remains.
    runner.close();
    let all = fleet.containers(&agent);
    assert!(with_mode(&all, "pool").is_empty(), "{all:?}");
}

fn kill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

fn wait_for_pool(fleet: &Fleet, agent: &str, n: usize) -> Vec<ManagedContainer> {
    let mut found = Vec::new();
    wait_until("the child's pool", || {
        found = fleet.containers(agent);
        with_mode(&found, "pool").len() == n
    });
    found
}

#[test]
fn gc_removes_the_idle_pool_of_a_process_that_died() {
    let _gc = common::gc_exclusive();
    let fleet = Fleet::new();
    let agent = fleet.agent("orphan");
    let mut child = cli(&fleet, &agent, 2, &["sleep", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let found = wait_for_pool(&fleet, &agent, 2);
    let pid = child.id();
    kill(&mut child);
    let idle: Vec<String> = with_mode(&found, "pool")
        .iter()
        .map(|c| c.id.clone())
        .collect();
    let report = gc(&fleet, &agent);
    for id in &idle {
        assert!(report.removed.contains(id), "{report:?}");
    }
    let left = fleet.containers(&agent);
    assert!(left.iter().all(|c| !idle.contains(&c.id)), "{left:?}");
    let owners = owners(fleet.state.path());
    assert!(
        !owners.iter().any(|o| o.starts_with(&format!("{pid}-"))),
        "the dead process's lock file went with its pool: {owners:?}"
    );
}

#[test]
fn gc_stops_a_pool_container_whose_jobs_process_died() {
    let _gc = common::gc_exclusive();
    let fleet = Fleet::new();
    let runner = fleet.pool_runner(1);
    let agent = fleet.agent("claimed");
    runner
        .warm(&fleet.job(&agent, &cli_config(), ["true"]), WAIT)
        .unwrap();
    let warm = with_mode(&fleet.containers(&agent), "pool")[0].id.clone();
    // Another process takes it for a long job (a pool of its own, so it looks at others'),
    // then dies mid-job.
    let mut child = cli(&fleet, &agent, 1, &["sleep", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the child's job in the warm container", || {
        fleet
            .containers(&agent)
            .iter()
            .any(|c| c.id == warm && c.mode == "ephemeral")
    });
    kill(&mut child);
    gc(&fleet, &agent);
    let all = fleet.containers(&agent);
    let taken = all
        .iter()
        .find(|c| c.id == warm)
        .expect("kept for inspection");
    assert_eq!(taken.state, "exited", "{all:?}");
    assert_eq!(taken.mode, "ephemeral");
}

#[test]
fn a_cli_run_leaves_no_idle_container_behind() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let agent = fleet.agent("cli");
    let mut child = cli(&fleet, &agent, 2, &["sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_pool(&fleet, &agent, 2);
    // SIGTERM cancels the job like Ctrl-C; the run then retires its pool before it exits.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    let all = fleet.containers(&agent);
    assert!(with_mode(&all, "pool").is_empty(), "{all:?}");
    assert_eq!(all.len(), 1, "the job's own container is kept: {all:?}");
}

#[test]
fn a_bad_pool_size_names_its_field() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let out = cli(&fleet, "a", 65, &["true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid warm_pool: \"65\" is not a warm pool size; expected a whole number from 0 to 64"),
        "{err}"
    );
    let runner_err = Runner::new(
        herdctl_container::Engine::connect().unwrap(),
        herdctl_container::RunnerOptions {
            warm_pool: Some(1000),
            ..herdctl_container::RunnerOptions::new(fleet.state.path())
        },
    )
    .unwrap_err();
    assert!(
        runner_err.to_string().starts_with("invalid warm_pool:"),
        "{runner_err}"
    );
}

/// A gc that counts every agent as live (other tests' run at the same time): it removes only
/// what dead processes left of this fleet's pools.
fn gc(fleet: &Fleet, agent: &str) -> herdctl_container::PruneReport {
    let mut live: Vec<String> = fleet
        .runner
        .list(None)
        .unwrap()
        .into_iter()
        .map(|c| c.agent)
        .collect();
    live.push(agent.to_string());
    fleet.runner.gc(&live, 100).unwrap()
}

fn owners(state: &Path) -> Vec<String> {
    std::fs::read_dir(state.join("owners"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

//! Many jobs at once against the real engine: what the runner adds to the engine's own work is
//! no more than one job's calls each (retention and the inside check are shared, not repeated).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use common::fleet::{run_on, Fleet};
use herdctl_container::engine::{CallEvent, EngineOptions};
use herdctl_container::{Engine, Runner, RunnerOptions};
use serde_json::json;

type Counts = Arc<Mutex<BTreeMap<String, usize>>>;

/// A runner over the fleet's state directory whose engine counts its calls by method and the
/// path's last part (`DELETE containers`, `POST exec`; `GET list` for the list call).
fn counting_runner(fleet: &Fleet) -> (Runner, Counts) {
    let counts: Counts = Arc::default();
    let seen = counts.clone();
    let mut opts = EngineOptions::from_env().unwrap();
    opts.on_call = Some(Arc::new(move |e: &CallEvent| {
        let parts: Vec<&str> = e.path.split('/').filter(|p| !p.is_empty()).collect();
        // /v1.41/containers/{id} is a container call; /v1.41/containers/{id}/exec an exec's.
        let what = match parts.as_slice() {
            [_, "containers", "json"] => "list",
            [_, "containers", _] => "containers",
            [.., last] => last,
            [] => "",
        };
        *seen
            .lock()
            .unwrap()
            .entry(format!("{} {what}", e.method))
            .or_default() += 1;
    }));
    let engine = Engine::with_options(opts).unwrap();
    let runner = Runner::new(engine, RunnerOptions::new(fleet.state.path())).unwrap();
    (runner, counts)
}

fn at_once(n: usize, job: impl Fn(usize) + Send + Sync) {
    let barrier = Barrier::new(n);
    thread::scope(|s| {
        for i in 0..n {
            let (barrier, job) = (&barrier, &job);
            s.spawn(move || {
                barrier.wait();
                job(i)
            });
        }
    });
}

#[test]
fn jobs_ending_together_share_retention_and_remove_each_container_once() {
    let fleet = Fleet::new();
    let (runner, counts) = counting_runner(&fleet);
    let agent = fleet.agent("together");
    let config = fleet.config(json!({ "max_containers": 3 }));
    const JOBS: usize = 12;
    at_once(JOBS, |_| {
        let (_, report) = run_on(&runner, fleet.job(&agent, &config, ["true"]));
        assert!(report.outcome.success(), "{}", report.outcome.describe());
    });
    let left = fleet.containers(&agent);
    assert_eq!(
        left.len(),
        3,
        "retention held once every job had ended: {left:?}"
    );
    let counts = counts.lock().unwrap().clone();
    let removes = counts.get("DELETE containers").copied().unwrap_or(0);
    assert_eq!(removes, JOBS - 3, "each victim removed once: {counts:?}");
    assert!(
        counts.get("GET list").copied().unwrap_or(0) <= JOBS,
        "at most one list per job: {counts:?}"
    );
}

#[test]
fn jobs_arriving_together_at_a_persistent_container_share_one_inside_check() {
    let fleet = Fleet::new();
    let agent = fleet.agent("check");
    let config = fleet.config(json!({ "ephemeral": false }));
    // Made by another runner, as herdctl's runner per job would find it.
    assert!(fleet
        .run(fleet.job(&agent, &config, ["true"]))
        .1
        .outcome
        .success());
    let (runner, counts) = counting_runner(&fleet);
    const JOBS: usize = 8;
    at_once(JOBS, |i| {
        let (lines, report) = run_on(
            &runner,
            fleet.job(&agent, &config, ["echo", &i.to_string()]),
        );
        assert!(report.outcome.success(), "{}", report.outcome.describe());
        assert_eq!(lines, [i.to_string()]);
    });
    let counts = counts.lock().unwrap().clone();
    // Each job's own exec; the fleet's runner checked the container when it made it, and this
    // process remembers that for every runner.
    assert_eq!(
        counts.get("POST exec").copied().unwrap_or(0),
        JOBS,
        "{counts:?}"
    );
}

//! Running one job: output, input, exit, cancel, deadline and death, against the real engine.

mod common;

use std::time::{Duration, Instant};

use common::fleet::{sha256_hex, Fleet};
use herdctl_container::{Credentials, Job, Outcome};
use serde_json::json;

/// The command lines of every process in the container.
fn processes(fleet: &Fleet, container: &str) -> Vec<String> {
    let top = fleet.runner.engine().container_top(container).expect("top");
    top.commands().into_iter().map(String::from).collect()
}

/// Now as the engine's event filters take it: Unix seconds with a fraction.
fn unix_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// Waits (up to 5 s) until every command in `wanted` runs in the container: a job's line can
/// arrive before the shell that printed it has forked (or exec'd) the next command.
fn wait_for_processes(fleet: &Fleet, container: &str, wanted: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = processes(fleet, container);
        let missing: Vec<_> = wanted
            .iter()
            .filter(|p| !now.iter().any(|c| c == *p))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing:?} not running: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn exit_codes_are_reported_exactly() {
    let fleet = Fleet::new();
    let agent = fleet.agent("exit");
    let config = fleet.config(json!({ "ephemeral": false }));
    let outcome = |argv: &[&str]| {
        fleet
            .run(fleet.job(&agent, &config, argv.to_vec()))
            .1
            .outcome
    };
    assert!(matches!(outcome(&["true"]), Outcome::Exited(0)));
    assert!(matches!(
        outcome(&["sh", "-c", "exit 3"]),
        Outcome::Exited(3)
    ));
    // The shell says 127.
    assert!(matches!(
        outcome(&["sh", "-c", "no-such-program"]),
        Outcome::CommandNotFound { code: 127 }
    ));
    // The engine says 126 when the runtime cannot find the program (Podman: 127).
    assert!(matches!(
        outcome(&["no-such-program"]),
        Outcome::CommandNotFound { code: 126 | 127 }
    ));
}

#[test]
fn stdout_lines_arrive_whole_and_stderr_is_kept_apart() {
    let fleet = Fleet::new();
    let agent = fleet.agent("lines");
    let config = fleet.config(json!({}));
    // A 200 KB JSON line spans many frames of the multiplexed stream; stderr is interleaved.
    let script = r#"node -e '
        const big = JSON.stringify({type: "assistant", text: "é".repeat(100000)});
        process.stderr.write("warming up\n");
        process.stdout.write(big + "\n");
        process.stderr.write("done\n");
        process.stdout.write("{\"type\":\"result\"}");
    '"#;
    let (lines, report) = fleet.run(fleet.job(&agent, &config, ["sh", "-c", script]));
    assert!(report.outcome.success(), "{}", report.outcome.describe());
    assert_eq!(lines.len(), 2);
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["text"].as_str().unwrap().chars().count(), 100_000);
    assert_eq!(
        lines[1], r#"{"type":"result"}"#,
        "a last line without newline is kept"
    );
    assert_eq!(report.stderr_tail, "warming up\ndone\n");
    assert!(report.timings.first_byte.is_some() && report.timings.end.is_some());
}

#[test]
fn an_8_mib_prompt_arrives_byte_identical() {
    let fleet = Fleet::new();
    let agent = fleet.agent("prompt");
    let config = fleet.config(json!({}));
    let piece =
        "Fix $1234 and `rm -rf /` in \"quotes\" and 'single' \\ back\nnew line ünïcödé 😀 \t tab\n";
    let mut prompt = String::new();
    while prompt.len() < 8 << 20 {
        prompt.push_str(piece);
    }
    let mut spec = fleet.job(
        &agent,
        &config,
        ["sh", "-c", "sha256sum | cut -c1-64; echo done"],
    );
    spec.stdin = prompt.clone().into_bytes();
    let (lines, report) = fleet.run(spec);
    assert!(report.outcome.success(), "{}", report.outcome.describe());
    assert_eq!(lines, [sha256_hex(prompt.as_bytes()), "done".to_string()]);
}

#[test]
fn a_line_past_the_limit_ends_the_job_with_a_clear_error() {
    let fleet = Fleet::new();
    let agent = fleet.agent("longline");
    let config = fleet.config(json!({}));
    let engine = fleet.runner.engine().clone();
    let mut options = herdctl_container::RunnerOptions::new(fleet.state.path());
    options.max_line_bytes = 1 << 20;
    let runner = herdctl_container::Runner::new(engine, options).unwrap();
    // 4 MiB without a newline, then it would go on forever.
    let spec = fleet.job(
        &agent,
        &config,
        [
            "sh",
            "-c",
            "head -c 4194304 /dev/zero | tr '\\0' x; sleep 600",
        ],
    );
    let started = Instant::now();
    let (_, report) = common::fleet::run_on(&runner, spec);
    match &report.outcome {
        Outcome::Failed(e) => assert_eq!(e.code(), "LINE_TOO_LONG", "{e}"),
        other => panic!("expected a line-too-long failure, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the job was stopped, not waited out"
    );
}

#[test]
fn a_killed_container_fails_the_job_within_a_second() {
    let fleet = Fleet::new();
    let agent = fleet.agent("killed");
    let config = fleet.config(json!({}));
    let mut job = start_sleeper(&fleet, &agent, &config);
    let container = job_container(&fleet, &agent);
    let killed_at = Instant::now();
    fleet
        .runner
        .engine()
        .kill_container(&container, "KILL")
        .unwrap();
    assert_eq!(job.next_line(), None);
    let report = job.finish();
    let took = killed_at.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the job noticed after {took:?}"
    );
    match report.outcome {
        Outcome::ContainerDied {
            exit_code,
            oom_killed,
        } => {
            assert_eq!(exit_code, Some(137));
            // 137 with a memory limit counts as a likely OOM only when the engine does not say
            // otherwise; docker says it was not.
            let _ = oom_killed;
        }
        other => panic!("expected ContainerDied, got {other:?}"),
    }
}

#[test]
fn running_out_of_memory_is_reported_as_oom() {
    let fleet = Fleet::new();
    let agent = fleet.agent("oom");
    let config = fleet.config(json!({ "memory": "48m" }));
    let eat = "const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1));";
    let (_, report) = fleet.run(fleet.job(&agent, &config, ["node", "-e", eat]));
    match report.outcome {
        Outcome::Killed {
            code: 137,
            oom: true,
        }
        | Outcome::ContainerDied {
            oom_killed: true, ..
        } => {}
        other => panic!("expected an OOM report, got {other:?}"),
    }
}

/// A job that prints `up` and then sleeps, started and seen to be up.
fn start_sleeper(fleet: &Fleet, agent: &str, config: &herdctl_container::DockerConfig) -> Job {
    let mut job = fleet
        .runner
        .start(fleet.job(agent, config, ["sh", "-c", "echo up; sleep 600"]))
        .unwrap();
    assert_eq!(job.next_line(), Some(&b"up"[..]));
    job
}

/// The id of the agent's only container.
fn job_container(fleet: &Fleet, agent: &str) -> String {
    let found = fleet.containers(agent);
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].id.clone()
}

#[test]
fn cancel_kills_exactly_the_jobs_processes_in_a_shared_container() {
    let fleet = Fleet::new();
    let agent = fleet.agent("cancel");
    let config = fleet.config(json!({ "ephemeral": false }));
    let mut other = fleet
        .runner
        .start(fleet.job(&agent, &config, ["sh", "-c", "echo ok; exec sleep 1003"]))
        .unwrap();
    assert_eq!(other.next_line(), Some(&b"ok"[..]));
    // A job with a child, an orphaned grandchild that cleared its environment, and a shell that
    // ignores SIGTERM.
    let script =
        "trap '' TERM; sleep 1000 & (env -i sleep 1001 &); echo started; sleep 1002; echo never";
    let mut job = fleet
        .runner
        .start(fleet.job(&agent, &config, ["sh", "-c", script]))
        .unwrap();
    assert_eq!(job.next_line(), Some(&b"started"[..]));
    let container = job_container(&fleet, &agent);
    wait_for_processes(
        &fleet,
        &container,
        &["sleep 1000", "sleep 1001", "sleep 1002", "sleep 1003"],
    );

    let canceller = job.canceller();
    let asked = Instant::now();
    canceller.cancel().unwrap();
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(2), "cancel took {took:?}");
    let after = processes(&fleet, &container);
    for p in ["sleep 1000", "sleep 1001", "sleep 1002"] {
        assert!(
            !after.iter().any(|c| c == p),
            "{p} survived the cancel: {after:?}"
        );
    }
    assert!(
        after.iter().any(|c| c == "sleep 1003"),
        "the other job was killed: {after:?}"
    );
    assert_eq!(job.next_line(), None);
    assert!(matches!(job.finish().outcome, Outcome::Cancelled));

    other.canceller().cancel().unwrap();
    assert!(matches!(other.finish().outcome, Outcome::Cancelled));
}

#[test]
fn cancelling_an_ephemeral_job_stops_its_container() {
    let fleet = Fleet::new();
    let agent = fleet.agent("cancel-eph");
    let config = fleet.config(json!({}));
    let mut job = start_sleeper(&fleet, &agent, &config);
    let canceller = job.canceller();
    let t = std::thread::spawn(move || canceller.cancel());
    assert_eq!(job.next_line(), None);
    t.join().unwrap().unwrap();
    let report = job.finish();
    assert!(matches!(report.outcome, Outcome::Cancelled));
    let c = &fleet.containers(&agent)[0];
    assert_eq!(c.state, "exited", "kept for inspection, stopped");
}

#[test]
fn finishing_early_cancels_the_job() {
    let fleet = Fleet::new();
    let agent = fleet.agent("early");
    let config = fleet.config(json!({}));
    let mut job = fleet
        .runner
        .start(fleet.job(
            &agent,
            &config,
            ["sh", "-c", "while :; do echo tick; sleep 0.05; done"],
        ))
        .unwrap();
    assert_eq!(job.next_line(), Some(&b"tick"[..]));
    let t = Instant::now();
    let report = job.finish();
    assert!(matches!(report.outcome, Outcome::Cancelled));
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_cancel_after_the_output_ended_changes_nothing() {
    // herdctl cancels every job it stops reading at its `result`; by then the job has usually
    // ended, and killing its (gone) processes cost an exec and misreported the outcome.
    let fleet = Fleet::new();
    let agent = fleet.agent("late-cancel");
    let config = fleet.config(json!({ "ephemeral": false }));
    let since = unix_now();
    let mut job = fleet
        .runner
        .start(fleet.job(&agent, &config, ["echo", "done"]))
        .unwrap();
    assert_eq!(job.next_line(), Some(&b"done"[..]));
    assert_eq!(job.next_line(), None);
    job.canceller().cancel().unwrap();
    let report = job.finish();
    assert!(
        matches!(report.outcome, Outcome::Exited(0)),
        "{:?}",
        report.outcome
    );
    // The engine's own record: the job's exec, and no kill exec after it.
    let container = job_container(&fleet, &agent);
    let execs = common::docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &unix_now(),
        "--filter",
        &format!("container={container}"),
        "--filter",
        "event=exec_create",
        "--format",
        "{{json .Action}}",
    ]);
    // (The runner's own check of a fresh container, `cat /proc/self/status`, comes before it.)
    let job_execs = execs
        .lines()
        .filter(|l| !l.contains(": cat /proc/self/status"));
    assert_eq!(job_execs.count(), 1, "{execs}");
}

#[test]
fn a_deadline_times_the_job_out() {
    let fleet = Fleet::new();
    let agent = fleet.agent("deadline");
    let config = fleet.config(json!({ "ephemeral": false }));
    let mut spec = fleet.job(&agent, &config, ["sleep", "600"]);
    spec.deadline = Some(Duration::from_millis(500));
    let t = Instant::now();
    let (_, report) = fleet.run(spec);
    assert!(matches!(report.outcome, Outcome::TimedOut(d) if d == Duration::from_millis(500)));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let container = job_container(&fleet, &agent);
    assert!(!processes(&fleet, &container)
        .iter()
        .any(|c| c == "sleep 600"));
}

#[test]
fn secrets_are_redacted_from_the_stderr_tail_and_env_values_reach_the_exec() {
    let fleet = Fleet::new();
    let agent = fleet.agent("redact");
    let config =
        fleet.config(json!({ "env": { "GITHUB_TOKEN": "ghp_abcdefgh12345", "MODE": "plain" } }));
    let mut spec = fleet.job(
        &agent,
        &config,
        [
            "sh",
            "-c",
            "echo \"$ANTHROPIC_API_KEY $GITHUB_TOKEN $MODE\" >&2; exit 1",
        ],
    );
    spec.credentials = Some(
        Credentials::resolve(|k| {
            (k == "ANTHROPIC_API_KEY").then(|| "sk-ant-redact-me-123".to_string())
        })
        .unwrap(),
    );
    let (_, report) = fleet.run(spec);
    assert!(matches!(report.outcome, Outcome::Exited(1)));
    assert_eq!(report.stderr_tail, "[REDACTED] [REDACTED] plain\n");
    let c = fleet
        .runner
        .engine()
        .inspect_container(&report.container_id)
        .unwrap();
    let env = c.config.env.join(" ");
    assert!(
        !env.contains("ghp_abcdefgh12345") && !env.contains("sk-ant"),
        "{env}"
    );
}

/// Three ways a job's process leaves the job's process tree, session and environment, each a
/// `sleep` named by its number: a new session with a cleared environment whose shell exits at once
/// (`setsid env -i`), a detached node child with an empty environment, and a background subshell.
/// The job waits until all three run, so what outlives it is certain to have been started.
fn escapes(n: u32) -> String {
    let (a, b, c) = (n, n + 1, n + 2);
    format!(
        "setsid env -i sh -c 'sleep {a} & exit'; \
         node -e 'require(\"child_process\").spawn(\"sleep\", [\"{b}\"], \
           {{detached: true, stdio: \"ignore\", env: {{}}}}).unref()'; \
         (sleep {c}) & \
         for p in {a} {b} {c}; do \
           until ps -o args | grep -qx \"sleep $p\"; do sleep 0.02; done; \
         done; "
    )
}

/// The commands of the escaped processes [`escapes`]`(n)` starts.
fn escaped(n: u32) -> Vec<String> {
    (n..n + 3).map(|p| format!("sleep {p}")).collect()
}

/// Another job of the agent that also left a process behind (and keeps running): a job must not
/// touch it, whatever it escaped from.
fn start_bystander(fleet: &Fleet, agent: &str, config: &herdctl_container::DockerConfig) -> Job {
    let mut other = fleet
        .runner
        .start(fleet.job(
            agent,
            config,
            [
                "sh",
                "-c",
                "setsid env -i sh -c 'sleep 1200 & exit'; echo ok; exec sleep 1201",
            ],
        ))
        .unwrap();
    assert_eq!(other.next_line(), Some(&b"ok"[..]));
    other
}

/// Asserts that none of `gone` runs in the container and that the bystander's processes do.
fn assert_only_bystander_left(fleet: &Fleet, container: &str, gone: &[String]) {
    let after = processes(fleet, container);
    for p in gone {
        assert!(
            !after.iter().any(|c| c == p),
            "{p} outlived its job: {after:?}"
        );
    }
    for p in ["sleep 1200", "sleep 1201"] {
        assert!(
            after.iter().any(|c| c == p),
            "the other job's {p} was killed: {after:?}"
        );
    }
}

#[test]
fn processes_that_escape_the_job_die_with_its_cancel() {
    let fleet = Fleet::new();
    let agent = fleet.agent("escape-cancel");
    let config = fleet.config(json!({ "ephemeral": false }));
    let other = start_bystander(&fleet, &agent, &config);
    let script = format!("{} echo started; sleep 1003", escapes(1000));
    let mut job = fleet
        .runner
        .start(fleet.job(&agent, &config, ["sh", "-c", &script]))
        .unwrap();
    assert_eq!(job.next_line(), Some(&b"started"[..]));
    let container = job_container(&fleet, &agent);
    let mut mine = escaped(1000);
    mine.push("sleep 1003".into());
    let all: Vec<&str> = mine.iter().map(String::as_str).collect();
    wait_for_processes(&fleet, &container, &all);

    let asked = Instant::now();
    job.canceller().cancel().unwrap();
    let took = asked.elapsed();
    assert_only_bystander_left(&fleet, &container, &mine);
    assert!(took < Duration::from_secs(2), "cancel took {took:?}");
    assert!(matches!(job.finish().outcome, Outcome::Cancelled));

    // The bystander's own escaped process goes with its cancel.
    other.canceller().cancel().unwrap();
    assert!(!processes(&fleet, &container)
        .iter()
        .any(|c| c == "sleep 1200"));
}

#[test]
fn processes_that_escape_the_job_die_when_it_ends() {
    let fleet = Fleet::new();
    let agent = fleet.agent("escape-end");
    let config = fleet.config(json!({ "ephemeral": false }));
    let other = start_bystander(&fleet, &agent, &config);
    let script = format!("{} echo done", escapes(1000));
    let (lines, report) = fleet.run(fleet.job(&agent, &config, ["sh", "-c", &script]));
    assert_eq!(lines, ["done"]);
    assert!(
        matches!(report.outcome, Outcome::Exited(0)),
        "{:?}",
        report.outcome
    );
    let container = job_container(&fleet, &agent);
    assert_only_bystander_left(&fleet, &container, &escaped(1000));
    assert!(matches!(other.finish().outcome, Outcome::Cancelled));
}

#[test]
fn processes_that_escape_the_job_die_at_its_deadline() {
    let fleet = Fleet::new();
    let agent = fleet.agent("escape-deadline");
    let config = fleet.config(json!({ "ephemeral": false }));
    let other = start_bystander(&fleet, &agent, &config);
    let script = format!("{} echo started; sleep 1003", escapes(1000));
    let mut spec = fleet.job(&agent, &config, ["sh", "-c", &script]);
    // Long enough for node to start under load; the job says when its escapes run.
    spec.deadline = Some(Duration::from_secs(3));
    let (lines, report) = fleet.run(spec);
    assert_eq!(
        lines,
        ["started"],
        "the escapes were not up before the deadline"
    );
    assert!(
        matches!(report.outcome, Outcome::TimedOut(_)),
        "{:?}",
        report.outcome
    );
    let container = job_container(&fleet, &agent);
    let mut mine = escaped(1000);
    mine.push("sleep 1003".into());
    assert_only_bystander_left(&fleet, &container, &mine);
    assert!(matches!(other.finish().outcome, Outcome::Cancelled));
}

#[test]
fn an_ephemeral_jobs_escaped_processes_stop_with_its_container() {
    let fleet = Fleet::new();
    let agent = fleet.agent("escape-eph");
    let config = fleet.config(json!({}));
    let script = format!("{} echo done", escapes(1000));
    let (lines, report) = fleet.run(fleet.job(&agent, &config, ["sh", "-c", &script]));
    assert_eq!(lines, ["done"]);
    assert!(
        matches!(report.outcome, Outcome::Exited(0)),
        "{:?}",
        report.outcome
    );
    // A stopped container runs no process at all.
    let c = &fleet.containers(&agent)[0];
    assert_eq!(c.state, "exited");
}

#[test]
fn a_job_that_kills_its_own_end_still_leaves_nothing_behind() {
    // A persistent job's command runs under the runner's kill script, which kills what the
    // command left when it exits. A job can kill that script (same user): the exec then ends by a
    // signal, and the runner kills the job's leftovers from outside.
    let fleet = Fleet::new();
    let agent = fleet.agent("escape-wrapper");
    let config = fleet.config(json!({ "ephemeral": false }));
    let other = start_bystander(&fleet, &agent, &config);
    let script = format!("{} kill -KILL $PPID; echo done", escapes(1000));
    let (_, report) = fleet.run(fleet.job(&agent, &config, ["sh", "-c", &script]));
    assert!(
        matches!(report.outcome, Outcome::Killed { code: 137, .. }),
        "{:?}",
        report.outcome
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let container = job_container(&fleet, &agent);
    assert_only_bystander_left(&fleet, &container, &escaped(1000));
    assert!(matches!(other.finish().outcome, Outcome::Cancelled));
}

#[test]
fn a_persistent_job_has_a_group_of_its_own_and_keeps_the_configured_one() {
    // The job's own group is what marks its processes; files it makes get that group, and the
    // configured group (1000 here) stays a supplementary one, so a directory only that group may
    // write to stays writable.
    let fleet = Fleet::new();
    let agent = fleet.agent("job-group");
    let config = fleet.config(json!({ "ephemeral": false, "user": "1000:1000" }));
    let shared = fleet.workspace.path().join("group-only");
    std::fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(0), Some(1000)).unwrap();
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o770)).unwrap();
    let script = "id -g; id -G; touch group-only/made && stat -c %g group-only/made; \
                  echo \"$gid $mode\"";
    let mut spec = fleet.job(&agent, &config, ["sh", "-c", script]);
    // The runner's script around the job sets no variable the job could see.
    spec.env = vec!["gid=mine".into(), "mode=mine too".into()];
    let (first, report) = fleet.run(spec.clone());
    assert!(
        report.outcome.success(),
        "{:?} {}",
        report.outcome,
        report.stderr_tail
    );
    let gid: u32 = first[0].parse().unwrap();
    assert!((65000..65534).contains(&gid), "{first:?}");
    let groups: Vec<&str> = first[1].split(' ').collect();
    assert!(groups.contains(&"1000"), "{first:?}");
    assert_eq!(
        first[2],
        gid.to_string(),
        "a file the job made has the job's group"
    );
    assert_eq!(first[3], "mine mine too");
    // While one job runs, another gets another id.
    let mut running = fleet
        .runner
        .start(fleet.job(&agent, &config, ["sh", "-c", "id -g; exec sleep 600"]))
        .unwrap();
    let running_gid = String::from_utf8_lossy(running.next_line().unwrap()).into_owned();
    spec.argv = vec!["id".into(), "-g".into()];
    let (second, _) = fleet.run(spec);
    assert_ne!(second, [running_gid], "two running jobs shared a group");
    assert!(matches!(running.finish().outcome, Outcome::Cancelled));
}

#[test]
fn a_persistent_jobs_bad_argv_is_refused_as_given() {
    // The runner wraps a persistent job's argv in its kill script: an error must still name the
    // job's own argument, and an empty argv must not become a script that runs nothing.
    let fleet = Fleet::new();
    let agent = fleet.agent("bad-argv");
    let config = fleet.config(json!({ "ephemeral": false }));
    let e = fleet
        .runner
        .start(fleet.job(&agent, &config, Vec::<String>::new()))
        .unwrap_err();
    assert!(e.to_string().contains("exec.cmd: empty"), "{e}");
    let big = "x".repeat(200_000);
    let e = fleet
        .runner
        .start(fleet.job(&agent, &config, ["echo", big.as_str()]))
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("invalid exec.cmd[1]: 200000 bytes"),
        "{e}"
    );
}

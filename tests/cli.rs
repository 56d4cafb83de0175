//! The `herdctl-container` binary, as an operator runs it, against the real engine.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::fleet::Fleet;

/// Runs the CLI with `args` and `stdin` against the fleet's state directory.
fn cli(fleet: &Fleet, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herdctl-container"))
        .args(args)
        // ps, prune and gc keep their state in ./.herdctl: keep that inside the test's temp dir.
        .current_dir(fleet.state.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the CLI");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn run_args<'a>(
    fleet: &'a Fleet,
    agent: &'a str,
    extra: &[&'a str],
    argv: &[&'a str],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "--agent",
        agent,
        "--image",
        common::IMAGE,
        "--network",
        "none",
        "--memory",
        "128m",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push("--state-dir".into());
    args.push(fleet.state.path().to_string_lossy().into_owned());
    args.push("--workspace".into());
    args.push(fleet.workspace.path().to_string_lossy().into_owned());
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("--".into());
    args.extend(argv.iter().map(|s| s.to_string()));
    args
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn run_forwards_stdin_streams_stdout_and_mirrors_the_exit_code() {
    let fleet = Fleet::new();
    let agent = fleet.agent("cli-run");
    let args = run_args(
        &fleet,
        &agent,
        &[],
        &["sh", "-c", "cat; echo; echo oops >&2; exit 7"],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cli(&fleet, &args, b"from stdin");
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "from stdin\n");
    assert!(
        text(&out.stderr).contains("oops"),
        "the stderr tail is shown on failure"
    );
}

#[test]
fn ps_lists_only_this_projects_containers_as_json() {
    let fleet = Fleet::new();
    let agent = fleet.agent("cli-ps");
    let args = run_args(&fleet, &agent, &["--keep", "3"], &["true"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(cli(&fleet, &args, b"").status.success());
    let out = cli(&fleet, &["ps", "--agent", &agent, "--json"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["agent"], agent.as_str());
    assert_eq!(list[0]["mode"], "ephemeral");
    assert_eq!(list[0]["state"], "exited");
}

#[test]
fn prune_and_gc_remove_stopped_containers() {
    let fleet = Fleet::new();
    let agent = fleet.agent("cli-prune");
    let args = run_args(&fleet, &agent, &["--keep", "10"], &["true"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for _ in 0..3 {
        assert!(cli(&fleet, &args, b"").status.success());
    }
    let out = cli(&fleet, &["prune", "--agent", &agent, "--keep", "1"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("removed "))
            .count(),
        2
    );
    assert_eq!(fleet.containers(&agent).len(), 1);

    // gc with every other agent that exists right now counted as live (other tests run too).
    let mut live: Vec<String> = vec![];
    for c in fleet.runner.list(None).unwrap() {
        if c.agent != agent {
            live.push("--live-agent".into());
            live.push(c.agent);
        }
    }
    let mut args = vec!["gc", "--keep", "100"];
    args.extend(live.iter().map(String::as_str));
    let out = cli(&fleet, &args, b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(fleet.containers(&agent).is_empty());
}

#[test]
fn bad_input_is_one_clear_line_and_a_non_zero_exit() {
    let fleet = Fleet::new();
    let cases: [(&[&str], &str); 4] = [
        (
            &["frobnicate"],
            "invalid command: \"frobnicate\" is not a command",
        ),
        (
            &["run", "--image", "x", "--", "true"],
            "invalid --agent: is required",
        ),
        (&["prune", "--agent", "a"], "invalid --keep: is required"),
        (
            &["ps", "--colour", "red"],
            "invalid --colour: is not a flag of this command",
        ),
    ];
    for (args, expected) in cases {
        let out = cli(&fleet, args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("herdctl-container: {expected}")),
            "{err}"
        );
    }
    let agent = fleet.agent("cli-bad");
    let args = run_args(&fleet, &agent, &["--memory", "1x"], &["true"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cli(&fleet, &args, b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid --memory: is given more than once"),
        "{}",
        text(&out.stderr)
    );
    let out = cli(
        &fleet,
        &["run", "--agent", &agent, "--memory", "1x", "--", "true"],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid docker.memory"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn doctor_reports_the_engine_and_the_effective_hardening() {
    let fleet = Fleet::new();
    let out = cli(&fleet, &["doctor", "--image", common::IMAGE], b"");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("engine:"), "{stdout}");
    assert!(stdout.contains("cap drop:     [\"ALL\"]"), "{stdout}");
    assert!(stdout.contains("no-new-privileges"), "{stdout}");
    assert!(stdout.contains("probe:        NoNewPrivs:\t1"), "{stdout}");
    assert!(
        stdout.contains("probe:        CapEff:\t0000000000000000"),
        "{stdout}"
    );
    assert!(stdout.contains("network:      none"), "{stdout}");
}

//! The `herdctl-container` binary, as an operator runs it, against the real engine.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::fleet::Fleet;

/// Runs the CLI with `args` and `stdin` against the fleet's state directory.
fn cli(fleet: &Fleet, args: &[&str], stdin: &[u8]) -> Output {
    cli_env(fleet, args, stdin, &[])
}

/// The CLI as a command: in the fleet's state directory (ps, prune and gc keep their state in
/// ./.herdctl: keep that inside the test's temp dir), without a debug log from the caller's env.
fn command(fleet: &Fleet, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_herdctl-container"));
    c.args(args)
        .current_dir(fleet.state.path())
        .env_remove("HERDCTL_CONTAINER_LOG");
    c
}

/// [`cli`] with extra environment variables.
fn cli_env(fleet: &Fleet, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    let mut child = command(fleet, args)
        .envs(env.iter().copied())
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
        "--network",
        "none",
        "--memory",
        "128m",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !extra.contains(&"--image") {
        args.push("--image".into());
        args.push(common::IMAGE.into());
    }
    args.push("--state-dir".into());
    args.push(fleet.state.path().to_string_lossy().into_owned());
    args.push("--workspace".into());
    args.push(fleet.workspace.path().to_string_lossy().into_owned());
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("--".into());
    args.extend(argv.iter().map(|s| s.to_string()));
    args
}

/// `--state-dir` and the fleet's state directory, for commands that read job records.
fn state_dir(fleet: &Fleet) -> [String; 2] {
    [
        "--state-dir".into(),
        fleet.state.path().to_string_lossy().into_owned(),
    ]
}

/// The CLI with `args` and the fleet's `--state-dir`.
fn cli_state(fleet: &Fleet, args: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    let dir = state_dir(fleet);
    all.extend(dir.iter().map(String::as_str));
    cli(fleet, &all, b"")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn run_forwards_stdin_streams_stdout_and_mirrors_the_exit_code() {
    let _gc = common::gc_shared();
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
    let _gc = common::gc_shared();
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
    let _gc = common::gc_exclusive();
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
fn bad_input_is_one_clear_line_and_exit_125() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let cases: [(&[&str], &str); 5] = [
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
            "invalid --colour: is not a flag of ps",
        ),
        (
            &["ps", "--jsn"],
            "invalid --jsn: is not a flag of ps (did you mean --json?)",
        ),
    ];
    for (args, expected) in cases {
        let out = cli(&fleet, args, b"");
        assert_eq!(out.status.code(), Some(125), "{args:?}");
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
    assert_eq!(out.status.code(), Some(125));
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
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("invalid docker.memory"),
        "{}",
        text(&out.stderr)
    );
    // A config that never ends (or is absurdly large) is read within a bound, not to the end.
    let big = fleet.state.path().join("big.json");
    std::fs::write(&big, format!("{{}}{}", " ".repeat(2 << 20))).unwrap();
    for config in [big.to_str().unwrap(), "/dev/zero"] {
        let out = cli(
            &fleet,
            &["run", "--agent", &agent, "--config", config, "--", "true"],
            b"",
        );
        assert_eq!(out.status.code(), Some(125), "{config}");
        assert_eq!(
            text(&out.stderr).trim(),
            format!("herdctl-container: invalid --config: {config} is larger than 1 MiB; expected a JSON docker: block")
        );
    }
}

#[test]
fn doctor_reports_the_engine_and_the_effective_hardening() {
    let _gc = common::gc_shared();
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

const SUBCOMMANDS: [&str; 9] = [
    "run", "ps", "logs", "inspect", "prune", "gc", "doctor", "help", "version",
];

#[test]
fn help_and_version_for_every_subcommand_without_an_engine() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    // No engine answers here: help and version must not need one.
    let no_engine = [("DOCKER_HOST", "unix:///nonexistent/docker.sock")];
    for sub in SUBCOMMANDS {
        for args in [vec![sub, "--help"], vec![sub, "-h"], vec!["help", sub]] {
            let out = cli_env(&fleet, &args, b"", &no_engine);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{args:?}: {}",
                text(&out.stderr)
            );
            let help = text(&out.stdout);
            assert!(
                help.starts_with(&format!("Usage: herdctl-container {sub}")),
                "{args:?}: {help}"
            );
            assert!(help.contains("-h, --help"), "{help}");
        }
    }
    let run_help = text(&cli_env(&fleet, &["run", "--help"], b"", &no_engine).stdout);
    for needle in ["-e, --env", "--agent NAME", "125", "130"] {
        assert!(run_help.contains(needle), "{needle}: {run_help}");
    }
    for args in [&["--help"][..], &["-h"], &["help"], &[]] {
        let out = cli_env(&fleet, args, b"", &no_engine);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let overview = text(&out.stdout);
        for sub in SUBCOMMANDS {
            assert!(
                overview.contains(&format!("\n  {sub} ")),
                "{sub}: {overview}"
            );
        }
        assert!(overview.contains("HERDCTL_CONTAINER_LOG"), "{overview}");
    }
    for args in [&["--version"][..], &["-V"], &["version"]] {
        let out = cli_env(&fleet, args, b"", &no_engine);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(
            text(&out.stdout),
            format!("herdctl-container {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn flags_are_checked_before_the_engine_is_called() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let no_engine = [("DOCKER_HOST", "unix:///nonexistent/docker.sock")];
    for (args, expected) in [
        (
            &["ps", "--agnet", "x"][..],
            "invalid --agnet: is not a flag of ps (did you mean --agent?)",
        ),
        (
            &["run", "--agent", "a", "--keep", "many", "--", "true"],
            "invalid --keep: \"many\" is not a whole number",
        ),
        (
            &["run", "--agent", "a", "--network", "wifi", "--", "true"],
            "invalid docker.network",
        ),
        (
            &["run", "--agent", "a", "-e", "NOT-A-NAME=1", "--", "true"],
            "invalid --env",
        ),
    ] {
        let out = cli_env(&fleet, args, b"", &no_engine);
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.starts_with(&format!("herdctl-container: {expected}")),
            "{args:?}: {err}"
        );
        assert!(!err.contains("cannot reach"), "{err}");
    }
    // With the flags right, the engine is what fails, and the message names a command an
    // installed user has, not a file of this repository.
    let out = cli_env(&fleet, &["ps"], b"", &no_engine);
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(err.contains("cannot reach the Docker engine"), "{err}");
    assert!(err.contains("herdctl-container doctor"), "{err}");
    assert!(!err.contains("scripts/"), "{err}");
}

#[test]
fn exit_codes_are_dockers() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let agent = fleet.agent("cli-codes");
    for (argv, extra, code) in [
        (&["sh", "-c", "exit 2"][..], &[][..], 2),
        (&["sh", "-c", "no-such-command"], &[], 127),
        (&["/etc/passwd"], &[], 126),
        (&["sleep", "30"], &["--timeout", "1"], 124),
        (&["true"], &["--image", "herdctl-test/absent:nope"], 125),
    ] {
        let args = run_args(&fleet, &agent, extra, argv);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cli(&fleet, &args, b"");
        assert_eq!(
            out.status.code(),
            Some(code),
            "{argv:?}: {}",
            text(&out.stderr)
        );
        if code == 125 {
            let err = text(&out.stderr);
            assert!(err.contains("docker pull"), "{err}");
            assert!(!err.contains("scripts/"), "{err}");
        }
    }
}

/// Starts `run` with `args` and waits for the job's first stdout line.
fn start_running(fleet: &Fleet, args: &[String]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = command(fleet, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the CLI");
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    (child, first)
}

fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} {pid}");
}

/// Waits for the child, failing the test after `limit`.
fn wait_within(child: &mut std::process::Child, limit: std::time::Duration) -> (i32, String) {
    use std::io::Read;
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code().expect("exited, not killed"), err);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the CLI did not exit within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The processes in a container, one `args` a line.
fn processes(fleet: &Fleet, container: &str) -> String {
    let spec = herdctl_container::engine::ExecSpec::new(["ps", "-o", "args"]);
    let out = fleet
        .runner
        .engine()
        .exec_run(container, &spec, b"")
        .expect("ps in the container");
    text(&out.stdout)
}

#[test]
fn signals_cancel_the_job_as_the_apis_cancel_does() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    for (name, code, persistent) in [
        ("INT", 130, false),
        ("TERM", 143, true),
        ("HUP", 129, false),
    ] {
        let agent = fleet.agent(&format!("cli-sig{name}"));
        let extra: &[&str] = if persistent { &["--persistent"] } else { &[] };
        let args = run_args(
            &fleet,
            &agent,
            extra,
            &["sh", "-c", "echo started; sleep 301; echo never"],
        );
        let (mut child, first) = start_running(&fleet, &args);
        assert_eq!(first, "started\n");
        signal(child.id(), name);
        let (status, err) = wait_within(&mut child, std::time::Duration::from_secs(20));
        assert_eq!(status, code, "SIG{name}: {err}");
        assert!(err.contains("cancelling the job"), "{err}");
        assert!(err.contains("the job was cancelled"), "{err}");
        let containers = fleet.containers(&agent);
        assert_eq!(containers.len(), 1);
        if persistent {
            // The container stays for the next job; the job's processes are gone.
            assert_eq!(containers[0].state, "running");
            let ps = processes(&fleet, &containers[0].id);
            assert!(!ps.contains("sleep 301"), "{ps}");
        } else {
            assert_ne!(containers[0].state, "running", "SIG{name}");
        }
        // The record says so.
        let out = cli_state(&fleet, &["inspect", &agent]);
        let records: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(records[0]["report"]["outcome"], "cancelled");
    }
}

#[test]
fn a_second_ctrl_c_exits_at_once_after_the_kill() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let agent = fleet.agent("cli-sig2");
    let args = run_args(
        &fleet,
        &agent,
        &[],
        &["sh", "-c", "echo started; sleep 302"],
    );
    let (mut child, _) = start_running(&fleet, &args);
    signal(child.id(), "INT");
    signal(child.id(), "INT");
    let (status, err) = wait_within(&mut child, std::time::Duration::from_secs(15));
    assert_eq!(status, 130, "{err}");
    let containers = fleet.containers(&agent);
    assert_eq!(containers.len(), 1);
    assert_ne!(containers[0].state, "running", "the kill was sent");
}

#[test]
fn a_signal_before_the_job_starts_exits_at_once_and_leaves_nothing() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let agent = fleet.agent("cli-sig0");
    let args = run_args(&fleet, &agent, &[], &["true"]);
    // stdin stays open: the CLI is still reading it when the signal comes.
    let mut child = command(&fleet, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    signal(child.id(), "INT");
    let (status, _) = wait_within(&mut child, std::time::Duration::from_secs(5));
    assert_eq!(status, 130);
    assert!(fleet.containers(&agent).is_empty());
}

#[test]
fn job_records_read_back_after_the_container_is_gone() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let agent = fleet.agent("cli-record");
    let secret = "cli-env-secret-0123456789";
    let args = run_args(
        &fleet,
        &agent,
        &[
            "-e",
            &format!("API_TOKEN={secret}"),
            "-e",
            "PLAIN=visible-value",
        ],
        &[
            "sh",
            "-c",
            "echo out-line; echo \"$API_TOKEN $PLAIN\"; echo \"err-line $API_TOKEN\" >&2; exit 3",
        ],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cli(&fleet, &args, b"");
    assert_eq!(out.status.code(), Some(3));
    // The job's stdout is the caller's data; the stderr tail the CLI prints is redacted, as
    // docker.env values are (issue 9, item 6).
    let err = text(&out.stderr);
    assert!(err.contains("err-line [REDACTED]"), "{err}");
    assert!(!err.contains(secret), "{err}");

    let container = fleet.containers(&agent).remove(0);
    let out = cli_state(&fleet, &["prune", "--agent", &agent, "--keep", "0"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(fleet.containers(&agent).is_empty(), "the container is gone");

    for key in [container.name.as_str(), &container.id[..12], agent.as_str()] {
        let out = cli_state(&fleet, &["logs", key]);
        assert_eq!(out.status.code(), Some(0), "{key}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "out-line\n[REDACTED] visible-value\n");
        assert_eq!(text(&out.stderr), "err-line [REDACTED]\n");
    }
    let out = cli_state(&fleet, &["inspect", &container.name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let records: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let record = &records[0];
    let job = record["job"].as_str().unwrap().to_string();
    assert!(job.starts_with("herdctl-job-"), "{record}");
    assert_eq!(record["agent"], agent.as_str());
    assert_eq!(record["image"], common::IMAGE);
    assert_eq!(record["mode"], "ephemeral");
    assert_eq!(record["config_hash"], container.config_hash.as_str());
    let report = &record["report"];
    assert_eq!(report["outcome"], "exited");
    assert_eq!(report["exit_code"], 3);
    assert_eq!(report["oom_killed"], false);
    assert_eq!(report["container_id"], container.id.as_str());
    assert!(
        report["timings"]["acquire_ms"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(report["warnings"].is_array());
    let by_job = cli_state(&fleet, &["inspect", &job]);
    let by_job: serde_json::Value = serde_json::from_slice(&by_job.stdout).unwrap();
    assert_eq!(by_job[0], *record);

    // Nowhere in the state directory.
    let jobs = fleet.state.path().join("jobs");
    for dir in std::fs::read_dir(&jobs).unwrap() {
        for file in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let body = std::fs::read_to_string(file.unwrap().path()).unwrap();
            assert!(!body.contains(secret), "{body}");
        }
    }
    let out = cli_state(&fleet, &["logs", "no-such-job-or-container"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no job record matches"));
}

#[test]
fn ps_shows_the_last_job_its_exit_code_and_age() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let agent = fleet.agent("cli-ps-last");
    let args = run_args(&fleet, &agent, &[], &["sh", "-c", "exit 4"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(cli(&fleet, &args, b"").status.code(), Some(4));
    let container = fleet.containers(&agent).remove(0);

    let out = cli_state(&fleet, &["ps", "--agent", &agent]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for column in ["CONTAINER ID", "CREATED", "LAST JOB", "EXIT", "NAME"] {
        assert!(header.contains(column), "{header}");
    }
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[0], &container.id[..12]);
    assert!(row.contains(&"exited"), "{row:?}");
    assert!(row.contains(&"4"), "{row:?}");
    assert!(row.iter().any(|c| c.ends_with('s')), "an age: {row:?}");

    let out = cli_state(&fleet, &["ps", "-q", "--agent", &agent]);
    assert_eq!(text(&out.stdout), format!("{}\n", &container.id[..12]));

    let out = cli_state(&fleet, &["ps", "--json", "--agent", &agent]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["last_job"]["exit_code"], 4);
    assert_eq!(list[0]["last_job"]["outcome"], "exited");
}

#[test]
fn the_debug_log_prints_one_line_per_engine_call() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let agent = fleet.agent("cli-log");
    let is_call = |l: &str| {
        l.starts_with("herdctl-container: engine: GET /v1.")
            && l.contains("/containers/json -> 200 (")
            && l.ends_with(" ms)")
    };
    for (args, env) in [
        (
            vec!["ps", "--agent", agent.as_str()],
            vec![("HERDCTL_CONTAINER_LOG", "debug")],
        ),
        (
            vec!["--log-level", "debug", "ps", "--agent", &agent],
            vec![],
        ),
        (vec!["ps", "--log-level=debug", "--agent", &agent], vec![]),
    ] {
        let out = cli_env(&fleet, &args, b"", &env);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.lines()
                .any(|l| l.starts_with("herdctl-container: engine: GET /_ping -> 200 (")),
            "{err}"
        );
        assert!(err.lines().any(is_call), "{err}");
    }
    let out = cli(&fleet, &["ps", "--agent", &agent], b"");
    assert!(!text(&out.stderr).contains("engine:"), "off by default");

    // A call that gets no answer is logged too.
    let out = cli_env(
        &fleet,
        &["ps"],
        b"",
        &[
            ("HERDCTL_CONTAINER_LOG", "debug"),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ],
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("herdctl-container: engine: GET /_ping -> failed: "),
        "{}",
        text(&out.stderr)
    );
    let out = cli_env(&fleet, &["ps"], b"", &[("HERDCTL_CONTAINER_LOG", "loud")]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("invalid HERDCTL_CONTAINER_LOG"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn pull_progress_is_plain_lines_when_stderr_is_not_a_terminal() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let live = common::Live::new();
    let registry = common::registry::Registry::start();
    let agent = fleet.agent("cli-pull");
    let tag = common::unique("clipull");
    let remote = registry.push(&live, common::tar::runnable_rootfs(&tag), "runnable", &tag);

    let args = run_args(
        &fleet,
        &agent,
        &["--image", &remote, "--pull", "if-missing"],
        &["true"],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cli(&fleet, &args, b"");
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("pull: ") && l.ends_with(": Pull complete")),
        "{err}"
    );
    assert!(
        !err.contains('\x1b'),
        "no terminal codes in a pipe: {err:?}"
    );
    // One line per status change, not one per progress tick.
    let lines: Vec<&str> = err.lines().collect();
    let mut unique = lines.clone();
    unique.dedup();
    assert_eq!(lines, unique, "{err}");
}

#[test]
fn a_signal_at_any_moment_of_the_start_leaves_no_running_job() {
    let _gc = common::gc_shared();
    // Whether it lands before the engine is called, while the container is made, or once the
    // job runs, the CLI exits 130 and nothing of the job runs on.
    let fleet = Fleet::new();
    for after_ms in [150, 500, 900, 1400] {
        let agent = fleet.agent(&format!("cli-sig-start-{after_ms}"));
        let args = run_args(
            &fleet,
            &agent,
            &[],
            &["sh", "-c", "echo started; sleep 303"],
        );
        let mut child = command(&fleet, &args.iter().map(String::as_str).collect::<Vec<_>>())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(after_ms));
        signal(child.id(), "INT");
        let (status, err) = wait_within(&mut child, std::time::Duration::from_secs(20));
        assert_eq!(status, 130, "after {after_ms} ms: {err}");
        for c in fleet.containers(&agent) {
            assert_ne!(c.state, "running", "after {after_ms} ms: {err}");
        }
    }
}

/// A relative `--workspace` is taken from where the command was typed, as docker's `-v .:/x` is.
#[test]
fn a_relative_workspace_is_relative_to_the_current_directory() {
    let _gc = common::gc_shared();
    let fleet = Fleet::new();
    let agent = fleet.agent("cli-relative");
    std::fs::write(fleet.workspace.path().join("marker"), "here\n").unwrap();
    // The CLI runs in the state directory; the workspace is its sibling under the temp dir.
    let relative = std::path::Path::new("..").join(fleet.workspace.path().file_name().unwrap());
    assert_eq!(
        fleet.state.path().parent(),
        fleet.workspace.path().parent(),
        "siblings"
    );
    let mut args = run_args(&fleet, &agent, &[], &["cat", "/workspace/marker"]);
    let at = args.iter().position(|a| a == "--workspace").unwrap();
    args[at + 1] = relative.to_string_lossy().into_owned();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cli(&fleet, &args, b"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "here\n");
}

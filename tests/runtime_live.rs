//! Live tests of the OCI runtime choice: a representative set of jobs (a CLI-binary job, an agent
//! job, cancel, OOM, persistent reuse, an injected MCP tool call) under gVisor (`runsc`, which
//! scripts/ensure-engine registers) beside the same jobs under the engine's default runc; the
//! runtime in the inspect and, from inside, in the kernel; and the refusals.

mod common;

use std::process::{Command as Process, Stdio};
use std::sync::{Arc, Mutex};

use common::fleet::Fleet;
use herdctl_container::agent::{AgentJob, AgentRequest, Command, ExecuteOptions};
use herdctl_container::invocation::Strategy;
use herdctl_container::mcp::ToolCall;
use herdctl_container::{Outcome, Runner, RunnerOptions};
use serde_json::{json, Value};

/// gVisor's name as scripts/ensure-engine registers it.
const GVISOR: &str = "runsc";

/// Every scenario runs under these: the engine's default (runc) and gVisor.
const RUNTIMES: [Option<&str>; 2] = [None, Some(GVISOR)];

/// The host kernel's release, as the engine reports it.
fn host_kernel(fleet: &Fleet) -> String {
    fleet.runner.engine().info().unwrap().kernel_version
}

/// The release in a `/proc/version` line.
fn release(proc_version: &str) -> &str {
    proc_version
        .strip_prefix("Linux version ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("not a /proc/version line: {proc_version:?}"))
}

fn config(fleet: &Fleet, runtime: Option<&str>, extra: Value) -> herdctl_container::DockerConfig {
    let mut block = extra;
    if let Some(r) = runtime {
        block["runtime"] = json!(r);
    }
    fleet.config(block)
}

#[test]
fn a_job_runs_under_its_runtime_as_the_inspect_and_its_kernel_say() {
    let fleet = Fleet::new();
    let host = host_kernel(&fleet);
    for (runtime, spelled) in [
        (None, json!({})),
        (Some(GVISOR), json!({"runtime": GVISOR})),
        // The spelling herdctl's schema lets through, in a letter case the engine also reads.
        (Some(GVISOR), json!({"host_config": {"runtime": GVISOR}})),
    ] {
        let agent = fleet.agent("rt-kernel");
        let config = fleet.config(spelled.clone());
        assert_eq!(config.runtime.as_deref(), runtime, "{spelled}");
        let (lines, report) = fleet.run(fleet.job(&agent, &config, ["cat", "/proc/version"]));
        assert!(report.outcome.success(), "{spelled}: {report:?}");
        let inside = release(&lines[0]).to_string();
        let inspect = fleet
            .runner
            .engine()
            .inspect_container(&report.container_id)
            .unwrap();
        match runtime {
            None => {
                assert_eq!(inspect.host_config.runtime, "runc");
                assert_eq!(inside, host, "runc shares the host's kernel");
            }
            Some(r) => {
                assert_eq!(inspect.host_config.runtime, r, "{spelled}");
                assert_ne!(inside, host, "{spelled}: gVisor's own kernel");
            }
        }
    }
}

#[test]
fn the_hardening_holds_under_gvisor() {
    let fleet = Fleet::new();
    let agent = fleet.agent("rt-hardening");
    // The workspace is the host user's; the job runs as the containers' non-root user.
    std::fs::set_permissions(
        fleet.workspace.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let config = config(&fleet, Some(GVISOR), json!({"pids_limit": 256}));
    let (lines, report) = fleet.run(fleet.job(
        &agent,
        &config,
        [
            "sh",
            "-c",
            "id -u; grep -E '^Cap(Prm|Eff|Bnd)' /proc/self/status; touch /workspace/made-inside",
        ],
    ));
    assert!(report.outcome.success(), "{report:?}");
    assert_eq!(lines[0], config.user.uid.to_string());
    for l in &lines[1..] {
        assert!(l.ends_with("0000000000000000"), "{l}");
    }
    assert!(fleet.workspace.path().join("made-inside").exists());
    let h = fleet
        .runner
        .engine()
        .inspect_container(&report.container_id)
        .unwrap()
        .host_config;
    assert_eq!(h.cap_drop, ["ALL"]);
    assert!(h.security_opt.iter().any(|o| o == "no-new-privileges"));
    assert_eq!((h.memory, h.pids_limit), (256 << 20, Some(256)));
}

#[test]
fn a_cli_job_runs_under_the_runtime_flag() {
    let fleet = Fleet::new();
    let host = host_kernel(&fleet);
    for runtime in RUNTIMES {
        let agent = fleet.agent("rt-cli");
        let mut args = vec![
            "run".to_string(),
            "--agent".into(),
            agent.clone(),
            "--image".into(),
            common::IMAGE.into(),
            "--network".into(),
            "none".into(),
            "--memory".into(),
            "128m".into(),
            "--state-dir".into(),
            fleet.state.path().to_string_lossy().into_owned(),
            "--workspace".into(),
            fleet.workspace.path().to_string_lossy().into_owned(),
        ];
        if let Some(r) = runtime {
            args.extend(["--runtime".into(), r.into()]);
        }
        args.extend(["--".into(), "sh".into(), "-c".into()]);
        args.push("cat; cat /proc/version".into());
        let out = cli(&fleet, &args, b"from stdin\n");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{runtime:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines[0], "from stdin");
        assert_eq!(release(lines[1]) == host, runtime.is_none(), "{runtime:?}");
    }
    // A runtime the engine does not list: refused before any container, with the engine's list.
    let agent = fleet.agent("rt-cli-unknown");
    let out = cli(
        &fleet,
        &[
            "run".into(),
            "--agent".into(),
            agent.clone(),
            "--image".into(),
            common::IMAGE.into(),
            "--runtime".into(),
            "no-such-runtime".into(),
            "--state-dir".into(),
            fleet.state.path().to_string_lossy().into_owned(),
            "--".into(),
            "true".into(),
        ],
        b"",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("invalid docker.runtime: \"no-such-runtime\" is not a runtime of this engine, which lists ")
            && stderr.contains("runsc"),
        "{stderr}"
    );
    assert!(fleet.containers(&agent).is_empty());
}

fn cli(fleet: &Fleet, args: &[String], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = Process::new(env!("CARGO_BIN_EXE_herdctl-container"))
        .args(args)
        .current_dir(fleet.state.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the CLI");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn agent_request(fleet: &Fleet, agent: &str, runtime: Option<&str>, prompt: &str) -> AgentRequest {
    AgentRequest {
        config: config(fleet, runtime, json!({})),
        agent: json!({
            "name": agent.rsplit('.').next(),
            "qualifiedName": agent,
            "working_directory": {"root": fleet.workspace.path()},
        }),
        options: ExecuteOptions::new(prompt),
        command: Command::Runtime(Strategy::Cli),
        deadline: None,
        translate_paths: false,
        tool_handler: None,
    }
}

fn messages(mut job: AgentJob) -> (Vec<Value>, Outcome) {
    let mut out = Vec::new();
    while let Some(m) = job.next_message() {
        out.push(serde_json::from_str(&m).expect("every message is JSON"));
    }
    (out, job.finish().outcome)
}

#[test]
fn an_agent_job_and_its_cancel_under_each_runtime() {
    let fleet = Fleet::new();
    for runtime in RUNTIMES {
        let agent = fleet.agent("rt-agent");
        let job = AgentJob::start(
            &fleet.runner,
            agent_request(&fleet, &agent, runtime, "hello"),
        )
        .unwrap_or_else(|e| panic!("{runtime:?}: {e}"));
        let (messages, outcome) = messages(job);
        assert!(outcome.success(), "{runtime:?}: {outcome:?}");
        let kinds: Vec<&str> = messages
            .iter()
            .map(|m| m["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["system", "assistant", "result"], "{runtime:?}");

        // Cancel: a job with a child, killed with its child, reported as cancelled.
        let mut job = AgentJob::start(
            &fleet.runner,
            agent_request(&fleet, &agent, runtime, "#spawn-child\n#sleep 60"),
        )
        .unwrap();
        assert!(job.next_message().unwrap().contains("\"init\""));
        assert!(job.next_message().unwrap().contains("standin_child_pid"));
        let canceller = job.canceller().expect("a running job");
        let t = std::thread::spawn(move || canceller.cancel());
        let closing: Value = serde_json::from_str(&job.next_message().unwrap()).unwrap();
        assert_eq!(closing["outcome"], "cancelled", "{runtime:?}");
        t.join().unwrap().unwrap();
        assert!(matches!(job.finish().outcome, Outcome::Cancelled));
    }
}

#[test]
fn running_out_of_memory_is_reported_under_each_runtime() {
    let fleet = Fleet::new();
    for runtime in RUNTIMES {
        let agent = fleet.agent("rt-oom");
        let config = config(&fleet, runtime, json!({"memory": "64m"}));
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
            other => panic!("{runtime:?}: expected an OOM report, got {other:?}"),
        }
    }
}

#[test]
fn a_killed_container_ends_the_job_within_a_second_under_each_runtime() {
    // Under gVisor the exec's stream outlives its dead sandbox: the runner watches the container.
    let fleet = Fleet::new();
    for runtime in RUNTIMES {
        let agent = fleet.agent("rt-killed");
        let config = config(&fleet, runtime, json!({}));
        let mut job = fleet
            .runner
            .start(fleet.job(&agent, &config, ["sh", "-c", "echo up; sleep 600"]))
            .unwrap();
        assert_eq!(job.next_line(), Some(&b"up"[..]));
        let container = fleet.containers(&agent)[0].id.clone();
        let killed_at = std::time::Instant::now();
        fleet
            .runner
            .engine()
            .kill_container(&container, "KILL")
            .unwrap();
        assert_eq!(job.next_line(), None);
        let report = job.finish();
        let took = killed_at.elapsed();
        assert!(
            took < std::time::Duration::from_secs(1),
            "{runtime:?}: {took:?}"
        );
        assert!(
            matches!(
                report.outcome,
                Outcome::ContainerDied {
                    exit_code: Some(137),
                    ..
                }
            ),
            "{runtime:?}: {:?}",
            report.outcome
        );
    }
}

#[test]
fn a_persistent_container_is_reused_under_each_runtime() {
    let fleet = Fleet::new();
    let host = host_kernel(&fleet);
    for runtime in RUNTIMES {
        let agent = fleet.agent("rt-reuse");
        let config = config(&fleet, runtime, json!({"ephemeral": false}));
        let mut ids = Vec::new();
        for _ in 0..2 {
            let (lines, report) = fleet.run(fleet.job(&agent, &config, ["cat", "/proc/version"]));
            assert!(report.outcome.success(), "{runtime:?}: {report:?}");
            assert_eq!(release(&lines[0]) == host, runtime.is_none(), "{runtime:?}");
            ids.push(report.container_id);
        }
        assert_eq!(ids[0], ids[1], "{runtime:?}: one container for both jobs");
        // Another runner (another herdctl process) reuses it too, and proves it again.
        let (lines, report) = common::fleet::run_on(
            &fleet.second_runner(),
            fleet.job(&agent, &config, ["cat", "/proc/version"]),
        );
        assert!(report.outcome.success());
        assert_eq!(report.container_id, ids[0]);
        assert_eq!(release(&lines[0]) == host, runtime.is_none());
    }
}

#[test]
fn a_reused_container_that_is_not_in_its_sandbox_runs_no_job() {
    // A persistent container found under the agent's name and labels, for its config, but
    // running under runc (made by hand, or by something that lost the runtime): the inspect
    // after create never saw it, the proof from inside refuses it.
    let fleet = Fleet::new();
    let agent = fleet.agent("rt-impostor");
    let config = config(&fleet, Some(GVISOR), json!({"ephemeral": false}));
    let (_, report) = fleet.run(fleet.job(&agent, &config, ["true"]));
    assert!(report.outcome.success(), "{report:?}");
    let engine = fleet.runner.engine();
    let real = engine.inspect_container(&report.container_id).unwrap();
    engine.remove_container(&real.id, true).unwrap();
    let body = json!({
        "Image": common::IMAGE,
        "Cmd": ["sleep", "infinity"],
        "User": real.config.user,
        "Labels": real.config.labels,
        "HostConfig": {"NetworkMode": "none", "Init": true, "CapDrop": ["ALL"],
                       "SecurityOpt": ["no-new-privileges"]},
    });
    let impostor = engine
        .create_container(real.name.trim_start_matches('/'), &body)
        .unwrap();
    engine.start_container(&impostor).unwrap();

    // A new runner: this one has not proven the container before.
    let runner = fleet.second_runner();
    let e = runner
        .start(fleet.job(&agent, &config, ["true"]))
        .expect_err("no job in a container that is not in its sandbox");
    assert_eq!(e.code(), "NOT_APPLIED");
    let host = host_kernel(&fleet);
    assert_eq!(
        e.to_string(),
        format!(
            "container {}: the engine did not apply runtime runsc: the container runs on the host's kernel ({host}), not on a sandbox's; refusing to run a job in it",
            real.name.trim_start_matches('/')
        )
    );
    // Not this job's to remove: it did not create it.
    assert!(engine.inspect_container(&impostor).is_ok());
}

#[test]
fn an_injected_mcp_tool_is_called_under_each_runtime() {
    let fleet = Fleet::new();
    let host = fleet.workspace.path().to_string_lossy().into_owned();
    for runtime in RUNTIMES {
        let agent = fleet.agent("rt-mcp");
        let calls: Arc<Mutex<Vec<ToolCall>>> = Arc::default();
        let seen = calls.clone();
        let handler = move |call: &ToolCall| -> Result<Value, String> {
            seen.lock().unwrap().push(call.clone());
            Ok(json!({"content": [{"type": "text", "text": "sent"}]}))
        };
        let mut r = agent_request(&fleet, &agent, runtime, "");
        r.options = ExecuteOptions::from_json(&json!({
            "prompt": "#mcp-call files send_file {\"file_path\":\"/workspace/out/report.pdf\"}",
            "injectedMcpServers": {"files": {"name": "files", "tools": [
                {"name": "send_file", "description": "Send a file to the chat",
                 "inputSchema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}
            ]}}
        }))
        .unwrap();
        r.tool_handler = Some(Arc::new(handler));
        let job = AgentJob::start(&fleet.runner, r).unwrap_or_else(|e| panic!("{runtime:?}: {e}"));
        let (messages, outcome) = messages(job);
        assert!(outcome.success(), "{runtime:?}: {messages:?}");
        let report = messages
            .iter()
            .find_map(|m| m.get("standin_mcp"))
            .unwrap_or_else(|| panic!("{runtime:?}: no tool call in {messages:?}"));
        assert_eq!(report["error"], Value::Null, "{runtime:?}: {report}");
        assert_eq!(report["result"]["content"][0]["text"], "sent");
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 1, "{runtime:?}");
        assert_eq!(
            calls[0].arguments,
            json!({"file_path": format!("{host}/out/report.pdf")})
        );
    }
}

#[test]
fn gvisor_refuses_what_it_cannot_give_before_any_container() {
    let fleet = Fleet::new();
    let info = fleet.runner.engine().info().unwrap();
    let args = &info.runtimes[GVISOR].runtime_args;
    let agent = fleet.agent("rt-network");
    let bridge = config(&fleet, Some(GVISOR), json!({"network": "bridge"}));
    let started = fleet.runner.start(fleet.job(&agent, &bridge, ["true"]));
    if args.iter().any(|a| a == "--network=none") {
        // This engine's gVisor gives containers loopback only (see scripts/ensure-engine).
        let e = started.expect_err("refused");
        assert!(
            e.to_string().starts_with("invalid docker.network: \"bridge\" asks for a network, but the engine runs \"runsc\" with --network=none"),
            "{e}"
        );
        assert!(fleet.containers(&agent).is_empty());
    } else {
        let report = started.expect("gVisor's own network stack").finish();
        assert!(report.outcome.success(), "{report:?}");
    }
}

#[test]
fn a_runner_option_gives_the_runtime_to_configs_without_one() {
    let fleet = Fleet::new();
    let host = host_kernel(&fleet);
    let engine = fleet.runner.engine().clone();
    let mut options = RunnerOptions::new(fleet.state.path());
    options.runtime = Some(GVISOR.into());
    let runner = Runner::new(engine, options).unwrap();
    let agent = fleet.agent("rt-option");
    for (config, sandboxed) in [
        (config(&fleet, None, json!({})), true),
        // A config that names a runtime keeps it.
        (config(&fleet, Some("runc"), json!({})), false),
    ] {
        let (lines, report) = common::fleet::run_on(
            &runner,
            fleet.job(&agent, &config, ["cat", "/proc/version"]),
        );
        assert!(report.outcome.success(), "{report:?}");
        assert_eq!(release(&lines[0]) != host, sandboxed);
    }
    let mut bad = RunnerOptions::new(fleet.state.path());
    bad.runtime = Some("run sc".into());
    let e = Runner::new(fleet.runner.engine().clone(), bad).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("invalid runtime: \"run sc\" is not a runtime name"),
        "{e}"
    );
}

#[test]
fn doctor_lists_the_runtimes_and_probes_under_one() {
    let fleet = Fleet::new();
    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let out = cli(&fleet, &args, b"");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let plain = run(&["doctor"]);
    let runtimes = plain
        .lines()
        .find(|l| l.starts_with("runtimes:"))
        .unwrap_or_else(|| panic!("{plain}"));
    assert!(runtimes.contains("runc (runc, the default)"), "{runtimes}");
    assert!(
        runtimes.contains("runsc (/usr/bin/runsc --host-uds=open"),
        "{runtimes}"
    );
    assert!(!plain.contains("gvisor:"), "gVisor is there: {plain}");
    assert!(
        plain.contains(&format!("host kernel:  {}", host_kernel(&fleet))),
        "{plain}"
    );

    let probed = run(&["doctor", "--image", common::IMAGE, "--runtime", GVISOR]);
    assert!(probed.contains("runtime:      runsc"), "{probed}");
    assert!(probed.contains("probe:        Linux version "), "{probed}");
    assert!(
        !probed.contains(&format!("Linux version {} ", host_kernel(&fleet))),
        "{probed}"
    );
    assert!(
        probed.contains("outcome:      exited with code 0"),
        "{probed}"
    );
}

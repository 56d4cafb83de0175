//! Live tests of `agent`: herdctl execute calls as jobs in the test image, with the stand-in
//! `claude` and the stand-in Agent SDK, against the real engine.

mod common;

use common::fake::{forward, json as json_answer, FakeEngine, Reply};
use common::fleet::Fleet;
use herdctl_container::agent::{AgentJob, AgentRequest, Command, ExecuteOptions};
use herdctl_container::engine::{EngineOptions, Host};
use herdctl_container::invocation::Strategy;
use herdctl_container::mcp::ToolCall;
use herdctl_container::{agent_dir_name, Engine, JobSummary, Outcome, Runner, RunnerOptions};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Run {
    messages: Vec<Value>,
    outcome: Outcome,
}

impl Run {
    fn last(&self) -> &Value {
        self.messages.last().expect("at least one message")
    }

    fn of_type(&self, kind: &str) -> Vec<&Value> {
        self.messages.iter().filter(|m| m["type"] == kind).collect()
    }
}

fn request(fleet: &Fleet, agent: &str, options: ExecuteOptions, command: Command) -> AgentRequest {
    AgentRequest {
        config: fleet.config(json!({})),
        agent: json!({
            "name": agent.rsplit('.').next(),
            "qualifiedName": agent,
            "working_directory": {"root": fleet.workspace.path()},
        }),
        options,
        command,
        deadline: None,
        translate_paths: false,
        tool_handler: None,
    }
}

fn run_agent(fleet: &Fleet, request: AgentRequest) -> Run {
    let mut job = AgentJob::start(&fleet.runner, request).unwrap_or_else(|e| panic!("start: {e}"));
    let mut messages = Vec::new();
    while let Some(m) = job.next_message() {
        messages.push(serde_json::from_str(&m).expect("every message is JSON"));
    }
    Run {
        messages,
        outcome: job.finish().outcome,
    }
}

#[test]
fn cli_job_streams_messages_and_resume_finds_the_session() {
    let fleet = Fleet::new();
    let agent = fleet.agent("agent-cli");
    let first = run_agent(
        &fleet,
        request(
            &fleet,
            &agent,
            ExecuteOptions::new("hello"),
            Command::Runtime(Strategy::Cli),
        ),
    );
    assert!(first.outcome.success(), "{}", first.outcome.describe());
    let kinds: Vec<&str> = first
        .messages
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["system", "assistant", "result"]);
    assert_eq!(first.messages[0]["cwd"], "/workspace");
    let session = first.last()["session_id"].as_str().unwrap().to_string();

    let mut options = ExecuteOptions::new("again");
    options.resume = Some(session.clone());
    let second = run_agent(
        &fleet,
        request(&fleet, &agent, options, Command::Runtime(Strategy::Cli)),
    );
    assert!(second.outcome.success(), "{}", second.outcome.describe());
    let result = second.last();
    assert_eq!(result["type"], "result");
    assert_eq!(result["session_id"], session.as_str());
    assert_eq!(result["standin"]["earlier_turns"], 1);
    // The session lives in the agent's own directory on the host, and (issue 11.1) under a
    // second name in the flat directory herdctl's session code reads: the same file.
    let sessions = fleet.state.path().join("docker-sessions");
    let file = sessions
        .join(agent_dir_name(&agent))
        .join(format!("{session}.jsonl"));
    let flat = sessions.join(format!("{session}.jsonl"));
    use std::os::unix::fs::MetadataExt;
    let (own, seen) = (
        std::fs::symlink_metadata(&file).unwrap(),
        std::fs::symlink_metadata(&flat).unwrap(),
    );
    assert!(seen.file_type().is_file(), "a hard link, not a symlink");
    assert_eq!((own.ino(), own.nlink()), (seen.ino(), 2));
}

#[test]
fn sdk_job_honours_append_and_partial_messages() {
    let fleet = Fleet::new();
    let agent = fleet.agent("agent-sdk");
    let mut options = ExecuteOptions::new("#say from the sdk");
    options.system_prompt_append = Some("be brief".into());
    options.include_partial_messages = true;
    let run = run_agent(
        &fleet,
        request(&fleet, &agent, options, Command::Runtime(Strategy::Sdk)),
    );
    assert!(run.outcome.success(), "{}", run.outcome.describe());
    let init = run.of_type("system")[0];
    assert_eq!(
        init["standin"]["seen"]["systemPrompt"]["append"],
        "be brief"
    );
    assert!(!run.of_type("stream_event").is_empty());
    assert_eq!(run.last()["type"], "result");
    assert!(run
        .of_type("assistant")
        .iter()
        .any(|m| m["message"]["content"][0]["text"] == "from the sdk"));
}

#[test]
fn a_failing_agent_ends_with_a_synthesized_error() {
    let fleet = Fleet::new();
    let agent = fleet.agent("agent-fail");
    let prompt = "#stderr something broke\n#exit 3";
    let run = run_agent(
        &fleet,
        request(
            &fleet,
            &agent,
            ExecuteOptions::new(prompt),
            Command::Runtime(Strategy::Cli),
        ),
    );
    assert!(
        matches!(run.outcome, Outcome::Exited(3)),
        "{}",
        run.outcome.describe()
    );
    let error = run.last();
    assert_eq!(error["type"], "error");
    assert_eq!(error["exit_code"], 3);
    assert_eq!(
        error["message"],
        "the agent job failed: exited with code 3; stderr: something broke"
    );
    assert_eq!(run.of_type("error").len(), 1);
}

#[test]
fn secrets_of_mcp_servers_are_redacted_from_what_the_agent_prints() {
    // The agent gets its MCP servers' env (tokens): one that prints it is still redacted.
    let fleet = Fleet::new();
    let agent = fleet.agent("agent-mcp-redact");
    let token = "ghp_mcpserver_0123456789";
    let script = format!("echo 'starting gh with {token}' >&2; echo '{token}'; exit 3");
    let command = Command::raw(vec!["sh".into(), "-c".into(), script], Vec::new()).unwrap();
    let mut r = request(&fleet, &agent, ExecuteOptions::new(""), command);
    r.agent["mcp_servers"] = json!({"gh": {"command": "gh-mcp", "env": {"GITHUB_TOKEN": token}}});
    let mut job = AgentJob::start(&fleet.runner, r).unwrap();
    let mut messages = Vec::new();
    while let Some(m) = job.next_message() {
        messages.push(m);
    }
    let report = job.finish();
    let error: Value = serde_json::from_str(messages.last().unwrap()).unwrap();
    let text = error.to_string();
    assert!(!text.contains(token), "{text}");
    assert_eq!(error["stderr_tail"], "starting gh with [REDACTED]\n");
    assert_eq!(error["stdout_tail"], "[REDACTED]");
    assert!(!report.stderr_tail.contains(token));
    // The job's record (written by the core, so agent jobs get one too) is redacted alike.
    let records = herdctl_container::records::list(fleet.runner.state_dir(), Some(&agent)).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].exit_code, Some(3));
    let body = std::fs::read_to_string(&records[0].path).unwrap();
    assert!(!body.contains(token), "{body}");
    assert_eq!(records[0].stdout_tail, "[REDACTED]\n");
}

#[test]
fn non_json_output_is_kept_out_of_the_messages() {
    let fleet = Fleet::new();
    let agent = fleet.agent("agent-raw");
    let script =
        r#"echo 'Welcome to the agent'; echo '{"type":"assistant","n":1}'; echo '[1]'; cat"#;
    let command = Command::raw(
        vec!["sh".into(), "-c".into(), script.into()],
        b"{\"type\":\"result\"}\n".to_vec(),
    )
    .unwrap();
    let run = run_agent(
        &fleet,
        request(&fleet, &agent, ExecuteOptions::new(""), command),
    );
    assert!(run.outcome.success());
    let kinds: Vec<&str> = run
        .messages
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["assistant", "result"]);

    let command = Command::raw(
        vec!["sh".into(), "-c".into(), "echo plain words".into()],
        vec![],
    )
    .unwrap();
    let run = run_agent(
        &fleet,
        request(&fleet, &agent, ExecuteOptions::new(""), command),
    );
    assert_eq!(run.messages.len(), 1);
    let error = run.last();
    assert_eq!(error["type"], "error");
    assert_eq!(error["stdout_tail"], "plain words");
    assert_eq!(
        error["message"],
        "the agent ended without a result message (exited with code 0); 1 stdout line(s) were not JSON messages"
    );
}

#[test]
fn a_missing_program_is_reported_as_such() {
    let fleet = Fleet::new();
    let agent = fleet.agent("agent-noprog");
    let command = Command::raw(vec!["no-such-agent-binary".into()], vec![]).unwrap();
    let run = run_agent(
        &fleet,
        request(&fleet, &agent, ExecuteOptions::new(""), command),
    );
    let error = run.last();
    assert_eq!(error["outcome"], "command_not_found");
    // dockerd answers 126 for a program that is not in the image (runc's exec fails), a shell 127.
    let code = error["exit_code"].as_i64().unwrap();
    assert!(code == 126 || code == 127, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("the command"),
        "{error}"
    );
}

#[test]
fn a_cancelled_job_leaves_no_process_and_says_so() {
    let fleet = Fleet::new();
    let agent = fleet.agent("agent-cancel");
    let mut job = AgentJob::start(
        &fleet.runner,
        request(
            &fleet,
            &agent,
            ExecuteOptions::new("#spawn-child\n#sleep 60"),
            Command::Runtime(Strategy::Cli),
        ),
    )
    .unwrap();
    let first = job.next_message().unwrap();
    assert!(first.contains("\"init\""), "{first}");
    let spawned = job.next_message().unwrap();
    assert!(spawned.contains("standin_child_pid"), "{spawned}");
    let canceller = job.canceller().expect("a running job");
    let t = std::thread::spawn(move || canceller.cancel());
    let closing: Value = serde_json::from_str(&job.next_message().unwrap()).unwrap();
    assert_eq!(closing["outcome"], "cancelled");
    assert_eq!(job.next_message(), None);
    t.join().unwrap().unwrap();
    assert!(matches!(job.finish().outcome, Outcome::Cancelled));
}

#[test]
fn a_cancel_right_after_the_result_lets_the_agent_exit_by_itself() {
    // herdctl cancels at every `result`. An agent that exits soon after is left to do so (no kill
    // exec, its own outcome); one that lingers is still killed, well within 2 s.
    let fleet = Fleet::new();
    let agent = fleet.agent("agent-release");
    for (script, killed) in [
        (r#"echo '{"type":"result"}'; sleep 0.1"#, false),
        (r#"echo '{"type":"result"}'; sleep 60"#, true),
    ] {
        let command = Command::raw(vec!["sh".into(), "-c".into(), script.into()], vec![]).unwrap();
        let mut job = AgentJob::start(
            &fleet.runner,
            request(&fleet, &agent, ExecuteOptions::new(""), command),
        )
        .unwrap();
        assert!(job.next_message().unwrap().contains("result"));
        let canceller = job.canceller().expect("a running job");
        let t0 = Instant::now();
        let t = std::thread::spawn(move || canceller.cancel());
        while job.next_message().is_some() {}
        t.join().unwrap().unwrap();
        let took = t0.elapsed();
        let outcome = job.finish().outcome;
        assert_eq!(
            matches!(outcome, Outcome::Cancelled),
            killed,
            "{script}: {outcome:?}"
        );
        assert!(took < Duration::from_secs(2), "{script}: {took:?}");
    }
}

#[test]
fn a_missing_workspace_fails_before_any_container() {
    let fleet = Fleet::new();
    let agent = fleet.agent("agent-nows");
    let mut r = request(
        &fleet,
        &agent,
        ExecuteOptions::new("hi"),
        Command::Runtime(Strategy::Cli),
    );
    r.agent["working_directory"] = json!("/no/such/workspace/dir");
    let e = AgentJob::start(&fleet.runner, r).err().expect("no job");
    assert_eq!(e.code(), "INVALID_CONFIG");
    assert!(e.to_string().contains("/no/such/workspace/dir"), "{e}");
    assert!(fleet.containers(&agent).is_empty());
}

#[test]
fn container_paths_in_messages_become_host_paths_when_asked() {
    let fleet = Fleet::new();
    let agent = fleet.agent("agent-paths");
    let script = r#"echo '{"type":"assistant","file_path":"/workspace/src/main.rs","text":"see /workspace/x","other":"/etc/passwd"}'; echo '{"type":"result"}'"#;
    let command = Command::raw(vec!["sh".into(), "-c".into(), script.into()], Vec::new()).unwrap();
    let mut asked = request(&fleet, &agent, ExecuteOptions::new(""), command.clone());
    asked.translate_paths = true;
    let run = run_agent(&fleet, asked);
    assert!(run.outcome.success());
    let host = fleet.workspace.path().to_string_lossy().into_owned();
    let message = &run.messages[0];
    assert_eq!(message["file_path"], format!("{host}/src/main.rs"));
    assert_eq!(
        message["text"], "see /workspace/x",
        "only whole paths are rewritten"
    );
    assert_eq!(
        message["other"], "/etc/passwd",
        "paths outside every mount stay"
    );

    let not_asked = run_agent(
        &fleet,
        request(&fleet, &agent, ExecuteOptions::new(""), command),
    );
    assert_eq!(not_asked.messages[0]["file_path"], "/workspace/src/main.rs");
}

/// herdctl's file sender, in its shape: one tool that takes a `file_path`.
fn injected_options(prompt: &str) -> ExecuteOptions {
    ExecuteOptions::from_json(&json!({
        "prompt": prompt,
        "injectedMcpServers": {"files": {"name": "files", "version": "1.2.3", "tools": [
            {"name": "send_file", "description": "Send a file to the chat",
             "inputSchema": {"type": "object", "properties": {"file_path": {"type": "string"}}}},
            {"name": "fail", "description": "Always fails"}
        ]}}
    }))
    .unwrap()
}

#[test]
fn injected_mcp_tools_run_in_this_process_with_host_paths_and_no_network() {
    let fleet = Fleet::new();
    let host = fleet.workspace.path().to_string_lossy().into_owned();
    let prompt = "#mcp-call files send_file {\"file_path\":\"/workspace/out/report.pdf\"}\n#mcp-call files fail";
    for (strategy, ephemeral) in [(Strategy::Cli, true), (Strategy::Sdk, false)] {
        let agent = fleet.agent("agent-mcp");
        let calls: Arc<Mutex<Vec<ToolCall>>> = Arc::default();
        let seen = calls.clone();
        let handler = move |call: &ToolCall| -> Result<Value, String> {
            seen.lock().unwrap().push(call.clone());
            match call.tool.as_str() {
                "send_file" => Ok(json!({"content": [{"type": "text",
                    "text": format!("sent {}", call.arguments["file_path"].as_str().unwrap())}]})),
                _ => Err("no route to the chat".into()),
            }
        };
        let mut r = request(
            &fleet,
            &agent,
            injected_options(prompt),
            Command::Runtime(strategy),
        );
        r.config = fleet.config(json!({ "ephemeral": ephemeral }));
        r.agent["allowed_tools"] = json!(["Read"]);
        r.tool_handler = Some(Arc::new(handler));
        let run = run_agent(&fleet, r);
        assert!(run.outcome.success(), "{strategy:?}: {:?}", run.messages);

        let reports: Vec<&Value> = run
            .messages
            .iter()
            .filter_map(|m| m.get("standin_mcp"))
            .collect();
        assert_eq!(reports.len(), 2, "{strategy:?}: {:?}", run.messages);
        let sent = reports[0];
        assert_eq!(sent["error"], Value::Null, "{strategy:?}: {sent}");
        assert_eq!(sent["protocolVersion"], "2025-06-18");
        assert_eq!(
            sent["serverInfo"],
            json!({"name": "files", "version": "1.2.3"})
        );
        assert_eq!(sent["tools"], json!(["send_file", "fail"]));
        assert_eq!(
            sent["result"]["content"][0]["text"],
            format!("sent {host}/out/report.pdf")
        );
        assert_eq!(reports[1]["result"]["isError"], true);
        assert_eq!(
            reports[1]["result"]["content"][0]["text"],
            "no route to the chat"
        );

        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].server, "files");
        assert_eq!(
            calls[0].arguments,
            json!({"file_path": format!("{host}/out/report.pdf")})
        );

        let init = &run.messages[0]["standin"]["seen"];
        let allowed = init["allowedTools"].to_string();
        assert!(allowed.contains("mcp__files__*"), "{strategy:?}: {allowed}");
        let dir = fleet
            .runner
            .state_dir()
            .join("mcp")
            .join(agent_dir_name(&agent));
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "the job's sockets are removed"
        );
    }
}

#[test]
fn injected_mcp_servers_need_a_handler_and_a_herdctl_runtime() {
    let fleet = Fleet::new();
    let agent = fleet.agent("agent-mcp-bad");
    let no_handler = request(
        &fleet,
        &agent,
        injected_options("p"),
        Command::Runtime(Strategy::Cli),
    );
    let e = AgentJob::start(&fleet.runner, no_handler)
        .err()
        .expect("no job");
    assert_eq!(
        e.to_string(),
        "invalid injectedMcpServers: given without a handler to run their tools"
    );
    let handler = |_: &ToolCall| -> Result<Value, String> { Ok(Value::Null) };
    let mut raw = request(
        &fleet,
        &agent,
        injected_options("p"),
        Command::raw(vec!["true".into()], Vec::new()).unwrap(),
    );
    raw.tool_handler = Some(Arc::new(handler));
    let e = AgentJob::start(&fleet.runner, raw).err().expect("no job");
    assert_eq!(e.code(), "INVALID_ARGUMENT");
    assert!(e.to_string().contains("containerCommand"), "{e}");
    assert!(fleet.containers(&agent).is_empty());
}

/// The types of the messages that end a job (`result` and `error`), in order.
fn endings(run: &Run) -> Vec<&str> {
    run.messages
        .iter()
        .filter_map(|m| m["type"].as_str())
        .filter(|t| *t == "result" || *t == "error")
        .collect()
}

/// Issue 11.2: herdctl stops at the first `result` or `error` and records the job by it. A failed
/// job's error result is held back, so the closing error comes first (quoting the result, where
/// herdctl's stale-session retry looks for "No conversation found") and the result after it.
#[test]
fn a_failed_job_yields_its_error_before_its_result() {
    let fleet = Fleet::new();
    let agent = fleet.agent("agent-fail-order");
    let mut stale = ExecuteOptions::new("hi");
    stale.resume = Some("0badc0de-0000-4000-8000-000000000000".into());
    for (options, quoted) in [
        (
            stale,
            "its result: No conversation found with session ID: 0badc0de-0000-4000-8000-000000000000",
        ),
        (ExecuteOptions::new("#error-result it broke"), "its result: it broke"),
    ] {
        let run = run_agent(
            &fleet,
            request(&fleet, &agent, options, Command::Runtime(Strategy::Cli)),
        );
        assert!(matches!(run.outcome, Outcome::Exited(1)), "{:?}", run.outcome);
        assert_eq!(endings(&run), ["error", "result"], "{:?}", run.messages);
        let error = run.of_type("error")[0];
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with("the agent job failed: exited with code 1; "),
            "{message}"
        );
        assert!(message.contains(quoted), "{message}");
        assert_eq!(run.last()["is_error"], true);
        // Both carry the job's report, whichever one a consumer stops at.
        let reports = [summary(error), summary(run.last())];
        assert_eq!(reports[0], reports[1]);
        assert_eq!(
            (reports[0].outcome.as_str(), reports[0].exit_code),
            ("exited", Some(1))
        );
        assert!(!reports[0].success);
    }
    // A successful job has no error; its result, the last message, carries the report.
    let run = run_agent(
        &fleet,
        request(
            &fleet,
            &agent,
            ExecuteOptions::new("hi"),
            Command::Runtime(Strategy::Cli),
        ),
    );
    assert_eq!(endings(&run), ["result"]);
    assert_eq!(run.last()["type"], "result");
    assert!(summary(run.last()).success);
}

/// The job's report a closing message carries.
fn summary(message: &Value) -> JobSummary {
    serde_json::from_value(message["container_report"].clone())
        .unwrap_or_else(|e| panic!("container_report: {e}: {message}"))
}

/// Issue 9.13: a result line that is not JSON (a raw tab in a string, a trailing comma) was
/// dropped by JS without a word, and the job ended with no message at all. It is no message, and
/// the job ends in an error that says why.
#[test]
fn a_malformed_result_line_ends_in_an_error_naming_why() {
    let fleet = Fleet::new();
    let agent = fleet.agent("agent-bad-result");
    for (printf, reason) in [
        (
            r#"{"type":"result","result":"a\tb"}\n"#,
            "control character",
        ),
        (r#"{"type":"result","result":"done",}\n"#, "trailing comma"),
    ] {
        let script = format!(r#"echo '{{"type":"system","subtype":"init"}}'; printf '{printf}'"#);
        let command = Command::raw(vec!["sh".into(), "-c".into(), script], vec![]).unwrap();
        let run = run_agent(
            &fleet,
            request(&fleet, &agent, ExecuteOptions::new(""), command),
        );
        assert!(run.outcome.success(), "{:?}", run.outcome);
        assert_eq!(endings(&run), ["error"], "{:?}", run.messages);
        let message = run.last()["message"].as_str().unwrap();
        assert!(
            message.starts_with("the agent's result message (stdout line 2) is not JSON: "),
            "{message}"
        );
        assert!(message.contains(reason), "{message}");
    }
}

/// The real engine's socket, for a fake that passes calls on to it.
fn engine_socket() -> std::path::PathBuf {
    match EngineOptions::from_env()
        .expect("the engine's address")
        .host
    {
        Host::Unix(path) => path,
        other => panic!("these tests put a fake in front of a unix socket, not {other:?}"),
    }
}

/// The fake's answer to a call (by method and path) it faults; `None` passes the call on.
type Fault = fn(&str, &str) -> Option<Reply>;

/// A runner over a fake engine in front of the real one: `fault` answers the calls it is given
/// (by method and path), every other call reaches the real engine.
fn runner_with_fault(
    fleet: &Fleet,
    fault: impl Fn(&str, &str) -> Option<Reply> + Send + Sync + 'static,
) -> (FakeEngine, Runner) {
    let socket = engine_socket();
    let fake = FakeEngine::start(move |req| {
        fault(&req.method, &req.path).unwrap_or_else(|| forward(&socket, req))
    });
    let engine = Engine::with_options(EngineOptions {
        host: Host::Unix(fake.path.clone()),
        ..EngineOptions::default()
    })
    .unwrap();
    let runner = Runner::new(engine, RunnerOptions::new(fleet.state.path())).unwrap();
    (fake, runner)
}

/// Issue 9.14: errors after the job's container exists were thrown instead of ending the job's
/// messages; the README promises `{type: "error"}`. Here: a truncated answer to the exec start
/// and a bad answer to the inspect after create. The real engine cannot be made to send either,
/// so a fake stands in front of it for that one call (the container itself is real).
#[test]
fn engine_faults_after_the_container_exists_end_in_an_error_message() {
    let fleet = Fleet::new();
    let cases: [(&str, Fault, &str); 2] = [
        (
            "truncated-exec-start",
            |method, path| {
                (method == "POST" && path.contains("/exec/") && path.ends_with("/start")).then(|| {
                    Reply::Close(
                        b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConn"
                            .to_vec(),
                    )
                })
            },
            "PROTOCOL",
        ),
        (
            "bad-inspect",
            |method, path| {
                (method == "GET" && path.contains("/containers/") && path.ends_with("/json"))
                    .then(|| Reply::Close(json_answer(200, "{\"Id\": [not json")))
            },
            "PROTOCOL",
        ),
    ];
    for (what, fault, code) in cases {
        let agent = fleet.agent(what);
        let (_fake, runner) = runner_with_fault(&fleet, fault);
        let r = request(
            &fleet,
            &agent,
            ExecuteOptions::new("hi"),
            Command::Runtime(Strategy::Cli),
        );
        let mut job = AgentJob::start(&runner, r)
            .unwrap_or_else(|e| panic!("{what}: thrown instead of a message: {e}"));
        assert!(job.canceller().is_none(), "{what}: nothing ran");
        let error: Value = serde_json::from_str(&job.next_message().unwrap()).unwrap();
        assert_eq!(job.next_message(), None);
        assert_eq!(error["type"], "error", "{what}");
        assert_eq!(error["code"], code, "{what}: {error}");
        assert_eq!(error["outcome"], "failed");
        assert!(
            error["container"].as_str().unwrap().starts_with("herdctl-"),
            "{what}: {error}"
        );
        let message = error["message"].as_str().unwrap();
        assert!(message.starts_with("the agent job failed: "), "{message}");
        // The report names the container the job reached.
        let report = summary(&error);
        assert_eq!(
            (report.outcome.as_str(), report.code.as_deref()),
            ("failed", Some(code)),
            "{what}"
        );
        assert_eq!(report.container_name, error["container"], "{what}");
        assert_eq!(report.image, common::IMAGE, "{what}");
        assert_eq!(report.config_hash.len(), 16, "{what}: {report:?}");
        assert!(matches!(job.finish().outcome, Outcome::Failed(_)));
        // Nothing of the job is left running.
        assert!(
            fleet
                .containers(&agent)
                .iter()
                .all(|c| c.state != "running"),
            "{what}: {:?}",
            fleet.containers(&agent)
        );
    }
}

/// Issue 9.14 on the real engine: an exec that cannot be created in the agent's (paused)
/// persistent container ends the job with an error message, not a throw.
#[test]
fn an_exec_create_error_ends_in_an_error_message() {
    let fleet = Fleet::new();
    let agent = fleet.agent("agent-paused");
    let mut r = request(
        &fleet,
        &agent,
        ExecuteOptions::new("hi"),
        Command::Runtime(Strategy::Cli),
    );
    r.config = fleet.config(json!({"ephemeral": false}));
    let first = run_agent(&fleet, r.clone());
    assert!(first.outcome.success(), "{:?}", first.outcome);
    let container = fleet.containers(&agent)[0].id.clone();
    common::docker(&["pause", &container]);
    let started = AgentJob::start(&fleet.runner, r);
    common::docker(&["unpause", &container]);
    let mut job = started.unwrap_or_else(|e| panic!("thrown instead of a message: {e}"));
    let error: Value = serde_json::from_str(&job.next_message().unwrap()).unwrap();
    assert_eq!(job.next_message(), None);
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "CONFLICT", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("paused"),
        "{error}"
    );
    assert_eq!(error["container"], fleet.containers(&agent)[0].name);
}

/// Issue 9.16: an agent literally named like another agent's sanitised name had that agent's
/// session directory, and resumed its session. Now each has its own.
#[test]
fn an_agent_named_like_another_agents_sanitised_name_cannot_resume_its_session() {
    let fleet = Fleet::new();
    let spaced = fleet.agent("twin") + " one";
    let literal = herdctl_container::sanitize_agent_name(&spaced);
    let run_as = |agent: &str, options: ExecuteOptions| {
        run_agent(
            &fleet,
            request(&fleet, agent, options, Command::Runtime(Strategy::Cli)),
        )
    };
    let first = run_as(&spaced, ExecuteOptions::new("secret plans"));
    let session = first.last()["session_id"].as_str().unwrap().to_string();
    let mut resume = ExecuteOptions::new("what did they say?");
    resume.resume = Some(session.clone());
    let other = run_as(&literal, resume);
    assert_eq!(endings(&other), ["error", "result"], "{:?}", other.messages);
    assert!(other.of_type("error")[0]["message"]
        .as_str()
        .unwrap()
        .contains("No conversation found"));
    // (the fleet removes the containers of the names it made; these two are made here)
    for name in [&spaced, &literal] {
        for c in fleet.runner.list(Some(name)).unwrap() {
            let _ = fleet.runner.engine().remove_container(&c.id, true);
        }
    }
}

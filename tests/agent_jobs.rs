//! Live tests of `agent`: herdctl execute calls as jobs in the test image, with the stand-in
//! `claude` and the stand-in Agent SDK, against the real engine.

mod common;

use common::fleet::Fleet;
use herdctl_container::agent::{AgentJob, AgentRequest, Command, ExecuteOptions};
use herdctl_container::invocation::Strategy;
use herdctl_container::mcp::ToolCall;
use herdctl_container::{sanitize_agent_name, Outcome};
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
    // The session lives in the agent's own directory on the host.
    let file = fleet
        .state
        .path()
        .join("docker-sessions")
        .join(&agent)
        .join(format!("{session}.jsonl"));
    assert!(file.exists(), "{}", file.display());
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
    let canceller = job.canceller();
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
        let canceller = job.canceller();
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
            .join(sanitize_agent_name(&agent));
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
    assert_eq!(e.code(), "INVALID_CONFIG");
    assert!(e.to_string().contains("containerCommand"), "{e}");
    assert!(fleet.containers(&agent).is_empty());
}

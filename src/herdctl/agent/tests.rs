//! The agent module without an engine: options, the job spec, and the message synthesis.

use super::*;
use crate::run::job::Timings;
use crate::{resolve_docker_config, REDACTED};

fn report(outcome: Outcome, stderr: &str) -> JobReport {
    JobReport {
        outcome,
        container_id: "0123abcd".into(),
        container_name: "herdctl-a-1".into(),
        image: "herdctl-test/runtime:latest".into(),
        config_hash: "0123456789abcdef".into(),
        stderr_tail: stderr.into(),
        timings: Timings::default(),
        warnings: Vec::new(),
        redactor: Redactor::default(),
    }
}

/// The closing error, with an error result (if any) held back as `AgentJob` holds it.
fn closing(t: &Transcript, outcome: Outcome, stderr: &str) -> Option<Value> {
    t.closing(
        &report(outcome, stderr),
        &Redactor::default(),
        t.error_result.is_some(),
    )
    .map(|s| serde_json::from_str(&s).expect("the closing error is JSON"))
}

fn config() -> DockerConfig {
    resolve_docker_config(&json!({"network": "none", "user": "1000:1000"})).unwrap()
}

impl AgentRequest {
    /// The job spec as [`AgentRequest::prepare`] makes it: of the agent read once.
    fn read_job_spec(
        &self,
        injected: &[(String, McpServer)],
    ) -> Result<(JobSpec, Vec<(String, String)>)> {
        self.job_spec(AgentSpec::from_json(&self.agent)?, injected)
    }
}

fn request(agent: Value, command: Command) -> AgentRequest {
    AgentRequest {
        config: config(),
        agent,
        options: ExecuteOptions::new("hello"),
        command,
        deadline: None,
        translate_paths: false,
        tool_handler: None,
    }
}

#[test]
fn json_objects_are_messages_and_other_lines_are_kept_aside() {
    let mut t = Transcript::default();
    assert_eq!(
        t.accept(br#"  {"type":"system","subtype":"init"} "#)
            .map(|a| a.text)
            .as_deref(),
        Some(r#"{"type":"system","subtype":"init"}"#)
    );
    for not_a_message in [
        &b"plain text"[..],
        b"[1,2,3]",
        b"\"a string\"",
        b"{\"type\": \"truncated",
        b"{\"bad\": \"\xff\xfe\"}",
        b"",
        b"{} trailing",
    ] {
        assert!(t.accept(not_a_message).is_none(), "{not_a_message:?}");
    }
    assert_eq!(t.messages, 1);
    assert_eq!(t.other_total, 7);
    assert!(!t.saw_result);
    assert!(t
        .accept(br#"{"type":"result","subtype":"success"}"#)
        .is_some());
    assert!(t.saw_result);
}

#[test]
fn a_successful_job_with_a_result_gets_no_closing_error() {
    let mut t = Transcript::default();
    t.accept(br#"{"type":"result","is_error":false}"#);
    assert_eq!(closing(&t, Outcome::Exited(0), "noise on stderr"), None);
}

#[test]
fn a_job_that_ends_without_a_result_gets_one() {
    let mut t = Transcript::default();
    t.accept(br#"{"type":"assistant"}"#);
    let e = closing(&t, Outcome::Exited(0), "").unwrap();
    assert_eq!(e["type"], "error");
    assert_eq!(
        e["message"],
        "the agent ended without a result message (exited with code 0)"
    );
    assert_eq!(e["exit_code"], 0);
    assert_eq!(e["outcome"], "exited");
}

#[test]
fn a_failed_job_says_how_even_after_a_result() {
    let mut t = Transcript::default();
    t.accept(br#"{"type":"result","is_error":true}"#);
    let e = closing(&t, Outcome::Exited(3), "line one\nerror: it broke\n").unwrap();
    assert_eq!(
        e["message"],
        "the agent job failed: exited with code 3; stderr: line one\nerror: it broke"
    );
    assert_eq!(e["exit_code"], 3);
    assert_eq!(e["oom_killed"], false);
    assert_eq!(e["stderr_tail"], "line one\nerror: it broke\n");
    assert_eq!(e["container"], "herdctl-a-1");
}

#[test]
fn oom_kills_and_dead_containers_carry_the_flag_and_the_code() {
    let t = Transcript::default();
    let e = closing(
        &t,
        Outcome::ContainerDied {
            exit_code: Some(137),
            oom_killed: true,
        },
        "",
    )
    .unwrap();
    assert_eq!(
        (e["exit_code"].as_i64(), e["oom_killed"].as_bool()),
        (Some(137), Some(true))
    );
    assert_eq!(e["outcome"], "container_died");
    assert!(e["message"].as_str().unwrap().contains("ran out of memory"));

    let e = closing(
        &t,
        Outcome::Killed {
            code: 137,
            oom: true,
        },
        "",
    )
    .unwrap();
    assert_eq!(
        (e["exit_code"].as_i64(), e["oom_killed"].as_bool()),
        (Some(137), Some(true))
    );

    let e = closing(&t, Outcome::Cancelled, "").unwrap();
    assert_eq!(e["exit_code"], Value::Null);
    assert_eq!(e["message"], "the agent job failed: the job was cancelled");

    let e = closing(&t, Outcome::Failed(Error::LineTooLong { limit: 10 }), "").unwrap();
    assert_eq!(e["code"], "LINE_TOO_LONG");
    assert_eq!(e["outcome"], "failed");
}

#[test]
fn the_stdout_tail_is_bounded_cut_on_characters_and_redacted() {
    let mut t = Transcript::default();
    for i in 0..50 {
        t.accept(format!("junk {i} sk-ant-secret-value-123").as_bytes());
    }
    t.accept("é".repeat(400).as_bytes());
    let secrets = Redactor::new(["sk-ant-secret-value-123"]);
    let e: Value = serde_json::from_str(
        &t.closing(&report(Outcome::Exited(1), ""), &secrets, false)
            .unwrap(),
    )
    .unwrap();
    let tail = e["stdout_tail"].as_str().unwrap();
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), OTHER_LINES);
    assert!(lines[0].starts_with("junk 31 "), "{}", lines[0]);
    assert!(!tail.contains("sk-ant-secret-value-123"));
    let last = lines[OTHER_LINES - 1];
    assert!(last.ends_with("..."), "{last}");
    assert!(last.len() <= OTHER_LINE_BYTES + 3);
    assert!(e["message"]
        .as_str()
        .unwrap()
        .ends_with("; 51 stdout line(s) were not JSON messages"));
}

/// Issue 9.13: a `result` line with a trailing comma or a raw tab in a string is no message (JS
/// would drop it without a word); the job then ends with an error that says why.
#[test]
fn a_malformed_result_line_is_no_result_and_the_closing_error_says_why() {
    for (line, reason) in [
        (
            &br#"{"type":"result","subtype":"success","result":"done",}"#[..],
            "trailing comma at line 1 column 54",
        ),
        (
            b"{\"type\":\"result\",\"result\":\"a\tb\"}",
            "control character (\\u0000-\\u001F) found while parsing a string",
        ),
    ] {
        let mut t = Transcript::default();
        assert!(t.accept(br#"{"type":"system","subtype":"init"}"#).is_some());
        assert!(t.accept(line).is_none(), "not a message");
        assert!(!t.saw_result);
        let e = closing(&t, Outcome::Exited(0), "").unwrap();
        let message = e["message"].as_str().unwrap();
        assert!(
            message.starts_with("the agent's result message (stdout line 2) is not JSON: "),
            "{message}"
        );
        assert!(message.contains(reason), "{message}");
        assert!(
            message.contains("the job has no valid result (exited with code 0)"),
            "{message}"
        );
        // A failed job says how it failed first, and then that its result was broken.
        let e = closing(&t, Outcome::Exited(1), "").unwrap();
        let message = e["message"].as_str().unwrap();
        assert!(
            message.starts_with("the agent job failed: exited with code 1; the result message on stdout line 2 is not JSON: "),
            "{message}"
        );
    }
}

/// A secret across a line's cut, at every offset: no part of it survives (the line is redacted
/// before it is cut; cut first, the secret's beginning survived before the `...`).
#[test]
fn a_stdout_tail_line_is_redacted_before_it_is_cut() {
    let secret = "sk-ant-api03-0123456789";
    for offset in 0..=secret.len() {
        let mut t = Transcript {
            redactor: Redactor::new([secret]),
            ..Transcript::default()
        };
        let line = format!("{}{secret}xxxx", "x".repeat(OTHER_LINE_BYTES - offset));
        t.accept(line.as_bytes());
        let e = closing(&t, Outcome::Exited(1), "").unwrap();
        let tail = e["stdout_tail"].as_str().unwrap();
        // The cut may fall inside the marker ("[REDA..."), never inside the secret: every
        // byte is filler, a dot or the marker's (the secret has none of those).
        assert!(
            tail.bytes()
                .all(|b| b"x.".contains(&b) || REDACTED.as_bytes().contains(&b)),
            "offset {offset}: {tail}"
        );
    }
}

/// Any line that looks like a message but does not parse is named, with its line number; a
/// broken result wins over an earlier broken message.
#[test]
fn a_broken_message_line_is_named_when_the_job_ends_without_a_result() {
    let mut t = Transcript::default();
    assert!(t.accept(br#"{"type":"assistant","x":[1,2,]}"#).is_none());
    assert!(t.accept(b"plain").is_none());
    let e = closing(&t, Outcome::Exited(0), "").unwrap();
    assert_eq!(
        e["message"],
        "the agent ended without a result message (exited with code 0); a message on stdout line 1 is not JSON: expected value at line 1 column 30; 2 stdout line(s) were not JSON messages"
    );
    assert!(t.accept(br#"{"type":"result",}"#).is_none());
    assert_eq!(t.broken.as_ref().unwrap().line, 3);
    // Valid messages keep the whole line, escapes and all.
    let ok = br#"{"type":"assistant","text":"tab\there \ud800 \u00e9"}"#;
    assert!(
        t.accept(ok).is_some(),
        "JSON.parse accepts a lone surrogate escape"
    );
}

/// Issue 11.2: the agent's error result is flagged so that the job can hold it back; the
/// closing error of a failed job quotes its text (herdctl's stale-session retry looks for "no
/// conversation found" there).
#[test]
fn an_error_result_is_flagged_and_quoted_by_the_closing_error() {
    let mut t = Transcript::default();
    let ok = t
        .accept(br#"{"type":"result","subtype":"success","is_error":false,"result":"fine"}"#)
        .unwrap();
    assert!(!ok.error_result);
    for line in [
        &br#"{"type":"result","subtype":"error_during_execution","is_error":true,"result":"No conversation found with session ID: abc"}"#[..],
        br#"{"type":"result","subtype":"error_max_turns","result":"No conversation found with session ID: abc"}"#,
    ] {
        let mut t = Transcript::default();
        assert!(t.accept(line).unwrap().error_result);
        assert!(t.saw_result);
        let e = closing(&t, Outcome::Exited(1), "").unwrap();
        assert_eq!(
            e["message"],
            "the agent job failed: exited with code 1; its result: No conversation found with session ID: abc"
        );
        // Exit 0: herdctl's own runtimes pass such a result on as it is; no error.
        assert_eq!(closing(&t, Outcome::Exited(0), ""), None);
    }
}

/// The quoted result text is redacted before it is cut, so no part of a secret survives a cut.
#[test]
fn the_quoted_result_is_redacted_then_cut() {
    let secret = "sk-ant-secret-value-123";
    let text = format!("{}{secret}", "x".repeat(OTHER_LINE_BYTES - 5));
    let mut t = Transcript::default();
    let line = json!({"type": "result", "is_error": true, "result": text}).to_string();
    assert!(t.accept(line.as_bytes()).unwrap().error_result);
    let e: Value = serde_json::from_str(
        &t.closing(
            &report(Outcome::Exited(1), ""),
            &Redactor::new([secret]),
            true,
        )
        .unwrap(),
    )
    .unwrap();
    let message = e["message"].as_str().unwrap();
    assert!(!message.contains("sk-ant"), "{message}");
}

#[test]
fn the_message_quotes_only_the_end_of_a_long_stderr() {
    let stderr = format!("{}THE END", "x".repeat(5000));
    let e = closing(&Transcript::default(), Outcome::Exited(1), &stderr).unwrap();
    let message = e["message"].as_str().unwrap();
    assert!(message.ends_with("THE END"));
    assert!(message.len() < MESSAGE_STDERR_BYTES + 100);
    assert_eq!(e["stderr_tail"].as_str().unwrap().len(), stderr.len());
}

#[test]
fn execute_options_read_herdctls_shape() {
    let o = ExecuteOptions::from_json(&json!({
        "prompt": "p", "resume": "s1", "fork": true, "systemPromptAppend": "more",
        "includePartialMessages": true, "agent": {"name": "ignored here"},
        "injectedMcpServers": {}
    }))
    .unwrap();
    assert_eq!(
        o,
        ExecuteOptions {
            prompt: "p".into(),
            resume: Some("s1".into()),
            fork: true,
            system_prompt_append: Some("more".into()),
            include_partial_messages: true,
            injected_mcp_servers: Vec::new(),
        }
    );
    let o = ExecuteOptions::from_json(&json!({"prompt": "", "resume": "", "fork": null})).unwrap();
    assert_eq!(o, ExecuteOptions::new(""));
}

#[test]
fn bad_execute_options_name_the_field() {
    let err = |v: Value| ExecuteOptions::from_json(&v).unwrap_err().to_string();
    assert_eq!(
        err(json!({"resume": "x"})),
        "invalid prompt: missing or not a string; expected the prompt text"
    );
    assert_eq!(
        err(json!({"prompt": "p", "fork": "yes"})),
        "invalid fork: expected true or false"
    );
    assert_eq!(
        err(json!({"prompt": "p", "resume": 3})),
        "invalid resume: expected a string"
    );
    assert_eq!(
        err(json!("p")),
        "invalid execute options: expected an object with at least \"prompt\""
    );
}

#[test]
fn injected_mcp_servers_are_read_and_checked() {
    let o = ExecuteOptions::from_json(&json!({"prompt": "p", "injectedMcpServers": {
        "herdctl-file-sender": {"name": "herdctl-file-sender", "tools": [{"name": "send_file"}]}
    }}))
    .unwrap();
    assert_eq!(o.injected_mcp_servers.len(), 1);
    assert_eq!(o.injected_mcp_servers[0].name, "herdctl-file-sender");
    assert_eq!(o.injected_mcp_servers[0].tools[0].name, "send_file");

    let err = |injected: Value| {
        ExecuteOptions::from_json(&json!({"prompt": "p", "injectedMcpServers": injected}))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(json!(["herdctl"])),
        "invalid injectedMcpServers: expected an object of MCP servers by name"
    );
    assert_eq!(
        err(json!({"s": {"tools": "send_file"}})),
        "invalid injectedMcpServers.s.tools: missing or not an array; expected the server's tools"
    );
}

#[test]
fn injected_servers_join_the_agents_servers_and_its_allowed_tools() {
    let injected = [(
        "files".to_string(),
        McpServer {
            command: Some("node".into()),
            args: vec![
                "-e".into(),
                "shim".into(),
                "/home/claude/.claude/herdctl-mcp/x.sock".into(),
            ],
            ..McpServer::default()
        },
    )];
    let agent = json!({"name": "a", "allowed_tools": ["Read"],
                       "mcp_servers": {"web": {"url": "http://127.0.0.1:1/mcp"}}});
    let spec = request(agent.clone(), Command::Runtime(Strategy::Sdk))
        .read_job_spec(&injected)
        .unwrap()
        .0;
    let payload: Value = serde_json::from_slice(&spec.stdin).unwrap();
    let o = &payload["sdkOptions"];
    assert_eq!(o["allowedTools"], json!(["Read", "mcp__files__*"]));
    assert_eq!(o["mcpServers"]["web"]["url"], "http://127.0.0.1:1/mcp");
    assert_eq!(
        o["mcpServers"]["files"]["args"][2],
        "/home/claude/.claude/herdctl-mcp/x.sock"
    );

    let spec = request(json!({"name": "a"}), Command::Runtime(Strategy::Cli))
        .read_job_spec(&injected)
        .unwrap()
        .0;
    assert!(
        !spec.argv.iter().any(|a| a == "--allowedTools"),
        "an agent allowed every tool stays so"
    );
    let len: usize = spec.argv[4].parse().unwrap();
    let config: Value = serde_json::from_slice(&spec.stdin[..len]).unwrap();
    assert_eq!(config["mcpServers"]["files"]["command"], "node");
}

#[test]
fn the_job_spec_takes_name_workspace_and_invocation_from_the_agent() {
    let r = request(
        json!({"name": "coder", "qualifiedName": "fleet.coder", "model": "opus",
               "working_directory": {"root": "/srv//repo/"}}),
        Command::Runtime(Strategy::Cli),
    );
    let spec = r.read_job_spec(&[]).unwrap().0;
    assert_eq!(spec.agent, "fleet.coder");
    assert_eq!(spec.workspace, "/srv/repo");
    assert_eq!(spec.argv[..2], ["claude", "-p"]);
    assert!(spec.argv.windows(2).any(|w| w == ["--model", "opus"]));
    assert_eq!(spec.stdin, b"hello");

    let spec = request(json!({"name": "solo"}), Command::Runtime(Strategy::Sdk))
        .read_job_spec(&[])
        .unwrap()
        .0;
    assert_eq!(spec.agent, "solo");
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(spec.workspace, cwd.to_string_lossy());
    let payload: Value = serde_json::from_slice(&spec.stdin).unwrap();
    assert_eq!(payload["prompt"], "hello");
}

#[test]
fn a_raw_command_runs_as_given() {
    let command = Command::raw(vec!["node".into(), "agent.js".into()], b"in".to_vec()).unwrap();
    let spec = request(json!({"name": "a", "working_directory": "/w"}), command)
        .read_job_spec(&[])
        .unwrap()
        .0;
    assert_eq!(spec.argv, ["node", "agent.js"]);
    assert_eq!(spec.stdin, b"in");
}

#[test]
fn bad_agents_and_commands_name_the_field() {
    let e = request(json!({"model": "opus"}), Command::Runtime(Strategy::Cli))
        .read_job_spec(&[])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid agent.name: missing; expected the agent's name (or qualifiedName) as a string"
    );
    let e = request(
        json!({"name": "a", "working_directory": "relative/dir"}),
        Command::Runtime(Strategy::Cli),
    )
    .read_job_spec(&[])
    .unwrap_err();
    assert!(
        e.to_string().starts_with("invalid working_directory: "),
        "{e}"
    );
    let e = request(
        json!({"name": "a", "allowed_tools": "Read"}),
        Command::Runtime(Strategy::Cli),
    )
    .read_job_spec(&[])
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("invalid agent: invalid type: string"),
        "{e}"
    );

    assert_eq!(
        Command::raw(vec![], vec![]).unwrap_err().to_string(),
        "invalid containerCommand.argv: empty; expected the program and its arguments, like [\"node\", \"agent.js\"]"
    );
    assert_eq!(
        Command::raw(vec!["sh".into(), "a\0b".into()], vec![])
            .unwrap_err()
            .to_string(),
        "invalid containerCommand.argv[1]: contains a NUL byte; pass binary data on stdin"
    );
}

#[test]
fn object_type_reads_the_top_level_type_without_parsing_the_rest() {
    let cases: [(&str, Option<Option<&str>>); 12] = [
        (r#"{"type":"result","result":"ok"}"#, Some(Some("result"))),
        (
            r#"  { "type" : "assistant" , "x": 1 }  "#,
            Some(Some("assistant")),
        ),
        // Keys before `type`, with nesting, escapes and braces inside strings, are skipped.
        (
            r#"{"a":{"type":"inner","b":[1,{"c":"}"}]},"s":"q\"}\\","type":"system"}"#,
            Some(Some("system")),
        ),
        (
            r#"{"session_id":"x","n":-1.5e3,"ok":true,"v":null,"type":"user"}"#,
            Some(Some("user")),
        ),
        (r#"{"type":"a\"b"}"#, Some(Some(r#"a\"b"#))),
        (r#"{"message":"no type here"}"#, Some(None)),
        (r#"{"type":42}"#, Some(None)),
        ("{}", Some(None)),
        (r#"["type","result"]"#, None),
        ("not json at all", None),
        (r#"{"type":"result""#, None),
        // Unbalanced brackets: not a message.
        (r#"{"a":]}"#, None),
    ];
    for (line, expected) in cases {
        assert_eq!(object_type(line), expected, "{line}");
    }
}

#[test]
fn the_report_is_spliced_into_the_result_leaving_the_agents_text_alone() {
    let result = r#"{"type":"result","total_cost_usd":0.10000000000000001,"b":1,"a":2}"#;
    let spliced = with_report(result.to_string(), &report(Outcome::Exited(0), ""));
    assert!(
        spliced.starts_with(&result[..result.len() - 1]),
        "the agent's keys keep their order and its numbers their digits: {spliced}"
    );
    let parsed: Value = serde_json::from_str(&spliced).unwrap();
    assert_eq!(parsed["container_report"]["outcome"], "exited");
    assert_eq!(parsed["container_report"]["exit_code"], 0);
    let empty: Value = serde_json::from_str(&with_report(
        "{ }".to_string(),
        &report(Outcome::Exited(0), ""),
    ))
    .unwrap();
    assert_eq!(empty["container_report"]["success"], true);
    assert_eq!(
        with_report("{oops}".to_string(), &report(Outcome::Exited(0), "")),
        "{oops}"
    );
}

/// Issue 10: a missing prompt is the call's argument, not the fleet's config; a bad agent is
/// the config.
#[test]
fn a_bad_option_is_an_argument_and_a_bad_agent_is_config() {
    let code = |v: Value| ExecuteOptions::from_json(&v).unwrap_err().code();
    assert_eq!(code(json!({"resume": "x"})), "INVALID_ARGUMENT");
    assert_eq!(code(json!("p")), "INVALID_ARGUMENT");
    assert_eq!(
        code(json!({"prompt": "p", "injectedMcpServers": {"bad name": {"tools": []}}})),
        "INVALID_ARGUMENT"
    );
    let raw = Command::raw(Vec::new(), Vec::new()).unwrap_err();
    assert_eq!(raw.code(), "INVALID_ARGUMENT");
    for agent in [json!({"model": "opus"}), json!({"name": 5})] {
        let e = request(agent, Command::Runtime(Strategy::Cli))
            .read_job_spec(&[])
            .unwrap_err();
        assert_eq!(e.code(), "INVALID_CONFIG", "{e}");
    }
}

/// Issue 10: with translatePaths a message is rewritten as text, not parsed into a value and
/// written again (which sorted its keys and could change its numbers): only the path strings
/// change, keys that look like paths stay, and a message that is not JSON is left alone.
#[test]
fn paths_are_rewritten_in_the_text_of_the_message() {
    let map = PathMap::new([("/srv/ws", "/workspace")]);
    let message = r#"{"type":"assistant","z":1.10,"/workspace/k":"/workspace/a.rs","a":["/workspace", "/etc/x", "\/workspace\/b"],"n":{"p": "/workspace/c d"}}"#;
    assert_eq!(
        to_host_paths(message.to_string(), &map),
        r#"{"type":"assistant","z":1.10,"/workspace/k":"/srv/ws/a.rs","a":["/srv/ws", "/etc/x", "/srv/ws/b"],"n":{"p": "/srv/ws/c d"}}"#
    );
    let untouched = r#"{"type":"x","text":"see /workspace","q":"a\"/workspace"}"#;
    assert_eq!(to_host_paths(untouched.to_string(), &map), untouched);
    let broken = r#"{"type":"x","p":"/workspace/a"#;
    assert_eq!(to_host_paths(broken.to_string(), &map), broken);
    // The same values as a parse and a rewrite of the value give.
    let mut value: Value = serde_json::from_str(message).unwrap();
    crate::translate_json_paths(&mut value, &map, Direction::ToHost);
    let text: Value = serde_json::from_str(&to_host_paths(message.to_string(), &map)).unwrap();
    assert_eq!(text, value);
}

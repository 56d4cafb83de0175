use serde_json::{json, Value};

use super::protocol::{call_result, step, Step};
use super::*;

fn server() -> InjectedServer {
    InjectedServer::from_json(
        "files",
        &json!({
            "name": "ignored: the key names the server",
            "version": "2.1.0",
            "tools": [
                {"name": "send_file", "description": "Send a file", "inputSchema": {"type": "object", "properties": {"file_path": {"type": "string"}}}},
                {"name": "noop"}
            ],
            "handlers": "functions never reach Rust; extra fields are ignored"
        }),
    )
    .unwrap()
}

fn reply(step: Step) -> Value {
    match step {
        Step::Reply(v) => v,
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[test]
fn definitions_are_read_with_defaults_and_checked_by_field() {
    let s = server();
    assert_eq!(s.name, "files");
    assert_eq!(s.version, "2.1.0");
    assert_eq!(s.tools[1].description, "");
    assert_eq!(s.tools[1].input_schema, json!({"type": "object"}));

    let err = |key: &str, def: Value| {
        InjectedServer::from_json(key, &def)
            .unwrap_err()
            .to_string()
    };
    assert!(err("a b", json!({"tools": []}))
        .starts_with("invalid injectedMcpServers.a b: is not a server name"));
    assert_eq!(
        err("s", json!({})),
        "invalid injectedMcpServers.s.tools: missing or not an array; expected the server's tools"
    );
    assert!(err("s", json!({"tools": [{"name": "t"}, {"name": "t"}]}))
        .starts_with("invalid injectedMcpServers.s.tools[1].name: \"t\" is listed twice"));
    assert!(err("s", json!({"tools": [{"description": "no name"}]}))
        .starts_with("invalid injectedMcpServers.s.tools[0].name: missing"));
    assert_eq!(
        err("s", json!({"tools": [{"name": "t", "inputSchema": "x"}]})),
        "invalid injectedMcpServers.s.tools[0].inputSchema: expected a JSON Schema object"
    );
}

#[test]
fn initialize_answers_the_clients_version_when_known_else_the_newest() {
    let s = server();
    for (asked, answered) in [
        ("2024-11-05", "2024-11-05"),
        ("2025-06-18", "2025-06-18"),
        ("2099-01-01", "2025-06-18"),
    ] {
        let r = reply(step(
            &s,
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": asked}})
                .to_string()
                .as_bytes(),
        ));
        assert_eq!(r["id"], 1);
        assert_eq!(r["result"]["protocolVersion"], answered);
        assert_eq!(
            r["result"]["serverInfo"],
            json!({"name": "files", "version": "2.1.0"})
        );
        assert_eq!(r["result"]["capabilities"]["tools"]["listChanged"], false);
    }
}

#[test]
fn tools_are_listed_and_calls_dispatched() {
    let s = server();
    let list = reply(step(
        &s,
        br#"{"jsonrpc":"2.0","id":"a","method":"tools/list"}"#,
    ));
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["send_file", "noop"]);
    assert_eq!(
        list["result"]["tools"][0]["inputSchema"]["properties"]["file_path"]["type"],
        "string"
    );

    let call = step(
        &s,
        br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"send_file","arguments":{"file_path":"/workspace/a.pdf"}}}"#,
    );
    assert_eq!(
        call,
        Step::Call {
            id: json!(7),
            call: ToolCall {
                server: "files".into(),
                tool: "send_file".into(),
                arguments: json!({"file_path": "/workspace/a.pdf"}),
            }
        }
    );
    let unknown = reply(step(
        &s,
        br#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"rm_rf"}}"#,
    ));
    assert_eq!(unknown["error"]["code"], -32602);
}

#[test]
fn notifications_get_no_answer_and_junk_gets_a_parse_error() {
    let s = server();
    assert_eq!(
        step(
            &s,
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
        ),
        Step::Nothing
    );
    assert_eq!(
        step(&s, br#"{"jsonrpc":"2.0","id":3,"result":{}}"#),
        Step::Nothing,
        "a response is never answered"
    );
    assert_eq!(
        reply(step(&s, br#"{"jsonrpc":"2.0","id":6,"params":{}}"#))["error"]["code"],
        -32600,
        "a request without a method still gets its answer"
    );
    assert_eq!(
        reply(step(&s, br#"{"jsonrpc":"2.0","id":7,"method":5}"#))["id"],
        7
    );
    assert_eq!(reply(step(&s, b"not json"))["error"]["code"], -32700);
    assert_eq!(reply(step(&s, b"[1,2]"))["error"]["code"], -32600);
    assert_eq!(
        reply(step(
            &s,
            br#"{"jsonrpc":"2.0","id":4,"method":"resources/list"}"#
        ))["error"]["code"],
        -32601
    );
    assert_eq!(
        reply(step(&s, br#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#))["result"],
        json!({})
    );
}

#[test]
fn handler_answers_become_call_tool_results() {
    let text = json!({"content": [{"type": "text", "text": "sent"}]});
    assert_eq!(call_result(Ok(text.clone())), text);
    assert_eq!(
        call_result(Ok(json!("plain")))["content"][0]["text"],
        "plain"
    );
    assert_eq!(call_result(Ok(json!(42)))["content"][0]["text"], "42");
    let failed = call_result(Err("disk full".into()));
    assert_eq!(failed["isError"], true);
    assert_eq!(failed["content"][0]["text"], "disk full");
}

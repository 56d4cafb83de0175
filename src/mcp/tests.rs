use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

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
        Step::Nothing
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

/// A client on the bridge's real socket (no engine: the socket is the whole transport).
struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    fn connect(path: &Path) -> Client {
        let writer = UnixStream::connect(path).unwrap();
        writer
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            reader: BufReader::new(writer.try_clone().unwrap()),
            writer,
        }
    }

    fn send(&mut self, message: Value) {
        writeln!(self.writer, "{message}").unwrap();
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }
}

#[test]
fn the_bridge_serves_calls_concurrently_translates_paths_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut bridge = Bridge::bind(dir.path(), vec![server()]).unwrap();
    let configs = bridge.agent_configs();
    assert_eq!(configs.len(), 1);
    let (name, config) = &configs[0];
    assert_eq!(name, "files");
    assert_eq!(config.command.as_deref(), Some("node"));
    let container_path = config.args.last().unwrap();
    assert!(
        container_path.starts_with("/home/claude/.claude/herdctl-mcp/")
            && container_path.ends_with(".sock")
    );
    let socket = dir.path().join(container_path.rsplit('/').next().unwrap());
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o666, "any container user may connect");

    // `noop` blocks until `send_file` has run: were calls run one at a time, in order, it would
    // give up after 5 s with another answer.
    let (sent_tx, sent_rx) = std::sync::mpsc::channel::<()>();
    let sent_rx = Mutex::new(sent_rx);
    let handler = move |call: &ToolCall| -> std::result::Result<Value, String> {
        match call.tool.as_str() {
            "send_file" => {
                let _ = sent_tx.clone().send(());
                Ok(json!(format!(
                    "sent {}",
                    call.arguments["file_path"].as_str().unwrap()
                )))
            }
            _ => {
                sent_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(5))
                    .map_err(|_| "send_file never ran alongside".to_string())?;
                Err("noop refuses".into())
            }
        }
    };
    bridge
        .serve(
            Arc::new(handler),
            PathMap::new([("/srv/repo", "/workspace")]),
        )
        .unwrap();

    let mut c = Client::connect(&socket);
    c.send(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}}));
    assert_eq!(c.read()["result"]["serverInfo"]["name"], "files");
    c.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    c.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "noop"}}));
    c.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "send_file", "arguments": {"file_path": "/workspace/out/report.pdf"}}}));
    // Either order: `noop` answers as soon as `send_file` has run.
    let mut answers = [c.read(), c.read()];
    answers.sort_by_key(|a| std::cmp::Reverse(a["id"].as_i64()));
    let [first, second] = answers;
    assert_eq!(first["id"], 2);
    assert_eq!(
        first["result"]["content"][0]["text"],
        "sent /srv/repo/out/report.pdf"
    );
    assert_eq!(second["id"], 1);
    assert_eq!(second["result"]["isError"], true);
    assert_eq!(second["result"]["content"][0]["text"], "noop refuses");

    drop(bridge);
    assert!(!socket.exists(), "the socket file is removed");
    let mut rest = String::new();
    assert_eq!(
        c.reader.read_line(&mut rest).unwrap(),
        0,
        "the connection is closed"
    );
}

#[test]
fn a_socket_directory_past_the_unix_path_limit_still_works() {
    // herdctl's state directory sits in the user's project, often deep: a socket path there
    // exceeds the 108 bytes a unix socket address holds.
    let root = tempfile::tempdir().unwrap();
    let deep = root
        .path()
        .join("a-project-with-a-long-name/.herdctl/mcp")
        .join("x".repeat(90));
    std::fs::create_dir_all(&deep).unwrap();
    let mut bridge = Bridge::bind(&deep, vec![server()]).unwrap();
    let handler = |_: &ToolCall| -> std::result::Result<Value, String> { Ok(json!("ok")) };
    bridge.serve(Arc::new(handler), PathMap::default()).unwrap();
    let file = bridge.sockets[0].file.clone();
    assert!(deep.join(&file).to_string_lossy().len() > 108);
    let mut c = Client::connect(&bridge.short_path(&file));
    c.send(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
    assert_eq!(c.read()["result"], json!({}));
    drop(bridge);
    assert!(!deep.join(&file).exists());
}

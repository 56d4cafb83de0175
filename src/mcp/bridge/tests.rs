//! The bridge over real unix sockets in a temporary directory: no engine is needed, the socket
//! is the whole transport (the live tests in tests/agent_jobs.rs go through a container).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::mcp::ToolCall;

fn server() -> InjectedServer {
    InjectedServer::from_json(
        "files",
        &json!({"tools": [{"name": "send_file"}, {"name": "noop"}, {"name": "panic"}]}),
    )
    .unwrap()
}

/// A bridge serving `server()` in a fresh directory, with `handler`.
fn served(
    handler: impl Fn(&ToolCall) -> std::result::Result<Value, String> + Send + Sync + 'static,
    paths: PathMap,
) -> (tempfile::TempDir, Bridge) {
    let dir = tempfile::tempdir().unwrap();
    let mut bridge = Bridge::bind(dir.path(), vec![server()]).unwrap();
    bridge.serve(Arc::new(handler), paths).unwrap();
    (dir, bridge)
}

/// An agent's end of a connection.
struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects and presents `secret`.
    fn connect(bridge: &Bridge, secret: &str) -> Client {
        let mut writer = UnixStream::connect(bridge.short_path(&bridge.sockets[0].file)).unwrap();
        writer
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        writeln!(writer, "{secret}").unwrap();
        Client {
            reader: BufReader::new(writer.try_clone().unwrap()),
            writer,
        }
    }

    fn authorized(bridge: &Bridge) -> Client {
        Client::connect(bridge, &bridge.sockets[0].endpoint.secret)
    }

    fn send(&mut self, message: Value) {
        writeln!(self.writer, "{message}").unwrap();
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    /// Whether the bridge closed the connection (end of stream, nothing before it).
    fn closed(&mut self) -> bool {
        let mut rest = String::new();
        matches!(self.reader.read_line(&mut rest), Ok(0))
    }
}

fn call(id: u64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}})
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_agent_config_carries_the_socket_and_its_secret_but_argv_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = Bridge::bind(dir.path(), vec![server()]).unwrap();
    let configs = bridge.agent_configs();
    let (name, config) = &configs[0];
    assert_eq!(name, "files");
    assert_eq!(config.command.as_deref(), Some("node"));
    let socket = config.args.last().unwrap();
    assert!(socket.starts_with("/home/claude/.claude/herdctl-mcp/") && socket.ends_with(".sock"));
    let secret = &config.env[SECRET_ENV];
    assert_eq!(secret.len(), 32);
    assert!(config.args.iter().all(|a| !a.contains(secret.as_str())));
    let file = dir.path().join(socket.rsplit('/').next().unwrap());
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o666, "any container user may connect");
}

#[test]
fn calls_run_concurrently_with_host_paths_and_every_request_is_answered() {
    // `noop` blocks until `send_file` has run: were calls run one at a time, in order, it would
    // give up after 5 s with another answer.
    let (sent_tx, sent_rx) = channel::<()>();
    let sent_rx = Mutex::new(sent_rx);
    let handler = move |call: &ToolCall| -> std::result::Result<Value, String> {
        match call.tool.as_str() {
            "send_file" => {
                let _ = sent_tx.clone().send(());
                let path = call.arguments["file_path"].as_str().unwrap();
                Ok(json!(format!("sent {path}")))
            }
            "noop" => {
                sent_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(5))
                    .map_err(|_| "send_file never ran alongside".to_string())?;
                Err("noop refuses".into())
            }
            _ => panic!("a handler bug"),
        }
    };
    let (_dir, bridge) = served(handler, PathMap::new([("/srv/repo", "/workspace")]));
    let mut c = Client::authorized(&bridge);
    c.send(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}}));
    assert_eq!(c.read()["result"]["serverInfo"]["name"], "files");
    c.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    c.send(call(1, "noop", json!({})));
    c.send(call(
        2,
        "send_file",
        json!({"file_path": "/workspace/out/report.pdf"}),
    ));
    let mut answers = [c.read(), c.read()];
    answers.sort_by_key(|a| a["id"].as_i64());
    let [noop, sent] = answers;
    assert_eq!(
        sent["result"]["content"][0]["text"],
        "sent /srv/repo/out/report.pdf"
    );
    assert_eq!(noop["result"]["isError"], true);
    assert_eq!(noop["result"]["content"][0]["text"], "noop refuses");

    c.send(call(3, "panic", json!({})));
    let panicked = c.read();
    assert_eq!(panicked["id"], 3);
    assert_eq!(
        panicked["result"]["content"][0]["text"],
        "the tool's handler panicked"
    );
}

#[test]
fn a_connection_without_the_secret_is_closed_unanswered() {
    let (_dir, bridge) = served(|_: &ToolCall| Ok(Value::Null), PathMap::default());
    let mut c = Client::connect(&bridge, "not-the-secret");
    c.send(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
    assert!(c.closed());
    let mut c = Client::authorized(&bridge);
    c.send(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
    assert_eq!(c.read()["result"], json!({}));
}

#[test]
fn calls_past_the_limit_are_refused_and_the_rest_still_answer() {
    let (release_tx, release_rx) = channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let handler = move |_: &ToolCall| -> std::result::Result<Value, String> {
        let _ = release_rx
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10));
        Ok(json!("done"))
    };
    let (_dir, bridge) = served(handler, PathMap::default());
    let mut c = Client::authorized(&bridge);
    for id in 0..=MAX_CALLS as u64 {
        c.send(call(id, "noop", json!({})));
    }
    let refused = c.read();
    assert_eq!(refused["id"], MAX_CALLS);
    assert_eq!(refused["error"]["code"], -32000);
    for _ in 0..MAX_CALLS {
        release_tx.send(()).unwrap();
    }
    let answered: Vec<Value> = (0..MAX_CALLS).map(|_| c.read()).collect();
    assert!(answered
        .iter()
        .all(|a| a["result"]["content"][0]["text"] == "done"));
}

#[test]
fn a_closed_connection_is_let_go_and_the_job_end_closes_the_rest() {
    let (dir, bridge) = served(|_: &ToolCall| Ok(Value::Null), PathMap::default());
    let endpoint = bridge.sockets[0].endpoint.clone();
    let mut gone = Client::authorized(&bridge);
    let mut kept = Client::authorized(&bridge);
    for c in [&mut gone, &mut kept] {
        c.send(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
        c.read();
    }
    assert_eq!(endpoint.connections().len(), 2);
    // The shim half-closes when the agent closes its stdin: the bridge must close its side too,
    // or the shim would wait for the end of the job.
    gone.writer.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(gone.closed());
    wait_until("the connection is let go", || {
        endpoint.connections().len() == 1
    });

    let file = dir.path().join(&bridge.sockets[0].file);
    drop(bridge);
    assert!(!file.exists(), "the socket file is removed");
    assert!(kept.closed(), "the connection is closed with the job");
}

#[test]
fn sockets_left_by_a_dead_process_are_removed_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let live = Bridge::bind(dir.path(), vec![server()]).unwrap();
    // What a killed process leaves: the file of a socket nobody listens on any more.
    let dead_file = dir.path().join("0123456789abcdef0123456789abcdef.sock");
    drop(UnixListener::bind(&dead_file).unwrap());
    assert!(dead_file.exists());

    let _next = Bridge::bind(dir.path(), vec![server()]).unwrap();
    assert!(!dead_file.exists(), "a dead socket is removed");
    assert!(
        dir.path().join(&live.sockets[0].file).exists(),
        "a live one stays"
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
    let mut c = Client::authorized(&bridge);
    c.send(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
    assert_eq!(c.read()["result"], json!({}));
    drop(bridge);
    assert!(!deep.join(&file).exists());
}

//! The bridge over real unix sockets in a temporary directory: no engine is needed, the socket
//! is the whole transport (the live tests in tests/agent_jobs.rs go through a container).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::herdctl::mcp::ToolCall;

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
    served_with(handler, paths, Limits::default())
}

/// The same with other bounds.
fn served_with(
    handler: impl Fn(&ToolCall) -> std::result::Result<Value, String> + Send + Sync + 'static,
    paths: PathMap,
    limits: Limits,
) -> (tempfile::TempDir, Bridge) {
    let dir = tempfile::tempdir().unwrap();
    let mut bridge = Bridge::bind(dir.path(), vec![server()]).unwrap();
    bridge.limits = limits;
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
        let mut c = Client::silent(bridge);
        writeln!(c.writer, "{secret}").unwrap();
        c
    }

    /// Connects and sends nothing.
    fn silent(bridge: &Bridge) -> Client {
        let writer = UnixStream::connect(bridge.short_path(&bridge.sockets[0].file)).unwrap();
        writer
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
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

    /// Sends what it can: the bridge may have closed the connection already.
    fn try_send(&mut self, message: Value) {
        let _ = writeln!(self.writer, "{message}");
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    /// Whether the bridge closed the connection (end of stream, nothing before it). A close
    /// with our message still unread reaches us as a reset, which is a close too; a read
    /// timeout (the bridge kept it open) is not.
    fn closed(&mut self) -> bool {
        let mut rest = String::new();
        match self.reader.read_line(&mut rest) {
            Ok(n) => n == 0,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
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
    c.try_send(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
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
    assert_eq!(endpoint.connections().served.len(), 2);
    // The shim half-closes when the agent closes its stdin: the bridge must close its side too,
    // or the shim would wait for the end of the job.
    gone.writer.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(gone.closed());
    wait_until("the connection is let go", || {
        endpoint.connections().served.len() == 1
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

/// A `tools/call` as the MCP TypeScript SDK writes it (`{method, params, jsonrpc, id}`: the id
/// after the arguments), with a string argument of `size` bytes, sent in pieces so that the
/// sender holds no more than 64 KiB of it. False when the bridge stopped reading.
fn send_large_call(writer: &mut UnixStream, id: u64, size: usize) -> bool {
    let head = r#"{"method":"tools/call","params":{"name":"noop","arguments":{"data":""#;
    let tail = format!("\"}}}},\"jsonrpc\":\"2.0\",\"id\":{id}}}\n");
    let chunk = vec![b'a'; 64 << 10];
    let mut left = size;
    let mut ok = writer.write_all(head.as_bytes()).is_ok();
    while ok && left > 0 {
        let n = left.min(chunk.len());
        ok = writer.write_all(&chunk[..n]).is_ok();
        left -= n;
    }
    ok && writer.write_all(tail.as_bytes()).is_ok()
}

/// The process's resident memory, in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<usize>().ok())
        .expect("VmRSS in /proc/self/status");
    kb << 10
}

/// A bridge whose handler counts its calls.
fn counting(limits: Limits) -> (tempfile::TempDir, Bridge, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let handler = move |_: &ToolCall| -> std::result::Result<Value, String> {
        c.fetch_add(1, Ordering::SeqCst);
        Ok(json!("ran"))
    };
    let (dir, bridge) = served_with(handler, PathMap::default(), limits);
    (dir, bridge, calls)
}

#[test]
fn a_message_past_a_bound_gets_an_error_with_its_id_and_the_connection_goes_on() {
    let (_dir, bridge, calls) = counting(Limits::default());
    let mut c = Client::authorized(&bridge);
    assert!(send_large_call(&mut c.writer, 41, MAX_MESSAGE + 1));
    let refused = c.read();
    assert_eq!(refused["id"], 41, "{refused}");
    assert_eq!(refused["error"]["code"], -32600);
    let text = refused["error"]["message"].as_str().unwrap();
    assert!(
        text.starts_with("message too large: more than 4194304 bytes") && text.contains("file"),
        "{text}"
    );

    // `[0,0,...]`: small on the wire, 32 times that once parsed.
    let zeros = vec!["0"; MAX_VALUES as usize].join(",");
    c.send(json!({"jsonrpc": "2.0", "id": "z", "method": "tools/call", "params": {"name": "noop", "arguments": {"zeros": serde_json::from_str::<Value>(&format!("[{zeros}]")).unwrap()}}}));
    let refused = c.read();
    assert_eq!(refused["id"], "z");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("message too large: more than 262144 JSON values"));

    // Just under the byte limit is served.
    assert!(send_large_call(&mut c.writer, 42, MAX_MESSAGE - 200));
    let served = c.read();
    assert_eq!(served["id"], 42);
    assert_eq!(served["result"]["content"][0]["text"], "ran");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "only the call within bounds ran"
    );
    let budget = bridge_budget(&bridge);
    wait_until("the budget is given back", || budget.used() == 0);
}

/// The budget the bridge's sockets draw on.
fn bridge_budget(bridge: &Bridge) -> Arc<Budget> {
    bridge.serving.as_ref().expect("served").budget.clone()
}

#[test]
fn eight_connections_sending_60_mb_each_hold_the_budget_at_most() {
    // Issue 9: 8 authenticated connections each sending a 60 MB call took the host from 46 MB
    // to 1.7 GB (this test measured a peak of +849 MB before the bounds, in the bridge alone).
    let (_dir, bridge, calls) = counting(Limits::default());
    let budget = bridge_budget(&bridge);
    let mut clients: Vec<Client> = (0..8).map(|_| Client::authorized(&bridge)).collect();
    for c in &mut clients {
        c.send(json!({"jsonrpc": "2.0", "id": 0, "method": "ping"}));
        c.read();
    }
    let before = rss();
    let peak = Arc::new(AtomicUsize::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(rss(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    std::thread::scope(|s| {
        for (id, c) in clients.iter_mut().enumerate() {
            s.spawn(move || {
                c.writer
                    .set_read_timeout(Some(Duration::from_secs(120)))
                    .unwrap();
                assert!(send_large_call(&mut c.writer, id as u64, 60_000_000));
                // Too large, or (while the budget is held by the others' first 4 MiB) busy.
                let refused = c.read();
                assert_eq!(refused["id"], id);
                let code = refused["error"]["code"].as_i64();
                assert!(code == Some(-32600) || code == Some(-32000), "{refused}");
            });
        }
    });
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let grew = peak.load(Ordering::SeqCst).saturating_sub(before);
    eprintln!(
        "RSS before {} MiB, peak +{} MiB, after +{} MiB; budget peak {} KiB",
        before >> 20,
        grew >> 20,
        rss().saturating_sub(before) >> 20,
        budget.peak.load(Ordering::SeqCst) >> 10
    );
    assert!(budget.peak.load(Ordering::SeqCst) <= MAX_BUFFERED);
    // The budget, the connections' read buffers and the allocator's slack; other tests of this
    // binary run alongside.
    assert!(grew < 128 << 20, "RSS grew by {} MiB", grew >> 20);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    for c in &mut clients {
        c.send(call(9, "noop", json!({})));
        assert_eq!(c.read()["result"]["content"][0]["text"], "ran");
    }
    wait_until("the answered calls give their share back", || {
        budget.used() == 0
    });
}

#[test]
fn the_budget_refuses_what_it_cannot_hold_until_answers_give_it_back() {
    let (release_tx, release_rx) = channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let handler = move |_: &ToolCall| -> std::result::Result<Value, String> {
        let _ = release_rx
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10));
        Ok(json!("done"))
    };
    let limits = Limits {
        max_buffered: 256 << 10,
        ..Limits::default()
    };
    let (_dir, bridge) = served_with(handler, PathMap::default(), limits);
    let budget = bridge_budget(&bridge);
    let mut first = Client::authorized(&bridge);
    let mut second = Client::authorized(&bridge);
    assert!(send_large_call(&mut first.writer, 1, 150 << 10));
    wait_until("the first call holds its share", || {
        budget.used() > 150 << 10
    });
    // Another connection's call does not fit beside it.
    assert!(send_large_call(&mut second.writer, 2, 150 << 10));
    let busy = second.read();
    assert_eq!(busy["id"], 2);
    assert_eq!(busy["error"]["code"], -32000);
    assert!(busy["error"]["message"]
        .as_str()
        .unwrap()
        .contains("262144 bytes of messages not yet answered"));
    // A small one does.
    second.send(json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}));
    assert_eq!(second.read()["id"], 3);

    release_tx.send(()).unwrap();
    assert_eq!(first.read()["result"]["content"][0]["text"], "done");
    wait_until("the answered call gives its share back", || {
        budget.used() == 0
    });
    assert!(send_large_call(&mut second.writer, 4, 150 << 10));
    release_tx.send(()).unwrap();
    assert_eq!(second.read()["id"], 4);
    assert!(budget.peak.load(Ordering::SeqCst) <= 256 << 10);
}

#[test]
fn the_secret_deadline_counts_from_accept_and_a_byte_now_and_then_does_not_push_it_back() {
    let wait = Duration::from_millis(600);
    let limits = Limits {
        secret_wait: wait,
        ..Limits::default()
    };
    let (_dir, bridge, _) = counting(limits);
    let secret = bridge.sockets[0].endpoint.secret.clone();
    // The right secret, one byte every 100 ms: it would take 3.2 s.
    let mut slow = Client::silent(&bridge);
    let started = Instant::now();
    let mut writer = slow.writer.try_clone().unwrap();
    let dribble = std::thread::spawn(move || {
        for b in secret.bytes().chain(Some(b'\n')) {
            if writer.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = writeln!(writer, r#"{{"jsonrpc":"2.0","id":1,"method":"ping"}}"#);
    });
    assert!(slow.closed(), "closed, never answered");
    let took = started.elapsed();
    assert!(
        took >= wait - Duration::from_millis(50) && took < wait + Duration::from_millis(1500),
        "closed after {took:?}"
    );
    dribble.join().unwrap();
    let pending = bridge.sockets[0].endpoint.clone();
    wait_until("no connection waits", || {
        pending.connections().pending.is_empty()
    });
}

#[test]
fn squatters_neither_take_the_agents_places_nor_keep_it_out() {
    let limits = Limits {
        max_pending: 4,
        ..Limits::default()
    };
    let (_dir, bridge, _) = counting(limits);
    let endpoint = bridge.sockets[0].endpoint.clone();
    // A dozen connections that never send their secret (the issue's squatters), then more.
    let mut squatters: Vec<Client> = (0..12).map(|_| Client::silent(&bridge)).collect();
    wait_until("the squatters are accepted", || {
        endpoint.next_connection.load(Ordering::SeqCst) == 12
    });
    assert!(endpoint.connections().pending.len() <= 4);
    assert!(squatters[0].closed(), "the oldest made room for the newer");

    // Every place for the agent is still free, and it gets them all.
    let mut agents: Vec<Client> = (0..MAX_CONNECTIONS)
        .map(|_| Client::authorized(&bridge))
        .collect();
    for (id, a) in agents.iter_mut().enumerate() {
        a.send(json!({"jsonrpc": "2.0", "id": id, "method": "ping"}));
        assert_eq!(a.read()["id"], id);
    }
    drop(agents);
    wait_until("the agent's connections are let go", || {
        endpoint.connections().served.is_empty()
    });

    // Squatters connecting as fast as they can while the agent connects.
    let stop = Arc::new(AtomicBool::new(false));
    let path = bridge.short_path(&bridge.sockets[0].file);
    let flood = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            let mut held = std::collections::VecDeque::new();
            let mut made = 0;
            while !stop.load(Ordering::SeqCst) {
                if let Ok(s) = UnixStream::connect(&path) {
                    held.push_back(s);
                    made += 1;
                }
                if held.len() > 64 {
                    held.pop_front();
                }
            }
            made
        })
    };
    for id in 0..5 {
        std::thread::sleep(Duration::from_millis(20));
        let mut a = Client::authorized(&bridge);
        a.send(json!({"jsonrpc": "2.0", "id": id, "method": "ping"}));
        assert_eq!(a.read()["id"], id, "the agent got through the flood");
    }
    stop.store(true, Ordering::SeqCst);
    let made = flood.join().unwrap();
    assert!(made > 20, "the flood made {made} connections");
    squatters.clear();
}

#[test]
fn a_same_uid_process_that_finds_the_socket_cannot_call_without_the_secret() {
    // herdctl running as the containers' uid: the directory modes stop nobody of that uid (this
    // test's process is one), so the secret is the protection that holds.
    let state = tempfile::tempdir().unwrap();
    let dir = crate::host::mcp_socket_dir(&state.path().to_string_lossy(), "fleet.victim").unwrap();
    let mut bridge = Bridge::bind(Path::new(&dir), vec![server()]).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let handler = move |_: &ToolCall| -> std::result::Result<Value, String> {
        c.fetch_add(1, Ordering::SeqCst);
        Ok(json!("ran"))
    };
    bridge.serve(Arc::new(handler), PathMap::default()).unwrap();
    let secret = bridge.sockets[0].endpoint.secret.clone();

    // The attacker lists the directory and finds the socket.
    let found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sock"))
        .collect();
    assert_eq!(found.len(), 1, "the modes do not hide it from its own uid");
    let attack = |first: &[u8]| -> UnixStream {
        let mut s = UnixStream::connect(&found[0]).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(first);
        s
    };
    let ping = format!(
        "{}\n",
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "noop"}})
    );
    let closed_unanswered = |mut s: UnixStream| {
        let _ = s.write_all(ping.as_bytes());
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(
            rest.is_empty(),
            "answered: {:?}",
            String::from_utf8_lossy(&rest)
        );
    };
    // No secret: the first line is the call itself.
    closed_unanswered(attack(b""));
    // A wrong secret of the right length, then the right one: one try only.
    let mut wrong = secret.clone().into_bytes();
    wrong[31] = if wrong[31] == b'0' { b'1' } else { b'0' };
    closed_unanswered(attack(
        &[&wrong[..], b"\n", secret.as_bytes(), b"\n"].concat(),
    ));
    // The secret cut short, or with more after it.
    closed_unanswered(attack(format!("{}\n", &secret[..31]).as_bytes()));
    closed_unanswered(attack(format!("{secret}0\n").as_bytes()));
    closed_unanswered(attack(format!("{secret} \n").as_bytes()));

    // Guessing byte by byte: a right first byte and a wrong one look alike (nothing is decided
    // before the line ends), and the line's end is the one try.
    let right_first = secret.as_bytes()[0];
    let wrong_first = if right_first == b'f' { b'e' } else { b'f' };
    let probes: Vec<UnixStream> = [right_first, wrong_first]
        .iter()
        .map(|b| attack(&[*b]))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for mut p in probes {
        p.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let open =
            matches!(p.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        assert!(
            open,
            "a connection is not closed before its first line ends"
        );
        p.set_nonblocking(false).unwrap();
        let _ = p.write_all(b"0\n");
        closed_unanswered(p);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no call reached the tools");

    let mut agent = Client::authorized(&bridge);
    agent.send(call(2, "noop", json!({})));
    assert_eq!(agent.read()["result"]["content"][0]["text"], "ran");
}

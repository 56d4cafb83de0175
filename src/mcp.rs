//! Injected MCP servers: tools that live in the calling process (herdctl's file sender, for one),
//! made callable by the agent inside the container.
//!
//! herdctl's own bridge serves them over HTTP on `0.0.0.0` and has the container dial a host name
//! on a shared docker network: every container on that network (and anything else that reaches the
//! host's port) can call the tools, and an agent with `network: none` cannot reach them at all.
//! Here each server gets a unix socket with an unguessable name in a per-agent directory that only
//! that agent's containers mount (read-only, at
//! [`CONTAINER_MCP_DIR`]). Inside the container the
//! agent starts the server as an ordinary stdio MCP server: a one-line `node` program
//! ([`STDIO_SHIM`]) that pipes its stdin and stdout to the socket. So the tools work with any
//! network mode, no port is opened, and no other agent can reach them.
//!
//! The protocol side is small: MCP's stdio transport is JSON-RPC 2.0, one message a line. The
//! bridge answers `initialize`, `ping` and `tools/list` itself from the servers' descriptions and
//! hands each `tools/call` to a [`ToolHandler`] on its own thread (so a slow tool never holds up
//! another call or a ping), with container paths in the arguments translated to the host's.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use crate::{translate_json_paths, Direction, Error, PathMap, Result};

/// Where the agent's socket directory is mounted in its containers (read-only).
/// Inside Claude Code's own directory, which the runner's mounts already claim, so a user's
/// volume or tmpfs (at `/run`, say) never collides with it.
pub const CONTAINER_MCP_DIR: &str = "/home/claude/.claude/herdctl-mcp";

/// The in-container stdio server: `node -e STDIO_SHIM <socket>` pipes stdin to the socket and
/// the socket to stdout, and exits when either side ends. Node because herdctl's images have it
/// (Claude Code and the Agent SDK run on it); nothing of ours needs to be in the image.
pub const STDIO_SHIM: &str = r#"const s=require("net").connect(process.argv[1]);process.stdin.pipe(s);s.pipe(process.stdout);s.on("close",()=>process.exit(0));s.on("error",e=>{process.stderr.write("herdctl-container MCP bridge: "+e.message+"\n");process.exit(1)})"#;

/// The MCP protocol versions the bridge speaks, newest first. Only tools are served, and their
/// messages are the same in all three.
const PROTOCOL_VERSIONS: [&str; 3] = ["2025-06-18", "2025-03-26", "2024-11-05"];

/// The longest JSON-RPC line accepted from the agent (a tool's arguments may carry a file).
const MAX_LINE: u64 = 64 << 20;

/// One injected server, as described by herdctl's `InjectedMcpServerDef` without its handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedServer {
    /// The server's name: the agent sees its tools as `mcp__<name>__<tool>`.
    pub name: String,
    /// Reported in `initialize`. Default: `0.1.0`, as herdctl's bridge does.
    pub version: String,
    /// The tools it offers.
    pub tools: Vec<Tool>,
}

/// One tool of an injected server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// The tool's name within its server.
    pub name: String,
    /// What the model reads to decide when to call it.
    pub description: String,
    /// The JSON Schema of its arguments. Default: an object with any properties.
    pub input_schema: Value,
}

impl InjectedServer {
    /// Reads one entry of herdctl's `injectedMcpServers` (`{name?, version?, tools: [{name,
    /// description?, inputSchema?}]}`; the handlers stay in the caller's process). `key` is the
    /// entry's key, which names the server.
    pub fn from_json(key: &str, def: &Value) -> Result<InjectedServer> {
        let field = format!("injectedMcpServers.{key}");
        if !valid_name(key) {
            return Err(Error::invalid(
                field,
                "is not a server name; expected letters, digits, '_' or '-' (the agent calls its tools mcp__<name>__<tool>)",
            ));
        }
        let Some(def) = def.as_object() else {
            return Err(Error::invalid(field, "expected an object with \"tools\""));
        };
        let version = match def.get("version") {
            None | Some(Value::Null) => "0.1.0".to_string(),
            Some(Value::String(v)) => v.clone(),
            Some(_) => {
                return Err(Error::invalid(
                    format!("{field}.version"),
                    "expected a string",
                ))
            }
        };
        let Some(Value::Array(items)) = def.get("tools") else {
            return Err(Error::invalid(
                format!("{field}.tools"),
                "missing or not an array; expected the server's tools",
            ));
        };
        let mut tools: Vec<Tool> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let at = format!("{field}.tools[{i}]");
            let name = match item.get("name") {
                Some(Value::String(n)) if valid_name(n) => n.clone(),
                _ => {
                    return Err(Error::invalid(
                        format!("{at}.name"),
                        "missing or not a tool name; expected letters, digits, '_' or '-'",
                    ))
                }
            };
            if tools.iter().any(|t| t.name == name) {
                return Err(Error::invalid(
                    format!("{at}.name"),
                    format!("{name:?} is listed twice; tool names must be unique"),
                ));
            }
            let description = match item.get("description") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(d)) => d.clone(),
                Some(_) => {
                    return Err(Error::invalid(
                        format!("{at}.description"),
                        "expected a string",
                    ))
                }
            };
            let input_schema = match item.get("inputSchema") {
                None | Some(Value::Null) => json!({"type": "object"}),
                Some(schema @ Value::Object(_)) => schema.clone(),
                Some(_) => {
                    return Err(Error::invalid(
                        format!("{at}.inputSchema"),
                        "expected a JSON Schema object",
                    ))
                }
            };
            tools.push(Tool {
                name,
                description,
                input_schema,
            });
        }
        Ok(InjectedServer {
            name: key.to_string(),
            version,
            tools,
        })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One call of a tool, with container paths in its arguments already rewritten to the host's.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The injected server's name.
    pub server: String,
    /// The tool's name.
    pub tool: String,
    /// The arguments the agent passed.
    pub arguments: Value,
}

/// Runs the tools of injected servers. Called on a thread of its own per call; may block.
///
/// The answer is MCP's `CallToolResult` (`{"content": [{"type": "text", "text": ...}],
/// "isError"?: bool}`); an `Err` reaches the agent as a result with `isError: true` and that
/// text, so the model can see what went wrong and carry on.
///
/// ```
/// use herdctl_container::mcp::{ToolCall, ToolHandler};
/// let handler = |call: &ToolCall| -> Result<serde_json::Value, String> {
///     Ok(serde_json::json!({"content": [{"type": "text", "text": format!("ran {}", call.tool)}]}))
/// };
/// let call = ToolCall { server: "s".into(), tool: "t".into(), arguments: serde_json::json!({}) };
/// assert!(handler.call(&call).is_ok());
/// ```
pub trait ToolHandler: Send + Sync {
    /// Runs one call.
    fn call(&self, call: &ToolCall) -> std::result::Result<Value, String>;
}

impl<F> ToolHandler for F
where
    F: Fn(&ToolCall) -> std::result::Result<Value, String> + Send + Sync,
{
    fn call(&self, call: &ToolCall) -> std::result::Result<Value, String> {
        self(call)
    }
}

impl std::fmt::Debug for dyn ToolHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ToolHandler")
    }
}

/// What the bridge does with one JSON-RPC message. Pure, so the protocol is tested without
/// sockets.
#[derive(Debug, PartialEq)]
enum Step {
    /// Send this response.
    Reply(Value),
    /// A notification (or a response to us): nothing to send.
    Nothing,
    /// Run this tool and answer request `id` with its result.
    Call { id: Value, call: ToolCall },
}

fn rpc_error(id: Value, code: i64, message: impl Into<String>) -> Step {
    Step::Reply(
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}}),
    )
}

fn rpc_result(id: Value, result: Value) -> Step {
    Step::Reply(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

fn step(server: &InjectedServer, line: &[u8]) -> Step {
    let message: Value = match serde_json::from_slice(line) {
        Ok(m) => m,
        Err(e) => return rpc_error(Value::Null, -32700, format!("parse error: {e}")),
    };
    let Some(request) = message.as_object() else {
        return rpc_error(Value::Null, -32600, "expected one JSON-RPC request object");
    };
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        // A response (we send no requests) or garbage without an id: nothing to answer.
        return Step::Nothing;
    };
    let Some(id) = request.get("id").cloned() else {
        return Step::Nothing; // notifications/initialized, notifications/cancelled, ...
    };
    let params = request.get("params").and_then(Value::as_object);
    match method {
        "initialize" => {
            let asked = params
                .and_then(|p| p.get("protocolVersion"))
                .and_then(Value::as_str);
            let version = PROTOCOL_VERSIONS
                .into_iter()
                .find(|v| Some(*v) == asked)
                .unwrap_or(PROTOCOL_VERSIONS[0]);
            rpc_result(
                id,
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": {"name": server.name, "version": server.version},
                }),
            )
        }
        "ping" => rpc_result(id, json!({})),
        "tools/list" => {
            let tools: Vec<Value> = server
                .tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "inputSchema": t.input_schema}))
                .collect();
            rpc_result(id, json!({ "tools": tools }))
        }
        "tools/call" => {
            let name = params.and_then(|p| p.get("name")).and_then(Value::as_str);
            let Some(tool) = name.filter(|n| server.tools.iter().any(|t| t.name == *n)) else {
                return rpc_error(
                    id,
                    -32602,
                    format!(
                        "unknown tool {:?} of server {}",
                        name.unwrap_or(""),
                        server.name
                    ),
                );
            };
            let arguments = params
                .and_then(|p| p.get("arguments"))
                .cloned()
                .unwrap_or_else(|| Value::Object(Map::new()));
            Step::Call {
                id,
                call: ToolCall {
                    server: server.name.clone(),
                    tool: tool.to_string(),
                    arguments,
                },
            }
        }
        other => rpc_error(id, -32601, format!("method not found: {other}")),
    }
}

/// The result a tool's answer becomes: a `CallToolResult` object as it is; any other value as
/// its JSON text; an error as text with `isError: true`.
fn call_result(answer: std::result::Result<Value, String>) -> Value {
    match answer {
        Ok(result @ Value::Object(_)) => result,
        Ok(Value::String(text)) => json!({"content": [{"type": "text", "text": text}]}),
        Ok(other) => json!({"content": [{"type": "text", "text": other.to_string()}]}),
        Err(message) => json!({"content": [{"type": "text", "text": message}], "isError": true}),
    }
}

/// The sockets of one job's injected servers. Bound before the job starts (so the agent's
/// first connect waits in the backlog rather than failing), served once the job's path map is
/// known, and closed and removed when dropped.
pub(crate) struct Bridge {
    /// The socket directory, held open: sockets are bound and reached through
    /// `/proc/self/fd/<fd>/<name>`, since a unix socket's path must fit in 108 bytes and a
    /// state directory's often does not.
    dir: std::fs::File,
    sockets: Vec<Socket>,
    shared: Arc<Shared>,
}

struct Socket {
    server: Arc<InjectedServer>,
    /// The socket's file name in the directory.
    file: String,
    host_path: PathBuf,
    container_path: String,
    listener: Option<UnixListener>,
    served: bool,
}

#[derive(Default)]
struct Shared {
    stopped: AtomicBool,
    /// Every connection accepted, to shut them down when the job ends.
    connections: Mutex<Vec<UnixStream>>,
}

impl Bridge {
    /// Binds one socket per server in `host_dir` (the agent's socket directory, which the
    /// mount plan creates), named by a random token and open to any user (the directory is not
    /// listable, and only the agent's containers mount it).
    pub(crate) fn bind(host_dir: &Path, servers: Vec<InjectedServer>) -> Result<Bridge> {
        let dir = std::fs::File::open(host_dir).map_err(|e| {
            Error::io(
                format!("open the MCP socket directory {}", host_dir.display()),
                e,
            )
        })?;
        let mut bridge = Bridge {
            dir,
            sockets: Vec::new(),
            shared: Arc::default(),
        };
        for server in servers {
            let file = format!("{}.sock", random_token()?);
            let host_path = host_dir.join(&file);
            let listener = UnixListener::bind(bridge.short_path(&file)).map_err(|e| {
                Error::io(format!("bind the MCP socket {}", host_path.display()), e)
            })?;
            // Pushed before the chmod so that Drop removes the file if the chmod fails.
            bridge.sockets.push(Socket {
                server: Arc::new(server),
                file: file.clone(),
                host_path: host_path.clone(),
                container_path: format!("{CONTAINER_MCP_DIR}/{file}"),
                listener: Some(listener),
                served: false,
            });
            // The container's user may not be this process's; connecting needs write access.
            std::fs::set_permissions(&host_path, std::fs::Permissions::from_mode(0o666)).map_err(
                |e| Error::io(format!("open up the MCP socket {}", host_path.display()), e),
            )?;
        }
        Ok(bridge)
    }

    /// A path to `file` in the socket directory that fits a unix socket address.
    fn short_path(&self, file: &str) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}/{file}", self.dir.as_raw_fd()))
    }

    /// Each server's name and its config for the agent: a stdio server run by [`STDIO_SHIM`].
    pub(crate) fn agent_configs(&self) -> Vec<(String, crate::invocation::McpServer)> {
        self.sockets
            .iter()
            .map(|s| {
                let config = crate::invocation::McpServer {
                    url: None,
                    command: Some("node".into()),
                    args: vec!["-e".into(), STDIO_SHIM.into(), s.container_path.clone()],
                    env: Default::default(),
                };
                (s.server.name.clone(), config)
            })
            .collect()
    }

    /// Starts answering: one accept thread per socket, one thread per connection and per call.
    pub(crate) fn serve(&mut self, handler: Arc<dyn ToolHandler>, paths: PathMap) -> Result<()> {
        let paths = Arc::new(paths);
        for socket in &mut self.sockets {
            let Some(listener) = socket.listener.take() else {
                continue;
            };
            let (server, shared, handler, paths) = (
                socket.server.clone(),
                self.shared.clone(),
                handler.clone(),
                paths.clone(),
            );
            std::thread::Builder::new()
                .name("herdctl-mcp-accept".into())
                .spawn(move || accept_loop(listener, server, shared, handler, paths))
                .map_err(|e| Error::io("start an MCP bridge thread", e))?;
            socket.served = true;
        }
        Ok(())
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        for socket in &self.sockets {
            if socket.served {
                // Wakes the accept thread, which sees `stopped` and ends.
                let _ = UnixStream::connect(self.short_path(&socket.file));
            }
            let _ = std::fs::remove_file(&socket.host_path);
        }
        let connections = std::mem::take(
            &mut *self
                .shared
                .connections
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for c in connections {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn accept_loop(
    listener: UnixListener,
    server: Arc<InjectedServer>,
    shared: Arc<Shared>,
    handler: Arc<dyn ToolHandler>,
    paths: Arc<PathMap>,
) {
    for stream in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(_) => {
                // Out of descriptors, say: not worth a busy loop; the agent's connect waits.
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            }
        };
        let Ok(kept) = stream.try_clone() else {
            continue;
        };
        {
            let mut connections = shared.connections.lock().unwrap_or_else(|p| p.into_inner());
            if shared.stopped.load(Ordering::SeqCst) {
                return;
            }
            connections.push(kept);
        }
        let (server, handler, paths) = (server.clone(), handler.clone(), paths.clone());
        let _ = std::thread::Builder::new()
            .name("herdctl-mcp-conn".into())
            .spawn(move || serve_connection(stream, &server, &handler, &paths));
    }
}

fn serve_connection(
    stream: UnixStream,
    server: &InjectedServer,
    handler: &Arc<dyn ToolHandler>,
    paths: &Arc<PathMap>,
) {
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let writer = Arc::new(Mutex::new(writer));
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.by_ref().take(MAX_LINE).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') && line.len() as u64 == MAX_LINE {
            let too_long = format!("a message longer than {MAX_LINE} bytes");
            if let Step::Reply(r) = rpc_error(Value::Null, -32600, too_long) {
                send(&writer, &r);
            }
            return;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match step(server, &line) {
            Step::Reply(response) => send(&writer, &response),
            Step::Nothing => {}
            Step::Call { id, mut call } => {
                translate_json_paths(&mut call.arguments, paths, Direction::ToHost);
                let (writer, handler) = (writer.clone(), handler.clone());
                let _ = std::thread::Builder::new()
                    .name("herdctl-mcp-call".into())
                    .spawn(move || {
                        let result = call_result(handler.call(&call));
                        if let Step::Reply(r) = rpc_result(id, result) {
                            send(&writer, &r);
                        }
                    });
            }
        }
    }
}

/// Writes one message line; a gone agent is not an error worth reporting.
fn send(writer: &Mutex<UnixStream>, message: &Value) {
    let mut text = message.to_string();
    text.push('\n');
    let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
    let _ = w.write_all(text.as_bytes());
}

/// 128 random bits as hex, from the kernel.
fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("read /dev/urandom for an MCP socket name", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests;

//! The sockets of a job's injected servers, and the threads that serve them.
//!
//! One accept thread per socket, one thread per connection (the agent opens one per server), one
//! per tool call. An agent is not trusted to be polite: connections and calls in flight are
//! capped, a connection must present its socket's secret within a few seconds, and everything is
//! closed, and the socket files removed, when the job ends.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::protocol::{call_result, rpc_error, rpc_result, step, Step};
use super::{InjectedServer, ToolHandler, CONTAINER_MCP_DIR, SECRET_ENV, STDIO_SHIM};
use crate::invocation::McpServer;
use crate::{translate_json_paths, Direction, Error, PathMap, Result};

/// The longest JSON-RPC line accepted from the agent (a tool's arguments may carry a file).
const MAX_LINE: u64 = 64 << 20;
/// Connections served at once per socket; Claude Code opens one per server.
const MAX_CONNECTIONS: usize = 8;
/// Tool calls in flight at once per connection.
const MAX_CALLS: usize = 16;
/// How long a new connection has to send its secret.
const SECRET_WAIT: Duration = Duration::from_secs(10);

/// The sockets of one job's injected servers. Bound before the job starts (so the agent's
/// first connect waits in the backlog rather than failing), served once the job's path map is
/// known. Dropping it closes the sockets and their connections and removes the files; a call
/// whose handler is still running finishes on its own thread, and its answer goes nowhere.
pub(crate) struct Bridge {
    /// The socket directory, held open: sockets are bound and reached through
    /// `/proc/self/fd/<fd>/<name>`, since a unix socket's path must fit in 108 bytes and a
    /// state directory's often does not.
    dir: std::fs::File,
    sockets: Vec<Socket>,
}

struct Socket {
    endpoint: Arc<Endpoint>,
    /// The socket's file name in the directory.
    file: String,
    host_path: PathBuf,
    listener: Option<UnixListener>,
    served: bool,
}

/// What the threads of one socket share.
struct Endpoint {
    server: InjectedServer,
    secret: String,
    stopped: AtomicBool,
    /// The connections being served, by number, to shut them down when the job ends.
    connections: Mutex<HashMap<u64, UnixStream>>,
    next_connection: AtomicU64,
}

impl Endpoint {
    fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<u64, UnixStream>> {
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Bridge {
    /// Binds one socket per server in `host_dir` (the agent's socket directory, which the
    /// mount plan creates): a random name, open to any user (the container's user need not be
    /// this process's), each with its own random secret. Sockets left by a process that died
    /// are removed first.
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
        };
        bridge.remove_dead_sockets(host_dir);
        for server in servers {
            let file = format!("{}.sock", random_hex()?);
            let host_path = host_dir.join(&file);
            let listener = UnixListener::bind(bridge.short_path(&file)).map_err(|e| {
                Error::io(format!("bind the MCP socket {}", host_path.display()), e)
            })?;
            // Pushed before the chmod so that Drop removes the file if the chmod fails.
            bridge.sockets.push(Socket {
                endpoint: Arc::new(Endpoint {
                    server,
                    secret: random_hex()?,
                    stopped: AtomicBool::new(false),
                    connections: Mutex::default(),
                    next_connection: AtomicU64::new(0),
                }),
                file,
                host_path: host_path.clone(),
                listener: Some(listener),
                served: false,
            });
            std::fs::set_permissions(&host_path, std::fs::Permissions::from_mode(0o666)).map_err(
                |e| Error::io(format!("open up the MCP socket {}", host_path.display()), e),
            )?;
        }
        Ok(bridge)
    }

    /// Removes the sockets in the directory that nobody listens on (their process was killed
    /// before it could remove them). A live one of another job answers the probe and stays.
    fn remove_dead_sockets(&self, host_dir: &Path) {
        let Ok(entries) = std::fs::read_dir(host_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".sock") {
                continue;
            }
            if let Err(e) = UnixStream::connect(self.short_path(&name)) {
                if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }

    /// A path to `file` in the socket directory that fits a unix socket address.
    fn short_path(&self, file: &str) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}/{file}", self.dir.as_raw_fd()))
    }

    /// Each server's name and its config for the agent: a stdio server run by [`STDIO_SHIM`],
    /// its secret in the config's env (which reaches the agent privately, never on argv).
    pub(crate) fn agent_configs(&self) -> Vec<(String, McpServer)> {
        self.sockets
            .iter()
            .map(|s| {
                let config = McpServer {
                    url: None,
                    command: Some("node".into()),
                    args: vec![
                        "-e".into(),
                        STDIO_SHIM.into(),
                        format!("{CONTAINER_MCP_DIR}/{}", s.file),
                    ],
                    env: [(SECRET_ENV.to_string(), s.endpoint.secret.clone())].into(),
                };
                (s.endpoint.server.name.clone(), config)
            })
            .collect()
    }

    /// Starts answering.
    pub(crate) fn serve(&mut self, handler: Arc<dyn ToolHandler>, paths: PathMap) -> Result<()> {
        let serving = Arc::new(Serving { handler, paths });
        for socket in &mut self.sockets {
            let Some(listener) = socket.listener.take() else {
                continue;
            };
            let (endpoint, serving) = (socket.endpoint.clone(), serving.clone());
            std::thread::Builder::new()
                .name("herdctl-mcp-accept".into())
                .spawn(move || accept_loop(listener, endpoint, serving))
                .map_err(|e| Error::io("start an MCP bridge thread", e))?;
            socket.served = true;
        }
        Ok(())
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        for socket in &self.sockets {
            socket.endpoint.stopped.store(true, Ordering::SeqCst);
            if socket.served {
                // Wakes the accept thread, which sees `stopped` and ends.
                let _ = UnixStream::connect(self.short_path(&socket.file));
            }
            let _ = std::fs::remove_file(&socket.host_path);
            for (_, c) in socket.endpoint.connections().drain() {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// What serving needs beyond the socket: the tools' runner and the job's path map.
struct Serving {
    handler: Arc<dyn ToolHandler>,
    paths: PathMap,
}

fn accept_loop(listener: UnixListener, endpoint: Arc<Endpoint>, serving: Arc<Serving>) {
    for stream in listener.incoming() {
        if endpoint.stopped.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(_) => {
                // Out of descriptors, say: not worth a busy loop; the agent's connect waits.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Ok(kept) = stream.try_clone() else {
            continue;
        };
        let number = endpoint.next_connection.fetch_add(1, Ordering::Relaxed);
        {
            let mut connections = endpoint.connections();
            // Checked under the lock that Drop takes after setting `stopped`: a connection is
            // either refused here or shut down there.
            if endpoint.stopped.load(Ordering::SeqCst) {
                return;
            }
            if connections.len() >= MAX_CONNECTIONS {
                continue; // dropping the stream closes it
            }
            connections.insert(number, kept);
        }
        let (ep, sv) = (endpoint.clone(), serving.clone());
        let spawned = std::thread::Builder::new()
            .name("herdctl-mcp-conn".into())
            .spawn(move || {
                serve_connection(stream, &ep, &sv);
                if let Some(c) = ep.connections().remove(&number) {
                    let _ = c.shutdown(std::net::Shutdown::Both);
                }
            });
        if spawned.is_err() {
            // The closure, and the stream in it, are gone: close the kept copy too.
            if let Some(c) = endpoint.connections().remove(&number) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

fn serve_connection(stream: UnixStream, endpoint: &Endpoint, serving: &Arc<Serving>) {
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let writer = Arc::new(Mutex::new(writer));
    let mut reader = BufReader::new(stream);
    if !presents_secret(&mut reader, &endpoint.secret) {
        return;
    }
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.by_ref().take(MAX_LINE).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') && line.len() as u64 == MAX_LINE {
            let too_long = format!("a message longer than {MAX_LINE} bytes");
            send(&writer, rpc_error(Value::Null, -32600, too_long));
            return;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let (id, mut call) = match step(&endpoint.server, &line) {
            Step::Call { id, call } => (id, call),
            other => {
                send(&writer, other);
                continue;
            }
        };
        if in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_CALLS {
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let busy = format!(
                "more than {MAX_CALLS} tool calls at once; try again when one has answered"
            );
            send(&writer, rpc_error(id, -32000, busy));
            continue;
        }
        translate_json_paths(&mut call.arguments, &serving.paths, Direction::ToHost);
        let (writer2, serving2, in_flight2, id2) = (
            writer.clone(),
            serving.clone(),
            in_flight.clone(),
            id.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("herdctl-mcp-call".into())
            .spawn(move || {
                // A panicking handler must still answer: the agent waits for every call.
                let answer = catch_unwind(AssertUnwindSafe(|| serving2.handler.call(&call)))
                    .unwrap_or_else(|_| Err("the tool's handler panicked".into()));
                send(&writer2, rpc_result(id2, call_result(answer)));
                in_flight2.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            in_flight.fetch_sub(1, Ordering::SeqCst);
            send(&writer, rpc_error(id, -32603, "no thread to run the tool"));
        }
    }
}

/// Whether the connection's first line is the secret, within [`SECRET_WAIT`].
fn presents_secret(reader: &mut BufReader<UnixStream>, secret: &str) -> bool {
    let _ = reader.get_ref().set_read_timeout(Some(SECRET_WAIT));
    let mut first = Vec::new();
    let read = reader.by_ref().take(256).read_until(b'\n', &mut first);
    let _ = reader.get_ref().set_read_timeout(None);
    read.is_ok() && first.last() == Some(&b'\n') && {
        let given = &first[..first.len() - 1];
        // Compared in constant time: how long a wrong guess took says nothing about the secret.
        given.len() == secret.len()
            && given
                .iter()
                .zip(secret.as_bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// Writes one answer line (a [`Step::Nothing`] writes nothing); a gone agent is not an error
/// worth reporting.
fn send(writer: &Mutex<UnixStream>, step: Step) {
    let Step::Reply(message) = step else {
        return;
    };
    let mut text = message.to_string();
    text.push('\n');
    let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
    let _ = w.write_all(text.as_bytes());
}

/// 128 random bits as hex, from the kernel.
fn random_hex() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("read /dev/urandom for an MCP socket", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests;

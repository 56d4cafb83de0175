//! The sockets of a job's injected servers, and the threads that serve them.
//!
//! One accept thread per socket, one thread per connection (the agent opens one per server), one
//! per tool call. Neither the agent nor whatever else reaches the socket is trusted to be polite:
//!
//! - A connection must present its socket's secret on its first line, once, within a deadline
//!   fixed when it is accepted. Connections still waiting to do so are capped apart from the
//!   authenticated ones, and when their cap is full the oldest gives way to the newest: squatters
//!   can neither take the agent's places nor keep it out (its shim sends the secret as it
//!   connects, and a secret already there is checked at accept, before the connection needs a
//!   place among the waiting ones).
//! - Messages are bounded (bytes and JSON values each), and so is what the whole bridge holds of
//!   messages not yet answered. A message past a bound is read to its end without being kept and
//!   answered with a JSON-RPC error; the connection stays usable.
//! - Authenticated connections and calls in flight are capped, and everything is closed, and the
//!   socket files removed, when the job ends.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::protocol::{call_result, rpc_error, rpc_result, step, Step};
use super::reader::{Budget, Line, LineReader, MessageLimits, Reservation};
use super::{
    InjectedServer, McpServer, ToolCall, ToolHandler, CONTAINER_MCP_DIR, SECRET_ENV, STDIO_SHIM,
};
use crate::{translate_json_paths, Direction, Error, PathMap, Result};

/// The longest message the agent may send, in bytes: 4 MiB. A tool call's arguments are written
/// by the model, and the longest output of any Claude model in one turn (128k tokens) is about
/// half a megabyte; herdctl's own tools take a path and a line of text. Data larger than that
/// belongs in a file in the workspace, which the tool reads by path.
const MAX_MESSAGE: usize = 4 << 20;
/// The most JSON values (object keys included) one message may hold: 262,144, more than the
/// tokens of any turn. Bounds what a message costs once parsed
/// ([`super::reader::VALUE_COST`] each), which for `[0,0,...]` is 32 times its size on the wire.
const MAX_VALUES: u64 = 1 << 18;
/// What one bridge (one job) may hold of messages read and not yet answered, their parsed
/// values counted: 32 MiB, room for a message at both limits above and many ordinary calls.
/// Bounds the host's memory however many connections send at once.
const MAX_BUFFERED: usize = 32 << 20;
/// Authenticated connections served at once per socket; Claude Code opens one per server.
const MAX_CONNECTIONS: usize = 8;
/// Connections per socket that have not yet presented the secret. Counted apart from the
/// authenticated ones; when full, the oldest is closed to make room.
const MAX_PENDING: usize = 16;
/// Tool calls in flight at once per connection.
const MAX_CALLS: usize = 16;
/// How long a new connection has, from accept, to send its secret. The shim sends it as it
/// connects; the rest is room for a loaded machine.
const SECRET_WAIT: Duration = Duration::from_secs(10);

/// The bounds of a bridge: the constants above, which tests shorten through [`Bridge::limits`].
#[derive(Debug, Clone)]
pub(super) struct Limits {
    pub(super) message: MessageLimits,
    pub(super) max_buffered: usize,
    pub(super) max_connections: usize,
    pub(super) max_pending: usize,
    pub(super) max_calls: usize,
    pub(super) secret_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            message: MessageLimits {
                max_bytes: MAX_MESSAGE,
                max_values: MAX_VALUES,
            },
            max_buffered: MAX_BUFFERED,
            max_connections: MAX_CONNECTIONS,
            max_pending: MAX_PENDING,
            max_calls: MAX_CALLS,
            secret_wait: SECRET_WAIT,
        }
    }
}

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
    /// Fixed when serving starts.
    pub(super) limits: Limits,
    /// What the sockets are served with, once they are.
    serving: Option<Arc<Serving>>,
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
    /// The open connections, by number, to shut them down when the job ends.
    connections: Mutex<Connections>,
    next_connection: AtomicU64,
}

/// A socket's open connections: a copy of each stream, to shut it down from outside its thread.
#[derive(Default)]
struct Connections {
    /// Not yet authenticated, oldest first (numbers only grow).
    pending: BTreeMap<u64, UnixStream>,
    /// Authenticated.
    served: HashMap<u64, UnixStream>,
}

impl Connections {
    /// Closes connection `number`, in whichever set it is.
    fn close(&mut self, number: u64) {
        if let Some(c) = self
            .pending
            .remove(&number)
            .or_else(|| self.served.remove(&number))
        {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Endpoint {
    fn connections(&self) -> std::sync::MutexGuard<'_, Connections> {
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
            limits: Limits::default(),
            serving: None,
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
        let serving = Arc::new(Serving {
            handler,
            paths,
            budget: Arc::new(Budget::new(self.limits.max_buffered)),
            limits: self.limits.clone(),
        });
        self.serving = Some(serving.clone());
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
            let mut connections = socket.endpoint.connections();
            let pending = std::mem::take(&mut connections.pending).into_values();
            for c in pending.chain(connections.served.drain().map(|(_, c)| c)) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// What serving needs beyond the socket, shared by all the bridge's sockets: the tools' runner,
/// the job's path map, the bounds and the budget they draw on.
struct Serving {
    handler: Arc<dyn ToolHandler>,
    paths: PathMap,
    budget: Arc<Budget>,
    limits: Limits,
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
        let deadline = Instant::now() + serving.limits.secret_wait;
        let Ok(kept) = stream.try_clone() else {
            continue;
        };
        let mut reader = LineReader::new(stream);
        // One try: a wrong first line closes the connection (dropped here) unanswered.
        let authenticated = match reader.secret_now(&endpoint.secret) {
            Some(false) => continue,
            Some(true) => true,
            None => false,
        };
        let number = endpoint.next_connection.fetch_add(1, Ordering::Relaxed);
        match register(&endpoint, &serving.limits, number, kept, authenticated) {
            Registered::Kept => {}
            // Dropping the stream closes it.
            Registered::Full => continue,
            Registered::Stopped => return,
        }
        let (ep, sv) = (endpoint.clone(), serving.clone());
        let spawned = std::thread::Builder::new()
            .name("herdctl-mcp-conn".into())
            .spawn(move || {
                if authenticated || admit(&mut reader, number, deadline, &ep, &sv) {
                    serve_connection(reader, &ep, &sv);
                }
                ep.connections().close(number);
            });
        if spawned.is_err() {
            // The closure, and the stream in it, are gone: close the kept copy too.
            endpoint.connections().close(number);
        }
    }
}

/// What [`register`] did with a new connection.
enum Registered {
    /// Kept among the served (authenticated) or the pending connections.
    Kept,
    /// Refused: as many authenticated connections as the limit are open.
    Full,
    /// Refused: the bridge is stopping.
    Stopped,
}

/// Keeps a copy of a new connection (`kept`) among the served ones if it is `authenticated`,
/// else among the pending ones (closing the oldest pending one when they are at their limit, so
/// a flood of silent connections cannot lock the agent out), for the bridge's end to shut down.
fn register(
    endpoint: &Endpoint,
    limits: &Limits,
    number: u64,
    kept: UnixStream,
    authenticated: bool,
) -> Registered {
    let mut connections = endpoint.connections();
    // Checked under the lock that Drop takes after setting `stopped`: a connection is either
    // refused here or shut down there.
    if endpoint.stopped.load(Ordering::SeqCst) {
        return Registered::Stopped;
    }
    if authenticated {
        if connections.served.len() >= limits.max_connections {
            return Registered::Full;
        }
        connections.served.insert(number, kept);
    } else {
        if connections.pending.len() >= limits.max_pending {
            if let Some((_, oldest)) = connections.pending.pop_first() {
                let _ = oldest.shutdown(std::net::Shutdown::Both);
            }
        }
        connections.pending.insert(number, kept);
    }
    Registered::Kept
}

/// Waits for a pending connection's secret (until `deadline`), then moves it among the
/// authenticated ones if there is room. False when it is to be closed: a wrong or late secret,
/// no room, or closed meanwhile to make room for a newer one (or by the job's end).
fn admit(
    reader: &mut LineReader,
    number: u64,
    deadline: Instant,
    endpoint: &Endpoint,
    serving: &Serving,
) -> bool {
    let authenticated = reader.secret_by(&endpoint.secret, deadline);
    let mut connections = endpoint.connections();
    let Some(kept) = connections.pending.remove(&number) else {
        return false;
    };
    if !authenticated || connections.served.len() >= serving.limits.max_connections {
        let _ = kept.shutdown(std::net::Shutdown::Both);
        return false;
    }
    connections.served.insert(number, kept);
    true
}

fn serve_connection(mut reader: LineReader, endpoint: &Endpoint, serving: &Arc<Serving>) {
    let Ok(writer) = reader.stream().try_clone() else {
        return;
    };
    let writer = Arc::new(Mutex::new(writer));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_calls = serving.limits.max_calls;
    loop {
        let (line, held) = match reader.next_message(serving.limits.message, &serving.budget) {
            Line::End => return,
            Line::Refused { id, code, message } => {
                send(&writer, rpc_error(id, code, message));
                continue;
            }
            Line::Message(line, held) => (line, held),
        };
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
        // The parsed call replaces the line, but keeps its share of the budget until it has
        // been answered: its arguments travel on to the handler.
        drop(line);
        if in_flight.fetch_add(1, Ordering::SeqCst) >= max_calls {
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let busy = format!(
                "more than {max_calls} tool calls at once; try again when one has answered"
            );
            send(&writer, rpc_error(id, -32000, busy));
            continue;
        }
        translate_json_paths(&mut call.arguments, &serving.paths, Direction::ToHost);
        call_in_thread(&writer, serving, &in_flight, id, call, held);
    }
}

/// Runs one tool call on a thread of its own (a slow tool does not hold up the connection's
/// other calls) and answers request `id` with its result; the call's share of the budget
/// (`held`) and its place among the `in_flight` calls are given back once it has answered.
fn call_in_thread(
    writer: &Arc<Mutex<UnixStream>>,
    serving: &Arc<Serving>,
    in_flight: &Arc<AtomicUsize>,
    id: Value,
    call: ToolCall,
    held: Reservation,
) {
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
            drop(call);
            send(&writer2, rpc_result(id2, call_result(answer)));
            drop(held);
            in_flight2.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        in_flight.fetch_sub(1, Ordering::SeqCst);
        send(writer, rpc_error(id, -32603, "no thread to run the tool"));
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

//! A fake engine on a unix socket, for the faults a real engine cannot be made to produce on
//! demand: malformed answers, a socket that hangs mid-frame, an engine too old, a version
//! mismatch after an upgrade, a keep-alive connection closed between calls.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The request as it was sent: head and body.
    pub raw: Vec<u8>,
}

/// What the fake does with one request.
pub enum Reply {
    /// Write these bytes and serve the next request on the connection.
    Bytes(Vec<u8>),
    /// Write these bytes and close the connection.
    Close(Vec<u8>),
    /// Write these bytes and then neither read nor write nor close (until the fake is dropped).
    Hang(Vec<u8>),
}

pub struct FakeEngine {
    pub path: PathBuf,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

impl FakeEngine {
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> FakeEngine {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fake-engine.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let (count, stopping) = (connections.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let (handler, stopping) = (handler.clone(), stopping.clone());
                thread::spawn(move || serve(conn, &*handler, &stopping));
            }
        });
        FakeEngine {
            path,
            connections,
            stop,
            _dir: dir,
        }
    }
}

/// The same fake on a loopback TCP port (the real engine here listens on its unix socket only).
/// Returns the `127.0.0.1:port` address; serves until the test process ends.
pub fn start_tcp(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handler = Arc::new(handler);
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let handler = handler.clone();
            thread::spawn(move || serve(conn, &*handler, &AtomicBool::new(false)));
        }
    });
    addr
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag.
        let _ = UnixStream::connect(&self.path);
    }
}

fn serve<S: Read + Write>(mut conn: S, handler: &dyn Fn(&Request) -> Reply, stop: &AtomicBool) {
    let mut pending = Vec::new();
    loop {
        let Some(req) = read_request(&mut conn, &mut pending) else {
            return;
        };
        match handler(&req) {
            Reply::Bytes(b) => {
                if conn.write_all(&b).is_err() {
                    return;
                }
            }
            Reply::Close(b) => {
                let _ = conn.write_all(&b);
                return;
            }
            Reply::Hang(b) => {
                let _ = conn.write_all(&b);
                let until = Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                    thread::sleep(Duration::from_millis(20));
                }
                return;
            }
        }
    }
}

/// Reads one request head and its Content-Length body; None at EOF.
fn read_request(conn: &mut impl Read, pending: &mut Vec<u8>) -> Option<Request> {
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).to_string();
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while pending.len() < head_end + length {
        let n = conn.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        pending.extend_from_slice(&buf[..n]);
    }
    let raw = pending.drain(..head_end + length).collect();
    Some(Request { method, path, raw })
}

/// Passes `req` on to the engine listening on `socket`, on a connection of its own, and answers
/// with the engine's whole answer, closing the client's connection after it (its keep-alive is
/// replaced by `Connection: close`, so the answer ends where the engine closes). A fake in front
/// of the real engine: each test faults the one call it is about and passes the others on, so the
/// containers and execs are real. Not for calls that upgrade the connection (exec start).
pub fn forward(socket: &std::path::Path, req: &Request) -> Reply {
    let head_end = req
        .raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a request head")
        + 2;
    let head = String::from_utf8_lossy(&req.raw[..head_end]);
    let mut out: Vec<u8> = head
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
        .flat_map(|l| [l.as_bytes(), b"\r\n"].concat())
        .collect();
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&req.raw[head_end + 2..]);
    let mut conn = UnixStream::connect(socket).expect("the real engine's socket");
    conn.write_all(&out).expect("forward the request");
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    Reply::Close(answer)
}

/// A `200 OK` ping answer announcing `version`.
pub fn ping(version: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nApi-Version: {version}\r\nContent-Length: 2\r\n\r\nOK").into_bytes()
}

/// An answer with a JSON body and its length.
pub fn json(status: u16, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One multiplexed frame.
pub fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![stream, 0, 0, 0];
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

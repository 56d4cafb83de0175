//! A proxy on a unix socket in front of the real engine that answers chosen requests itself, for
//! faults a real engine cannot be made to produce on demand while everything else stays real:
//! an engine (or a proxy before it) that quotes the request body in its error message, say.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

/// Decides about one request (method, path, body): `Some(bytes)` answers it with those bytes and
/// closes the connection; `None` forwards it to the engine.
pub type Fault = dyn Fn(&str, &str, &[u8]) -> Option<Vec<u8>> + Send + Sync;

pub struct Proxy {
    /// The proxy's socket: point an engine client here.
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// A proxy in front of the engine that `DOCKER_HOST` (a `unix://` address) or
    /// `/var/run/docker.sock` names.
    pub fn start(
        fault: impl Fn(&str, &str, &[u8]) -> Option<Vec<u8>> + Send + Sync + 'static,
    ) -> Proxy {
        let upstream = match std::env::var("DOCKER_HOST") {
            Ok(h) if h.starts_with("unix://") => PathBuf::from(&h["unix://".len()..]),
            _ => PathBuf::from("/var/run/docker.sock"),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let fault: Arc<Fault> = Arc::new(fault);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let (fault, upstream) = (fault.clone(), upstream.clone());
                thread::spawn(move || serve(client, &upstream, &*fault));
            }
        });
        Proxy { path, _dir: dir }
    }
}

/// One client connection: requests are read one by one and either answered by the fault or
/// forwarded; the engine's answers are copied back as they come. A request whose body is not
/// framed by `Content-Length` (a chunked upload, an exec's hijacked stream) switches the
/// connection to plain copying both ways.
fn serve(mut client: UnixStream, upstream: &PathBuf, fault: &Fault) {
    let Ok(mut engine) = UnixStream::connect(upstream) else {
        return;
    };
    let (Ok(mut engine_out), Ok(mut client_in)) = (engine.try_clone(), client.try_clone()) else {
        return;
    };
    let back = thread::spawn(move || {
        let _ = std::io::copy(&mut engine_out, &mut client_in);
        let _ = client_in.shutdown(Shutdown::Write);
    });
    let mut pending = Vec::new();
    while let Some((head_end, length)) = read_head(&mut client, &mut pending) {
        let head = String::from_utf8_lossy(&pending[..head_end]).to_string();
        let lower = head.to_ascii_lowercase();
        let Some(length) = length.filter(|_| !lower.contains("\r\nupgrade:")) else {
            // Not framed by Content-Length: copy the rest as it is.
            let _ = engine.write_all(&pending);
            let _ = std::io::copy(&mut client, &mut engine);
            break;
        };
        if !read_to(&mut client, &mut pending, head_end + length) {
            break;
        }
        let mut words = head.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let body = &pending[head_end..head_end + length];
        if let Some(answer) = fault(method, path, body) {
            let _ = client.write_all(&answer);
            break;
        }
        if engine.write_all(&pending[..head_end + length]).is_err() {
            break;
        }
        pending.drain(..head_end + length);
    }
    let _ = engine.shutdown(Shutdown::Both);
    let _ = client.shutdown(Shutdown::Both);
    let _ = back.join();
}

/// Reads until a whole request head is buffered: its end and its Content-Length (`None` when the
/// body is framed otherwise); `None` at EOF.
fn read_head(conn: &mut UnixStream, pending: &mut Vec<u8>) -> Option<(usize, Option<usize>)> {
    let head_end = loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut buf = [0u8; 8192];
        let n = conn.read(&mut buf).ok().filter(|&n| n > 0)?;
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
    if head.contains("\r\ntransfer-encoding:") {
        return Some((head_end, None));
    }
    let length = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    Some((head_end, Some(length)))
}

fn read_to(conn: &mut UnixStream, pending: &mut Vec<u8>, want: usize) -> bool {
    let mut buf = [0u8; 8192];
    while pending.len() < want {
        match conn.read(&mut buf) {
            Ok(n) if n > 0 => pending.extend_from_slice(&buf[..n]),
            _ => return false,
        }
    }
    true
}

/// A `500` answer whose JSON message quotes `body` after `pad` filler bytes, and closes.
pub fn echo_500(body: &[u8], pad: usize) -> Vec<u8> {
    let message = format!(
        "{}invalid request body: {}",
        "x".repeat(pad),
        String::from_utf8_lossy(body)
    );
    let json = serde_json::json!({ "message": message }).to_string();
    format!(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    )
    .into_bytes()
}

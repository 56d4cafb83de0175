//! The socket under every call: connecting (unix, TCP, TCP with TLS, SSH), deadlines, writing
//! requests.
//!
//! One hand-written HTTP/1.1 path over every kind of connection for all calls: the exec hijack
//! needs the raw connection after `101` anyway, and one path means one place for timeouts.
//! Response framing lives in [`super::http`]; TLS in [`super::tls`]; SSH in [`super::ssh`].

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::command::CommandStream;
use super::ssh::{self, SshTarget};
#[cfg(feature = "tls")]
use super::tls::session::{self, TlsStream};

/// Where the engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A unix socket path, like `/var/run/docker.sock`.
    Unix(PathBuf),
    /// A TCP address `host:port`; TLS when [`super::EngineOptions::tls`] is set.
    Tcp(String),
    /// A machine reached through the system `ssh` client (`docker system dial-stdio` there).
    Ssh(SshTarget),
}

impl Host {
    /// Parses a `DOCKER_HOST` value: `unix:///path`, `tcp://host:port` (`http://` is taken as
    /// `tcp://`) or `ssh://[user@]host[:port][/path/to/remote.sock]`. Other schemes (`npipe://`,
    /// `fd://`, `https://`) are refused with the reason.
    pub fn parse(value: &str) -> crate::Result<Host> {
        Host::parse_as(value, "DOCKER_HOST")
    }

    /// [`Host::parse`], with errors naming `field`.
    pub(crate) fn parse_as(value: &str, field: &str) -> crate::Result<Host> {
        if let Some(path) = value.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(crate::Error::invalid(
                    field,
                    format!("{value:?} has no absolute socket path; expected unix:///path/to/docker.sock"),
                ));
            }
            return Ok(Host::Unix(PathBuf::from(path)));
        }
        if value.starts_with("ssh://") {
            return SshTarget::parse(value, field).map(Host::Ssh);
        }
        let rest = value
            .strip_prefix("tcp://")
            .or_else(|| value.strip_prefix("http://"));
        if let Some(rest) = rest {
            let addr = rest.trim_end_matches('/');
            let port_ok = addr
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok || addr.contains('/') {
                return Err(crate::Error::invalid(
                    field,
                    format!("{value:?} is not tcp://HOST:PORT"),
                ));
            }
            return Ok(Host::Tcp(addr.to_string()));
        }
        Err(crate::Error::invalid(
            field,
            format!("{value:?} is not supported; expected unix:///path, tcp://HOST:PORT or ssh://[user@]host[:port]"),
        ))
    }

    /// The socket path, `host:port` or `ssh://...`, as error messages name it.
    pub fn address(&self) -> String {
        match self {
            Host::Unix(path) => path.display().to_string(),
            Host::Tcp(addr) => addr.clone(),
            Host::Ssh(target) => target.to_string(),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Unix(path) => write!(f, "unix://{}", path.display()),
            Host::Tcp(addr) => write!(f, "tcp://{addr}"),
            Host::Ssh(target) => write!(f, "{target}"),
        }
    }
}

/// Opens connections to one engine: its address, and what was prepared once for all of them
/// (the TLS config read from the certificate files, the arguments of `ssh` or of the TLS helper).
pub(crate) struct Dialer {
    host: Host,
    timeout: Duration,
    tls: Option<Tls>,
    ssh_args: Vec<String>,
}

/// How a `tcp://` engine's TLS is spoken.
enum Tls {
    /// In this process: the client config, the name the certificate must carry, the CA's file.
    #[cfg(feature = "tls")]
    InProcess(
        std::sync::Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
        PathBuf,
    ),
    /// Through `herdctl-container dial-stdio`: the program and its arguments.
    Helper(PathBuf, Vec<OsString>),
}

impl fmt::Debug for Dialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dialer")
            .field("host", &self.host)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Dialer {
    /// Reads the TLS files (errors name the file) and checks the ssh options.
    pub fn new(opts: &super::EngineOptions) -> crate::Result<Dialer> {
        let tls = match (&opts.host, &opts.tls) {
            (_, None) => None,
            (Host::Tcp(addr), Some(files)) => Some(match &opts.tls_helper {
                Some(helper) => Tls::Helper(helper.clone(), files.helper_args(addr)),
                None => in_process(addr, files)?,
            }),
            (other, Some(_)) => {
                return Err(crate::Error::invalid(
                    "tls",
                    format!("TLS files are given, but {other} is not a tcp:// host"),
                ))
            }
        };
        for (i, o) in opts.ssh_options.iter().enumerate() {
            if !o.starts_with('-') || o.contains('\0') {
                return Err(crate::Error::invalid(
                    format!("ssh_options[{i}]"),
                    format!("{o:?} is not an ssh option; give each as one argument starting with '-', like \"-oPort=2222\" or \"-i/path/key\""),
                ));
            }
        }
        let ssh_args = match &opts.host {
            Host::Ssh(target) => target.args(&opts.ssh_options, opts.connect_timeout),
            _ => Vec::new(),
        };
        Ok(Dialer {
            host: opts.host.clone(),
            timeout: opts.connect_timeout,
            tls,
            ssh_args,
        })
    }

    /// Opens a connection. A unix connect does not wait (it succeeds or fails at once), so the
    /// timeout applies to TCP (and a TLS handshake); an ssh or TLS helper process starts at once
    /// and connects while the first request waits (ssh's own ConnectTimeout bounds that).
    pub fn open(&self) -> io::Result<Conn> {
        match &self.host {
            Host::Unix(path) => UnixStream::connect(path).map(Conn::Unix),
            Host::Tcp(addr) => match &self.tls {
                None => tcp_connect(addr, self.timeout).map(Conn::Tcp),
                #[cfg(feature = "tls")]
                Some(Tls::InProcess(config, name, ca)) => {
                    let sock = tcp_connect(addr, self.timeout)?;
                    TlsStream::connect(sock, config.clone(), name.clone(), self.timeout)
                        .map(Conn::Tls)
                        .map_err(|e| name_the_ca(e, ca))
                }
                Some(Tls::Helper(program, args)) => CommandStream::spawn(
                    program,
                    args,
                    &format!("tcp://{addr}"),
                    "",
                    &format!(
                        "the TLS helper {} is not there (the herdctl-container CLI, which ships beside the Node addon)",
                        program.display()
                    ),
                )
                .map(Conn::Command),
            },
            Host::Ssh(target) => ssh::spawn(target, &self.ssh_args).map(Conn::Command),
        }
    }
}

/// TLS in this process, from the files.
#[cfg(feature = "tls")]
fn in_process(addr: &str, files: &super::TlsFiles) -> crate::Result<Tls> {
    Ok(Tls::InProcess(
        session::client_config(files)?,
        session::server_name(addr)?,
        files.ca.clone(),
    ))
}

/// Without the `tls` feature, TLS needs a helper.
#[cfg(not(feature = "tls"))]
fn in_process(addr: &str, _: &super::TlsFiles) -> crate::Result<Tls> {
    Err(crate::Error::invalid(
        "tls",
        format!("this build speaks no TLS of its own, and no herdctl-container CLI was given to reach tcp://{addr} through (EngineOptions::tls_helper; the Node package finds the one beside its addon, or HERDCTL_CONTAINER_CLI)"),
    ))
}

/// A handshake error that names "the CA in ca.pem", with the file's path.
#[cfg(feature = "tls")]
fn name_the_ca(e: io::Error, ca: &std::path::Path) -> io::Error {
    let text = e.to_string();
    if !text.contains("the CA in ca.pem") {
        return e;
    }
    let named = text.replace("the CA in ca.pem", &format!("the CA in {}", ca.display()));
    io::Error::new(e.kind(), named)
}

fn tcp_connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        "the host name resolves to no address",
    );
    for sa in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&sa, timeout) {
            Ok(s) => {
                // Requests are written in one or two writes; don't let Nagle hold them.
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// An open connection to the engine.
#[derive(Debug)]
pub(crate) enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
    #[cfg(feature = "tls")]
    Tls(TlsStream),
    /// Through a process: `ssh`, or the TLS helper.
    Command(CommandStream),
}

impl Conn {
    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => Conn::Tls(s.try_clone()?),
            Conn::Command(s) => Conn::Command(s.try_clone()?),
        })
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.shutdown(how),
            Conn::Tcp(s) => s.shutdown(how),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => s.shutdown(how),
            Conn::Command(s) => s.shutdown(how),
        }
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_read_timeout(t),
            Conn::Tcp(s) => s.set_read_timeout(t),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => s.socket().set_read_timeout(t),
            Conn::Command(s) => s.socket().set_read_timeout(t),
        }
    }

    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_write_timeout(t),
            Conn::Tcp(s) => s.set_write_timeout(t),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => s.socket().set_write_timeout(t),
            Conn::Command(s) => s.socket().set_write_timeout(t),
        }
    }

    /// Whether an idle pooled connection is still open: the engine may have closed it. A
    /// non-blocking read that would block means open and quiet; anything else means drop it.
    pub fn is_reusable(&mut self) -> bool {
        fn probe(mut s: impl Read, set: impl Fn(bool) -> io::Result<()>) -> bool {
            if set(true).is_err() {
                return false;
            }
            let mut byte = [0u8; 1];
            let quiet =
                matches!(s.read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
            quiet && set(false).is_ok()
        }
        match self {
            Conn::Unix(s) => probe(&*s, |on| s.set_nonblocking(on)),
            Conn::Tcp(s) => probe(&*s, |on| s.set_nonblocking(on)),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => s.is_reusable(),
            Conn::Command(s) => {
                let sock = s.socket();
                probe(sock, |on| sock.set_nonblocking(on))
            }
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => s.read(buf),
            Conn::Command(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => s.write(buf),
            Conn::Command(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Tcp(s) => s.flush(),
            #[cfg(feature = "tls")]
            Conn::Tls(s) => s.flush(),
            Conn::Command(s) => s.flush(),
        }
    }
}

/// A connection whose reads and writes fail with `TimedOut` once a deadline has passed.
///
/// The deadline is turned into a socket timeout before each operation, so a call never waits
/// longer than its budget in total, however the engine trickles its bytes.
#[derive(Debug)]
pub(crate) struct Timed {
    pub conn: Conn,
    deadline: Option<Instant>,
}

impl Timed {
    /// Wraps `conn`; `None` clears any timeout left from an earlier call.
    pub fn new(conn: Conn, deadline: Option<Instant>) -> io::Result<Timed> {
        let mut t = Timed {
            conn,
            deadline: None,
        };
        t.set_deadline(deadline)?;
        Ok(t)
    }

    pub fn set_deadline(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        self.deadline = deadline;
        if deadline.is_none() {
            self.conn.set_read_timeout(None)?;
            self.conn.set_write_timeout(None)?;
        }
        Ok(())
    }

    /// The time left, as a socket timeout; an error once none is left.
    fn left(&self) -> io::Result<Option<Duration>> {
        match self.deadline {
            None => Ok(None),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "call deadline passed",
                    ));
                }
                // A zero socket timeout is refused by the OS; round tiny budgets up.
                Ok(Some(left.max(Duration::from_millis(1))))
            }
        }
    }
}

/// A socket timeout shows up as WouldBlock on unix; make it one kind for the callers.
fn timed_out(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(io::ErrorKind::TimedOut, "call deadline passed")
    } else {
        e
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(left) = self.left()? {
            self.conn.set_read_timeout(Some(left))?;
        }
        self.conn.read(buf).map_err(timed_out)
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(left) = self.left()? {
            self.conn.set_write_timeout(Some(left))?;
        }
        self.conn.write(buf).map_err(timed_out)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.conn.flush()
    }
}

/// The body of a request.
pub(crate) enum ReqBody<'a> {
    /// No body.
    Empty,
    /// A JSON document, sent with its length.
    Json(Vec<u8>),
    /// A stream of unknown length (an image tarball), sent with chunked transfer-encoding.
    Stream {
        content_type: &'static str,
        reader: &'a mut dyn Read,
    },
}

impl ReqBody<'_> {
    /// Whether the request can be sent again after a failed attempt (a stream cannot).
    pub fn replayable(&self) -> bool {
        !matches!(self, ReqBody::Stream { .. })
    }
}

/// Why writing a request failed.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The socket failed.
    Socket(io::Error),
    /// The caller's body reader failed.
    Source(io::Error),
}

/// Writes a request head and its body. `extra` headers come after the standard ones.
pub(crate) fn write_request(
    w: &mut impl Write,
    method: &str,
    target: &str,
    host: &Host,
    extra: &[(&str, &str)],
    body: &mut ReqBody<'_>,
) -> Result<(), WriteError> {
    let host_header = match host {
        Host::Unix(_) | Host::Ssh(_) => "docker",
        Host::Tcp(addr) => addr.as_str(),
    };
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: herdctl-container/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match body {
        ReqBody::Empty => {
            // POST without a body still needs a length, or the engine waits for one.
            if method != "GET" && method != "HEAD" {
                head.push_str("Content-Length: 0\r\n");
            }
        }
        ReqBody::Json(bytes) => {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                bytes.len()
            ));
        }
        ReqBody::Stream { content_type, .. } => {
            head.push_str(&format!(
                "Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n"
            ));
        }
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    match body {
        ReqBody::Empty => w.write_all(&bytes).map_err(WriteError::Socket),
        ReqBody::Json(json) => {
            // One write for head and body: small requests go out in one packet.
            bytes.extend_from_slice(json);
            w.write_all(&bytes).map_err(WriteError::Socket)
        }
        ReqBody::Stream { reader, .. } => {
            w.write_all(&bytes).map_err(WriteError::Socket)?;
            write_chunked(w, *reader)
        }
    }
}

/// Copies `reader` to `w` as chunks, then the last chunk.
fn write_chunked(w: &mut impl Write, reader: &mut dyn Read) -> Result<(), WriteError> {
    const CHUNK: usize = 64 * 1024;
    // Room for the size line in front and the CRLF behind, so each chunk is one write.
    let mut buf = vec![0u8; CHUNK + 16];
    loop {
        let n = loop {
            match reader.read(&mut buf[10..10 + CHUNK]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(WriteError::Source(e)),
            }
        };
        if n == 0 {
            return w.write_all(b"0\r\n\r\n").map_err(WriteError::Socket);
        }
        let size = format!("{n:x}\r\n");
        let start = 10 - size.len();
        buf[start..10].copy_from_slice(size.as_bytes());
        buf[10 + n..12 + n].copy_from_slice(b"\r\n");
        w.write_all(&buf[start..12 + n])
            .map_err(WriteError::Socket)?;
    }
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
pub(crate) fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_values() {
        assert_eq!(
            Host::parse("unix:///run/docker.sock").unwrap(),
            Host::Unix("/run/docker.sock".into())
        );
        assert_eq!(
            Host::parse("tcp://127.0.0.1:2375").unwrap(),
            Host::Tcp("127.0.0.1:2375".into())
        );
        assert_eq!(
            Host::parse("http://localhost:2375/").unwrap(),
            Host::Tcp("localhost:2375".into())
        );
        assert_eq!(
            Host::parse("ssh://me@host").unwrap().to_string(),
            "ssh://me@host"
        );
        for bad in [
            "npipe:////./pipe/docker_engine",
            "unix://relative.sock",
            "tcp://nohostport",
            "tcp://:12",
            "/var/run/docker.sock",
            "tcp://h:99999",
        ] {
            let e = Host::parse(bad).unwrap_err();
            assert_eq!(e.code(), "INVALID_CONFIG", "{bad}");
            assert!(e.to_string().starts_with("invalid DOCKER_HOST: "), "{e}");
        }
    }

    #[test]
    fn request_bytes() {
        let mut out = Vec::new();
        let mut body = ReqBody::Json(b"{\"a\":1}".to_vec());
        write_request(
            &mut out,
            "POST",
            "/v1.41/containers/create?name=x",
            &Host::Unix("/s".into()),
            &[],
            &mut body,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("POST /v1.41/containers/create?name=x HTTP/1.1\r\nHost: docker\r\n")
        );
        assert!(text.contains("Content-Length: 7\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"a\":1}"));
    }

    #[test]
    fn streamed_body_is_chunked() {
        let data = vec![7u8; 70 * 1024];
        let mut reader: &[u8] = &data;
        let mut out = Vec::new();
        let mut body = ReqBody::Stream {
            content_type: "application/x-tar",
            reader: &mut reader,
        };
        write_request(
            &mut out,
            "POST",
            "/x",
            &Host::Tcp("h:1".into()),
            &[],
            &mut body,
        )
        .unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("Transfer-Encoding: chunked\r\n"));
        assert!(
            text.contains("\r\n\r\n10000\r\n"),
            "a first chunk of 64 KiB"
        );
        assert!(text.contains("\r\n1800\r\n"), "then the 6 KiB rest");
        assert!(out.ends_with(b"\r\n0\r\n\r\n"));
    }

    #[test]
    fn failing_source_is_told_apart_from_the_socket() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk gone"))
            }
        }
        let mut body = ReqBody::Stream {
            content_type: "application/x-tar",
            reader: &mut Broken,
        };
        let r = write_request(
            &mut Vec::new(),
            "POST",
            "/x",
            &Host::Tcp("h:1".into()),
            &[],
            &mut body,
        );
        assert!(matches!(r, Err(WriteError::Source(_))));
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            query_value("{\"label\":[\"a=b\"]}"),
            "%7B%22label%22%3A%5B%22a%3Db%22%5D%7D"
        );
        assert_eq!(query_value("127.0.0.1:5000/x"), "127.0.0.1%3A5000%2Fx");
    }
}

//! TLS in this process: rustls with its ring provider.
//!
//! Why rustls with ring: it is blocking-friendly (no runtime, plain `Read`/`Write`), needs no
//! system OpenSSL at build or run time, and ring builds with a C compiler alone (aws-lc-rs needs
//! cmake).
//!
//! Why a stream of our own and not `rustls::StreamOwned`: the exec hijack writes a job's stdin on
//! one thread while another reads its output, and aborts from a third. One rustls connection
//! cannot be split, so it sits behind a lock that no one holds while blocked on the socket: a
//! reader waits for bytes without the lock and takes it only to decrypt, a writer takes it only
//! to encrypt. Socket writes are ordered by a second lock, so records leave in the order they were
//! sealed; an abort shuts the socket down without taking either lock.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::TlsFiles;
use crate::{Error, Result};

/// Reads the files into a client config. Errors name the file and what was expected.
pub(crate) fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    let cas = read_certs(&files.ca)?;
    let (added, _) = roots.add_parsable_certificates(cas);
    if added == 0 {
        return Err(file_error(
            &files.ca,
            "holds no CA certificate rustls can use",
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid("TLS", format!("no protocol version: {e}")))?
        .with_root_certificates(roots);
    let config = match &files.client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                file_error(
                    key,
                    &format!("holds no private key in PEM ({})", pem_reason(&e)),
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| file_error(cert, &format!("does not go with its key: {e}")))?
        }
    };
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| file_error(path, &format!("cannot be read as PEM ({})", pem_reason(&e))))?;
    if certs.is_empty() {
        return Err(file_error(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) if io.kind() == io::ErrorKind::NotFound => {
            "no such file".into()
        }
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "nothing in it".into(),
        other => other.to_string(),
    }
}

fn file_error(path: &Path, problem: &str) -> Error {
    Error::invalid(
        format!("TLS file {}", path.display()),
        format!("{problem}; the certificate directory (DOCKER_CERT_PATH, or the context's) holds ca.pem, cert.pem and key.pem"),
    )
}

/// The name the engine's certificate must carry: the host part of `host:port`.
pub(crate) fn server_name(addr: &str) -> Result<ServerName<'static>> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|_| {
        Error::invalid(
            "DOCKER_HOST",
            format!("{host:?} is not a host name or IP address a certificate can name"),
        )
    })
}

/// What went wrong in TLS, in words that say what to fix.
fn describe(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C};
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "the engine's certificate is not signed by the CA in ca.pem".into()
        }
        rustls::Error::InvalidCertificate(C::NotValidForName)
        | rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. }) => {
            "the engine's certificate does not name this host (its subjectAltName must hold the name or IP of DOCKER_HOST)".into()
        }
        rustls::Error::AlertReceived(A::CertificateRequired | A::BadCertificate | A::UnknownCA) => {
            format!("the engine refused this client's certificate ({e}): it wants cert.pem and key.pem signed by its CA")
        }
        other => other.to_string(),
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {}", describe(&e)))
}

/// An established TLS connection; clones (for the exec's writer, reader and abort handle) share
/// one session.
pub(crate) struct TlsStream {
    sock: TcpStream,
    shared: Arc<Shared>,
    /// This handle's buffer for bytes read from the socket (a reader fills it without a lock).
    raw: Vec<u8>,
}

struct Shared {
    state: Mutex<State>,
    /// Held while sealed records go to the socket, so they leave in order.
    writing: Mutex<()>,
}

struct State {
    conn: ClientConnection,
    /// Bytes read from the socket that rustls has not taken yet.
    pending: Vec<u8>,
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("sock", &self.sock)
            .finish()
    }
}

/// A TLS record is at most 16 KiB of payload plus its header and the AEAD's overhead.
const RECORD: usize = 16 * 1024 + 512;

impl TlsStream {
    /// Runs the handshake on a connected socket, within `timeout`.
    pub fn connect(
        sock: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        timeout: Duration,
    ) -> io::Result<TlsStream> {
        sock.set_read_timeout(Some(timeout))?;
        sock.set_write_timeout(Some(timeout))?;
        let mut conn = ClientConnection::new(config, name).map_err(tls_error)?;
        let mut io = &sock;
        while conn.is_handshaking() {
            conn.complete_io(&mut io).map_err(handshake_error)?;
        }
        while conn.wants_write() {
            conn.write_tls(&mut io)?;
        }
        sock.set_read_timeout(None)?;
        sock.set_write_timeout(None)?;
        Ok(TlsStream {
            sock,
            raw: Vec::new(),
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    conn,
                    pending: Vec::new(),
                }),
                writing: Mutex::new(()),
            }),
        })
    }

    pub fn try_clone(&self) -> io::Result<TlsStream> {
        Ok(TlsStream {
            sock: self.sock.try_clone()?,
            shared: self.shared.clone(),
            raw: Vec::new(),
        })
    }

    /// The socket under the session (for timeouts).
    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }

    /// `Write`: sends close_notify first, which the engine reads as the end of the exec's stdin
    /// (Go's TLS turns it into EOF), then half-closes the socket. `Read`/`Both` shut the socket
    /// without taking a lock, so they unblock a reader or writer on another thread at once.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if how == Shutdown::Write {
            let _order = lock(&self.shared.writing);
            let out = {
                let mut st = lock(&self.shared.state);
                st.conn.send_close_notify();
                st.sealed()
            };
            (&self.sock).write_all(&out)?;
        }
        self.sock.shutdown(how)
    }

    /// Whether an idle pooled connection is still open and quiet: whatever arrived while it was
    /// idle (a session ticket is fine; data or a close is not) decides.
    pub fn is_reusable(&self) -> bool {
        if self.sock.set_nonblocking(true).is_err() {
            return false;
        }
        let mut raw = [0u8; 4096];
        let quiet = loop {
            match (&self.sock).read(&mut raw) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break true,
                Ok(0) | Err(_) => break false,
                Ok(n) => {
                    let mut st = lock(&self.shared.state);
                    match st.receive(&raw[..n]) {
                        Ok(io) if io.plaintext_bytes_to_read() == 0 && !io.peer_has_closed() => {}
                        _ => break false,
                    }
                }
            }
        };
        quiet && self.sock.set_nonblocking(false).is_ok()
    }

    fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut raw = std::mem::take(&mut self.raw);
        raw.resize(RECORD, 0);
        let read = self.read_with(buf, &mut raw);
        self.raw = raw;
        read
    }

    fn read_with(&self, buf: &mut [u8], raw: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(n) = lock(&self.shared.state).plaintext(buf)? {
                return Ok(n);
            }
            // No lock while waiting: the writer must be able to seal stdin meanwhile.
            let n = (&self.sock).read(raw)?;
            let wants_write = {
                let mut st = lock(&self.shared.state);
                st.receive(&raw[..n])?;
                if n == 0 {
                    // The socket ended: rustls reports a close_notify as the end and its absence
                    // as an error; should it say neither, the end is still the end.
                    return Ok(st.plaintext(buf)?.unwrap_or(0));
                }
                st.conn.wants_write()
            };
            if wants_write {
                // An answer rustls owes the engine (a key update). Sent now unless a writer is
                // busy: then the writer's next write carries it (records must leave in order).
                if let Ok(_order) = self.shared.writing.try_lock() {
                    let out = lock(&self.shared.state).sealed();
                    (&self.sock).write_all(&out)?;
                }
            }
        }
    }

    fn write_plain(&self, buf: &[u8]) -> io::Result<usize> {
        let _order = lock(&self.shared.writing);
        let (n, out) = {
            let mut st = lock(&self.shared.state);
            let n = st.conn.writer().write(buf)?;
            (n, st.sealed())
        };
        (&self.sock).write_all(&out)?;
        Ok(n)
    }
}

fn handshake_error(e: io::Error) -> io::Error {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => io::Error::new(e.kind(), format!("TLS handshake: {}", describe(tls))),
        None => e,
    }
}

/// A poisoned lock still holds a consistent session or nothing: rustls does not panic halfway
/// through a record, and the unit guard guards nothing.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    /// Plaintext already decrypted, feeding rustls what the socket gave; `None` when more bytes
    /// are needed; `Some(0)` once the engine closed the session.
    fn plaintext(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.pending.is_empty() {
                        return Ok(None);
                    }
                    self.feed()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes socket bytes (none: the socket's end) and decrypts what it can.
    fn receive(&mut self, bytes: &[u8]) -> io::Result<rustls::IoState> {
        if bytes.is_empty() {
            // Tells rustls the socket ended; a missing close_notify then reads as UnexpectedEof.
            self.conn.read_tls(&mut &b""[..])?;
            return self.conn.process_new_packets().map_err(tls_error);
        }
        self.pending.extend_from_slice(bytes);
        self.feed()
    }

    fn feed(&mut self) -> io::Result<rustls::IoState> {
        loop {
            let taken = self.conn.read_tls(&mut &self.pending[..])?;
            self.pending.drain(..taken);
            let io = self.conn.process_new_packets().map_err(tls_error)?;
            if self.pending.is_empty() || io.plaintext_bytes_to_read() > 0 || taken == 0 {
                return Ok(io);
            }
        }
    }

    /// The sealed records waiting to be sent.
    fn sealed(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail.
            if self.conn.write_tls(&mut out).is_err() {
                break;
            }
        }
        out
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_plain(buf)
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_plain(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = client_config(&TlsFiles::from_dir(dir.path())).unwrap_err();
        assert_eq!(e.code(), "INVALID_CONFIG");
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "invalid TLS file {}/ca.pem: cannot be read as PEM (no such file)",
                dir.path().display()
            )),
            "{text}"
        );
        std::fs::write(dir.path().join("ca.pem"), "not pem\n").unwrap();
        let e = client_config(&TlsFiles::from_dir(dir.path())).unwrap_err();
        assert!(
            e.to_string().contains("ca.pem: holds no PEM certificate"),
            "{e}"
        );
    }

    #[test]
    fn server_names_come_from_the_address() {
        assert!(server_name("127.0.0.1:2376").is_ok());
        assert!(server_name("docker.example.com:2376").is_ok());
        assert!(server_name("[::1]:2376").is_ok());
        assert!(server_name("bad host:1").is_err());
    }
}

//! The far end of a command connection: connect to the engine and carry this process's stdin to
//! it and its answers to stdout, as `docker system dial-stdio` does. The Node addon, built without
//! TLS, reaches a TLS engine through `herdctl-container dial-stdio`, which runs this.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use super::errors::{connect_error, wire_error};
use super::http::WireError;
use super::transport::Dialer;
use super::EngineOptions;
use crate::Result;

/// Connects to the engine of `opts` (in this process: its `tls_helper` is ignored) and copies
/// stdin to it and its answers to stdout until the engine closes. The end of stdin is passed on
/// as a half-close (over TLS, close_notify), which is how an exec's stdin ends; the answers keep
/// flowing after it.
pub fn dial_stdio(mut opts: EngineOptions) -> Result<()> {
    opts.tls_helper = None;
    let dialer = Dialer::new(&opts)?;
    let conn = dialer
        .open()
        .map_err(|e| connect_error(&opts.host, e, opts.connect_timeout))?;
    let lost = |e: io::Error| wire_error("dial-stdio", &opts.host, WireError::Io(e), None);
    let mut to_engine = conn.try_clone().map_err(lost)?;
    let mut from_engine = conn;
    // Not joined: once the engine has closed, a read of stdin that waits on would hold the
    // process; its exit ends the thread.
    let _stdin = std::thread::Builder::new()
        .name("herdctl-dial-stdin".into())
        .spawn(move || {
            let copied = io::copy(&mut io::stdin().lock(), &mut to_engine);
            // The end of what the caller sends (or a read that failed): the engine's answer
            // still flows.
            let _ = to_engine.shutdown(Shutdown::Write);
            copied
        })
        .map_err(|e| crate::Error::io("dial-stdio: start the stdin thread", e))?;
    let mut out = io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from_engine.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(lost(e)),
        };
        // Each piece at once: the caller waits for it (stdout is line-buffered otherwise).
        out.write_all(&buf[..n])
            .and_then(|()| out.flush())
            .map_err(|e| crate::Error::io("dial-stdio: write stdout", e))?;
    }
}

//! One API call: take a pooled connection (or open one), write the request, read the head, hand
//! the body out as it arrives, and put the connection back only once its body was read to the end.

use std::io::Write;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::errors::{answer_error, connect_error, is_version_mismatch, wire_error, Meaning};
use super::http::{Framing, Head, Wire, WireError};
use super::transport::{write_request, Conn, ReqBody, Timed, WriteError};
use super::Engine;
use crate::{Error, Result};

/// Idle connections kept for reuse; more concurrent calls than this open fresh ones.
pub(crate) const POOL_SIZE: usize = 8;
/// Buffer of a response reader; larger reads bypass it.
const READ_BUFFER: usize = 16 * 1024;
/// A JSON answer larger than this is refused (a container list of thousands is a few MiB).
pub(crate) const JSON_LIMIT: usize = 64 * 1024 * 1024;
/// An error answer is read up to this size; its message is what matters.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// One line of a progress stream longer than this is not a progress line.
const LINE_LIMIT: usize = 1024 * 1024;

/// How long a call may take, connect to last byte.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Deadline {
    /// [`super::EngineOptions::call_timeout`].
    Default,
    /// No deadline: long-blocking calls (wait, pull, import, an exec stream after its head).
    Unlimited,
    /// This budget.
    After(Duration),
}

/// A request, before the API version is put in front of its path.
pub(crate) struct Req<'a> {
    pub method: &'static str,
    /// The path with its query, without `/v1.NN`.
    pub path: String,
    pub body: ReqBody<'a>,
    pub deadline: Deadline,
    /// False only for the calls that negotiate the version (`/_ping`, `/version`).
    pub versioned: bool,
    /// Ask for a protocol upgrade (the exec hijack).
    pub upgrade: bool,
    /// How errors name the call, when the method and path say too little (`pull image X`).
    pub call: Option<String>,
}

impl<'a> Req<'a> {
    /// A versioned request without a body, with the default deadline.
    pub fn new(method: &'static str, path: impl Into<String>) -> Req<'a> {
        Req {
            method,
            path: path.into(),
            body: ReqBody::Empty,
            deadline: Deadline::Default,
            versioned: true,
            upgrade: false,
            call: None,
        }
    }

    /// Named this way in errors.
    pub fn call(mut self, call: String) -> Req<'a> {
        self.call = Some(call);
        self
    }

    /// With a JSON body.
    pub fn json(mut self, value: &impl serde::Serialize) -> Result<Req<'a>> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Protocol {
            call: call_name(self.method, &self.path),
            detail: format!("cannot encode the request body: {e}"),
        })?;
        self.body = ReqBody::Json(bytes);
        Ok(self)
    }

    /// With this deadline.
    pub fn deadline(mut self, deadline: Deadline) -> Req<'a> {
        self.deadline = deadline;
        self
    }
}

/// `POST /containers/abc/start`: the method and the path without its query, as errors name a call.
pub(crate) fn call_name(method: &str, path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    format!("{method} {path}")
}

enum Body {
    Live {
        wire: Wire<Timed>,
        framing: Framing,
        keep_alive: bool,
    },
    Buffered {
        bytes: Vec<u8>,
        at: usize,
    },
    Released,
}

/// The answer to a call; its body streams from the socket.
pub(crate) struct Response {
    pub head: Head,
    call: String,
    engine: Engine,
    budget: Option<Duration>,
    body: Body,
}

impl Response {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.head.status
    }

    /// The call, as errors name it.
    pub fn call(&self) -> &str {
        &self.call
    }

    /// Reads body bytes; 0 at its end. The connection goes back to the pool at the end.
    pub fn read(&mut self, out: &mut [u8]) -> Result<usize> {
        match &mut self.body {
            Body::Released => Ok(0),
            Body::Buffered { bytes, at } => {
                let n = out.len().min(bytes.len() - *at);
                out[..n].copy_from_slice(&bytes[*at..*at + n]);
                *at += n;
                Ok(n)
            }
            Body::Live { wire, framing, .. } => {
                let n = wire.read_body(framing, out).map_err(|e| {
                    wire_error(&self.call, &self.engine.inner.opts.host, e, self.budget)
                })?;
                if *framing == Framing::Done {
                    self.release();
                }
                Ok(n)
            }
        }
    }

    /// At the body's end: the connection goes back to the pool for keep-alive, unless the
    /// answer ruled it out or bytes past the body were read (they would be taken for the next
    /// call's answer).
    fn release(&mut self) {
        if let Body::Live {
            wire, keep_alive, ..
        } = std::mem::replace(&mut self.body, Body::Released)
        {
            if keep_alive && !wire.has_buffered() {
                self.engine.checkin(wire.into_parts().0.conn);
            }
        }
    }

    /// The whole body, refused past `limit` bytes.
    pub fn bytes(mut self, limit: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            let n = self.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            if out.len() + n > limit {
                return Err(Error::Protocol {
                    call: self.call.clone(),
                    detail: format!("answer larger than {limit} bytes"),
                });
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(self) -> Result<T> {
        let call = self.call.clone();
        let bytes = self.bytes(JSON_LIMIT)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Protocol {
            call,
            detail: format!("unexpected JSON in the answer: {e}"),
        })
    }

    /// Reads the body to its end and drops it, so the connection can be reused.
    pub fn finish(mut self) -> Result<()> {
        let mut buf = vec![0u8; READ_BUFFER];
        while self.read(&mut buf)? > 0 {}
        Ok(())
    }

    /// The error for this (non-2xx) answer about `name`, given the endpoint's status table.
    pub fn error(self, name: &str, table: &[(u16, Meaning)]) -> Error {
        let status = self.status();
        let call = self.call.clone();
        match self.bytes(ERROR_BODY_LIMIT) {
            Ok(body) => answer_error(&call, name, status, &body, table),
            // A body too big or cut short still has a status worth reporting.
            Err(_) => answer_error(&call, name, status, b"", table),
        }
    }

    /// Calls `f` with each non-empty line of the body (a progress stream of JSON lines).
    pub fn for_each_line(&mut self, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            let n = self.read(&mut buf)?;
            if n == 0 {
                let line = pending.trim_ascii();
                return if line.is_empty() { Ok(()) } else { f(line) };
            }
            pending.extend_from_slice(&buf[..n]);
            let mut start = 0;
            while let Some(i) = pending[start..].iter().position(|&b| b == b'\n') {
                let line = pending[start..start + i].trim_ascii();
                if !line.is_empty() {
                    f(line)?;
                }
                start += i + 1;
            }
            pending.drain(..start);
            if pending.len() > LINE_LIMIT {
                return Err(Error::Protocol {
                    call: self.call.clone(),
                    detail: format!(
                        "a line of the progress stream is longer than {LINE_LIMIT} bytes"
                    ),
                });
            }
        }
    }

    /// The raw connection after a `101` (or `200`) answer to an upgrade, and the bytes already
    /// read past the head, which belong to the stream. The call's deadline is lifted.
    pub fn into_upgraded(self) -> Result<(Conn, Vec<u8>)> {
        match self.body {
            Body::Live { wire, .. } => {
                let (timed, rest) = wire.into_parts();
                let conn = timed.conn;
                conn.set_read_timeout(None)
                    .and_then(|()| conn.set_write_timeout(None))
                    .map_err(|e| {
                        wire_error(
                            &self.call,
                            &self.engine.inner.opts.host,
                            WireError::Io(e),
                            None,
                        )
                    })?;
                Ok((conn, rest))
            }
            _ => Err(Error::Protocol {
                call: self.call,
                detail: "the upgraded connection is gone".to_string(),
            }),
        }
    }
}

/// Whether a failure before any answer byte looks like a connection the engine had closed.
fn is_stale(e: &WireError) -> bool {
    match e {
        WireError::Closed { .. } => true,
        WireError::Io(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
        ),
        WireError::Malformed(_) => false,
    }
}

impl Engine {
    /// An idle pooled connection that is still open, or a new one; and whether it was pooled.
    fn checkout(&self) -> Result<(Conn, bool)> {
        loop {
            let pooled = self.pool().pop();
            match pooled {
                Some(mut conn) => {
                    if conn.is_reusable() {
                        return Ok((conn, true));
                    }
                }
                None => break,
            }
        }
        let opts = &self.inner.opts;
        let conn = self
            .inner
            .dialer
            .open()
            .map_err(|e| connect_error(&opts.host, e, opts.connect_timeout))?;
        Ok((conn, false))
    }

    fn checkin(&self, conn: Conn) {
        let mut pool = self.pool();
        if pool.len() < POOL_SIZE {
            pool.push(conn);
        }
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        // A panic elsewhere while holding the lock leaves a plain Vec of sockets: still usable.
        self.inner.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a request and reads the answer's head. A `400 client version is too new/old`
    /// renegotiates the version once and sends again (when the body can be sent again).
    pub(crate) fn send(&self, req: Req<'_>) -> Result<Response> {
        // The debug log's hook: nothing but a branch when no observer is set.
        let Some(observer) = self.inner.opts.on_call.clone() else {
            return self.send_inner(req);
        };
        let started = Instant::now();
        let (method, path) = match req.versioned {
            true => (req.method, format!("/v{}{}", self.api_version(), req.path)),
            false => (req.method, req.path.clone()),
        };
        let result = self.send_inner(req);
        observer(&super::log::CallEvent {
            method,
            path: super::log::log_path(&path),
            status: result.as_ref().ok().map(Response::status),
            elapsed: started.elapsed(),
            error: result.as_ref().err().map(ToString::to_string),
        });
        result
    }

    /// Sends `req` and reads the answer's head, in attempts that each go through the phases of
    /// a call: take a connection, send the request, read the head, choose the body's framing.
    /// Two things send the request again: a pooled connection the engine had closed (only a
    /// pooled one is retried, so the retries end with the pool), and a refused API version
    /// (renegotiated once).
    fn send_inner(&self, mut req: Req<'_>) -> Result<Response> {
        let flight = InFlight::new(self, &req);
        let mut renegotiated = false;
        loop {
            let (conn, reused) = self.checkout()?;
            // Only a pooled connection can be stale, and only a body still held can go again.
            let retry_stale = reused && req.body.replayable();
            let Some(response) = flight.exchange(&mut req, conn, retry_stale)? else {
                continue; // it was stale: the next connection
            };
            // Only a 400 to a versioned call can be a refused version; renegotiate once.
            if response.status() != 400 || !req.versioned || renegotiated {
                return Ok(response);
            }
            renegotiated = true;
            if let Some(response) = flight.version_retry(response, req.body.replayable())? {
                return Ok(response);
            }
        }
    }

    /// Writes the request, at the API version negotiated so far (a renegotiation between two
    /// attempts changes it), and flushes it.
    fn send_request(
        &self,
        wire: &mut Wire<Timed>,
        req: &mut Req<'_>,
    ) -> std::result::Result<(), WriteError> {
        let target = if req.versioned {
            format!("/v{}{}", self.api_version(), req.path)
        } else {
            req.path.clone()
        };
        let upgrade: &[(&str, &str)] = if req.upgrade {
            &[("Connection", "Upgrade"), ("Upgrade", "tcp")]
        } else {
            &[]
        };
        write_request(
            wire.inner_mut(),
            req.method,
            &target,
            &self.inner.opts.host,
            upgrade,
            &mut req.body,
        )
        .and_then(|()| wire.inner_mut().flush().map_err(WriteError::Socket))
    }
}

/// A call on its way through its attempts: how errors name it, and the time it has.
struct InFlight<'e> {
    engine: &'e Engine,
    call: String,
    /// The call's whole budget, for a timeout's message; `None`: no deadline.
    budget: Option<Duration>,
    /// When the budget runs out.
    deadline: Option<Instant>,
}

impl<'e> InFlight<'e> {
    /// The call's name and its budget. The deadline is set once, here, for all its attempts:
    /// a retry does not restart the clock.
    fn new(engine: &'e Engine, req: &Req<'_>) -> InFlight<'e> {
        let budget = match req.deadline {
            Deadline::Default => Some(engine.inner.opts.call_timeout),
            Deadline::Unlimited => None,
            Deadline::After(d) => Some(d),
        };
        InFlight {
            engine,
            call: req
                .call
                .clone()
                .unwrap_or_else(|| call_name(req.method, &req.path)),
            budget,
            deadline: budget.map(|b| Instant::now() + b),
        }
    }

    /// One attempt on `conn`: send the request, read the head, choose the body's framing.
    /// `None` when `conn` was a pooled connection the engine had closed and `retry_stale` allows
    /// another attempt.
    fn exchange(
        &self,
        req: &mut Req<'_>,
        conn: Conn,
        retry_stale: bool,
    ) -> Result<Option<Response>> {
        let timed =
            Timed::new(conn, self.deadline).map_err(|e| self.wire_error(WireError::Io(e)))?;
        let mut wire = Wire::new(timed, READ_BUFFER);
        let write_failure = match self.engine.send_request(&mut wire, req) {
            Ok(()) => None,
            Err(WriteError::Source(e)) => {
                return Err(Error::io(
                    format!("{}: read the request body", self.call),
                    e,
                ));
            }
            Err(WriteError::Socket(_)) if retry_stale => return Ok(None),
            // The engine may have answered early (an import it refused) and closed: its
            // answer says more than the broken pipe.
            Err(WriteError::Socket(e)) => Some(e),
        };
        let wrote_all = write_failure.is_none();
        let Some(head) = self.read_head(&mut wire, retry_stale, write_failure)? else {
            return Ok(None);
        };
        let (framing, keep_alive) =
            body_framing(&head, req, wrote_all).map_err(|e| self.wire_error(e))?;
        let body = Body::Live {
            wire,
            framing,
            keep_alive,
        };
        Ok(Some(self.response(head, body)))
    }

    /// Reads the answer's head. `None` when nothing came back on a pooled connection the engine
    /// closed just as we sent (a stale one, worth a fresh attempt). When no head comes, a write
    /// that had failed is the cause reported.
    fn read_head(
        &self,
        wire: &mut Wire<Timed>,
        retry_stale: bool,
        write_failure: Option<std::io::Error>,
    ) -> Result<Option<Head>> {
        match wire.read_head() {
            Ok(head) => Ok(Some(head)),
            Err(e) if retry_stale && !wire.received_any() && is_stale(&e) => Ok(None),
            Err(e) => Err(self.wire_error(write_failure.map(WireError::Io).unwrap_or(e))),
        }
    }

    /// Decides on a 400 answer to a versioned call: a refused API version renegotiates and asks
    /// for another attempt (`None`); any other 400 is the answer, its body (small) buffered, as
    /// it was read to find out.
    fn version_retry(&self, response: Response, replayable: bool) -> Result<Option<Response>> {
        let head = response.head.clone();
        let bytes = response.bytes(ERROR_BODY_LIMIT)?;
        if !is_version_mismatch(400, &bytes) {
            return Ok(Some(self.response(head, Body::Buffered { bytes, at: 0 })));
        }
        self.renegotiate(&bytes, replayable)?;
        Ok(None)
    }

    /// Negotiates the API version again after the engine refused ours (its words in
    /// `refusal`). Fails when the version did not move (nothing in common), or when the body was
    /// a stream, spent by the refused attempt.
    fn renegotiate(&self, refusal: &[u8], replayable: bool) -> Result<()> {
        let engine = self.engine;
        let before = engine
            .inner
            .minor
            .load(std::sync::atomic::Ordering::Relaxed);
        let after = engine.negotiate()?;
        if after == before {
            return Err(engine.unsupported_version());
        }
        if !replayable {
            // The streamed body is spent; the next call will use the new version.
            return Err(Error::Api {
                call: self.call.clone(),
                status: 400,
                message: format!(
                    "{}; switched to API 1.{after}, try again",
                    super::errors::engine_message(refusal)
                ),
            });
        }
        Ok(())
    }

    fn response(&self, head: Head, body: Body) -> Response {
        Response {
            head,
            call: self.call.clone(),
            engine: self.engine.clone(),
            budget: self.budget,
            body,
        }
    }

    fn wire_error(&self, e: WireError) -> Error {
        wire_error(&self.call, &self.engine.inner.opts.host, e, self.budget)
    }
}

/// How the answer's body is delimited, and whether the connection can carry another call after
/// it: not when the body ends with the connection, when the request was not wholly written (the
/// engine answered early and closes), or after an upgrade (the connection becomes the exec's
/// stream).
fn body_framing(
    head: &Head,
    req: &Req<'_>,
    wrote_all: bool,
) -> std::result::Result<(Framing, bool), WireError> {
    let framing = Framing::of(head, req.method == "HEAD")?;
    let keep_alive = head.keep_alive() && framing != Framing::Close && wrote_all && !req.upgrade;
    Ok((framing, keep_alive))
}

/// The answer of a call that creates something (a container, an exec): its id.
#[derive(serde::Deserialize)]
pub(crate) struct Created {
    #[serde(rename = "Id")]
    pub id: String,
}

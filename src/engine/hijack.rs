//! The exec hijack: `POST /exec/{id}/start` asking for an upgrade, after which the socket carries
//! the process's stdin one way and its multiplexed output the other.

use serde_json::json;

use super::call::Req;
use super::errors::Meaning;
use super::transport::Conn;
use super::Engine;
use crate::Result;

pub(crate) const EXEC_404: &[(u16, Meaning)] = &[(
    404,
    Meaning::NotFound(
        "exec",
        "; an exec can be started only once, soon after it was created",
    ),
)];

/// Starts exec `id` attached. Returns the raw connection and the bytes already read past the
/// answer's head, which are the start of the output stream.
///
/// The engine answers `101 UPGRADED`, or `200 OK` in some versions; both are followed by the raw
/// stream. The call's deadline covers the answer's head only.
pub(crate) fn start(engine: &Engine, id: &str) -> Result<(Conn, Vec<u8>)> {
    let mut req = Req::new("POST", format!("/exec/{id}/start"))
        .json(&json!({ "Detach": false, "Tty": false }))?;
    req.upgrade = true;
    let response = engine.send(req)?;
    match response.status() {
        101 | 200 => response.into_upgraded(),
        _ => Err(response.error(id, EXEC_404)),
    }
}

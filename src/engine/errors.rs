//! Turning what the engine (or the OS) said into [`crate::Error`], in one place.
//!
//! Every endpoint passes a small status table: a 404 means "no such container" for one call and
//! "no such image" for another. Whatever the table does not name becomes [`Error::Conflict`] (409)
//! or [`Error::Api`], with the daemon's own `message`, or its raw text when the body is not JSON.

use std::io;
use std::time::Duration;

use super::http::WireError;
use super::transport::Host;
use crate::{Error, TimeoutPhase};

/// What a status means for one endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Meaning {
    /// The named thing does not exist: its kind (`container`, `image`, `exec`) and what to do,
    /// starting with "; " (or empty).
    NotFound(&'static str, &'static str),
}

/// The daemon's message from an error body: its JSON `message`, else the raw text.
///
/// Never cut here: the body is already bounded by what the caller read (64 KiB for an error
/// body), and the message is cut only when an [`Error`] is written, after the runner has
/// redacted it, so that a secret the engine quotes (some engines and proxies echo the request
/// body, env and all) cannot survive in part at the cut.
pub(crate) fn engine_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        message: Option<String>,
    }
    let text = match serde_json::from_slice::<Body>(body) {
        Ok(Body { message: Some(m) }) => m,
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    let text = text.trim();
    if text.is_empty() {
        return "(no message)".to_string();
    }
    text.to_string()
}

/// Podman answers 500 where Docker answers 409 (a name in use, a container in the wrong state);
/// the `cause` field of its JSON body says which. Without this a persistent container's create
/// race would not be recognised as one on Podman.
const PODMAN_CONFLICT_CAUSES: [&str; 2] =
    ["that name is already in use", "container state improper"];

fn podman_conflict(status: u16, body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Body {
        cause: Option<String>,
    }
    status == 500
        && serde_json::from_slice::<Body>(body)
            .ok()
            .and_then(|b| b.cause)
            .is_some_and(|c| PODMAN_CONFLICT_CAUSES.contains(&c.as_str()))
}

/// The error for a non-2xx answer of `call` about `name`, given the endpoint's status table.
pub(crate) fn answer_error(
    call: &str,
    name: &str,
    status: u16,
    body: &[u8],
    table: &[(u16, Meaning)],
) -> Error {
    let message = engine_message(body);
    match table.iter().find(|(s, _)| *s == status) {
        Some((_, Meaning::NotFound(kind, hint))) => Error::NotFound {
            call: call.to_string(),
            kind,
            name: name.to_string(),
            hint: hint.to_string(),
        },
        None if status == 409 || podman_conflict(status, body) => Error::Conflict {
            call: call.to_string(),
            message,
        },
        None => Error::Api {
            call: call.to_string(),
            status,
            message,
        },
    }
}

/// Whether a 400 answer says the API version in the path is outside the daemon's range.
pub(crate) fn is_version_mismatch(status: u16, body: &[u8]) -> bool {
    if status != 400 {
        return false;
    }
    let message = engine_message(body).to_ascii_lowercase();
    message.contains("client version")
        && (message.contains("too new") || message.contains("too old"))
}

/// The error for a failed connect to `host`.
pub(crate) fn connect_error(host: &Host, e: io::Error, timeout: Duration) -> Error {
    let address = host.address();
    if matches!(host, Host::Ssh(_)) && e.kind() != io::ErrorKind::TimedOut {
        // Starting ssh failed: its own words say why (no client, no permission to run it).
        return Error::EngineUnreachable {
            address,
            reason: e.to_string(),
            source: Some(e),
        };
    }
    match e.kind() {
        io::ErrorKind::PermissionDenied => Error::PermissionDenied { path: address },
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout {
            phase: TimeoutPhase::Connect { address },
            after: timeout,
        },
        io::ErrorKind::NotFound => Error::EngineUnreachable {
            address,
            reason: "no such socket".to_string(),
            source: Some(e),
        },
        io::ErrorKind::ConnectionRefused => Error::EngineUnreachable {
            address,
            reason: "connection refused".to_string(),
            source: Some(e),
        },
        _ => Error::EngineUnreachable {
            address,
            reason: e.to_string(),
            source: Some(e),
        },
    }
}

/// The error for a failure below HTTP during `call`, which had `budget` to finish.
pub(crate) fn wire_error(call: &str, host: &Host, e: WireError, budget: Option<Duration>) -> Error {
    match e {
        WireError::Io(e) if e.kind() == io::ErrorKind::TimedOut => Error::Timeout {
            phase: TimeoutPhase::Call {
                call: call.to_string(),
            },
            after: budget.unwrap_or_default(),
        },
        WireError::Io(e) => Error::EngineUnreachable {
            address: host.address(),
            reason: format!("{call}: connection lost: {e}"),
            source: Some(e),
        },
        WireError::Closed { any_bytes: false } => Error::Protocol {
            call: call.to_string(),
            detail: "the engine closed the connection without answering".to_string(),
        },
        WireError::Closed { any_bytes: true } => Error::Protocol {
            call: call.to_string(),
            detail: "the engine closed the connection in the middle of its answer".to_string(),
        },
        WireError::Malformed(detail) => Error::Protocol {
            call: call.to_string(),
            detail,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTAINER: &[(u16, Meaning)] = &[(
        404,
        Meaning::NotFound("container", "; list them with 'docker ps -a'"),
    )];

    #[test]
    fn status_table_decides_the_variant() {
        let e = answer_error(
            "GET /containers/x/json",
            "x",
            404,
            br#"{"message":"No such container: x"}"#,
            CONTAINER,
        );
        assert_eq!(
            e.to_string(),
            "GET /containers/x/json: no such container x; list them with 'docker ps -a'"
        );
        let e = answer_error(
            "POST /containers/create",
            "web",
            409,
            br#"{"message":"Conflict. The container name \"/web\" is already in use"}"#,
            &[],
        );
        assert_eq!(e.code(), "CONFLICT");
        assert!(e.to_string().contains("\"/web\" is already in use"), "{e}");
        let e = answer_error(
            "POST /containers/x/start",
            "x",
            500,
            b"plain text, not json\n",
            CONTAINER,
        );
        assert_eq!(
            e.to_string(),
            "POST /containers/x/start: the engine answered 500: plain text, not json"
        );
        // Podman's 500s for a name in use or a container in the wrong state are conflicts; its
        // other 500s are not.
        let e = answer_error(
            "POST /containers/create",
            "web",
            500,
            br#"{"cause":"that name is already in use","message":"the container name web is already in use by 508e","response":500}"#,
            &[],
        );
        assert_eq!(e.code(), "CONFLICT", "{e}");
        let e = answer_error(
            "POST /containers/x/kill",
            "x",
            500,
            br#"{"cause":"container state improper","message":"can only kill running containers","response":500}"#,
            CONTAINER,
        );
        assert_eq!(e.code(), "CONFLICT", "{e}");
        let e = answer_error(
            "POST /containers/x/start",
            "x",
            500,
            br#"{"cause":"no such file or directory","message":"crun: sleep: no such file","response":500}"#,
            CONTAINER,
        );
        assert_eq!(e.code(), "ENGINE_ERROR", "{e}");
        // Without a table entry a 404 is only an API error: it may mean a missing route.
        let e = answer_error("GET /nowhere", "", 404, b"", &[]);
        assert_eq!(
            e.to_string(),
            "GET /nowhere: the engine answered 404: (no message)"
        );
    }

    #[test]
    fn long_messages_are_kept_whole_and_cut_on_a_char_boundary_when_shown() {
        let body = "é".repeat(3000);
        let m = engine_message(body.as_bytes());
        assert_eq!(m, body);
        let shown = answer_error("GET /x", "", 500, body.as_bytes(), &[]).to_string();
        assert!(shown.ends_with("é...") && shown.len() < 2100, "{shown}");
    }

    /// An engine (or proxy) that quotes the request body, env and all, in a long error: the
    /// message is cut only when shown, after the runner redacted it, so a secret straddling the
    /// cut leaves no fragment, at every offset. (Cut here, before redaction, the secret's start
    /// survived in front of the `...`.)
    #[test]
    fn a_secret_across_the_cut_of_a_long_message_is_redacted_whole() {
        let secret = "sk-ant-api03-secret-value";
        let redactor = crate::Redactor::new([secret]);
        for offset in 0..=secret.len() {
            // Filler and tail share no byte with the secret: any secret byte left is a fragment.
            let message = format!("{}{secret}.....", "x".repeat(2048 - offset));
            let body = serde_json::json!({ "message": message }).to_string();
            let shown = answer_error("POST /containers/c/exec", "", 500, body.as_bytes(), &[])
                .redact(&redactor)
                .to_string();
            let text = shown.split_once(": the engine answered 500: ").unwrap().1;
            // The cut may fall inside the marker ("[REDA..."), never inside the secret.
            assert!(
                text.bytes()
                    .all(|b| b"x.".contains(&b) || crate::REDACTED.as_bytes().contains(&b)),
                "offset {offset}: {shown}"
            );
            assert!(text.len() <= 2048 + 3, "{}", text.len());
        }
    }

    #[test]
    fn version_mismatch_is_recognised_in_json_and_text() {
        assert!(is_version_mismatch(400, br#"{"message":"client version 1.99 is too new. Maximum supported API version is 1.41"}"#));
        assert!(is_version_mismatch(400, b"client version 1.11 is too old. Minimum supported API version is 1.12, please upgrade"));
        assert!(!is_version_mismatch(
            400,
            br#"{"message":"invalid reference format"}"#
        ));
        assert!(!is_version_mismatch(500, b"client version 1.99 is too new"));
    }

    #[test]
    fn errno_mapping_names_the_socket() {
        let host = Host::Unix("/run/x.sock".into());
        let t = Duration::from_secs(5);
        let e = connect_error(&host, io::Error::from_raw_os_error(13), t);
        assert_eq!(e.code(), "PERMISSION_DENIED");
        assert!(e.to_string().contains("/run/x.sock"), "{e}");
        let e = connect_error(&host, io::Error::from_raw_os_error(2), t);
        assert_eq!(e.code(), "ENGINE_UNREACHABLE");
        assert!(
            e.to_string()
                .starts_with("cannot reach the Docker engine at /run/x.sock: no such socket;"),
            "{e}"
        );
        let e = connect_error(&host, io::Error::from_raw_os_error(111), t);
        assert!(e.to_string().contains(": connection refused;"), "{e}");
        assert!(
            std::error::Error::source(&e).is_some(),
            "the io error stays behind source()"
        );
        let e = connect_error(
            &Host::Tcp("10.0.0.1:2375".into()),
            io::Error::from(io::ErrorKind::TimedOut),
            t,
        );
        assert_eq!(
            e.to_string(),
            "connect to the engine at 10.0.0.1:2375 timed out after 5s"
        );
    }

    #[test]
    fn wire_errors_name_the_call() {
        let host = Host::Unix("/s".into());
        let e = wire_error(
            "GET /info",
            &host,
            WireError::Io(io::ErrorKind::TimedOut.into()),
            Some(Duration::from_secs(2)),
        );
        assert_eq!(e.to_string(), "GET /info timed out after 2s");
        let e = wire_error(
            "GET /info",
            &host,
            WireError::Malformed("bad chunk size line \"zz\"".into()),
            None,
        );
        assert_eq!(
            e.to_string(),
            "GET /info: protocol error: bad chunk size line \"zz\""
        );
        let e = wire_error(
            "GET /info",
            &host,
            WireError::Closed { any_bytes: true },
            None,
        );
        assert_eq!(e.code(), "PROTOCOL");
    }
}

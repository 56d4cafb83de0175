//! The one error type of the core.
//!
//! Each variant is something a caller can act on: start an engine, fix a permission, build an
//! image, rename a container, correct a config field. Messages are lower-case, without a final full
//! stop, say what failed and what to do, and never contain a secret: every error the runner or an
//! agent job hands out has passed through [`Error::redact`] with the job's secrets (an engine or a
//! proxy may quote a request body, env and all, in its error message). Errors of our dependencies
//! stay behind [`std::error::Error::source`], never in the public shape.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::time::Duration;

use crate::redact::Redactor;

/// How much of a text from outside (the engine's words, a protocol detail) an error's message
/// shows: enough for any real message, and a bound on what a misbehaving engine can put into
/// one. The field keeps the whole text (bounded by what the engine client reads), and the cut is
/// made only here, when the message is written: so [`Error::redact`] always sees a secret whole,
/// and a secret straddling the cut cannot survive in part.
pub(crate) const SHOWN_LIMIT: usize = 2048;

/// The first [`SHOWN_LIMIT`] bytes of `text`, cut back to a character boundary, with `...` when
/// cut.
fn shown(text: &str) -> Cow<'_, str> {
    if text.len() <= SHOWN_LIMIT {
        return Cow::Borrowed(text);
    }
    let mut end = SHOWN_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}...", &text[..end]))
}

/// What [`Error::Timeout`] was waiting for. Its `Display` is the start of the error's message
/// (`connect to the engine at /var/run/docker.sock`), so a caller can match on the phase instead
/// of on the text; the text stays what it was when the phase was a string, as herdctl matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutPhase {
    /// Opening a connection to the engine (the engine's `connect_timeout`).
    Connect {
        /// The socket path or `host:port`.
        address: String,
    },
    /// One API call, from sending it to its answer's last byte (the engine's `call_timeout`, or
    /// the call's own budget).
    Call {
        /// The call, like `GET /info` or `wait for container abc`.
        call: String,
    },
    /// The next byte of a running exec's output (its idle timeout).
    ExecOutput {
        /// The exec's id.
        exec: String,
    },
    /// The exit code of an exec whose output ended: the engine may know it a moment later.
    ExecExitCode {
        /// The exec's id.
        exec: String,
    },
    /// An agent's answer to a control request of a live session.
    SessionAnswer {
        /// The control request, like `interrupt` or `set_model`.
        request: String,
    },
    /// Warming an agent's pool of idle containers up to its target.
    PoolWarm {
        /// The agent's name.
        agent: String,
    },
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeoutPhase::Connect { address } => write!(f, "connect to the engine at {address}"),
            TimeoutPhase::Call { call } => f.write_str(call),
            TimeoutPhase::ExecOutput { exec } => write!(f, "exec {exec}: waiting for output"),
            TimeoutPhase::ExecExitCode { exec } => {
                write!(f, "exec {exec}: waiting for its exit code")
            }
            TimeoutPhase::SessionAnswer { request } => {
                write!(f, "session {request}: waiting for the agent's answer")
            }
            TimeoutPhase::PoolWarm { agent } => write!(f, "warming the pool of agent {agent}"),
        }
    }
}

impl TimeoutPhase {
    /// The phase's text, for [`Error::redact`].
    fn text_mut(&mut self) -> &mut String {
        match self {
            TimeoutPhase::Connect { address } => address,
            TimeoutPhase::Call { call } => call,
            TimeoutPhase::ExecOutput { exec } | TimeoutPhase::ExecExitCode { exec } => exec,
            TimeoutPhase::SessionAnswer { request } => request,
            TimeoutPhase::PoolWarm { agent } => agent,
        }
    }
}

/// A shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No engine answers at the address: it is not running, or the address is wrong.
    #[error("cannot reach the Docker engine at {address}: {reason}; start it (dockerd) or point DOCKER_HOST at it; 'herdctl-container doctor' checks the setup")]
    EngineUnreachable {
        /// The socket path or `host:port` tried.
        address: String,
        /// What the operating system said.
        reason: String,
        /// The underlying I/O error.
        #[source]
        source: Option<io::Error>,
    },

    /// The socket exists but this process may not open it.
    #[error("permission denied on the Docker socket {path}; run as a user in the 'docker' group or point DOCKER_HOST at a socket you may use")]
    PermissionDenied {
        /// The socket path.
        path: String,
    },

    /// The engine and this library share no API version.
    #[error("the engine speaks API {engine_min}..={engine_max} and this library {client_min}..={client_max}; upgrade whichever is older")]
    UnsupportedApiVersion {
        /// The oldest version the engine accepts.
        engine_min: String,
        /// The newest version the engine speaks.
        engine_max: String,
        /// The oldest version this library speaks.
        client_min: String,
        /// The newest version this library speaks.
        client_max: String,
    },

    /// An image, container or exec does not exist.
    #[error("{call}: no such {kind} {name}{hint}")]
    NotFound {
        /// The API call, like `GET /containers/{id}/json`.
        call: String,
        /// `image`, `container` or `exec`.
        kind: &'static str,
        /// The name or id asked for.
        name: String,
        /// What to do about it, starting with "; ", or empty.
        hint: String,
    },

    /// The engine refused because of the current state: a name in use (409), a container that is
    /// not running, an image in use.
    #[error("{call}: conflict: {}", shown(.message))]
    Conflict {
        /// The API call.
        call: String,
        /// The engine's own words (the message shows the first 2 KiB).
        message: String,
    },

    /// Any other error answer from the engine.
    #[error("{call}: the engine answered {status}: {}", shown(.message))]
    Api {
        /// The API call.
        call: String,
        /// The HTTP status.
        status: u16,
        /// The engine's own words (its JSON `message`, or the raw body; the message shows the
        /// first 2 KiB).
        message: String,
    },

    /// A call or a phase of a job did not finish in time.
    #[error("{phase} timed out after {after:?}")]
    Timeout {
        /// What was being waited for: connecting, a call like `POST /containers/create`, an
        /// exec's output.
        phase: TimeoutPhase,
        /// How long was waited.
        after: Duration,
    },

    /// The operation was cancelled by the caller.
    #[error("{0} was cancelled")]
    Cancelled(String),

    /// The engine (or something posing as it) answered with bytes that do not follow the protocol.
    #[error("{call}: protocol error: {}", shown(.detail))]
    Protocol {
        /// The API call.
        call: String,
        /// What was wrong with the bytes (the message shows the first 2 KiB).
        detail: String,
    },

    /// A config is invalid: what a fleet file, a config file or an environment variable says
    /// (the docker block, the agent, `host_config`, `DOCKER_HOST`). Names the field, the value
    /// (never a secret) and what is accepted.
    #[error("invalid {field}: {problem}")]
    InvalidConfig {
        /// The config field, in herdctl's YAML spelling (`docker.memory`, `docker.volumes[1]`).
        field: String,
        /// What is wrong and what is accepted.
        problem: String,
    },

    /// An argument of a call is invalid: the prompt, an execute, session or runner option, a
    /// CLI flag, a value that is no valid argument. Names the argument, the value (never a
    /// secret) and what is accepted.
    #[error("invalid {field}: {problem}")]
    InvalidArgument {
        /// The argument, in the caller's spelling (`prompt`, `options.jobTimeoutMs`, `--keep`).
        field: String,
        /// What is wrong and what is accepted.
        problem: String,
    },

    /// The engine created a container without a security setting that was asked for (a
    /// capability drop, no-new-privileges, the user); no job runs in such a container.
    #[error("container {container}: the engine did not apply {what}; refusing to run a job in it")]
    NotApplied {
        /// The container's name.
        container: String,
        /// The settings that did not take.
        what: String,
    },

    /// The container stopped before the job could run in it: the image's entrypoint failed, or
    /// it has no `sleep` to keep the container up.
    #[error("container {container} stopped right after it started (exit {exit_code}){output}; check the image's entrypoint and that it has `sleep`")]
    ContainerExited {
        /// The container's name.
        container: String,
        /// Its exit code.
        exit_code: i64,
        /// The end of its output, starting with ": ", or empty.
        output: String,
    },

    /// A job printed a line longer than the configured maximum; it was stopped instead of letting
    /// memory grow without bound.
    #[error("the job printed a line longer than {limit} bytes; raise the maximum line size if that is expected")]
    LineTooLong {
        /// The maximum line size in bytes.
        limit: usize,
    },

    /// A cancelled job's processes could not be confirmed gone: the kill inside the container
    /// failed (the engine went away, the image has no `sh`, or a process outlived SIGKILL).
    #[error("cancel job {job}: {detail}")]
    KillFailed {
        /// The job's id.
        job: String,
        /// What went wrong, with the kill's own words.
        detail: String,
    },

    /// A request of a live agent session ([`crate::herdctl::session`]) failed: the agent answered it with
    /// an error, or the session ended before it answered.
    #[error("session {request}: {}", shown(.detail))]
    Session {
        /// The request: `send`, `interrupt`, `list_commands`, `set_model` or `stop_task`.
        request: String,
        /// What happened, in the agent's own words when it answered (the message shows the first
        /// 2 KiB).
        detail: String,
        /// The session has ended (closed, or its agent or container stopped): no later request
        /// can succeed either.
        ended: bool,
    },

    /// A local file operation failed (credentials file, session directory, workspace).
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// A stable, machine-readable code for the variant, used by the CLI's exit messages and as the
    /// `code` property of JS errors.
    pub fn code(&self) -> &'static str {
        match self {
            Error::EngineUnreachable { .. } => "ENGINE_UNREACHABLE",
            Error::PermissionDenied { .. } => "PERMISSION_DENIED",
            Error::UnsupportedApiVersion { .. } => "API_VERSION",
            Error::NotFound { .. } => "NOT_FOUND",
            Error::Conflict { .. } => "CONFLICT",
            Error::Api { .. } => "ENGINE_ERROR",
            Error::Timeout { .. } => "TIMEOUT",
            Error::Cancelled(_) => "CANCELLED",
            Error::Protocol { .. } => "PROTOCOL",
            Error::InvalidConfig { .. } => "INVALID_CONFIG",
            Error::InvalidArgument { .. } => "INVALID_ARGUMENT",
            Error::NotApplied { .. } => "NOT_APPLIED",
            Error::LineTooLong { .. } => "LINE_TOO_LONG",
            Error::ContainerExited { .. } => "CONTAINER_EXITED",
            Error::KillFailed { .. } => "KILL_FAILED",
            Error::Session { ended: true, .. } => "SESSION_ENDED",
            Error::Session { ended: false, .. } => "AGENT_ERROR",
            Error::Io { .. } => "IO",
        }
    }

    /// This error with every secret `redactor` knows replaced, in every text it carries (its
    /// source's included), so in its message, its `Debug` and its source chain.
    ///
    /// The runner and agent jobs pass every error they hand out through this with the job's
    /// secrets. The match names every variant, so a new one cannot be added without deciding
    /// how its text is redacted.
    pub fn redact(mut self, redactor: &Redactor) -> Error {
        if redactor.is_empty() {
            return self;
        }
        let (texts, io) = self.texts_mut();
        for text in texts {
            if let Cow::Owned(o) = redactor.redact(text) {
                *text = o;
            }
        }
        // An io::Error's text is the OS's or ours; should it hold a secret, a plain error of the
        // same kind with the redacted text takes its place.
        if let Some(e) = io {
            if let Cow::Owned(o) = redactor.redact(&e.to_string()) {
                *e = io::Error::new(e.kind(), o);
            }
        }
        self
    }

    /// Every text this error carries, and its I/O source if it has one. The match names every
    /// variant, so a new one cannot be added without deciding which of its fields are text.
    fn texts_mut(&mut self) -> (Vec<&mut String>, Option<&mut io::Error>) {
        match self {
            Error::EngineUnreachable {
                address,
                reason,
                source,
            } => (vec![address, reason], source.as_mut()),
            Error::PermissionDenied { path } => (vec![path], None),
            Error::UnsupportedApiVersion {
                engine_min,
                engine_max,
                client_min,
                client_max,
            } => (vec![engine_min, engine_max, client_min, client_max], None),
            Error::NotFound {
                call, name, hint, ..
            } => (vec![call, name, hint], None),
            Error::Conflict { call, message } | Error::Api { call, message, .. } => {
                (vec![call, message], None)
            }
            Error::Timeout { phase, .. } => (vec![phase.text_mut()], None),
            Error::Cancelled(what) => (vec![what], None),
            Error::Protocol { call, detail } => (vec![call, detail], None),
            Error::InvalidConfig { field, problem } | Error::InvalidArgument { field, problem } => {
                (vec![field, problem], None)
            }
            Error::NotApplied { container, what } => (vec![container, what], None),
            Error::ContainerExited {
                container, output, ..
            } => (vec![container, output], None),
            Error::LineTooLong { .. } => (Vec::new(), None),
            Error::KillFailed { job, detail } => (vec![job, detail], None),
            Error::Session {
                request, detail, ..
            } => (vec![request, detail], None),
            Error::Io { context, source } => (vec![context], Some(source)),
        }
    }

    /// Shorthand for [`Error::InvalidConfig`].
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Error {
        Error::InvalidConfig {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub fn argument(field: impl Into<String>, problem: impl Into<String>) -> Error {
        Error::InvalidArgument {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// This error as the caller's argument when it is an [`Error::InvalidConfig`]: for a
    /// checker written for config fields that also checks a value a caller passed.
    pub(crate) fn into_argument(self) -> Error {
        match self {
            Error::InvalidConfig { field, problem } => Error::InvalidArgument { field, problem },
            other => other,
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// A string for an error message: JSON-quoted (so spaces and control characters show) and cut to
/// 80 characters. Never call it with a secret.
pub(crate) fn quote(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    let mut q = serde_json::Value::String(cut).to_string();
    if s.chars().count() > 80 {
        q.push_str("...");
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stays_small() {
        // Results of this type travel through every call; keep them cheap to move.
        assert!(
            std::mem::size_of::<Error>() <= 112,
            "{}",
            std::mem::size_of::<Error>()
        );
    }

    #[test]
    fn invalid_config_names_field() {
        let e = Error::invalid(
            "docker.memory",
            "\"1x\" is not a size; expected like \"2g\"",
        );
        assert_eq!(
            e.to_string(),
            "invalid docker.memory: \"1x\" is not a size; expected like \"2g\""
        );
        assert_eq!(e.code(), "INVALID_CONFIG");
    }

    #[test]
    fn timeout_messages_name_their_phase() {
        // The text each phase had when it was a string: herdctl and the tests match on it.
        let cases = [
            (
                TimeoutPhase::Connect {
                    address: "10.0.0.1:2375".into(),
                },
                "connect to the engine at 10.0.0.1:2375 timed out after 5s",
            ),
            (
                TimeoutPhase::Call {
                    call: "GET /info".into(),
                },
                "GET /info timed out after 5s",
            ),
            (
                TimeoutPhase::ExecOutput {
                    exec: "ab12".into(),
                },
                "exec ab12: waiting for output timed out after 5s",
            ),
            (
                TimeoutPhase::ExecExitCode {
                    exec: "ab12".into(),
                },
                "exec ab12: waiting for its exit code timed out after 5s",
            ),
            (
                TimeoutPhase::SessionAnswer {
                    request: "interrupt".into(),
                },
                "session interrupt: waiting for the agent's answer timed out after 5s",
            ),
            (
                TimeoutPhase::PoolWarm {
                    agent: "coder".into(),
                },
                "warming the pool of agent coder timed out after 5s",
            ),
        ];
        for (phase, message) in cases {
            let e = Error::Timeout {
                phase,
                after: Duration::from_secs(5),
            };
            assert_eq!(e.to_string(), message);
            assert_eq!(e.code(), "TIMEOUT");
        }
    }

    #[test]
    fn invalid_argument_names_field_in_the_same_words() {
        let e = Error::argument(
            "prompt",
            "missing or not a string; expected the prompt text",
        );
        assert_eq!(
            e.to_string(),
            "invalid prompt: missing or not a string; expected the prompt text"
        );
        assert_eq!(e.code(), "INVALID_ARGUMENT");
        let e = Error::invalid("runtime", "x").into_argument();
        assert_eq!(
            (e.code(), e.to_string().as_str()),
            ("INVALID_ARGUMENT", "invalid runtime: x")
        );
    }

    const SECRET: &str = "sk-ant-api03-secret-value";

    /// Every variant, with the secret in each of its texts.
    fn every_variant() -> Vec<Error> {
        let s = || format!("before {SECRET} after");
        let io_err = || io::Error::other(s());
        vec![
            Error::EngineUnreachable {
                address: s(),
                reason: s(),
                source: Some(io_err()),
            },
            Error::PermissionDenied { path: s() },
            Error::UnsupportedApiVersion {
                engine_min: s(),
                engine_max: s(),
                client_min: s(),
                client_max: s(),
            },
            Error::NotFound {
                call: s(),
                kind: "container",
                name: s(),
                hint: s(),
            },
            Error::Conflict {
                call: s(),
                message: s(),
            },
            Error::Api {
                call: s(),
                status: 500,
                message: s(),
            },
            Error::Timeout {
                phase: TimeoutPhase::Connect { address: s() },
                after: Duration::from_secs(1),
            },
            Error::Timeout {
                phase: TimeoutPhase::Call { call: s() },
                after: Duration::from_secs(1),
            },
            Error::Timeout {
                phase: TimeoutPhase::ExecOutput { exec: s() },
                after: Duration::from_secs(1),
            },
            Error::Timeout {
                phase: TimeoutPhase::ExecExitCode { exec: s() },
                after: Duration::from_secs(1),
            },
            Error::Timeout {
                phase: TimeoutPhase::SessionAnswer { request: s() },
                after: Duration::from_secs(1),
            },
            Error::Timeout {
                phase: TimeoutPhase::PoolWarm { agent: s() },
                after: Duration::from_secs(1),
            },
            Error::Cancelled(s()),
            Error::Protocol {
                call: s(),
                detail: s(),
            },
            Error::invalid(s(), s()),
            Error::argument(s(), s()),
            Error::NotApplied {
                container: s(),
                what: s(),
            },
            Error::ContainerExited {
                container: s(),
                exit_code: 1,
                output: s(),
            },
            Error::KillFailed {
                job: s(),
                detail: s(),
            },
            Error::Session {
                request: s(),
                detail: s(),
                ended: true,
            },
            Error::io(s(), io_err()),
        ]
    }

    /// The message, the Debug and the whole source chain.
    fn all_text(e: &Error) -> String {
        let mut text = format!("{e} {e:?}");
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(&format!(" {s} {s:?}"));
            source = s.source();
        }
        text
    }

    #[test]
    fn redact_reaches_every_text_of_every_variant() {
        let redactor = Redactor::new([SECRET]);
        for e in every_variant() {
            let code = e.code();
            assert!(all_text(&e).contains(SECRET), "{e:?}");
            let e = e.redact(&redactor);
            assert_eq!(e.code(), code);
            let text = all_text(&e);
            assert!(!text.contains(SECRET), "{text}");
            assert!(text.contains("before [REDACTED] after"), "{text}");
        }
    }
}

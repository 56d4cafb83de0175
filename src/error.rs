//! The one error type of the core.
//!
//! Each variant is something a caller can act on: start an engine, fix a permission, build an
//! image, rename a container, correct a config field. Messages are lower-case, without a final full
//! stop, say what failed and what to do, and never contain a secret (text from the engine or a job
//! passes through the redactor before it lands here). Errors of our dependencies stay behind
//! [`std::error::Error::source`], never in the public shape.

use std::io;
use std::time::Duration;

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
    #[error("{call}: conflict: {message}")]
    Conflict {
        /// The API call.
        call: String,
        /// The engine's own words.
        message: String,
    },

    /// Any other error answer from the engine.
    #[error("{call}: the engine answered {status}: {message}")]
    Api {
        /// The API call.
        call: String,
        /// The HTTP status.
        status: u16,
        /// The engine's own words (its JSON `message`, or the raw body).
        message: String,
    },

    /// A call or a phase of a job did not finish in time.
    #[error("{phase} timed out after {after:?}")]
    Timeout {
        /// What was being waited for, like `POST /containers/create` or `exec start`.
        phase: String,
        /// How long was waited.
        after: Duration,
    },

    /// The operation was cancelled by the caller.
    #[error("{0} was cancelled")]
    Cancelled(String),

    /// The engine (or something posing as it) answered with bytes that do not follow the protocol.
    #[error("{call}: protocol error: {detail}")]
    Protocol {
        /// The API call.
        call: String,
        /// What was wrong with the bytes.
        detail: String,
    },

    /// An input is invalid. Names the field, the value (never a secret) and what is accepted.
    #[error("invalid {field}: {problem}")]
    InvalidConfig {
        /// The config field, in herdctl's YAML spelling (`docker.memory`, `docker.volumes[1]`).
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
    /// failed (the engine went away, or the image has no `/bin/sh`).
    #[error("cancel job {job}: {detail}")]
    KillFailed {
        /// The job's id.
        job: String,
        /// What went wrong, with the kill's own words.
        detail: String,
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
            Error::NotApplied { .. } => "NOT_APPLIED",
            Error::LineTooLong { .. } => "LINE_TOO_LONG",
            Error::ContainerExited { .. } => "CONTAINER_EXITED",
            Error::KillFailed { .. } => "KILL_FAILED",
            Error::Io { .. } => "IO",
        }
    }

    /// Shorthand for [`Error::InvalidConfig`].
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Error {
        Error::InvalidConfig {
            field: field.into(),
            problem: problem.into(),
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
}

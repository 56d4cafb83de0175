//! A debug log of engine calls: one event per call (method, path, status, milliseconds), handed
//! to an observer set in [`super::EngineOptions::on_call`].
//!
//! Why not the `log` facade: a Node process runs several runners, each with its own `logger`, and
//! a global logger cannot tell their calls apart; a per-engine observer can. The event carries no
//! header and no body (where a request's secrets would travel), and the path loses its query; the
//! printers below still pass the line through a redactor, since an error's text is the engine's.

use std::sync::Arc;
use std::time::Duration;

use crate::redact::{is_secret_name, Redactor};
use crate::{Error, Result};

/// The environment variable that turns the debug log on: `HERDCTL_CONTAINER_LOG=debug`.
pub const LOG_ENV: &str = "HERDCTL_CONTAINER_LOG";

/// One engine call, as a debug log sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallEvent {
    /// `GET`, `POST`, ...
    pub method: &'static str,
    /// The path as sent, with its API version (`/v1.41/containers/create`), without the query.
    pub path: String,
    /// The answer's status (`101` for an exec's upgrade); `None` when no answer came.
    pub status: Option<u16>,
    /// From the call's start until the answer's head (a streamed body, like a pull's progress or
    /// an exec's output, is not included).
    pub elapsed: Duration,
    /// Why no answer came (connect failed, timed out, ...), when none did.
    pub error: Option<String>,
}

impl CallEvent {
    /// `POST /v1.41/containers/create -> 201 (12 ms)`, or `... -> failed: <why> (5000 ms)`.
    pub fn line(&self) -> String {
        let ms = self.elapsed.as_millis();
        match (self.status, &self.error) {
            (Some(status), _) => format!("{} {} -> {status} ({ms} ms)", self.method, self.path),
            (None, Some(e)) => format!("{} {} -> failed: {e} ({ms} ms)", self.method, self.path),
            (None, None) => format!("{} {} -> no answer ({ms} ms)", self.method, self.path),
        }
    }
}

/// Receives one [`CallEvent`] per engine call, on the thread that made the call: keep it quick.
pub type CallObserver = Arc<dyn Fn(&CallEvent) + Send + Sync>;

/// How much the library logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    /// Errors and warnings only, where they are reported anyway. The default.
    #[default]
    Info,
    /// Also one line per engine call.
    Debug,
}

impl std::str::FromStr for LogLevel {
    type Err = Error;

    /// `info` or `debug`, in any case; `warn`/`error` mean `info`, `trace` means `debug`.
    fn from_str(s: &str) -> Result<LogLevel> {
        match s.to_ascii_lowercase().as_str() {
            "" | "info" | "warn" | "error" | "off" => Ok(LogLevel::Info),
            "debug" | "trace" => Ok(LogLevel::Debug),
            _ => Err(Error::invalid(
                "log level",
                format!("{s:?} is not a log level; expected info or debug"),
            )),
        }
    }
}

/// The level [`LOG_ENV`] asks for; unset is [`LogLevel::Info`].
pub fn log_level_from_env() -> Result<LogLevel> {
    match std::env::var(LOG_ENV) {
        Ok(v) => v
            .parse()
            .map_err(|_| Error::invalid(LOG_ENV, format!("{v:?} is not info or debug"))),
        Err(std::env::VarError::NotPresent) => Ok(LogLevel::Info),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::invalid(LOG_ENV, "not valid UTF-8")),
    }
}

/// An observer that prints each call as `<prefix>engine: <line>` to stderr, redacted with
/// `redactor`.
pub fn stderr_logger(prefix: &str, redactor: Redactor) -> CallObserver {
    let prefix = prefix.to_string();
    Arc::new(move |event: &CallEvent| {
        eprintln!("{prefix}engine: {}", redactor.redact(&event.line()));
    })
}

/// A redactor of this process's secret-looking environment values (`*TOKEN*`, `*KEY*`, ...),
/// which include the credentials a job would get.
pub(crate) fn process_env_redactor() -> Redactor {
    Redactor::new(
        std::env::vars()
            .filter(|(k, _)| is_secret_name(k))
            .map(|(_, v)| v),
    )
}

/// The path of a request target, as a log shows it: without its query.
pub(crate) fn log_path(target: &str) -> String {
    target.split('?').next().unwrap_or(target).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_method_path_status_and_milliseconds() {
        let mut e = CallEvent {
            method: "POST",
            path: log_path("/v1.41/containers/create?name=x"),
            status: Some(201),
            elapsed: Duration::from_micros(12_400),
            error: None,
        };
        assert_eq!(e.line(), "POST /v1.41/containers/create -> 201 (12 ms)");
        e.status = None;
        e.error = Some("connection refused".into());
        assert_eq!(
            e.line(),
            "POST /v1.41/containers/create -> failed: connection refused (12 ms)"
        );
    }

    #[test]
    fn levels_parse_in_any_case() {
        assert_eq!("DEBUG".parse::<LogLevel>().unwrap(), LogLevel::Debug);
        assert_eq!("info".parse::<LogLevel>().unwrap(), LogLevel::Info);
        let e = "verbose".parse::<LogLevel>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid log level: \"verbose\" is not a log level; expected info or debug"
        );
    }
}

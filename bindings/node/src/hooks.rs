//! The runner's JS callbacks: `logger` (one event per engine call, the debug log) and
//! `onPullProgress` (one event per line of an image pull). Both are called from the core's
//! threads through weak threadsafe functions: they never keep the process alive, and never run
//! JS off the JS thread. `npm/index.js` wraps the user's functions so that a throw cannot reach
//! here (it would end the process).

use std::sync::Arc;

use herdctl_container::engine::{CallEvent, CallObserver, PullProgress};
use herdctl_container::{is_secret_name, PullProgressFn, Redactor};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;

/// One engine call, as the `logger` option receives it.
#[napi(object)]
pub struct EngineCallEvent {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path as sent, with the API version and without the query.
    pub path: String,
    /// The answer's status; absent when no answer came.
    pub status: Option<u32>,
    /// Milliseconds from the call's start until the answer's head.
    pub ms: f64,
    /// Why no answer came, when none did (secrets redacted).
    pub error: Option<String>,
    /// The whole event as one line: `POST /v1.41/containers/create -> 201 (12 ms)`.
    pub line: String,
}

/// One line of an image pull's progress, as `onPullProgress` receives it.
#[napi(object)]
pub struct PullProgressEvent {
    /// Like `Pulling fs layer`, `Downloading`, `Pull complete`.
    pub status: String,
    /// The layer (or tag) the line is about.
    pub id: Option<String>,
    /// The engine's progress bar text.
    pub progress: Option<String>,
    /// Bytes done, when known.
    pub current: Option<f64>,
    /// Bytes in all, when known.
    pub total: Option<f64>,
}

/// A JS function called with one value, from any thread, without keeping the process alive.
pub type Callback<T> = ThreadsafeFunction<T, (), T, Status, false, true>;

/// The engine observer that hands each call to `logger`, redacted of this process's
/// secret-looking env values and of the config's.
pub(crate) fn call_observer(
    logger: Callback<EngineCallEvent>,
    config_secrets: &[String],
) -> CallObserver {
    let redactor = Redactor::new(
        std::env::vars()
            .filter(|(k, _)| is_secret_name(k))
            .map(|(_, v)| v)
            .chain(config_secrets.iter().cloned()),
    );
    let logger = Arc::new(logger);
    Arc::new(move |e: &CallEvent| {
        let event = EngineCallEvent {
            method: e.method.to_string(),
            path: redactor.redact(&e.path).into_owned(),
            status: e.status.map(u32::from),
            ms: e.elapsed.as_micros() as f64 / 1000.0,
            error: e.error.as_deref().map(|m| redactor.redact(m).into_owned()),
            line: redactor.redact(&e.line()).into_owned(),
        };
        // Non-blocking on an unbounded queue: an engine call never waits for JS.
        let _ = logger.call(event, ThreadsafeFunctionCallMode::NonBlocking);
    })
}

/// The pull progress sink that hands each line to `onPullProgress`.
pub(crate) fn pull_progress(callback: Callback<PullProgressEvent>) -> PullProgressFn {
    let callback = Arc::new(callback);
    Arc::new(move |p: &PullProgress| {
        let event = PullProgressEvent {
            status: p.status.clone(),
            id: p.id.clone(),
            progress: p.progress.clone(),
            current: p.current.map(|c| c as f64),
            total: p.total.map(|t| t as f64),
        };
        let _ = callback.call(event, ThreadsafeFunctionCallMode::NonBlocking);
    })
}

//! Where a core error becomes something JS sees: the one mapping from
//! [`herdctl_container::Error`] to a JS `Error` whose `code` is [`herdctl_container::Error::code`].
//!
//! Three roads lead here: a stream's producer fails (a [`StreamError`] that `next()` rejects
//! with), a blocking task fails ([`Blocking`] rejects its promise), a synchronous call fails on
//! the JS thread (`throw`). A panic on any of them becomes an `INTERNAL` error, never a crash.
//! Each road takes the secrets to redact the error with (the core redacts a job's errors with
//! the job's secrets; this is what the caller knows besides, applied to every error alike).

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use herdctl_container::Redactor;

use napi::bindgen_prelude::{JsObjectValue, JsValue, Object, ToNapiValue, TypeName};
use napi::{Env, Error, Result, Task};

use crate::buffer::StreamError;

/// Makes the redactor an error is redacted with; called only when there is an error (it reads
/// the environment and the credentials file).
pub(crate) type Secrets = Arc<dyn Fn() -> Redactor + Send + Sync>;

/// What this process holds secret (its credential variables, the credentials file's tokens) and
/// the values of `env`'s entries whose names look secret (a docker config's env).
pub(crate) fn secrets(env: BTreeMap<String, String>) -> Secrets {
    Arc::new(move || Redactor::from_process_env().with_env(&env))
}

/// [`secrets`] of a docker config as JS gave it (JSON, before it is resolved): the string values
/// of its `env`, so that an error about a config that does not resolve redacts them too.
pub(crate) fn config_secrets(config: &serde_json::Value) -> Secrets {
    let env = config
        .get("env")
        .and_then(serde_json::Value::as_object)
        .map(|env| {
            env.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    secrets(env)
}

/// A core error as the failure of a stream or task, redacted.
pub(crate) fn failure(e: herdctl_container::Error, secrets: &dyn Fn() -> Redactor) -> StreamError {
    let e = e.redact(&secrets());
    StreamError::new(e.code(), e.to_string())
}

/// The failure that a panic becomes.
pub(crate) fn panicked(what: &str) -> StreamError {
    StreamError::new("INTERNAL", format!("internal error: {what} panicked"))
}

/// A JS `Error` with a `code` property, to return from a function or reject a promise with.
pub(crate) fn js_error(env: &Env, code: &str, message: &str) -> Error {
    let build = || -> Result<Error> {
        let mut obj: Object = env.create_error(Error::from_reason(message))?;
        obj.set_named_property("code", code)?;
        Ok(Error::from(obj.to_unknown()))
    };
    build().unwrap_or_else(|e| e)
}

/// A core error thrown on the JS thread, redacted.
pub(crate) fn throw(
    env: &Env,
    e: herdctl_container::Error,
    secrets: &dyn Fn() -> Redactor,
) -> Error {
    let e = e.redact(&secrets());
    js_error(env, e.code(), &e.to_string())
}

/// Runs `work` and turns its error (redacted) or its panic into a failure.
pub(crate) fn guarded<T>(
    what: &str,
    secrets: &dyn Fn() -> Redactor,
    work: impl FnOnce() -> herdctl_container::Result<T>,
) -> std::result::Result<T, StreamError> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failure(e, secrets)),
        Err(_) => Err(panicked(what)),
    }
}

/// Blocking core work: an `AsyncTask` whose `compute()` (on libuv's pool) is one call into the
/// core, and whose promise rejects with the coded error. Used for short engine calls only (list,
/// prune, gc); streams never wait on the pool (see `stream.rs`).
pub struct Blocking<T> {
    what: &'static str,
    secrets: Secrets,
    work: Option<Box<dyn FnOnce() -> herdctl_container::Result<T> + Send>>,
    failed: Option<StreamError>,
}

impl<T> Blocking<T> {
    /// A task named `what` (for the panic message) that runs `work`; its error is redacted
    /// with `secrets`.
    pub(crate) fn new(
        what: &'static str,
        secrets: Secrets,
        work: impl FnOnce() -> herdctl_container::Result<T> + Send + 'static,
    ) -> Blocking<T> {
        Blocking {
            what,
            secrets,
            work: Some(Box::new(work)),
            failed: None,
        }
    }
}

impl<T> Task for Blocking<T>
where
    T: ToNapiValue + TypeName + Send + 'static,
{
    type Output = T;
    type JsValue = T;

    fn compute(&mut self) -> Result<T> {
        let Some(work) = self.work.take() else {
            return Err(Error::from_reason("internal error: a task ran twice"));
        };
        guarded(self.what, &*self.secrets, work).map_err(|f| {
            let e = Error::from_reason(f.message.clone());
            self.failed = Some(f);
            e
        })
    }

    fn resolve(&mut self, _env: Env, output: T) -> Result<T> {
        Ok(output)
    }

    fn reject(&mut self, env: Env, err: Error) -> Result<T> {
        match self.failed.take() {
            Some(f) => Err(js_error(&env, &f.code, &f.message)),
            None => Err(err),
        }
    }
}

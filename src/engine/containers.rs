//! Containers: create, start, inspect, list by label, rename, stop, kill, remove, wait, logs, top.
//!
//! Idempotent operations return outcomes instead of errors (start on a running container, stop
//! on a stopped one, remove of a gone one), so cleanup code never matches on error text.

use std::time::Duration;

use serde::Deserialize;

use super::call::{Deadline, Req, Response, JSON_LIMIT};
use super::errors::Meaning;
use super::frames::{decode_all, Stream};
use super::transport::query_value;
use super::{check_id, Engine};
use crate::{Error, Result};

use super::container_models::{ContainerInspect, ContainerSummary, ProcessList};

const CONTAINER_404: &[(u16, Meaning)] = &[(404, Meaning::NotFound("container", ""))];
const CREATE_404: &[(u16, Meaning)] = &[(
    404,
    Meaning::NotFound(
        "image",
        "; build it (docker build) or pull it (docker pull)",
    ),
)];
/// A logs answer larger than this is refused; ask for a `tail` instead.
const LOGS_LIMIT: usize = 256 * 1024 * 1024;

/// What [`Engine::start_container`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// The container was started.
    Started,
    /// It was running already (the engine answered 304).
    AlreadyRunning,
}

/// What [`Engine::stop_container`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// The container was stopped.
    Stopped,
    /// It was not running (304).
    AlreadyStopped,
    /// It does not exist (404).
    Gone,
}

/// What [`Engine::kill_container`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillOutcome {
    /// The signal was sent.
    Killed,
    /// The container was not running (409 "is not running").
    NotRunning,
    /// It does not exist (404).
    Gone,
}

/// What [`Engine::remove_container`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveOutcome {
    /// The container was removed.
    Removed,
    /// It does not exist (404), or another caller is removing it right now (409 "removal ... is
    /// already in progress").
    Gone,
}

/// What [`Engine::wait_container`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    /// Until the container is not running (returns at once when it is stopped already).
    NotRunning,
    /// Until the container next exits: begin this wait before starting the container.
    NextExit,
    /// Until the container is removed.
    Removed,
}

impl WaitCondition {
    fn as_query(self) -> &'static str {
        match self {
            WaitCondition::NotRunning => "not-running",
            WaitCondition::NextExit => "next-exit",
            WaitCondition::Removed => "removed",
        }
    }
}

/// How a waited-for container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitStatus {
    /// The exit code of its main process (137 after SIGKILL, including the OOM killer's).
    pub status_code: i64,
    /// The engine's error while waiting, if any.
    pub error: Option<String>,
}

/// A wait registered with the engine, whose answer comes when the condition is met.
///
/// The engine sends the answer's head as soon as the wait is registered, so
/// [`Engine::wait_container_begin`] returning means no exit can be missed any more: begin a
/// `NextExit` wait, then start the container, then [`Waiter::finish`].
pub struct Waiter {
    response: Response,
}

impl Waiter {
    /// Blocks until the condition is met (or the timeout given at the beginning passes).
    pub fn finish(self) -> Result<WaitStatus> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Body {
            status_code: i64,
            #[serde(default)]
            error: Option<WaitError>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct WaitError {
            #[serde(default)]
            message: String,
        }
        let body: Body = self.response.json()?;
        Ok(WaitStatus {
            status_code: body.status_code,
            error: body.error.map(|e| e.message).filter(|m| !m.is_empty()),
        })
    }
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("call", &self.response.call())
            .finish()
    }
}

impl Engine {
    /// Creates a container named `name` (empty: the engine picks one) from `body`, the engine's
    /// create config (`Image`, `Cmd`, `Labels`, `HostConfig`, ...). Returns its id.
    ///
    /// `body` is anything that serialises to that JSON: the runner sends its typed request, a
    /// caller of this library or a test a `serde_json::Value` with whatever fields it needs.
    ///
    /// A name in use fails with [`Error::Conflict`] naming it: that is how two processes racing to
    /// create the same persistent container find each other.
    pub fn create_container<B>(&self, name: &str, body: &B) -> Result<String>
    where
        B: serde::Serialize,
    {
        let mut path = "/containers/create".to_string();
        if !name.is_empty() {
            check_id("name", name)?;
            path.push_str(&format!("?name={}", query_value(name)));
        }
        let response = self.send(Req::new("POST", path).json(body)?)?;
        match response.status() {
            201 | 200 => Ok(response.json::<super::call::Created>()?.id),
            409 => {
                let call = response.call().to_string();
                match response.error(name, &[]) {
                    Error::Conflict { message, .. } => Err(Error::Conflict {
                        call,
                        message: format!("the name {name:?} is in use: {message}"),
                    }),
                    other => Err(other),
                }
            }
            _ => {
                // Read back from the body only on this path: the image names a 404.
                let body = serde_json::to_value(body).unwrap_or_default();
                let image = body
                    .get("Image")
                    .and_then(|v| v.as_str())
                    .unwrap_or("(none given)");
                Err(response.error(image, CREATE_404))
            }
        }
    }

    /// Starts a container; a running one is an outcome, not an error.
    pub fn start_container(&self, id: &str) -> Result<StartOutcome> {
        check_id("container", id)?;
        let response = self.send(Req::new("POST", format!("/containers/{id}/start")))?;
        match response.status() {
            204 | 200 => response.finish().map(|()| StartOutcome::Started),
            304 => response.finish().map(|()| StartOutcome::AlreadyRunning),
            _ => Err(response.error(id, CONTAINER_404)),
        }
    }

    /// The container's config, state and limits.
    pub fn inspect_container(&self, id: &str) -> Result<ContainerInspect> {
        check_id("container", id)?;
        let response = self.send(Req::new("GET", format!("/containers/{id}/json")))?;
        match response.status() {
            200 => response.json(),
            _ => Err(response.error(id, CONTAINER_404)),
        }
    }

    /// Containers matching every label filter: `("key", None)` for "has the label",
    /// `("key", Some("value"))` for an exact value. `all` includes stopped ones.
    pub fn list_containers(
        &self,
        label_filters: &[(&str, Option<&str>)],
        all: bool,
    ) -> Result<Vec<ContainerSummary>> {
        let mut labels = Vec::with_capacity(label_filters.len());
        for (key, value) in label_filters {
            if key.is_empty() || key.contains('=') {
                return Err(Error::invalid(
                    "label filter",
                    format!("{key:?} is not a label key"),
                ));
            }
            labels.push(match value {
                Some(v) => format!("{key}={v}"),
                None => key.to_string(),
            });
        }
        let filters = serde_json::json!({ "label": labels }).to_string();
        let path = format!(
            "/containers/json?all={}&filters={}",
            all,
            query_value(&filters)
        );
        let response = self.send(Req::new("GET", path))?;
        match response.status() {
            200 => response.json(),
            _ => Err(response.error("", &[])),
        }
    }

    /// Stops a container: SIGTERM (or the image's stop signal), then SIGKILL after
    /// `timeout_secs`. The call's deadline is the call timeout plus `timeout_secs`.
    pub fn stop_container(&self, id: &str, timeout_secs: u32) -> Result<StopOutcome> {
        check_id("container", id)?;
        let budget = self.inner.opts.call_timeout + Duration::from_secs(u64::from(timeout_secs));
        let req = Req::new("POST", format!("/containers/{id}/stop?t={timeout_secs}"))
            .deadline(Deadline::After(budget));
        let response = self.send(req)?;
        match response.status() {
            204 | 200 => response.finish().map(|()| StopOutcome::Stopped),
            304 => response.finish().map(|()| StopOutcome::AlreadyStopped),
            404 => response.finish().map(|()| StopOutcome::Gone),
            _ => Err(response.error(id, CONTAINER_404)),
        }
    }

    /// Renames a container. A name in use fails with [`Error::Conflict`], a missing container
    /// with [`Error::NotFound`].
    pub fn rename_container(&self, id: &str, new_name: &str) -> Result<()> {
        check_id("container", id)?;
        check_id("name", new_name)?;
        let response = self.send(Req::new(
            "POST",
            format!("/containers/{id}/rename?name={}", query_value(new_name)),
        ))?;
        match response.status() {
            204 | 200 => response.finish(),
            _ => Err(response.error(id, CONTAINER_404)),
        }
    }

    /// Sends `signal` (like `SIGKILL`, `KILL` or `9`) to the container's main process.
    pub fn kill_container(&self, id: &str, signal: &str) -> Result<KillOutcome> {
        check_id("container", id)?;
        if signal.is_empty()
            || !signal
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+')
        {
            return Err(Error::invalid(
                "signal",
                format!("{signal:?} is not a signal; expected like \"SIGKILL\" or \"9\""),
            ));
        }
        let response = self.send(Req::new(
            "POST",
            format!("/containers/{id}/kill?signal={signal}"),
        ))?;
        match response.status() {
            204 | 200 => response.finish().map(|()| KillOutcome::Killed),
            404 => response.finish().map(|()| KillOutcome::Gone),
            _ => match response.error(id, CONTAINER_404) {
                // Docker: "... is not running"; Podman: "can only kill running containers".
                Error::Conflict { message, .. }
                    if message.contains("is not running")
                        || message.contains("can only kill running") =>
                {
                    Ok(KillOutcome::NotRunning)
                }
                other => Err(other),
            },
        }
    }

    /// Removes a container and its anonymous volumes; `force` kills it first if it runs.
    pub fn remove_container(&self, id: &str, force: bool) -> Result<RemoveOutcome> {
        check_id("container", id)?;
        let response = self.send(Req::new(
            "DELETE",
            format!("/containers/{id}?force={force}&v=true"),
        ))?;
        match response.status() {
            204 | 200 => response.finish().map(|()| RemoveOutcome::Removed),
            404 => response.finish().map(|()| RemoveOutcome::Gone),
            _ => match response.error(id, CONTAINER_404) {
                Error::Conflict { message, .. } if message.contains("already in progress") => {
                    Ok(RemoveOutcome::Gone)
                }
                other => Err(other),
            },
        }
    }

    /// Registers a wait and returns once the engine has it (see [`Waiter`]). `timeout` bounds the
    /// whole wait, up to [`Waiter::finish`]; `None` waits as long as it takes.
    pub fn wait_container_begin(
        &self,
        id: &str,
        condition: WaitCondition,
        timeout: Option<Duration>,
    ) -> Result<Waiter> {
        check_id("container", id)?;
        let deadline = timeout.map_or(Deadline::Unlimited, Deadline::After);
        let req = Req::new(
            "POST",
            format!("/containers/{id}/wait?condition={}", condition.as_query()),
        )
        .deadline(deadline)
        .call(format!("wait for container {id}"));
        let response = self.send(req)?;
        match response.status() {
            200 => Ok(Waiter { response }),
            _ => Err(response.error(id, CONTAINER_404)),
        }
    }

    /// Blocks until the container meets `condition`, and reports its exit. `None` waits as long
    /// as it takes.
    pub fn wait_container(
        &self,
        id: &str,
        condition: WaitCondition,
        timeout: Option<Duration>,
    ) -> Result<WaitStatus> {
        self.wait_container_begin(id, condition, timeout)?.finish()
    }

    /// The container's logs so far (not following), as chunks of stdout and stderr in order;
    /// `tail` keeps only the last lines.
    pub fn container_logs(
        &self,
        id: &str,
        stdout: bool,
        stderr: bool,
        tail: Option<usize>,
    ) -> Result<Vec<(Stream, Vec<u8>)>> {
        check_id("container", id)?;
        if !stdout && !stderr {
            return Err(Error::invalid("logs", "choose stdout, stderr or both"));
        }
        // Whether the stream is multiplexed follows from how the container was made, never from
        // guessing at the first byte.
        let tty = self.inspect_container(id)?.config.tty;
        let tail = tail.map_or("all".to_string(), |n| n.to_string());
        let path = format!("/containers/{id}/logs?stdout={stdout}&stderr={stderr}&tail={tail}");
        let response = self.send(Req::new("GET", path))?;
        if response.status() != 200 {
            return Err(response.error(id, CONTAINER_404));
        }
        let call = response.call().to_string();
        let body = response.bytes(LOGS_LIMIT)?;
        if tty {
            return Ok(if body.is_empty() {
                Vec::new()
            } else {
                vec![(Stream::Stdout, body)]
            });
        }
        decode_all(&body).map_err(|e| Error::Protocol {
            call,
            detail: e.to_string(),
        })
    }

    /// The processes running in the container, as the host's `ps -ef` sees them.
    pub fn container_top(&self, id: &str) -> Result<ProcessList> {
        check_id("container", id)?;
        let response = self.send(Req::new("GET", format!("/containers/{id}/top")))?;
        match response.status() {
            200 => {
                let bytes = response.bytes(JSON_LIMIT)?;
                serde_json::from_slice(&bytes).map_err(|e| Error::Protocol {
                    call: format!("GET /containers/{id}/top"),
                    detail: format!("unexpected JSON in the answer: {e}"),
                })
            }
            _ => Err(response.error(id, CONTAINER_404)),
        }
    }

    /// The container's memory use as its cgroup counts it (one sample, no streaming).
    ///
    /// `max_usage` (cgroup v1 only) reaching `limit` is how a kill of an exec'd process is told
    /// to be an OOM kill while the container runs on: the engine sets `State.OOMKilled` only when
    /// the container itself stops.
    pub fn container_memory(&self, id: &str) -> Result<MemoryStats> {
        check_id("container", id)?;
        let path = format!("/containers/{id}/stats?stream=false&one-shot=true");
        let response = self.send(Req::new("GET", path))?;
        match response.status() {
            200 => {
                #[derive(serde::Deserialize)]
                struct Stats {
                    #[serde(default)]
                    memory_stats: MemoryStats,
                }
                let bytes = response.bytes(JSON_LIMIT)?;
                serde_json::from_slice::<Stats>(&bytes)
                    .map(|s| s.memory_stats)
                    .map_err(|e| Error::Protocol {
                        call: format!("GET /containers/{id}/stats"),
                        detail: format!("unexpected JSON in the answer: {e}"),
                    })
            }
            _ => Err(response.error(id, CONTAINER_404)),
        }
    }
}

/// A container's memory counters (only the fields we read).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct MemoryStats {
    /// Bytes in use now.
    #[serde(default)]
    pub usage: u64,
    /// The most ever in use (cgroup v1; absent on v2).
    #[serde(default)]
    pub max_usage: Option<u64>,
    /// The limit the cgroup enforces.
    #[serde(default)]
    pub limit: u64,
}

//! How a job ended, and what it cost in each phase.

use std::time::Duration;

use crate::Error;

/// How a job ended. Every way a job can end is a value here, so a caller matches on it instead of
/// parsing text; failures carry what is known (exit code, OOM) and the report carries the redacted
/// end of stderr.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// The command ran and exited with this code (0 is success).
    Exited(i64),
    /// The command could not be run: 126 (not executable) or 127 (not found).
    CommandNotFound {
        /// 126 or 127.
        code: i64,
    },
    /// The command was killed by SIGKILL (exit 137) while its container went on running. With a
    /// memory limit that is almost always the kernel's OOM killer; `oom` says whether the engine or
    /// the cgroup confirmed it.
    Killed {
        /// 137.
        code: i64,
        /// The engine or the cgroup reported an out-of-memory kill.
        oom: bool,
    },
    /// The container stopped under the job: killed, or out of memory.
    ContainerDied {
        /// The container's exit code, when the engine knows it.
        exit_code: Option<i64>,
        /// The engine reported an OOM kill, or the exit code was 137 with a memory limit set
        /// (Podman never sets the flag).
        oom_killed: bool,
    },
    /// [`crate::job::Canceller::cancel`] was called; the job's processes were killed.
    Cancelled,
    /// The job's deadline passed; the job's processes were killed.
    TimedOut(Duration),
    /// The job could not be followed to its end: an engine error mid-stream, or an output line past
    /// the limit.
    Failed(Error),
}

impl Outcome {
    /// True only for `Exited(0)`.
    pub fn success(&self) -> bool {
        matches!(self, Outcome::Exited(0))
    }

    /// A one-line description for humans and for `{type: "error"}` messages.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Exited(0) => "exited with code 0".into(),
            Outcome::Exited(code) => format!("exited with code {code}"),
            Outcome::CommandNotFound { code: 126 } => {
                "the command could not be run in the container (exit 126: not found or not executable)".into()
            }
            Outcome::CommandNotFound { code } => {
                format!("the command was not found in the container (exit {code})")
            }
            Outcome::Killed { oom: true, .. } => {
                "the job was killed for running out of memory (exit 137, OOM); raise docker.memory"
                    .into()
            }
            Outcome::Killed { code, .. } => format!(
                "the job was killed (exit {code}, SIGKILL); with a memory limit this is most likely an out-of-memory kill"
            ),
            Outcome::ContainerDied {
                exit_code,
                oom_killed,
            } => {
                let code = exit_code.map_or_else(|| "unknown".to_string(), |c| c.to_string());
                if *oom_killed {
                    format!("the container ran out of memory and was killed (exit {code}); raise docker.memory")
                } else {
                    format!("the container stopped during the job (exit {code})")
                }
            }
            Outcome::Cancelled => "the job was cancelled".into(),
            Outcome::TimedOut(after) => format!("the job timed out after {after:?}"),
            Outcome::Failed(e) => format!("the job failed: {e}"),
        }
    }
}

/// How long each phase of a job took. A phase that did not happen is `None`: a reused persistent
/// container has no create, a job that printed nothing has no first byte. Serialized (in job
/// records) as milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Timings {
    /// Finding or making the container, start included.
    #[serde(serialize_with = "millis")]
    pub acquire: Option<Duration>,
    /// `POST /containers/create`, when a container was created.
    #[serde(serialize_with = "millis")]
    pub create: Option<Duration>,
    /// `POST /containers/{id}/start`, when the container had to be started.
    #[serde(serialize_with = "millis")]
    pub start: Option<Duration>,
    /// Exec create and start, until the output stream was open.
    #[serde(serialize_with = "millis")]
    pub exec_start: Option<Duration>,
    /// From the job's start until the first byte of output.
    #[serde(serialize_with = "millis")]
    pub first_byte: Option<Duration>,
    /// From the job's start until the output ended.
    #[serde(serialize_with = "millis")]
    pub end: Option<Duration>,
    /// Stopping an ephemeral container and applying retention.
    #[serde(serialize_with = "millis")]
    pub release: Option<Duration>,
}

/// Everything known about a finished job. Serialized as the body of its job record (the
/// outcome as an object with its `kind`, timings in milliseconds).
#[derive(Debug, serde::Serialize)]
pub struct JobReport {
    /// How it ended.
    pub outcome: Outcome,
    /// The container it ran in (kept after the job for inspection).
    pub container_id: String,
    /// The container's name.
    pub container_name: String,
    /// Up to the last 8 KiB of stderr, with every known secret redacted.
    pub stderr_tail: String,
    /// What each phase took.
    pub timings: Timings,
    /// Things the engine did not do as asked (a dropped limit) and cleanup that failed; the job
    /// itself was not affected.
    pub warnings: Vec<String>,
}

impl Outcome {
    /// A stable name of the outcome's kind, for programs: `exited`, `command_not_found`,
    /// `killed`, `container_died`, `cancelled`, `timed_out` or `failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Exited(_) => "exited",
            Outcome::CommandNotFound { .. } => "command_not_found",
            Outcome::Killed { .. } => "killed",
            Outcome::ContainerDied { .. } => "container_died",
            Outcome::Cancelled => "cancelled",
            Outcome::TimedOut(_) => "timed_out",
            Outcome::Failed(_) => "failed",
        }
    }

    /// The exit code, when the job's process (or its container) reported one.
    pub fn exit_code(&self) -> Option<i64> {
        match self {
            Outcome::Exited(code)
            | Outcome::CommandNotFound { code }
            | Outcome::Killed { code, .. } => Some(*code),
            Outcome::ContainerDied { exit_code, .. } => *exit_code,
            _ => None,
        }
    }

    /// Whether the engine or the cgroup reported an out-of-memory kill.
    pub fn oom_killed(&self) -> bool {
        match self {
            Outcome::Killed { oom, .. } => *oom,
            Outcome::ContainerDied { oom_killed, .. } => *oom_killed,
            _ => false,
        }
    }
}

/// `{"kind", "exit_code", "oom_killed", "description"}`, and the error's `code` for `failed`.
impl serde::Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("kind", self.kind())?;
        map.serialize_entry("exit_code", &self.exit_code())?;
        map.serialize_entry("oom_killed", &self.oom_killed())?;
        map.serialize_entry("description", &self.describe())?;
        if let Outcome::TimedOut(after) = self {
            map.serialize_entry("after_ms", &(after.as_millis() as u64))?;
        }
        if let Outcome::Failed(e) = self {
            map.serialize_entry("code", e.code())?;
        }
        map.end()
    }
}

/// A phase's duration as milliseconds (fractions kept: a reused container's acquire takes less
/// than one).
fn millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        // Microsecond precision: more digits would be noise.
        Some(d) => s.serialize_some(&(d.as_micros() as f64 / 1000.0)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exit_zero_is_success() {
        assert!(Outcome::Exited(0).success());
        assert!(!Outcome::Exited(3).success());
        assert!(!Outcome::Cancelled.success());
        assert!(!Outcome::ContainerDied {
            exit_code: Some(0),
            oom_killed: false
        }
        .success());
    }

    #[test]
    fn descriptions_say_what_happened() {
        assert_eq!(
            Outcome::ContainerDied {
                exit_code: Some(137),
                oom_killed: true
            }
            .describe(),
            "the container ran out of memory and was killed (exit 137); raise docker.memory"
        );
        assert_eq!(
            Outcome::CommandNotFound { code: 127 }.describe(),
            "the command was not found in the container (exit 127)"
        );
    }
}

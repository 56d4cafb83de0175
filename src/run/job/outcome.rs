//! How a job ended, what it cost in each phase, and the report of both as plain data.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::redact::Redactor;
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
    /// [`crate::run::job::Canceller::cancel`] was called; the job's processes were killed.
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

    /// The exit code, when the job's process or its container gave one.
    pub fn exit_code(&self) -> Option<i64> {
        match self {
            Outcome::Exited(code)
            | Outcome::CommandNotFound { code }
            | Outcome::Killed { code, .. } => Some(*code),
            Outcome::ContainerDied { exit_code, .. } => *exit_code,
            _ => None,
        }
    }

    /// Whether the engine or the cgroup reported (or the exit code and the memory limit imply)
    /// an out-of-memory kill.
    pub fn oom_killed(&self) -> bool {
        match self {
            Outcome::Killed { oom, .. } => *oom,
            Outcome::ContainerDied { oom_killed, .. } => *oom_killed,
            _ => false,
        }
    }
}

/// How long each phase of a job took. A phase that did not happen is `None`: a reused persistent
/// container has no create, a job that printed nothing has no first byte.
///
/// As JSON each phase is a number of milliseconds (fractions kept), named with an `_ms` suffix
/// (`{"acquire_ms": 12.5, "create_ms": null, ...}`): what JS and a job record want, where serde's
/// `{secs, nanos}` would not do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// Finding or making the container, start included.
    #[serde(rename = "acquire_ms", with = "millis", default)]
    pub acquire: Option<Duration>,
    /// `POST /containers/create`, when a container was created.
    #[serde(rename = "create_ms", with = "millis", default)]
    pub create: Option<Duration>,
    /// `POST /containers/{id}/start`, when the container had to be started.
    #[serde(rename = "start_ms", with = "millis", default)]
    pub start: Option<Duration>,
    /// Exec create and start, until the output stream was open.
    #[serde(rename = "exec_start_ms", with = "millis", default)]
    pub exec_start: Option<Duration>,
    /// From the job's start until the first byte of output.
    #[serde(rename = "first_byte_ms", with = "millis", default)]
    pub first_byte: Option<Duration>,
    /// From the job's start until the output ended.
    #[serde(rename = "end_ms", with = "millis", default)]
    pub end: Option<Duration>,
    /// Stopping an ephemeral container and applying retention.
    #[serde(rename = "release_ms", with = "millis", default)]
    pub release: Option<Duration>,
}

/// An optional duration as a number of milliseconds. Reading refuses what is not a duration
/// (negative, NaN, past `Duration::MAX`) instead of panicking on it.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_secs_f64() * 1000.0),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<f64>::deserialize(d)? {
            None => Ok(None),
            Some(ms) => Duration::try_from_secs_f64(ms / 1000.0)
                .map(Some)
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "{ms} is not a duration; expected milliseconds, 0 or more"
                    ))
                }),
        }
    }
}

/// Everything known about a finished job. [`JobReport::summary`] gives it as plain data.
#[derive(Debug)]
pub struct JobReport {
    /// How it ended.
    pub outcome: Outcome,
    /// The container it ran in (kept after the job for inspection).
    pub container_id: String,
    /// The container's name.
    pub container_name: String,
    /// The image the container was created from, as configured.
    pub image: String,
    /// The config hash of the container (its `dev.herdctl.config-hash` label).
    pub config_hash: String,
    /// Up to the last 8 KiB of stderr, with every known secret redacted.
    pub stderr_tail: String,
    /// What each phase took.
    pub timings: Timings,
    /// Things that did not go as asked, though the job ran: a limit the engine dropped or a
    /// `host_config` override removed, a container that could not be stopped after the job,
    /// retention that failed. Secrets redacted.
    pub warnings: Vec<String>,
    /// The job's secrets, to redact the outcome's description (an engine error may quote them).
    pub(crate) redactor: Redactor,
}

impl JobReport {
    /// The report as plain data: what a job's closing message carries to Node, and what a job
    /// record stores. Every text in it is redacted.
    pub fn summary(&self) -> JobSummary {
        let code = match &self.outcome {
            Outcome::Failed(e) => Some(e.code().to_string()),
            _ => None,
        };
        JobSummary {
            outcome: self.outcome.kind().to_string(),
            success: self.outcome.success(),
            message: self.redactor.redact(&self.outcome.describe()).into_owned(),
            code,
            exit_code: self.outcome.exit_code(),
            oom_killed: self.outcome.oom_killed(),
            container_id: self.container_id.clone(),
            container_name: self.container_name.clone(),
            image: self.image.clone(),
            config_hash: self.config_hash.clone(),
            timings: self.timings.clone(),
            warnings: self.warnings.clone(),
            stderr_tail: self.stderr_tail.clone(),
        }
    }
}

/// A job's report as plain data, the same in Rust, in JSON (snake_case keys, durations in
/// milliseconds) and in JS: the `container_report` of an agent job's closing message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    /// [`Outcome::kind`]: `exited`, `command_not_found`, `killed`, `container_died`,
    /// `cancelled`, `timed_out` or `failed`.
    pub outcome: String,
    /// True only for exit code 0.
    pub success: bool,
    /// [`Outcome::describe`], redacted.
    pub message: String,
    /// The error's code (`ENGINE_UNREACHABLE`, `LINE_TOO_LONG`, ...) when the outcome is `failed`.
    pub code: Option<String>,
    /// The exit code of the job's process, or of its container when that died.
    pub exit_code: Option<i64>,
    /// An out-of-memory kill (see [`Outcome::oom_killed`]).
    pub oom_killed: bool,
    /// The container's id.
    pub container_id: String,
    /// The container's name.
    pub container_name: String,
    /// The image, as configured.
    pub image: String,
    /// The container's config hash.
    pub config_hash: String,
    /// Per-phase timings, in milliseconds.
    pub timings: Timings,
    /// [`JobReport::warnings`].
    pub warnings: Vec<String>,
    /// The end of stderr, redacted.
    pub stderr_tail: String,
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
    fn the_summary_is_plain_redacted_data_with_timings_in_milliseconds() {
        let report = JobReport {
            outcome: Outcome::Failed(Error::invalid("x", "quoted sk-secret-1234")),
            container_id: "abc".into(),
            container_name: "herdctl-a-1".into(),
            image: "img:1".into(),
            config_hash: "0123".into(),
            stderr_tail: String::new(),
            timings: Timings {
                acquire: Some(Duration::from_micros(12_500)),
                ..Timings::default()
            },
            warnings: vec!["memory limit dropped".into()],
            redactor: Redactor::new(["sk-secret-1234"]),
        };
        let summary = report.summary();
        assert_eq!(summary.outcome, "failed");
        assert_eq!(summary.code.as_deref(), Some("INVALID_CONFIG"));
        assert!(
            !summary.message.contains("sk-secret"),
            "{}",
            summary.message
        );
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["timings"]["acquire_ms"], 12.5);
        assert_eq!(json["timings"]["create_ms"], serde_json::Value::Null);
        assert_eq!(json["warnings"][0], "memory limit dropped");
        let back: JobSummary = serde_json::from_value(json).unwrap();
        assert_eq!(back, summary);
    }

    #[test]
    fn timings_that_are_not_durations_are_refused_not_panicked_on() {
        for bad in [r#"{"acquire_ms": -1}"#, r#"{"end_ms": 1e300}"#] {
            let e = serde_json::from_str::<Timings>(bad).unwrap_err();
            assert!(e.to_string().contains("not a duration"), "{bad}: {e}");
        }
        assert_eq!(
            serde_json::from_str::<Timings>("{}").unwrap(),
            Timings::default()
        );
    }

    #[test]
    fn kind_exit_code_and_oom_come_from_the_outcome() {
        let died = Outcome::ContainerDied {
            exit_code: Some(137),
            oom_killed: true,
        };
        assert_eq!(
            (died.kind(), died.exit_code(), died.oom_killed()),
            ("container_died", Some(137), true)
        );
        assert_eq!(Outcome::Cancelled.exit_code(), None);
        assert_eq!(Outcome::TimedOut(Duration::ZERO).kind(), "timed_out");
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

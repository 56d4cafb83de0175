//! Job records: what happened to each job, kept in the state directory after the job (and its
//! container) are gone.
//!
//! Jobs run through exec, so the engine keeps nothing an operator could read afterwards: `docker
//! logs` of a kept container is empty and its inspect shows `sleep`'s exit. So the core writes one
//! JSON file per job at the job's end, whoever ran it (the CLI, Node, a Rust tool):
//! `<stateDir>/jobs/<agent>/<ended ms>-<job id>.json`, holding the job's [`JobReport`] (outcome,
//! exit code, OOM flag, per-phase timings, warnings, container, redacted stderr tail), the agent,
//! image and config hash, and the redacted end of its stdout. Each agent keeps its newest
//! `max_containers` records, the retention its containers get; `gc` drops the records of agents
//! that are gone.
//!
//! The file is written whole under a temporary name and renamed, so a reader never sees half a
//! record; a reader takes what it knows from a record and ignores the rest, so records written by
//! a newer version (more report fields) still read.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::JobReport;
use crate::labels::Mode;
use crate::paths::sanitize_agent_name;
use crate::redact::Redactor;
use crate::{Error, Result};

/// The directory under the state directory that holds the records.
pub const RECORDS_DIR: &str = "jobs";

/// The version of the record's shape, its `record` field.
const RECORD_VERSION: u64 = 1;

/// What a job's record says besides its report: known when the job starts.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    /// The runner's state directory (absolute).
    pub state_dir: PathBuf,
    /// The agent's qualified name, exact.
    pub agent: String,
    /// The job's id.
    pub job: String,
    /// Ephemeral or persistent.
    pub mode: Mode,
    /// When the job started, unix milliseconds.
    pub started_ms: u64,
    /// How many records the agent keeps: its `max_containers`.
    pub keep: usize,
}

/// One job's record, as read back.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobRecord {
    /// The file it was read from.
    pub path: PathBuf,
    /// The job's id, like `herdctl-job-1767225600000-0a1b2c3d`.
    pub job: String,
    /// The agent's qualified name.
    pub agent: String,
    /// The container's id.
    pub container_id: String,
    /// The container's name.
    pub container_name: String,
    /// When the job started and ended, unix milliseconds.
    pub started_ms: u64,
    /// When the job ended, unix milliseconds.
    pub ended_ms: u64,
    /// `exited`, `command_not_found`, `killed`, `container_died`, `cancelled`, `timed_out` or
    /// `failed`.
    pub outcome: String,
    /// The exit code, when one is known.
    pub exit_code: Option<i64>,
    /// An out-of-memory kill was reported.
    pub oom_killed: bool,
    /// The end of stdout, redacted.
    pub stdout_tail: String,
    /// The end of stderr, redacted.
    pub stderr_tail: String,
    /// The whole record, as written (the report under `report`).
    pub raw: Value,
}

impl JobRecord {
    fn from_value(path: PathBuf, raw: Value) -> JobRecord {
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let number = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let report = raw.get("report").cloned().unwrap_or(Value::Null);
        JobRecord {
            path,
            job: text(&raw, "job"),
            agent: text(&raw, "agent"),
            container_id: text(&report, "container_id"),
            container_name: text(&report, "container_name"),
            started_ms: number(&raw, "started_ms"),
            ended_ms: number(&raw, "ended_ms"),
            outcome: text(&report, "outcome"),
            exit_code: report.get("exit_code").and_then(Value::as_i64),
            oom_killed: report
                .get("oom_killed")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            stdout_tail: text(&raw, "stdout_tail"),
            stderr_tail: text(&report, "stderr_tail"),
            raw,
        }
    }

    /// Whether `key` names this record: its job id, its container's name or id (or a prefix of
    /// at least 4 characters of either id, as docker accepts), or its agent's name.
    pub fn matches(&self, key: &str) -> bool {
        let prefix_of = |id: &str| key.len() >= 4 && id.starts_with(key);
        !key.is_empty()
            && (self.job == key
                || self.agent == key
                || self.container_name == key
                || self.container_name == key.trim_start_matches('/')
                || prefix_of(&self.container_id)
                || prefix_of(&self.job))
    }
}

/// The directory of one agent's records.
fn agent_dir(state_dir: &Path, agent: &str) -> PathBuf {
    state_dir.join(RECORDS_DIR).join(sanitize_agent_name(agent))
}

/// Writes the record of a finished job and applies the agent's record retention. Every string of
/// the record passes `redactor` (the stdout tail was redacted before it was cut). Returns the
/// record's path.
pub(crate) fn write(
    head: &Head,
    report: &JobReport,
    stdout_tail: &str,
    redactor: &Redactor,
) -> Result<PathBuf> {
    let ended_ms = crate::labels::now_ms();
    let summary = serde_json::to_value(report.summary())
        .map_err(|e| Error::invalid("job record", format!("the report did not serialize: {e}")))?;
    let mut record = json!({
        "record": RECORD_VERSION,
        "job": head.job,
        "agent": head.agent,
        "image": report.image,
        "config_hash": report.config_hash,
        "mode": head.mode.as_str(),
        "started_ms": head.started_ms,
        "ended_ms": ended_ms,
        "report": summary,
        "stdout_tail": stdout_tail,
    });
    redact_strings(&mut record, redactor);
    let dir = agent_dir(&head.state_dir, &head.agent);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| {
            Error::io(
                format!("create the job records directory {}", dir.display()),
                e,
            )
        })?;
    let name = format!("{ended_ms:013}-{}.json", head.job);
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let bytes = serde_json::to_vec_pretty(&record)
        .map_err(|e| Error::invalid("job record", format!("the record did not serialize: {e}")))?;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&bytes))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(
            format!("write the job record {}", path.display()),
            e,
        ));
    }
    prune_dir(&dir, head.keep.max(1))?;
    Ok(path)
}

/// Replaces every secret in every string of `value`, keys included.
fn redact_strings(value: &mut Value, redactor: &Redactor) {
    if redactor.is_empty() {
        return;
    }
    match value {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(r) = redactor.redact(s) {
                *s = r;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_strings(v, redactor)),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (k, mut v) in entries {
                redact_strings(&mut v, redactor);
                map.insert(redactor.redact(&k).into_owned(), v);
            }
        }
        _ => {}
    }
}

/// The record files of a directory, newest first (names start with the end time).
fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("read {}", dir.display()), e)),
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    found.sort();
    found.reverse();
    Ok(found)
}

/// Removes all but the newest `keep` records of a directory.
fn prune_dir(dir: &Path, keep: usize) -> Result<usize> {
    let mut removed = 0;
    for old in files(dir)?.into_iter().skip(keep) {
        // Another process pruning the same agent may have removed it first.
        match std::fs::remove_file(&old) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("remove {}", old.display()), e)),
        }
    }
    Ok(removed)
}

fn read(path: PathBuf) -> Option<JobRecord> {
    let bytes = std::fs::read(&path).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value
        .is_object()
        .then(|| JobRecord::from_value(path, value))
}

/// The job records in `state_dir`, of one agent or of all, newest first. Files that are not
/// records (unreadable, not JSON) are skipped.
pub fn list(state_dir: &Path, agent: Option<&str>) -> Result<Vec<JobRecord>> {
    let dirs = match agent {
        Some(a) => vec![agent_dir(state_dir, a)],
        None => agent_dirs(state_dir)?,
    };
    let mut found = Vec::new();
    for dir in dirs {
        found.extend(files(&dir)?.into_iter().filter_map(read));
    }
    if let Some(a) = agent {
        found.retain(|r| r.agent == a);
    }
    found.sort_by(|a, b| b.ended_ms.cmp(&a.ended_ms).then(b.path.cmp(&a.path)));
    Ok(found)
}

/// The newest record that `key` names (a job id, a container name or id, an id prefix, or an
/// agent): the container's (or agent's) last job when a container (or agent) is named.
pub fn find(state_dir: &Path, key: &str) -> Result<Option<JobRecord>> {
    Ok(list(state_dir, None)?.into_iter().find(|r| r.matches(key)))
}

fn agent_dirs(state_dir: &Path) -> Result<Vec<PathBuf>> {
    let root = state_dir.join(RECORDS_DIR);
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("read {}", root.display()), e)),
    };
    Ok(entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect())
}

/// Keeps the newest `keep` records of `agent`; returns how many were removed.
pub(crate) fn prune(state_dir: &Path, agent: &str, keep: usize) -> Result<usize> {
    prune_dir(&agent_dir(state_dir, agent), keep)
}

/// Removes the records of agents not in `live_agents`, except those of containers that still
/// exist (`existing`, ids), and keeps the newest `keep` of each live agent. Returns how many were
/// removed.
pub(crate) fn gc(
    state_dir: &Path,
    live_agents: &[String],
    keep: usize,
    existing: &HashSet<String>,
) -> Result<usize> {
    let live: HashSet<PathBuf> = live_agents
        .iter()
        .map(|a| agent_dir(state_dir, a))
        .collect();
    let mut removed = 0;
    for dir in agent_dirs(state_dir)? {
        if live.contains(&dir) {
            removed += prune_dir(&dir, keep)?;
            continue;
        }
        for path in files(&dir)? {
            let keep_it = read(path.clone()).is_some_and(|r| existing.contains(&r.container_id));
            if !keep_it && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        // Gone only when empty: another process may be writing a record into it.
        let _ = std::fs::remove_dir(&dir);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests;

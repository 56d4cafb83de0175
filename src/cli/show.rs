//! `ps`, `logs` and `inspect`: the containers with their last jobs, and the job records.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use herdctl_container::records::{self, JobRecord};
use herdctl_container::ManagedContainer;
use serde_json::{json, Value};

use super::args::{InspectArgs, LogsArgs, PsArgs};
use super::{Context, Failure, DEFAULT_STATE_DIR};

/// `ps`: a table (or JSON, or ids) of this project's containers with each one's last job.
pub fn ps(ctx: &Context, args: PsArgs) -> Result<u8, Failure> {
    let runner = ctx.runner(args.state_dir.as_deref(), None, None, &[])?;
    let found = runner.list(args.agent.as_deref())?;
    if args.quiet {
        for c in &found {
            println!("{}", short_id(&c.id));
        }
        return Ok(0);
    }
    // The newest record of each container (records are listed newest first).
    let mut last: HashMap<String, JobRecord> = HashMap::new();
    for r in records::list(runner.state_dir(), args.agent.as_deref())? {
        last.entry(r.container_id.clone()).or_insert(r);
    }
    if args.json {
        print_ps_json(&found, &last);
    } else {
        print_ps_table(&found, &last);
    }
    Ok(0)
}

/// `ps --json`: each container as the runner lists it, with its last job's outcome (for scripts:
/// every field, nothing cut).
fn print_ps_json(found: &[ManagedContainer], last: &HashMap<String, JobRecord>) {
    let list: Vec<Value> = found
        .iter()
        .map(|c| {
            // Cannot fail: plain strings and numbers.
            let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
            v["last_job"] = match last.get(&c.id) {
                Some(r) => json!({
                    "job": r.job,
                    "outcome": r.outcome,
                    "exit_code": r.exit_code,
                    "oom_killed": r.oom_killed,
                    "ended_ms": r.ended_ms,
                }),
                None => Value::Null,
            };
            v
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&list).unwrap_or_else(|_| "[]".into())
    );
}

/// `ps`'s table, as `docker ps` prints one: short ids, ages, the last job's outcome and exit
/// code (with OOM when the kernel killed it).
fn print_ps_table(found: &[ManagedContainer], last: &HashMap<String, JobRecord>) {
    let now = now_ms();
    let mut rows = vec![[
        "CONTAINER ID",
        "AGENT",
        "MODE",
        "STATE",
        "CREATED",
        "LAST JOB",
        "EXIT",
        "NAME",
    ]
    .map(String::from)];
    for c in found {
        let (job, exit) = match last.get(&c.id) {
            Some(r) => (
                format!("{} {}", r.outcome, age(now, r.ended_ms)),
                match (r.exit_code, r.oom_killed) {
                    (Some(code), true) => format!("{code} (OOM)"),
                    (Some(code), false) => code.to_string(),
                    (None, _) => "-".into(),
                },
            ),
            None => ("-".into(), "-".into()),
        };
        rows.push([
            short_id(&c.id).to_string(),
            c.agent.clone(),
            c.mode.clone(),
            c.state.clone(),
            age(now, c.created_ms),
            job,
            exit,
            c.name.clone(),
        ]);
    }
    print!("{}", table(&rows));
}

/// `logs`: the record's stdout tail on stdout, its stderr tail on stderr.
pub fn logs(args: LogsArgs) -> Result<u8, Failure> {
    let state_dir = args.state_dir.as_deref().unwrap_or(DEFAULT_STATE_DIR);
    let record = find(state_dir, &args.key)?;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(record.stdout_tail.as_bytes());
    if !record.stdout_tail.is_empty() && !record.stdout_tail.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
    eprint!("{}", record.stderr_tail);
    Ok(0)
}

/// `inspect`: the records as a JSON array.
pub fn inspect(args: InspectArgs) -> Result<u8, Failure> {
    let state_dir = args.state_dir.as_deref().unwrap_or(DEFAULT_STATE_DIR);
    let mut found = Vec::new();
    for key in &args.keys {
        found.push(find(state_dir, key)?.raw);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&found).unwrap_or_else(|_| "[]".into())
    );
    Ok(0)
}

fn find(state_dir: &str, key: &str) -> Result<JobRecord, Failure> {
    records::find(Path::new(state_dir), key)?.ok_or_else(|| {
        Failure::NoRecord(format!(
            "no job record matches {key:?} in {}/jobs (a record is kept for an agent's newest jobs, as many as its max_containers; is --state-dir right?)",
            state_dir.trim_end_matches('/')
        ))
    })
}

fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `12s ago`, `5m ago`, `3h ago`, `2d ago`; `-` when unknown.
pub fn age(now_ms: u64, then_ms: u64) -> String {
    if then_ms == 0 {
        return "-".into();
    }
    let s = now_ms.saturating_sub(then_ms) / 1000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86_399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// Columns padded to their widest cell, three spaces apart; the last one unpadded.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_dockers() {
        let now = 10_000_000;
        assert_eq!(age(now, now - 5_000), "5s ago");
        assert_eq!(age(now, now - 300_000), "5m ago");
        assert_eq!(age(now, now - 7_200_000), "2h ago");
        assert_eq!(age(now + 200_000_000, now), "2d ago");
        assert_eq!(age(now, 0), "-");
        assert_eq!(age(now, now + 5), "0s ago", "a clock a little ahead");
    }

    #[test]
    fn columns_line_up() {
        let rows = [
            ["A".to_string(), "BB".to_string(), "C".to_string()],
            ["aaaa".to_string(), "b".to_string(), "c".to_string()],
        ];
        assert_eq!(table(&rows), "A      BB   C\naaaa   b    c\n");
    }
}

//! `herdctl-bench profile WHAT N`: runs N jobs of one kind and nothing else, for callgrind.
//!
//! Wall-clock figures on a shared 2-core machine move by tens of percent between runs; the
//! instructions this process executes per job do not. Run the same kind with N = 1 and N = 11
//! under `valgrind --tool=callgrind` and subtract: the difference is the client's cost of ten jobs
//! (the engine's work happens in dockerd, which callgrind does not see). See BENCHMARKS.md.

use crate::fixture::{Ctx, PROMPT};
use crate::floor::list_path;
use crate::stream::producer_argv;

pub const KINDS: [&str; 5] = [
    "warm-rust",
    "warm-floor",
    "stream-rust",
    "stream-agent",
    "stream-drain",
];

pub fn run(kind: &str, n: usize) -> Result<(), String> {
    let ctx = Ctx::new(true)?;
    let prompt = format!("{PROMPT}\n");
    let agent = ctx.agent("profile");
    let config = ctx.config(false, 5);
    let container = ctx
        .runner
        .run(ctx.job(&agent, &config, &["true"], b""), |_| {})
        .map_err(|e| format!("profile: first job: {e}"))?
        .container_name;
    let mut floor = ctx.floor();
    let list = list_path(&[
        "dev.herdctl.managed=1",
        &format!("dev.herdctl.agent={agent}"),
    ]);
    // 20 MiB per stream job: enough to dwarf the job's fixed cost, short under callgrind.
    let argv = producer_argv(20);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    for _ in 0..n {
        match kind {
            "warm-rust" => {
                let spec = ctx.job(&agent, &config, &["cat"], prompt.as_bytes());
                let mut job = ctx.runner.start(spec).map_err(|e| e.to_string())?;
                while job.next_line().is_some() {}
                let report = job.finish();
                if !report.outcome.success() {
                    return Err(report.outcome.describe());
                }
            }
            "warm-floor" => {
                crate::warm::floor_job(&mut floor, &container, &list, Some(&prompt))
                    .map_err(|e| e.to_string())?;
            }
            "stream-rust" => {
                let mut bytes = 0;
                let spec = ctx.job(&agent, &config, &argv, b"");
                let mut job = ctx.runner.start(spec).map_err(|e| e.to_string())?;
                while let Some(line) = job.next_line() {
                    bytes += line.len() + 1;
                }
                let report = job.finish();
                if !report.outcome.success() || bytes != 20 << 20 {
                    return Err(format!("{} after {bytes} bytes", report.outcome.describe()));
                }
            }
            "stream-agent" => {
                // The Node API's producer side without Node: herdctl's agent job, messages as
                // strings (what the addon hands to JS).
                use herdctl_container::agent::{AgentJob, AgentRequest, Command, ExecuteOptions};
                let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
                let request = AgentRequest {
                    config: config.clone(),
                    agent: serde_json::json!({"name": agent, "working_directory": ctx.workspace()}),
                    options: ExecuteOptions::new(""),
                    command: Command::raw(argv, Vec::new()).map_err(|e| e.to_string())?,
                    deadline: None,
                    translate_paths: false,
                    tool_handler: None,
                };
                let mut job = AgentJob::start(&ctx.runner, request).map_err(|e| e.to_string())?;
                let mut n = 0;
                while let Some(m) = job.next_message() {
                    n += m.len() + 1;
                }
                // The lines, and the closing error (the producer prints no `result`).
                if n < 20 << 20 {
                    return Err(format!("{n} bytes of messages"));
                }
            }
            "stream-drain" => {
                let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
                crate::stream::drain(&mut floor, &container, &argv).map_err(|e| e.to_string())?;
            }
            other => return Err(format!("profile: {other:?} is not one of {KINDS:?}")),
        }
    }
    Ok(())
}

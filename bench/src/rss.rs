//! Memory under a flood: 1 GiB of JSONL streams into a consumer that reads slower than the
//! producer writes; the peak resident set must not grow with the output.
//!
//! Each measurement runs in a fresh child process (this binary, `rss-child`), so what the parent
//! allocated before cannot hide or inflate the growth. The child runs one small job first (so
//! first-use allocations are in the baseline), resets the kernel's high-water mark
//! (`/proc/self/clear_refs`), streams, and reports the peak (`VmHWM`) against the baseline.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::ext::Node;
use crate::fixture::Ctx;
use crate::report::Row;
use crate::stats::Samples;
use crate::stream::{producer_argv, BLOCK};

const FIGURE: &str = "peak RSS growth, 1 GiB into a slow consumer";
const MIB: u64 = 1024;
/// The slow consumer sleeps this long after every `PACE_LINES` lines (about 100 MB/s, well under
/// what the producer and the engine sustain).
const PACE: Duration = Duration::from_millis(1);
const PACE_LINES: u64 = 128;

pub fn run(ctx: &Ctx, node: &mut Option<Node>) -> Result<Vec<Row>, String> {
    let agent = ctx.agent("rss");
    let block = ctx.docker_block(false, 5);
    let exe = std::env::current_exe().map_err(|e| format!("find the bench binary: {e}"))?;
    let rounds = ctx.n(1, 3);
    let mut rust = Samples::new();
    let mut rates = Samples::new();
    for _ in 0..rounds {
        let out = Command::new(&exe)
            .arg("rss-child")
            .arg(
                json!({"agent": agent, "docker": block, "stateDir": ctx.state_dir(),
                        "workspace": ctx.workspace(), "mib": MIB})
                .to_string(),
            )
            .output()
            .map_err(|e| format!("rss: run the child: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "rss: child failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "rss: child said {:?}: {e}",
                String::from_utf8_lossy(&out.stdout)
            )
        })?;
        rust.push(Node::num(&v, "growth_mb")?);
        rates.push(Node::num(&v, "mb_s")?);
    }
    let mut rows =
        vec![Row::new(FIGURE, "Rust API", "MiB", &rust).target("< 64 MiB", rust.p90() < 64.0)];
    rows.push(Row::new(FIGURE, "(consumer's pace, Rust)", "MB/s", &rates));
    if node.as_ref().is_some_and(|n| n.has("runner-rss")) {
        // The Node figure runs in its own node process for the same reason (see runner-ops.js).
        let n = node.as_mut().expect("checked above");
        let mut js = Samples::new();
        for _ in 0..rounds {
            let v = n.call(json!({"op": "runner-rss", "agent": agent, "docker": block,
                "stateDir": ctx.state_dir(), "workspace": ctx.workspace(),
                "cmd": producer_argv(MIB), "bytes": MIB * BLOCK}))?;
            js.push(Node::num(&v, "growth_mb")?);
        }
        rows.push(Row::new(FIGURE, "Node API", "MiB", &js).target("< 64 MiB", js.p90() < 64.0));
    }
    Ok(rows)
}

/// The child: `rss-child '{"agent":..., "docker":..., "stateDir":..., "workspace":..., "mib":N}'`.
pub fn child(arg: &str) -> Result<(), String> {
    use herdctl_container::{
        resolve_docker_config, Credentials, Engine, JobSpec, Runner, RunnerOptions,
    };
    let v: Value = serde_json::from_str(arg).map_err(|e| format!("rss-child: {e}"))?;
    let s = |k: &str| {
        v[k].as_str()
            .map(String::from)
            .ok_or(format!("rss-child: no {k}"))
    };
    let mib = v["mib"].as_u64().ok_or("rss-child: no mib")?;
    let config = resolve_docker_config(&v["docker"]).map_err(|e| e.to_string())?;
    let engine = Engine::connect().map_err(|e| e.to_string())?;
    let runner =
        Runner::new(engine, RunnerOptions::new(s("stateDir")?)).map_err(|e| e.to_string())?;
    let job = |argv: Vec<String>| {
        let mut spec = JobSpec::new(s("agent")?, config.clone(), s("workspace")?, argv);
        spec.credentials = Some(Credentials::none());
        Ok::<_, String>(spec)
    };
    // One job first: the runner's lazily made state belongs to the baseline.
    runner
        .run(job(vec!["true".into()])?, |_| {})
        .map_err(|e| e.to_string())?;
    let baseline = status_kb("VmRSS")?;
    // Reset the high-water mark to the current RSS (Linux 4.0+; as root or the owner).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();

    let mut running = runner
        .start(job(producer_argv(mib))?)
        .map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let mut bytes = 0u64;
    let mut lines = 0u64;
    while let Some(line) = running.next_line() {
        bytes += line.len() as u64 + 1;
        lines += 1;
        if lines.is_multiple_of(PACE_LINES) {
            std::thread::sleep(PACE);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let report = running.finish();
    if !report.outcome.success() || bytes != mib * BLOCK {
        return Err(format!(
            "rss-child: {} after {bytes} bytes",
            report.outcome.describe()
        ));
    }
    let peak = status_kb("VmHWM")?;
    println!(
        "{}",
        json!({"baseline_kb": baseline, "peak_kb": peak, "hwm_reset": reset,
               "growth_mb": (peak.saturating_sub(baseline)) as f64 / 1024.0,
               "mb_s": bytes as f64 / 1e6 / secs})
    );
    Ok(())
}

/// A `kB` field of `/proc/self/status`.
fn status_kb(field: &str) -> Result<u64, String> {
    let text = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {field} in /proc/self/status"))
}

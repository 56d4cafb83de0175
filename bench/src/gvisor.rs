//! What the second boundary costs: the same jobs through the Rust API under gVisor (`runsc`, as
//! scripts/ensure-engine registers it) beside the engine's default runc, in the same rounds.
//!
//! - warm job (`cat` of a one-line prompt in the agent's running persistent container), start to
//!   exit: what every job of a persistent agent pays;
//! - warm job starting node (`node -e ''`): an agent's CLI or SDK is a node process, and its
//!   start-up is system calls, which gVisor serves itself;
//! - cold ephemeral job (acquire, the in-container check with the kernel proof, run, release):
//!   every job of an ephemeral agent;
//! - stream: 64 MiB of 1 KiB JSONL lines (16 with `--quick`), its rate and the CPU per MiB of this
//!   process and of the whole machine (gVisor's Sentry and gofer run on the host and are counted
//!   there).

use std::time::{Duration, Instant};

use crate::cpu;
use crate::fixture::{Ctx, PROMPT};
use crate::report::Row;
use crate::stats::Samples;
use crate::stream::{producer_argv, BLOCK};

/// gVisor's name as scripts/ensure-engine registers it.
const GVISOR: &str = "runsc";

/// The runtimes measured, in the rows' order: the engine's default first, as the baseline.
const RUNTIMES: [(Option<&str>, &str); 2] =
    [(None, "runc (default)"), (Some(GVISOR), "gVisor (runsc)")];

pub fn run(ctx: &Ctx) -> Result<Vec<Row>, String> {
    let info = ctx
        .engine
        .info()
        .map_err(|e| format!("gvisor: engine info: {e}"))?;
    if !info.runtimes.contains_key(GVISOR) {
        return Err(format!(
            "gvisor: the engine lists no {GVISOR} (run scripts/ensure-engine); {}",
            herdctl_container::ADD_GVISOR
        ));
    }
    let prompt = format!("{PROMPT}\n");
    let mut rows = Vec::new();

    // Warm: one persistent agent per runtime, its container made before the rounds.
    let warm: Vec<_> = RUNTIMES
        .iter()
        .map(|(runtime, _)| {
            let agent = ctx.agent(&format!("gv-warm-{}", runtime.unwrap_or("runc")));
            let config = config(ctx, *runtime, false);
            let cat = ctx.job(&agent, &config, &["cat"], prompt.as_bytes());
            let node = ctx.job(&agent, &config, &["node", "-e", ""], b"");
            (cat, node)
        })
        .collect();
    for (cat, _) in &warm {
        job(ctx, cat).map_err(|e| format!("gvisor: first warm job: {e}"))?;
    }
    let rounds = ctx.n(4, 20);
    let mut cat_ms = [Samples::new(), Samples::new()];
    let mut node_ms = [Samples::new(), Samples::new()];
    for round in 0..rounds + 1 {
        for i in crate::stats::order(round, RUNTIMES.len()) {
            let c = job(ctx, &warm[i].0)?;
            let n = job(ctx, &warm[i].1)?;
            if round > 0 {
                cat_ms[i].push_ms(c);
                node_ms[i].push_ms(n);
            }
        }
    }
    pair(&mut rows, "warm job (cat): start → exit", "ms", &cat_ms);
    pair(
        &mut rows,
        "warm job (node -e ''): start → exit",
        "ms",
        &node_ms,
    );

    // Cold: one ephemeral agent per runtime, keeping 2 containers (retention removes one a job).
    let cold: Vec<_> = RUNTIMES
        .iter()
        .map(|(runtime, _)| {
            let agent = ctx.agent(&format!("gv-cold-{}", runtime.unwrap_or("runc")));
            ctx.job(
                &agent,
                &config(ctx, *runtime, true),
                &["cat"],
                prompt.as_bytes(),
            )
        })
        .collect();
    let rounds = ctx.n(3, 8);
    let mut cold_ms = [Samples::new(), Samples::new()];
    for round in 0..rounds + 2 {
        for i in crate::stats::order(round, RUNTIMES.len()) {
            let t = job(ctx, &cold[i])?;
            // The first two fill the agent up to its retention limit.
            if round >= 2 {
                cold_ms[i].push_ms(t);
            }
        }
    }
    pair(
        &mut rows,
        "cold ephemeral job: acquire + check + run + release",
        "ms",
        &cold_ms,
    );

    // Stream: the producer of `stream.rs`, fewer MiB (gVisor's pipes are the slow part).
    let mib = if ctx.quick { 16 } else { 64 };
    let streams: Vec<_> = RUNTIMES
        .iter()
        .map(|(runtime, _)| {
            let agent = ctx.agent(&format!("gv-stream-{}", runtime.unwrap_or("runc")));
            let argv = producer_argv(mib);
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            ctx.job(&agent, &config(ctx, *runtime, false), &argv, b"")
        })
        .collect();
    let rounds = ctx.n(2, 6);
    let mut rate = [Samples::new(), Samples::new()];
    let mut own = [Samples::new(), Samples::new()];
    let mut machine = [Samples::new(), Samples::new()];
    for round in 0..rounds + 1 {
        for i in crate::stats::order(round, RUNTIMES.len()) {
            let (p0, m0) = (cpu::process_ms(), cpu::machine_ms());
            let (bytes, secs) = lines(ctx, &streams[i])?;
            if bytes != mib * BLOCK {
                return Err(format!(
                    "gvisor: stream: {bytes} bytes, expected {}",
                    mib * BLOCK
                ));
            }
            // Round 0 makes the containers and warms the page cache.
            if round > 0 {
                rate[i].push(bytes as f64 / 1e6 / secs);
                own[i].push((cpu::process_ms() - p0) / mib as f64);
                machine[i].push((cpu::machine_ms() - m0) / mib as f64);
            }
        }
    }
    let figure = format!("stream: {mib} MiB of 1 KiB JSONL lines");
    pair(&mut rows, &figure, "MB/s", &rate);
    pair(
        &mut rows,
        "stream: CPU per MiB, consumer process",
        "ms",
        &own,
    );
    pair(
        &mut rows,
        "stream: CPU per MiB, whole machine",
        "ms",
        &machine,
    );
    Ok(rows)
}

/// The benchmark's docker block under `runtime`.
fn config(ctx: &Ctx, runtime: Option<&str>, ephemeral: bool) -> herdctl_container::DockerConfig {
    let mut block = ctx.docker_block(ephemeral, 2);
    if let Some(r) = runtime {
        block["runtime"] = serde_json::json!(r);
    }
    herdctl_container::resolve_docker_config(&block)
        .expect("the benchmark's own docker block is valid")
}

/// The two rows of a figure: runc, then gVisor as a ratio of it.
fn pair(rows: &mut Vec<Row>, figure: &str, unit: &'static str, samples: &[Samples; 2]) {
    rows.push(Row::new(figure, RUNTIMES[0].1, unit, &samples[0]));
    rows.push(Row::new(figure, RUNTIMES[1].1, unit, &samples[1]).vs("runc", &samples[0]));
}

/// One job to its end; its wall-clock time from the call to the release.
fn job(ctx: &Ctx, spec: &herdctl_container::JobSpec) -> Result<Duration, String> {
    let t = Instant::now();
    let report = ctx
        .runner
        .run(spec.clone(), |_| {})
        .map_err(|e| format!("gvisor: {}: {e}", spec.agent))?;
    if !report.outcome.success() {
        return Err(format!(
            "gvisor: {}: {}",
            spec.agent,
            report.outcome.describe()
        ));
    }
    Ok(t.elapsed())
}

/// The producer's lines through the runner: payload bytes and seconds from the first line to
/// the end.
fn lines(ctx: &Ctx, spec: &herdctl_container::JobSpec) -> Result<(u64, f64), String> {
    let mut job = ctx
        .runner
        .start(spec.clone())
        .map_err(|e| format!("gvisor: stream: {e}"))?;
    let mut first = None;
    let mut bytes = 0u64;
    while let Some(line) = job.next_line() {
        first.get_or_insert_with(Instant::now);
        bytes += line.len() as u64 + 1;
    }
    let secs = first.map(|t| t.elapsed().as_secs_f64()).unwrap_or(f64::NAN);
    let report = job.finish();
    if !report.outcome.success() {
        return Err(format!("gvisor: stream: {}", report.outcome.describe()));
    }
    Ok((bytes, secs))
}

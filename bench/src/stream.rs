//! Stream throughput: 200 MiB of 1 KiB JSONL lines printed by a process in the container, into
//! whole lines in Rust, against a raw socket drain of the same exec (the engine's own ceiling),
//! and into JS objects through dockerode + readline + `JSON.parse`.
//!
//! Rates are payload bytes over the time from the first byte to the end of the stream, so the
//! process's start-up (node, in the container) is charged to no one.

use std::io;
use std::time::Instant;

use serde_json::json;

use crate::cpu;
use crate::ext::Node;
use crate::fixture::{Ctx, USER};
use crate::floor::{q, Floor};
use crate::report::{Better, Row};
use crate::stats::Samples;

/// One block of 1024 lines of exactly 1024 bytes (newline included), written `argv[1]` times with
/// blocking writes: node in the container produces faster than the engine copies.
pub const PRODUCER: &str = r#"const n=+process.argv[1];const fs=require("fs");const b=[];for(let i=0;i<1024;i++){const h=`{"type":"assistant","seq":${i},"text":"`;b.push(h+"x".repeat(1024-h.length-3)+`"}\n`)}const blk=Buffer.from(b.join(""));for(let i=0;i<n;i++){let o=0;while(o<blk.length)o+=fs.writeSync(1,blk,o)}"#;
/// Bytes per block: 1024 lines of 1 KiB.
pub const BLOCK: u64 = 1024 * 1024;
const FIGURE: &str = "stream: 200 MiB of 1 KiB JSONL lines";

pub fn producer_argv(mib: u64) -> Vec<String> {
    vec!["node".into(), "-e".into(), PRODUCER.into(), mib.to_string()]
}

pub fn run(ctx: &Ctx, node: &mut Option<Node>) -> Result<Vec<Row>, String> {
    let mib = 200;
    let payload = mib * BLOCK;
    let agent = ctx.agent("stream");
    let config = ctx.config(false, 5);
    let argv = producer_argv(mib);
    let argv_ref: Vec<&str> = argv.iter().map(String::as_str).collect();
    let spec = ctx.job(&agent, &config, &argv_ref, b"");
    let container = ctx
        .runner
        .run(ctx.job(&agent, &config, &["true"], b""), |_| {})
        .map_err(|e| format!("stream: first job: {e}"))?
        .container_id;
    let mut floor = ctx.floor();

    let dockerode = node.as_ref().is_some_and(|n| n.has("dockerode-stream"));
    let node_runner = node.as_ref().is_some_and(|n| n.has("runner-stream"));
    // Methods: 0 Rust lines, 1 raw drain, 2 dockerode, 3 Node API; in a new order each round.
    let mut methods = vec![0, 1];
    if dockerode {
        methods.push(2);
    }
    if node_runner {
        methods.push(3);
    }
    let rounds = ctx.n(2, 11);
    // Per method: MB/s, then CPU ms of the consumer's process and of the whole machine.
    let mut rate: [Samples; 4] = Default::default();
    let mut cpu: [(Samples, Samples); 4] = Default::default();
    let runner_cmd = json!({"op": "runner-stream", "agent": agent,
        "docker": ctx.docker_block(false, 5), "stateDir": ctx.state_dir(),
        "workspace": ctx.workspace(), "cmd": argv});
    let dockerode_cmd = json!({"op": "dockerode-stream", "container": container, "cmd": argv});
    for round in 0..rounds + 1 {
        for i in crate::stats::order(round, methods.len()) {
            let m = methods[i];
            let (p0, m0) = (cpu::process_ms(), cpu::machine_ms());
            let (secs, own) = match m {
                0 => {
                    let (bytes, secs) = rust_lines(ctx, &spec)?;
                    if bytes != payload {
                        return Err(format!("stream: rust: {bytes} bytes, expected {payload}"));
                    }
                    (secs, cpu::process_ms() - p0)
                }
                1 => {
                    let (bytes, secs) = drain(&mut floor, &container, &argv)
                        .map_err(|e| format!("stream: drain: {e}"))?;
                    if bytes < payload {
                        return Err(format!("stream: drain: {bytes} bytes, expected {payload}+"));
                    }
                    (secs, cpu::process_ms() - p0)
                }
                _ => {
                    let n = node
                        .as_mut()
                        .expect("a node method runs only with a driver");
                    let v = n.call(if m == 2 {
                        dockerode_cmd.clone()
                    } else {
                        runner_cmd.clone()
                    })?;
                    check_bytes(
                        if m == 2 { "dockerode" } else { "node runner" },
                        &v,
                        payload,
                    )?;
                    (Node::num(&v, "ms")? / 1000.0, Node::num(&v, "cpu_ms")?)
                }
            };
            // Round 0 warms the page cache and the engine.
            if round > 0 {
                rate[m].push(payload as f64 / 1e6 / secs);
                cpu[m].0.push(own);
                cpu[m].1.push(cpu::machine_ms() - m0);
            }
        }
    }
    let [rust, raw, js, nr] = &rate;

    let mut rows = vec![
        Row::new(FIGURE, "raw socket drain (engine floor)", "MB/s", raw),
        Row::new(FIGURE, "Rust API, lines", "MB/s", rust)
            .vs("raw drain", raw)
            .ratio_target(Better::Higher, 0.8),
    ];
    if dockerode {
        rows.push(
            Row::new(FIGURE, "dockerode + readline + JSON.parse", "MB/s", js).vs("raw drain", raw),
        );
    }
    if node_runner {
        let row = Row::new(FIGURE, "Node API, JS objects", "MB/s", nr);
        rows.push(if dockerode {
            row.vs("dockerode", js).ratio_target(Better::Higher, 1.5)
        } else {
            row.vs("raw drain", raw)
        });
    }
    let names = [
        "Rust API, lines",
        "raw socket drain",
        "dockerode + readline + JSON.parse",
        "Node API, JS objects",
    ];
    for (what, pick) in [
        ("stream: CPU per 200 MiB, consumer process", 0),
        ("stream: CPU per 200 MiB, whole machine", 1),
    ] {
        for (name, (own, machine)) in names.iter().zip(&cpu) {
            let s = if pick == 0 { own } else { machine };
            if s.len() > 0 {
                rows.push(Row::new(what, name, "ms", s));
            }
        }
    }
    Ok(rows)
}

fn check_bytes(who: &str, v: &serde_json::Value, payload: u64) -> Result<(), String> {
    let bytes = Node::num(v, "bytes")? as u64;
    if bytes != payload {
        return Err(format!("stream: {who}: {bytes} bytes, expected {payload}"));
    }
    Ok(())
}

/// The producer through the runner; returns the payload bytes (lines plus their newlines) and the
/// seconds from the first line to the end of the stream.
fn rust_lines(ctx: &Ctx, spec: &herdctl_container::JobSpec) -> Result<(u64, f64), String> {
    let mut job = ctx
        .runner
        .start(spec.clone())
        .map_err(|e| format!("stream: rust: {e}"))?;
    let mut first = None;
    let mut bytes = 0u64;
    while let Some(line) = job.next_line() {
        first.get_or_insert_with(Instant::now);
        bytes += line.len() as u64 + 1;
    }
    let secs = first.map(|t| t.elapsed().as_secs_f64()).unwrap_or(f64::NAN);
    let report = job.finish();
    if !report.outcome.success() {
        return Err(format!("stream: rust: {}", report.outcome.describe()));
    }
    Ok((bytes, secs))
}

/// The same exec through the floor, its output read and thrown away without demultiplexing;
/// returns the raw bytes (frame headers included) and the seconds from the first byte to the end.
pub fn drain(f: &mut Floor, container: &str, argv: &[String]) -> io::Result<(u64, f64)> {
    let cmd: Vec<String> = argv.iter().map(|a| q(a)).collect();
    let body = format!(
        r#"{{"AttachStdin":true,"AttachStdout":true,"AttachStderr":true,"Tty":false,"Cmd":[{}],"Env":[],"User":{},"WorkingDir":"/workspace"}}"#,
        cmd.join(","),
        q(USER)
    );
    let exec_id = f
        .call(
            "POST",
            &format!("/containers/{container}/exec"),
            Some(&body),
        )?
        .expect("exec create", &[201])?
        .str_field("Id")?;
    let mut h = f.exec_start(&exec_id)?;
    h.send_stdin(b"")?;
    let (bytes, first) = h.drain()?;
    let secs = first.map(|t| t.elapsed().as_secs_f64()).unwrap_or(f64::NAN);
    Ok((bytes, secs))
}

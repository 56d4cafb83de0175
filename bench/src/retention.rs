//! Retention with 500 containers across 50 agents: what one agent's prune costs as the number of
//! containers it removes grows, and as the number it keeps (in the engine) shrinks.
//!
//! The containers are created directly (stopped, never started: create is fast) with the labels
//! the runner puts on its own, and a `dev.herdctl.created` an hour in the past (a young container
//! in state `created` may be another process's between create and start, which retention spares).
//! Half the agents are pruned by the runner, half by the floor (the same list call and removes,
//! by hand), step by step: keep 10, 9, 7, 4, 4, 0 removes 0, 1, 2, 3, 0, 4 per agent.
//!
//! Call counts come from a counting proxy between a second runner and the engine, on agents of
//! their own, so the timed prunes do not pay for the extra hop.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use herdctl_container::engine::Engine;
use herdctl_container::{Runner, RunnerOptions};
use serde_json::json;

use crate::fixture::{now_ms, Ctx, IMAGE};
use crate::floor::{list_path, Floor};
use crate::report::{Better, Row};
use crate::stats::{fit_line, Samples};

const AGENTS: usize = 50;
const PER_AGENT: usize = 10;
const FIGURE: &str = "retention: one agent's prune (50 agents, 500 containers)";

pub fn run(ctx: &Ctx) -> Result<Vec<Row>, String> {
    let agents: Vec<String> = (0..AGENTS).map(|a| ctx.agent(&format!("ret{a}"))).collect();
    let t = Instant::now();
    // ids[a] = agent a's containers, oldest first.
    let mut ids = create_fleet(ctx, &agents, PER_AGENT, "ret")?;
    let created_in = t.elapsed();
    eprintln!(
        "bench: retention: created {} containers in {:.1} s",
        AGENTS * PER_AGENT,
        created_in.as_secs_f64()
    );

    let mut floor = ctx.floor();
    // (keep, removed per agent, containers in the engine before the step)
    let steps = [(10, 0), (9, 1), (7, 2), (4, 3), (4, 0), (0, 4)];
    let mut rust_at: Vec<(usize, usize, Samples)> = Vec::new();
    let mut floor_at: Vec<Samples> = Vec::new();
    let mut in_engine = AGENTS * PER_AGENT;
    for (keep, removed) in steps {
        let mut r = Samples::new();
        let mut fl = Samples::new();
        for (a, agent) in agents.iter().enumerate() {
            if a % 2 == 0 {
                let t = Instant::now();
                let report = ctx
                    .runner
                    .prune(agent, keep)
                    .map_err(|e| format!("retention: prune {agent}: {e}"))?;
                r.push_ms(t.elapsed());
                if report.removed.len() != removed || !report.warnings.is_empty() {
                    return Err(format!(
                        "retention: prune {agent} to {keep} removed {} (expected {removed}), warnings {:?}",
                        report.removed.len(),
                        report.warnings
                    ));
                }
            } else {
                let list = list_path(&[
                    "dev.herdctl.managed=1",
                    &format!("dev.herdctl.agent={agent}"),
                ]);
                let excess = ids[a].len() - keep;
                let victims: Vec<String> = ids[a].drain(..excess).collect();
                let t = Instant::now();
                floor_prune(&mut floor, &list, &victims)
                    .map_err(|e| format!("retention: floor prune {agent}: {e}"))?;
                fl.push_ms(t.elapsed());
            }
        }
        rust_at.push((removed, in_engine, r));
        floor_at.push(fl);
        in_engine -= removed * AGENTS;
    }

    let mut rows = Vec::new();
    for ((removed, kept, r), fl) in rust_at.iter().zip(&floor_at) {
        let method = format!("{removed} removed, {kept} in engine");
        rows.push(Row::new(FIGURE, &format!("floor: {method}"), "ms", fl));
        rows.push(Row::new(FIGURE, &format!("Rust: {method}"), "ms", r).vs("floor", fl));
    }
    // Linear in removed: fit the Rust and floor medians of the steps against containers removed.
    let line = |s: &dyn Fn(usize) -> f64| {
        fit_line(
            &rust_at
                .iter()
                .enumerate()
                .map(|(i, (rm, _, _))| (*rm as f64, s(i)))
                .collect::<Vec<_>>(),
        )
    };
    let (rust_a, rust_b) = line(&|i| rust_at[i].2.median());
    let (floor_a, floor_b) = line(&|i| floor_at[i].median());
    let one = |v: f64| {
        let mut s = Samples::new();
        s.push(v);
        s
    };
    rows.push(Row::new(
        FIGURE,
        "floor: fit, cost per removed container",
        "ms",
        &one(floor_b),
    ));
    rows.push(
        Row::new(
            FIGURE,
            "Rust: fit, cost per removed container",
            "ms",
            &one(rust_b),
        )
        .vs("floor", &one(floor_b))
        .ratio_target(Better::Lower, 1.15),
    );
    rows.push(Row::new(
        FIGURE,
        "floor: fit, fixed cost (the list call)",
        "ms",
        &one(floor_a),
    ));
    rows.push(
        Row::new(
            FIGURE,
            "Rust: fit, fixed cost (the list call)",
            "ms",
            &one(rust_a),
        )
        .vs("floor", &one(floor_a))
        .ratio_target(Better::Lower, 1.15),
    );
    // Not with kept: removing nothing with 500 in the engine vs with 200.
    let (at500, at200) = (&rust_at[0].2, &rust_at[4].2);
    let growth = at500.median() / at200.median();
    let floor_growth = floor_at[0].median() / floor_at[4].median();
    rows.push(
        Row::new(
            FIGURE,
            "Rust: 0 removed, 500 vs 200 in engine",
            "×",
            &one(growth),
        )
        .vs("floor's 500 vs 200", &one(floor_growth))
        .target(
            "does not grow with kept (≤ 1.15× the engine's own growth)",
            growth <= floor_growth.max(1.0) * 1.15,
        ),
    );
    rows.extend(count_calls(ctx)?);
    Ok(rows)
}

/// Creates `per_agent` stopped containers for each agent, on four threads; returns their ids,
/// oldest first per agent.
fn create_fleet(
    ctx: &Ctx,
    agents: &[String],
    per_agent: usize,
    what: &str,
) -> Result<Vec<Vec<String>>, String> {
    let hour_ago = now_ms() - 3_600_000;
    let jobs: Vec<(usize, usize)> = (0..agents.len())
        .flat_map(|a| (0..per_agent).map(move |j| (a, j)))
        .collect();
    let jobs = Mutex::new(jobs.into_iter());
    let ids = Mutex::new(vec![vec![String::new(); per_agent]; agents.len()]);
    let failed = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let Some((a, j)) = jobs.lock().expect("no panics while held").next() else {
                    return;
                };
                let mut labels = ctx.own_labels();
                labels["dev.herdctl.managed"] = json!("1");
                labels["dev.herdctl.agent"] = json!(agents[a]);
                labels["dev.herdctl.mode"] = json!("ephemeral");
                labels["dev.herdctl.config-hash"] = json!("bench");
                labels["dev.herdctl.created"] = json!((hour_ago + (j as u64) * 1000).to_string());
                let body = json!({"Image": IMAGE, "Cmd": ["true"], "Labels": labels,
                                  "HostConfig": {"NetworkMode": "none"}});
                match ctx
                    .engine
                    .create_container(&ctx.name(what, a * per_agent + j), &body)
                {
                    Ok(id) => ids.lock().expect("no panics while held")[a][j] = id,
                    Err(e) => {
                        *failed.lock().expect("no panics while held") = Some(e.to_string());
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().expect("threads ended") {
        return Err(format!("retention: create: {e}"));
    }
    Ok(ids.into_inner().expect("threads ended"))
}

/// The floor's prune: the same list call (read whole, not parsed: the floor knows its victims),
/// then a remove per victim.
fn floor_prune(f: &mut Floor, list: &str, victims: &[String]) -> std::io::Result<()> {
    f.call("GET", list, None)?.expect("list", &[200])?;
    for id in victims {
        f.call(
            "DELETE",
            &format!("/containers/{id}?force=false&v=true"),
            None,
        )?
        .expect("remove", &[204])?;
    }
    Ok(())
}

/// Prunes through a counting proxy: 4 agents of 5 containers among the fleet's, keep 2, then keep
/// 2 again; every prune must make exactly one list call, plus one remove per container removed.
fn count_calls(ctx: &Ctx) -> Result<Vec<Row>, String> {
    let agents: Vec<String> = (0..4).map(|a| ctx.agent(&format!("count{a}"))).collect();
    create_fleet(ctx, &agents, 5, "count")?;
    let proxy = Proxy::start(&ctx.socket, &ctx.dir.join("proxy.sock"))?;
    let engine = Engine::unix(&proxy.path).map_err(|e| format!("engine via proxy: {e}"))?;
    let runner = Runner::new(engine, RunnerOptions::new(ctx.dir.join("state")))
        .map_err(|e| format!("runner via proxy: {e}"))?;
    let mut lists = Samples::new();
    let mut others = Samples::new();
    for keep in [2, 2] {
        for agent in &agents {
            proxy.take();
            let report = runner
                .prune(agent, keep)
                .map_err(|e| format!("retention: counted prune: {e}"))?;
            let calls = proxy.take();
            let list_calls = calls
                .iter()
                .filter(|c| c.starts_with("GET /containers/json?"))
                .count();
            let removes = calls
                .iter()
                .filter(|c| c.starts_with("DELETE /containers/"))
                .count();
            if removes != report.removed.len() {
                return Err(format!(
                    "retention: {removes} removes for {} removed: {calls:?}",
                    report.removed.len()
                ));
            }
            lists.push(list_calls as f64);
            others.push((calls.len() - list_calls - removes) as f64);
        }
    }
    Ok(vec![
        Row::new(
            FIGURE,
            "Rust: list calls per prune (counted)",
            "calls",
            &lists,
        )
        .target(
            "exactly 1",
            lists.quantile(0.0) == 1.0 && lists.quantile(1.0) == 1.0,
        ),
        Row::new(
            FIGURE,
            "Rust: calls other than list and remove",
            "calls",
            &others,
        )
        .target("none", others.quantile(1.0) == 0.0),
    ])
}

/// A unix-socket proxy to the engine that records each request line (method and path, version
/// prefix dropped) sent through it.
struct Proxy {
    path: PathBuf,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Proxy {
    fn start(engine: &Path, path: &Path) -> Result<Proxy, String> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).map_err(|e| format!("proxy: bind: {e}"))?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (engine, log) = (engine.to_path_buf(), seen.clone());
        // Detached: it serves until the process ends (the benchmark's last step).
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(upstream) = UnixStream::connect(&engine) else {
                    continue;
                };
                let (c2, u2) = match (client.try_clone(), upstream.try_clone()) {
                    (Ok(c), Ok(u)) => (c, u),
                    _ => continue,
                };
                let log = log.clone();
                std::thread::spawn(move || pipe(client, upstream, Some(log)));
                std::thread::spawn(move || pipe(u2, c2, None));
            }
        });
        Ok(Proxy {
            path: path.to_path_buf(),
            seen,
        })
    }

    /// The request lines seen since the last call, like `GET /containers/json?...`.
    fn take(&self) -> Vec<String> {
        let bytes = std::mem::take(&mut *self.seen.lock().expect("no panics while held"));
        let text = String::from_utf8_lossy(&bytes);
        text.split("\r\n")
            .filter_map(|line| {
                let (method, rest) = line.split_once(' ')?;
                let path = rest.strip_suffix(" HTTP/1.1")?;
                if !["GET", "POST", "DELETE", "PUT", "HEAD"].contains(&method) {
                    return None;
                }
                let path = match path.strip_prefix("/v") {
                    Some(p) => p.find('/').map(|i| &p[i..]).unwrap_or(path),
                    None => path,
                };
                Some(format!("{method} {path}"))
            })
            .collect()
    }
}

fn pipe(mut from: UnixStream, mut to: UnixStream, log: Option<Arc<Mutex<Vec<u8>>>>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(l) = &log {
            l.lock()
                .expect("no panics while held")
                .extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

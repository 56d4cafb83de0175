//! Many jobs at once (issue 14): 20 jobs across 4 persistent agents, and 50 ephemeral jobs of
//! one agent with and without a warm pool, each against the engine floor making the same calls
//! from as many threads at once (a raw-socket client per thread). Wall time from the start
//! (a barrier) to the last job's end, and jobs per second.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use herdctl_container::engine::{CallEvent, EngineOptions};
use herdctl_container::{Engine, JobSpec, Runner, RunnerOptions, Timings};

use crate::fixture::{Ctx, PROMPT, USER};
use crate::floor::{list_path, q, Floor, CALLS};
use crate::pool::body_of;
use crate::report::{Better, Row};
use crate::stats::Samples;
use crate::warm::exec_cat;

/// Containers kept per ephemeral agent.
const KEEP: usize = 5;
const WARM_WAIT: Duration = Duration::from_secs(600);

/// `kill.sh` as the runner sends it (without its comment lines): persistent jobs run under it.
fn kill_script() -> String {
    include_str!("../../src/run/job/kill.sh")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One run of `n` jobs at once: the wall time, each job's time, this process's CPU, the engine
/// calls made, and (for the runner) each job's phases.
struct Burst {
    wall: Duration,
    jobs: Vec<Duration>,
    cpu_ms: f64,
    calls: BTreeMap<String, u64>,
    phases: Vec<Timings>,
}

/// Engine calls by kind (`DELETE /containers/{id}`), counted by a runner's engine observer.
type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

/// `POST /v1.41/containers/abc/stop` as `POST /containers/{id}/stop`.
fn kind(method: &str, path: &str) -> String {
    let mut out = String::from(method);
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).skip(1).collect();
    for (i, p) in parts.iter().enumerate() {
        let id = i > 0
            && matches!(parts[i - 1], "containers" | "exec")
            && !matches!(*p, "json" | "create");
        out.push('/');
        out.push_str(if id { "{id}" } else { p });
    }
    out.replacen('/', " /", 1)
}

/// A runner (with a pool of `pool`) whose engine counts its calls.
fn counted_runner(ctx: &Ctx, pool: Option<usize>) -> Result<(Runner, Counts), String> {
    let counts: Counts = Arc::default();
    let seen = counts.clone();
    let mut opts = EngineOptions::from_env().map_err(|e| e.to_string())?;
    opts.on_call = Some(Arc::new(move |e: &CallEvent| {
        *seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind(e.method, &e.path))
            .or_default() += 1;
    }));
    let engine = Engine::with_options(opts).map_err(|e| e.to_string())?;
    let mut options = RunnerOptions::new(ctx.state_dir());
    options.warm_pool = pool;
    let runner = Runner::new(engine, options).map_err(|e| e.to_string())?;
    Ok((runner, counts))
}

/// Runs `job(i)` on `n` threads released together; fails if any fails.
fn at_once<F>(n: usize, job: F) -> Result<Burst, String>
where
    F: Fn(usize) -> Result<(), String> + Send + Sync + 'static,
{
    let job = Arc::new(job);
    let barrier = Arc::new(Barrier::new(n + 1));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (job, barrier) = (job.clone(), barrier.clone());
            std::thread::spawn(move || -> Result<Duration, String> {
                barrier.wait();
                let t0 = Instant::now();
                job(i)?;
                Ok(t0.elapsed())
            })
        })
        .collect();
    let cpu0 = crate::cpu::process_total_ms();
    let calls0 = CALLS.load(Ordering::Relaxed);
    barrier.wait();
    let t0 = Instant::now();
    let mut jobs = Vec::with_capacity(n);
    let mut failure = None;
    for h in handles {
        match h.join() {
            Ok(Ok(d)) => jobs.push(d),
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some("a job thread panicked".into()),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let wall = t0.elapsed();
    let floor_calls = CALLS.load(Ordering::Relaxed) - calls0;
    Ok(Burst {
        wall,
        jobs,
        cpu_ms: crate::cpu::process_total_ms() - cpu0,
        calls: BTreeMap::from([("all".to_string(), floor_calls)]),
        phases: Vec::new(),
    })
}

fn rust(runner: &Runner, counts: &Counts, specs: Vec<JobSpec>) -> Result<Burst, String> {
    let runner = runner.clone();
    let phases: Arc<Mutex<Vec<Timings>>> = Arc::default();
    let kept = phases.clone();
    let before = counts.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut burst = at_once(specs.len(), move |i| {
        let report = runner
            .run(specs[i].clone(), |_| {})
            .map_err(|e| e.to_string())?;
        kept.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(report.timings.clone());
        if report.outcome.success() {
            Ok(())
        } else {
            Err(report.outcome.describe())
        }
    })?;
    let after = counts.lock().unwrap_or_else(|p| p.into_inner()).clone();
    burst.calls = after
        .into_iter()
        .map(|(k, v)| {
            let d = v - before.get(&k).copied().unwrap_or(0);
            (k, d)
        })
        .filter(|(_, v)| *v > 0)
        .collect();
    let all = burst.calls.values().sum();
    burst.calls.insert("all".into(), all);
    burst.phases = std::mem::take(&mut *phases.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(burst)
}

pub fn run(ctx: &Ctx) -> Result<Vec<Row>, String> {
    let mut rows = agents(ctx)?;
    rows.extend(ephemeral(ctx, false)?);
    rows.extend(ephemeral(ctx, true)?);
    Ok(rows)
}

/// The rows of one figure: wall time and jobs per second against the floor, CPU per job.
fn rows(figure: &str, n: usize, rust: &[Burst], floor: &[Burst]) -> Vec<Row> {
    let wall = |b: &[Burst]| {
        let mut s = Samples::new();
        b.iter().for_each(|x| s.push_ms(x.wall));
        s
    };
    let rate = |b: &[Burst]| {
        let mut s = Samples::new();
        b.iter()
            .for_each(|x| s.push(n as f64 / x.wall.as_secs_f64()));
        s
    };
    let per_job = |b: &[Burst], pick: fn(&Samples) -> f64| {
        let mut s = Samples::new();
        for x in b {
            let mut j = Samples::new();
            x.jobs.iter().for_each(|d| j.push_ms(*d));
            s.push(pick(&j));
        }
        s
    };
    let cpu = |b: &[Burst]| {
        let mut s = Samples::new();
        b.iter().for_each(|x| s.push(x.cpu_ms / n as f64));
        s
    };
    let (fw, rw) = (wall(floor), wall(rust));
    let (fr, rr) = (rate(floor), rate(rust));
    let mut out = vec![
        Row::new(
            figure,
            "wall time: engine floor, same calls at once",
            "ms",
            &fw,
        ),
        Row::new(figure, "wall time: Rust API", "ms", &rw)
            .vs("floor", &fw)
            .ratio_target(Better::Lower, 1.2),
        Row::new(figure, "jobs per second: engine floor", "jobs/s", &fr),
        Row::new(figure, "jobs per second: Rust API", "jobs/s", &rr)
            .vs("floor", &fr)
            .ratio_target(Better::Higher, 0.83),
        Row::new(
            figure,
            "median job: engine floor",
            "ms",
            &per_job(floor, Samples::median),
        ),
        Row::new(
            figure,
            "median job: Rust API",
            "ms",
            &per_job(rust, Samples::median),
        ),
        Row::new(
            figure,
            "client CPU per job: engine floor",
            "ms",
            &cpu(floor),
        ),
        Row::new(figure, "client CPU per job: Rust API", "ms", &cpu(rust)),
        Row::new(
            figure,
            "engine calls per job: engine floor",
            "calls",
            &calls(floor, "all", n),
        ),
        Row::new(
            figure,
            "engine calls per job: Rust API",
            "calls",
            &calls(rust, "all", n),
        ),
    ];
    // Where a job's time goes, from the runner's own per-phase timings (median over every job).
    for (name, pick) in [
        (
            "acquire (create, start, check)",
            (|t: &Timings| t.acquire) as fn(&Timings) -> Option<Duration>,
        ),
        ("exec create and start", |t: &Timings| t.exec_start),
        ("start → end of output", |t: &Timings| t.end),
        ("release (stop, retention)", |t: &Timings| t.release),
    ] {
        let mut s = Samples::new();
        rust.iter()
            .flat_map(|b| &b.phases)
            .filter_map(pick)
            .for_each(|d| s.push_ms(d));
        if s.len() > 0 {
            out.push(Row::new(
                figure,
                &format!("Rust API phase: {name}"),
                "ms",
                &s,
            ));
        }
    }
    if let Some(last) = rust.last() {
        let detail: Vec<String> = last
            .calls
            .iter()
            .filter(|(k, _)| *k != "all")
            .map(|(k, v)| format!("{k} {:.1}", *v as f64 / n as f64))
            .collect();
        eprintln!(
            "bench: {figure}: Rust API calls per job: {}",
            detail.join(", ")
        );
    }
    out
}

/// The calls of `kind` per job in each burst.
fn calls(b: &[Burst], kind: &str, n: usize) -> Samples {
    let mut s = Samples::new();
    for x in b {
        s.push(x.calls.get(kind).copied().unwrap_or(0) as f64 / n as f64);
    }
    s
}

/// 20 jobs at once, 5 in each of 4 agents' persistent containers.
fn agents(ctx: &Ctx) -> Result<Vec<Row>, String> {
    const AGENTS: usize = 4;
    const JOBS: usize = 20;
    let prompt = format!("{PROMPT}\n");
    let config = ctx.config(false, KEEP as u32);
    let mut specs = Vec::new();
    let mut containers = Vec::new();
    let mut lists = Vec::new();
    for a in 0..AGENTS {
        let agent = ctx.agent(&format!("many-{a}"));
        let spec = ctx.job(&agent, &config, &["cat"], prompt.as_bytes());
        let first = ctx
            .runner
            .run(spec.clone(), |_| {})
            .map_err(|e| format!("many: {e}"))?;
        containers.push(first.container_name);
        lists.push(list_path(&[
            "dev.herdctl.managed=1",
            &format!("dev.herdctl.agent={agent}"),
        ]));
        specs.push(spec);
    }
    let (runner, counts) = counted_runner(ctx, None)?;
    let script = Arc::new(kill_script());
    let (containers, lists) = (Arc::new(containers), Arc::new(lists));
    let socket = ctx.socket.clone();
    let mut rust_runs = Vec::new();
    let mut floor_runs = Vec::new();
    for round in 0..ctx.n(2, 6) {
        for i in crate::stats::order(round, 2) {
            if i == 0 {
                let all: Vec<JobSpec> = (0..JOBS).map(|j| specs[j % AGENTS].clone()).collect();
                rust_runs.push(rust(&runner, &counts, all)?);
            } else {
                let (script, containers, lists, socket, prompt) = (
                    script.clone(),
                    containers.clone(),
                    lists.clone(),
                    socket.clone(),
                    prompt.clone(),
                );
                floor_runs.push(at_once(JOBS, move |j| {
                    let mut f = Floor::new(&socket);
                    persistent_floor_job(
                        &mut f,
                        &containers[j % AGENTS],
                        &lists[j % AGENTS],
                        &script,
                        65100 + j as u32,
                        &prompt,
                    )
                    .map_err(|e| format!("many: floor: {e}"))
                })?);
            }
        }
    }
    Ok(rows(
        "20 jobs at once across 4 persistent agents",
        JOBS,
        &rust_runs,
        &floor_runs,
    ))
}

/// A persistent job's calls by hand: the container's inspect, the exec under `kill.sh` with a
/// group id of its own, stdin, output, exit code, the container's inspect, retention's list.
fn persistent_floor_job(
    f: &mut Floor,
    container: &str,
    list: &str,
    script: &str,
    gid: u32,
    prompt: &str,
) -> io::Result<()> {
    let id = f
        .call("GET", &format!("/containers/{container}/json"), None)?
        .expect("inspect", &[200])?
        .str_field("Id")?;
    let uid = USER.split(':').next().unwrap_or("1000");
    let body = format!(
        r#"{{"AttachStdin":true,"AttachStdout":true,"AttachStderr":true,"Tty":false,"Cmd":["sh","-c",{},"sh","run","{gid}","cat"],"Env":[],"User":"{uid}:{gid}","WorkingDir":"/workspace"}}"#,
        q(script)
    );
    let exec_id = f
        .call("POST", &format!("/containers/{id}/exec"), Some(&body))?
        .expect("exec create", &[201])?
        .str_field("Id")?;
    let mut h = f.exec_start(&exec_id)?;
    h.send_stdin(prompt.as_bytes())?;
    let mut out = 0;
    h.demux(|d| out += d.len())?;
    loop {
        let code = f
            .call("GET", &format!("/exec/{exec_id}/json"), None)?
            .expect("exec inspect", &[200])?
            .int_field("ExitCode")?;
        match code {
            Some(0) => break,
            Some(c) => return Err(io::Error::other(format!("exit {c}"))),
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    f.call("GET", &format!("/containers/{id}/json"), None)?
        .expect("inspect", &[200])?;
    f.call("GET", list, None)?.expect("list", &[200])?;
    if out != prompt.len() {
        return Err(io::Error::other(format!("printed {out} bytes")));
    }
    Ok(())
}

/// 50 ephemeral jobs of one agent at once: cold, or each taking a warm container from a pool
/// of 50 (filled before, untimed).
fn ephemeral(ctx: &Ctx, pooled: bool) -> Result<Vec<Row>, String> {
    const JOBS: usize = 50;
    let prompt = format!("{PROMPT}\n");
    let config = ctx.config(true, KEEP as u32);
    let what = if pooled { "pool" } else { "cold" };
    let agent = ctx.agent(&format!("fifty-{what}"));
    let spec = ctx.job(&agent, &config, &["cat"], prompt.as_bytes());
    let (runner, counts) = counted_runner(ctx, pooled.then_some(JOBS))?;
    let first = ctx
        .runner
        .run(spec.clone(), |_| {})
        .map_err(|e| format!("fifty: {e}"))?;
    let floor_agent = ctx.agent(&format!("fifty-{what}-floor"));
    let body = body_of(&mut ctx.floor(), &first.container_id, &floor_agent)
        .map_err(|e| format!("fifty: body: {e}"))?;
    let list = list_path(&[
        "dev.herdctl.managed=1",
        &format!("dev.herdctl.agent={floor_agent}"),
    ]);
    let kept: Arc<Mutex<VecDeque<String>>> = Arc::default();
    let mut rust_runs = Vec::new();
    let mut floor_runs = Vec::new();
    for round in 0..ctx.n(1, 3) {
        for i in crate::stats::order(round, 2) {
            if i == 0 {
                if pooled {
                    runner
                        .warm(&spec, WARM_WAIT)
                        .map_err(|e| format!("fifty: warm: {e}"))?;
                    std::thread::sleep(Duration::from_millis(500));
                }
                rust_runs.push(rust(&runner, &counts, vec![spec.clone(); JOBS])?);
            } else {
                // The floor's own warm containers, made beforehand like the pool's.
                let ready: Arc<Vec<String>> = Arc::new(if pooled {
                    let mut f = ctx.floor();
                    (0..JOBS)
                        .map(|j| {
                            let name = ctx.name(&format!("fifty-{round}"), j);
                            create_start(&mut f, &body, &name)
                                .map_err(|e| format!("fifty: floor warm: {e}"))
                        })
                        .collect::<Result<_, _>>()?
                } else {
                    Vec::new()
                });
                if pooled {
                    std::thread::sleep(Duration::from_millis(500));
                }
                let (socket, body, list, kept, prompt, run) = (
                    ctx.socket.clone(),
                    body.clone(),
                    list.clone(),
                    kept.clone(),
                    prompt.clone(),
                    ctx.run.clone(),
                );
                floor_runs.push(at_once(JOBS, move |j| {
                    let mut f = Floor::new(&socket);
                    let id = match ready.get(j) {
                        Some(id) => id.clone(),
                        None => cold_floor_start(
                            &mut f,
                            &body,
                            &format!("herdctl-bench-fifty-{run}-{round}-{j}"),
                        )
                        .map_err(|e| format!("fifty: floor: {e}"))?,
                    };
                    ephemeral_floor_job(&mut f, &id, &list, &kept, &prompt)
                        .map_err(|e| format!("fifty: floor: {e}"))
                })?);
            }
        }
    }
    if pooled {
        runner.close();
    }
    let figure = if pooled {
        "50 ephemeral jobs at once, each from a warm pool of 50"
    } else {
        "50 ephemeral jobs at once, cold (no pool)"
    };
    Ok(rows(figure, JOBS, &rust_runs, &floor_runs))
}

fn create_start(f: &mut Floor, body: &str, name: &str) -> io::Result<String> {
    let id = f
        .call(
            "POST",
            &format!("/containers/create?name={name}"),
            Some(body),
        )?
        .expect("create", &[201])?
        .str_field("Id")?;
    f.call("POST", &format!("/containers/{id}/start"), None)?
        .expect("start", &[204])?;
    Ok(id)
}

/// A cold container's calls by hand: create, the inspect the runner checks, start, the exec
/// that reads `/proc/self/status` as the job's user.
fn cold_floor_start(f: &mut Floor, body: &str, name: &str) -> io::Result<String> {
    let id = f
        .call(
            "POST",
            &format!("/containers/create?name={name}"),
            Some(body),
        )?
        .expect("create", &[201])?
        .str_field("Id")?;
    f.call("GET", &format!("/containers/{id}/json"), None)?
        .expect("inspect", &[200])?;
    f.call("POST", &format!("/containers/{id}/start"), None)?
        .expect("start", &[204])?;
    let check = format!(
        r#"{{"AttachStdin":false,"AttachStdout":true,"AttachStderr":true,"Tty":false,"Cmd":["cat","/proc/self/status"],"User":{}}}"#,
        q(USER)
    );
    let exec_id = f
        .call("POST", &format!("/containers/{id}/exec"), Some(&check))?
        .expect("exec create", &[201])?
        .str_field("Id")?;
    let mut status = 0;
    f.exec_start(&exec_id)?.demux(|d| status += d.len())?;
    if status == 0 {
        return Err(io::Error::other("the check printed nothing"));
    }
    Ok(id)
}

/// An ephemeral job's calls after its container runs: the exec, the container's inspect, stop,
/// retention's list, and the removal of the oldest stopped container past the limit.
fn ephemeral_floor_job(
    f: &mut Floor,
    id: &str,
    list: &str,
    kept: &Mutex<VecDeque<String>>,
    prompt: &str,
) -> io::Result<()> {
    let (_, code) = exec_cat(f, id, prompt, Instant::now())?;
    f.call("GET", &format!("/containers/{id}/json"), None)?
        .expect("inspect", &[200])?;
    f.call("POST", &format!("/containers/{id}/stop?t=2"), None)?
        .expect("stop", &[204, 304])?;
    f.call("GET", list, None)?.expect("list", &[200])?;
    let old = {
        let mut k = kept.lock().unwrap_or_else(|p| p.into_inner());
        k.push_back(id.to_string());
        if k.len() > KEEP {
            k.pop_front()
        } else {
            None
        }
    };
    if let Some(old) = old {
        f.call(
            "DELETE",
            &format!("/containers/{old}?force=false&v=true"),
            None,
        )?
        .expect("remove", &[204, 404, 409])?;
    }
    if code != 0 {
        return Err(io::Error::other(format!("cat exited {code}")));
    }
    Ok(())
}

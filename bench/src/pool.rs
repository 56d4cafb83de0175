//! Warm pools (issue 14): an ephemeral job that takes a warm container, against the warm-exec
//! floor (the same job in a running container, by hand); a burst that drains the pool, against
//! the same burst without one; and what an idle pool container costs the host.
//!
//! Every round of the first figure starts with a full pool (the wait is not timed), so it
//! measures the claim, not the refill.

use std::io;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use herdctl_container::{JobSpec, Runner, RunnerOptions};
use serde_json::Value;

use crate::fixture::{Ctx, PROMPT};
use crate::floor::{list_path, Floor};
use crate::report::{Better, Row};
use crate::stats::Samples;
use crate::warm::exec_cat;

const FIRST: &str = "warm pool job: start → first stdout byte";
const EXIT: &str = "warm pool job: start → exit (outcome known)";
const RELEASE: &str = "warm pool job: start → container stopped and released";
const CPU: &str = "warm pool job: client CPU per job";
const BURST: &str = "burst of 10 ephemeral jobs at once, pool of 2";
const IDLE: &str = "idle pool container: host cost";

/// How long a pool may take to warm on a loaded machine.
const WARM_WAIT: Duration = Duration::from_secs(300);

/// A runner over the bench's state directory with a pool of `size` per ephemeral agent.
pub fn pool_runner(ctx: &Ctx, size: usize) -> Result<Runner, String> {
    let mut options = RunnerOptions::new(ctx.state_dir());
    options.warm_pool = Some(size);
    Runner::new(ctx.engine.clone(), options).map_err(|e| format!("pool runner: {e}"))
}

pub fn run(ctx: &Ctx) -> Result<Vec<Row>, String> {
    let mut rows = single(ctx)?;
    rows.extend(burst(ctx)?);
    rows.extend(idle_cost(ctx)?);
    Ok(rows)
}

/// What one timed job took: first byte, exit (outcome known), released; and this process's CPU.
struct Timed {
    first: Duration,
    exit: Duration,
    released: Duration,
    cpu_ms: f64,
}

fn rust_job(
    runner: &Runner,
    spec: &JobSpec,
) -> Result<(Timed, herdctl_container::JobReport), String> {
    let cpu0 = crate::cpu::process_ms();
    let t0 = Instant::now();
    let mut job = runner
        .start(spec.clone())
        .map_err(|e| format!("pool: {e}"))?;
    let mut first = None;
    let mut lines = 0;
    while job.next_line().is_some() {
        first.get_or_insert_with(|| t0.elapsed());
        lines += 1;
    }
    let report = job.finish();
    let released = t0.elapsed();
    let cpu_ms = crate::cpu::process_ms() - cpu0;
    if !report.outcome.success() || lines != 1 {
        return Err(format!(
            "pool: {} after {lines} lines",
            report.outcome.describe()
        ));
    }
    // The outcome is known before the release starts.
    let exit = released.saturating_sub(report.timings.release.unwrap_or_default());
    Ok((
        Timed {
            first: first.unwrap_or(exit),
            exit,
            released,
            cpu_ms,
        },
        report,
    ))
}

/// The warm-exec floor: the calls of a job in a running container by hand, with the outcome
/// known after the container's inspect and the release (retention's list) after that.
fn floor_warm(f: &mut Floor, container: &str, list: &str, prompt: &str) -> io::Result<Timed> {
    let cpu0 = crate::cpu::process_ms();
    let t0 = Instant::now();
    let id = f
        .call("GET", &format!("/containers/{container}/json"), None)?
        .expect("inspect", &[200])?
        .str_field("Id")?;
    let (first, code) = exec_cat(f, &id, prompt, t0)?;
    f.call("GET", &format!("/containers/{id}/json"), None)?
        .expect("inspect", &[200])?;
    let exit = t0.elapsed();
    f.call("GET", list, None)?.expect("list", &[200])?;
    if code != 0 {
        return Err(io::Error::other(format!("cat exited {code}")));
    }
    Ok(Timed {
        first,
        exit,
        released: t0.elapsed(),
        cpu_ms: crate::cpu::process_ms() - cpu0,
    })
}

/// The pooled job's calls by hand, in a container made and started beforehand: exec, its exit
/// code, the container's inspect; then the release: stop, list, remove the previous one.
fn floor_pooled(
    f: &mut Floor,
    id: &str,
    list: &str,
    prompt: &str,
    old: Option<&str>,
) -> io::Result<Timed> {
    let cpu0 = crate::cpu::process_ms();
    let t0 = Instant::now();
    let (first, code) = exec_cat(f, id, prompt, t0)?;
    f.call("GET", &format!("/containers/{id}/json"), None)?
        .expect("inspect", &[200])?;
    let exit = t0.elapsed();
    f.call("POST", &format!("/containers/{id}/stop?t=2"), None)?
        .expect("stop", &[204, 304])?;
    f.call("GET", list, None)?.expect("list", &[200])?;
    if let Some(old) = old {
        f.call(
            "DELETE",
            &format!("/containers/{old}?force=false&v=true"),
            None,
        )?
        .expect("remove", &[204, 404])?;
    }
    if code != 0 {
        return Err(io::Error::other(format!("cat exited {code}")));
    }
    Ok(Timed {
        first,
        exit,
        released: t0.elapsed(),
        cpu_ms: crate::cpu::process_ms() - cpu0,
    })
}

/// Creates and starts a container from `body` (a pool container's, relabelled for the floor).
fn floor_warm_one(f: &mut Floor, body: &str, name: &str) -> io::Result<String> {
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

/// A container's create body, read back from the engine, for the floor's own agent (no pool
/// label: the runner must not take the floor's containers for its own).
pub fn body_of(f: &mut Floor, id: &str, agent: &str) -> io::Result<String> {
    let raw = f
        .call("GET", &format!("/containers/{id}/json"), None)?
        .expect("inspect", &[200])?;
    let got: Value = serde_json::from_slice(&raw.body).map_err(io::Error::other)?;
    let (c, h) = (&got["Config"], &got["HostConfig"]);
    let mut labels = c["Labels"].clone();
    if let Some(l) = labels.as_object_mut() {
        l.remove("dev.herdctl.pool");
        l.remove("dev.herdctl.owner");
        l.insert("dev.herdctl.agent".into(), agent.into());
    }
    let body = serde_json::json!({
        "Image": c["Image"], "Cmd": c["Cmd"], "User": c["User"], "Env": c["Env"],
        "WorkingDir": c["WorkingDir"], "Labels": labels, "ExposedPorts": {},
        "HostConfig": {
            "Mounts": h["Mounts"], "Memory": h["Memory"], "MemorySwap": h["MemorySwap"],
            "PidsLimit": h["PidsLimit"], "CapDrop": h["CapDrop"], "SecurityOpt": h["SecurityOpt"],
            "NetworkMode": h["NetworkMode"], "Init": h["Init"], "GroupAdd": h["GroupAdd"],
        },
    });
    Ok(body.to_string())
}

fn single(ctx: &Ctx) -> Result<Vec<Row>, String> {
    let prompt = format!("{PROMPT}\n");
    // The warm-exec floor's container: a persistent agent's, made by the runner.
    let warm_agent = ctx.agent("pool-floor-warm");
    let warm_spec = ctx.job(
        &warm_agent,
        &ctx.config(false, 5),
        &["cat"],
        prompt.as_bytes(),
    );
    let first = ctx
        .runner
        .run(warm_spec, |_| {})
        .map_err(|e| format!("pool: the floor's container: {e}"))?;
    let warm_list = list_path(&[
        "dev.herdctl.managed=1",
        &format!("dev.herdctl.agent={warm_agent}"),
    ]);

    let runner = pool_runner(ctx, 1)?;
    let agent = ctx.agent("pool");
    let spec = ctx.job(&agent, &ctx.config(true, 2), &["cat"], prompt.as_bytes());
    runner
        .warm(&spec, WARM_WAIT)
        .map_err(|e| format!("pool: warm: {e}"))?;
    let mut f = ctx.floor();
    let pool_id = runner
        .list(Some(&agent))
        .map_err(|e| format!("pool: list: {e}"))?
        .into_iter()
        .find(|c| c.mode == "pool")
        .ok_or("pool: no warm container after warm()")?
        .id;
    let floor_agent = ctx.agent("pool-floor");
    let body = body_of(&mut f, &pool_id, &floor_agent).map_err(|e| format!("pool: body: {e}"))?;
    let floor_list = list_path(&[
        "dev.herdctl.managed=1",
        &format!("dev.herdctl.agent={floor_agent}"),
    ]);
    let cold_agent = ctx.agent("pool-cold");
    let cold_spec = ctx.job(
        &cold_agent,
        &ctx.config(true, 2),
        &["cat"],
        prompt.as_bytes(),
    );

    let rounds = ctx.n(6, 30);
    let warmup = 2;
    // Methods: 0 warm-exec floor, 1 Rust from the pool, 2 floor of the pooled job, 3 Rust cold.
    let mut t: Vec<Vec<Timed>> = (0..4).map(|_| Vec::new()).collect();
    let mut floor_old: Option<String> = None;
    let mut floor_ready: Option<String> = None;
    for round in 0..warmup + rounds {
        // Untimed: a full pool for the runner, a started container for the floor.
        runner
            .warm(&spec, WARM_WAIT)
            .map_err(|e| format!("pool: refill: {e}"))?;
        if floor_ready.is_none() {
            let name = ctx.name("pool-floor", round);
            floor_ready = Some(
                floor_warm_one(&mut f, &body, &name)
                    .map_err(|e| format!("pool: floor warm: {e}"))?,
            );
        }
        for i in crate::stats::order(round, 4) {
            let got = match i {
                0 => floor_warm(&mut f, &first.container_name, &warm_list, &prompt)
                    .map_err(|e| format!("pool: warm floor: {e}"))?,
                1 => {
                    let (timed, report) = rust_job(&runner, &spec)?;
                    if report.timings.create.is_some() {
                        return Err("pool: the job did not take the warm container".into());
                    }
                    timed
                }
                2 => {
                    let id = floor_ready.take().expect("made above");
                    let got = floor_pooled(&mut f, &id, &floor_list, &prompt, floor_old.as_deref())
                        .map_err(|e| format!("pool: floor: {e}"))?;
                    floor_old = Some(id);
                    got
                }
                _ => rust_job(&ctx.runner, &cold_spec)?.0,
            };
            if round >= warmup {
                t[i].push(got);
            }
        }
    }
    runner.close();

    let samples = |i: usize, pick: fn(&Timed) -> f64| {
        let mut s = Samples::new();
        for x in &t[i] {
            s.push(pick(x));
        }
        s
    };
    let mut rows = Vec::new();
    for (figure, pick) in [
        (
            FIRST,
            (|x: &Timed| x.first.as_secs_f64() * 1000.0) as fn(&Timed) -> f64,
        ),
        (EXIT, |x: &Timed| x.exit.as_secs_f64() * 1000.0),
        (RELEASE, |x: &Timed| x.released.as_secs_f64() * 1000.0),
    ] {
        let floor = samples(0, pick);
        let rust = samples(1, pick);
        let floor_pooled = samples(2, pick);
        let cold = samples(3, pick);
        rows.push(Row::new(
            figure,
            "warm-exec floor (running container, raw socket)",
            "ms",
            &floor,
        ));
        let mut pooled = Row::new(figure, "Rust API, ephemeral, from a warm pool", "ms", &rust)
            .vs("warm-exec floor", &floor);
        if figure != RELEASE {
            pooled = pooled.ratio_target(Better::Lower, 1.25);
        }
        rows.push(pooled);
        rows.push(
            Row::new(
                figure,
                "floor of the pooled job (same calls, raw socket)",
                "ms",
                &floor_pooled,
            )
            .vs("warm-exec floor", &floor),
        );
        rows.push(
            Row::new(figure, "Rust API, ephemeral, cold", "ms", &cold)
                .vs("warm-exec floor", &floor),
        );
    }
    rows.push(Row::new(
        CPU,
        "warm-exec floor",
        "ms",
        &samples(0, |x| x.cpu_ms),
    ));
    rows.push(Row::new(
        CPU,
        "Rust API, from a warm pool",
        "ms",
        &samples(1, |x| x.cpu_ms),
    ));
    rows.push(Row::new(
        CPU,
        "Rust API, cold",
        "ms",
        &samples(3, |x| x.cpu_ms),
    ));
    Ok(rows)
}

/// Ten jobs at once against a pool of two, and the same ten without a pool, in alternating order:
/// every job's time to its end (outcome known and container released), and how long the pool
/// takes to hold two again.
fn burst(ctx: &Ctx) -> Result<Vec<Row>, String> {
    const JOBS: usize = 10;
    let prompt = format!("{PROMPT}\n");
    let runner = pool_runner(ctx, 2)?;
    let agent = ctx.agent("burst-pool");
    let spec = ctx.job(&agent, &ctx.config(true, 3), &["cat"], prompt.as_bytes());
    let cold_agent = ctx.agent("burst-cold");
    let cold_spec = ctx.job(
        &cold_agent,
        &ctx.config(true, 3),
        &["cat"],
        prompt.as_bytes(),
    );
    // One cold job each first: the image and the agents' directories are warm for both.
    for s in [&spec, &cold_spec] {
        ctx.runner
            .run(s.clone(), |_| {})
            .map_err(|e| format!("burst: {e}"))?;
    }
    let mut slowest = [Samples::new(), Samples::new()];
    let mut median = [Samples::new(), Samples::new()];
    let mut refill = Samples::new();
    let mut from_pool = Samples::new();
    for round in 0..ctx.n(2, 5) {
        for i in crate::stats::order(round, 2) {
            if i == 0 {
                runner
                    .warm(&spec, WARM_WAIT)
                    .map_err(|e| format!("burst: warm: {e}"))?;
                // Quiet before the burst, as before the cold one.
                std::thread::sleep(Duration::from_millis(500));
            }
            let (r, s) = if i == 0 {
                (&runner, &spec)
            } else {
                (&ctx.runner, &cold_spec)
            };
            let t0 = Instant::now();
            let got = at_once(r, s, JOBS)?;
            let mut all = Samples::new();
            for (d, _) in &got {
                all.push_ms(*d);
            }
            slowest[i].push(all.quantile(1.0));
            median[i].push(all.median());
            if i == 0 {
                from_pool.push(got.iter().filter(|(_, pooled)| *pooled).count() as f64);
                let give_up = Instant::now() + WARM_WAIT;
                while runner.warm_pool_idle(&agent) < 2 {
                    if Instant::now() > give_up {
                        return Err("burst: the pool did not refill".into());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                refill.push_ms(t0.elapsed());
            }
        }
    }
    runner.close();
    Ok(vec![
        Row::new(BURST, "slowest job, no pool (all cold)", "ms", &slowest[1]),
        Row::new(BURST, "slowest job, pool of 2", "ms", &slowest[0])
            .vs("slowest, no pool", &slowest[1])
            .target(
                format!(
                    "no job slower than a cold job: {:.0} ≤ {:.0} ms",
                    slowest[0].median(),
                    slowest[1].median()
                ),
                slowest[0].median() <= slowest[1].median(),
            ),
        Row::new(BURST, "median job, no pool", "ms", &median[1]),
        Row::new(BURST, "median job, pool of 2", "ms", &median[0])
            .vs("median, no pool", &median[1]),
        Row::new(BURST, "jobs that took a warm container", "jobs", &from_pool),
        Row::new(
            BURST,
            "pool full again, from the burst's start (background)",
            "ms",
            &refill,
        ),
    ])
}

/// Starts `n` jobs at once (a barrier), each on its own thread; each one's time from the
/// barrier to its end, and whether it took a warm container.
pub fn at_once(runner: &Runner, spec: &JobSpec, n: usize) -> Result<Vec<(Duration, bool)>, String> {
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (runner, spec, barrier) = (runner.clone(), spec.clone(), barrier.clone());
            std::thread::spawn(move || -> Result<(Duration, bool), String> {
                barrier.wait();
                let t0 = Instant::now();
                let report = runner.run(spec, |_| {}).map_err(|e| e.to_string())?;
                if !report.outcome.success() {
                    return Err(report.outcome.describe());
                }
                Ok((t0.elapsed(), report.timings.create.is_none()))
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().map_err(|_| "a job thread panicked".to_string())?)
        .collect()
}

/// The host memory an idle pool container holds: its cgroup (the init and `sleep`), its engine
/// shim's proportional share (`containerd-shim`, one per container), and the engine daemons'
/// growth; and the daemons' CPU while the pool idles.
fn idle_cost(ctx: &Ctx) -> Result<Vec<Row>, String> {
    const N: usize = 10;
    let runner = pool_runner(ctx, N)?;
    let agent = ctx.agent("idle");
    let spec = ctx.job(&agent, &ctx.config(true, 2), &["true"], b"");
    let daemons0 = daemons_rss_kib();
    let cpu0 = (daemons_cpu_ms(), Instant::now());
    std::thread::sleep(Duration::from_secs(ctx.n(3, 10) as u64));
    let idle_without = (daemons_cpu_ms() - cpu0.0) / cpu0.1.elapsed().as_secs_f64();
    runner
        .warm(&spec, WARM_WAIT)
        .map_err(|e| format!("idle: warm: {e}"))?;
    // Settled: the last check's exec has ended.
    std::thread::sleep(Duration::from_secs(1));
    let ids: Vec<String> = runner
        .list(Some(&agent))
        .map_err(|e| format!("idle: list: {e}"))?
        .into_iter()
        .filter(|c| c.mode == "pool")
        .map(|c| c.id)
        .collect();
    let (mut cgroup, mut shim) = (Samples::new(), Samples::new());
    for id in &ids {
        cgroup.push(cgroup_kib(id).unwrap_or(f64::NAN) / 1024.0);
        shim.push(shim_pss_kib(id).unwrap_or(f64::NAN) / 1024.0);
    }
    let daemons = (daemons_rss_kib() - daemons0) / ids.len().max(1) as f64 / 1024.0;
    let cpu1 = (daemons_cpu_ms(), Instant::now());
    std::thread::sleep(Duration::from_secs(ctx.n(3, 10) as u64));
    let idle_with = (daemons_cpu_ms() - cpu1.0) / cpu1.1.elapsed().as_secs_f64();
    runner.close();
    let mut total = Samples::new();
    total.push(cgroup.median() + shim.median() + daemons.max(0.0));
    let one = |v: f64| {
        let mut s = Samples::new();
        s.push(v);
        s
    };
    Ok(vec![
        Row::new(
            IDLE,
            "memory: the container's cgroup (init, sleep)",
            "MiB",
            &cgroup,
        ),
        Row::new(IDLE, "memory: its containerd-shim (PSS)", "MiB", &shim),
        Row::new(
            IDLE,
            "memory: dockerd + containerd growth, per container",
            "MiB",
            &one(daemons),
        ),
        Row::new(IDLE, "memory: total per idle container", "MiB", &total),
        Row::new(
            IDLE,
            "engine CPU while idle, no pool (ms per s)",
            "ms",
            &one(idle_without),
        ),
        Row::new(
            IDLE,
            &format!("engine CPU while idle, {N} idle pool containers (ms per s)"),
            "ms",
            &one(idle_with),
        ),
    ])
}

/// The memory charged to a container's cgroup (cgroup v1, then v2), in KiB.
fn cgroup_kib(id: &str) -> Option<f64> {
    for path in [
        format!("/sys/fs/cgroup/memory/docker/{id}/memory.usage_in_bytes"),
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.current"),
    ] {
        if let Ok(v) = std::fs::read_to_string(path) {
            return v.trim().parse::<f64>().ok().map(|b| b / 1024.0);
        }
    }
    None
}

/// The processes whose command line has all of `words`.
fn pids_with(words: &[&str]) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let text = String::from_utf8_lossy(&c).replace('\0', " ");
                words.iter().all(|w| text.contains(w))
            })
        })
        .collect()
}

fn smaps_field_kib(pid: u32, field: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The proportional set size of a container's shim, in KiB.
fn shim_pss_kib(id: &str) -> Option<f64> {
    let pid = *pids_with(&["containerd-shim", id]).first()?;
    smaps_field_kib(pid, "Pss:")
}

/// The resident memory of dockerd and containerd (not the shims), in KiB.
fn daemons_rss_kib() -> f64 {
    daemon_pids()
        .into_iter()
        .filter_map(|p| smaps_field_kib(p, "Rss:"))
        .sum()
}

fn daemon_pids() -> Vec<u32> {
    let dockerd = pids_with(&["dockerd"]);
    let shims = pids_with(&["containerd-shim"]);
    let mut pids = dockerd.clone();
    pids.extend(
        pids_with(&["containerd"])
            .into_iter()
            .filter(|p| !shims.contains(p) && !dockerd.contains(p)),
    );
    pids
}

/// The CPU time dockerd and containerd used so far, in milliseconds.
fn daemons_cpu_ms() -> f64 {
    let tick = 10.0; // USER_HZ is 100 on Linux
    daemon_pids()
        .into_iter()
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let rest = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let (u, s): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
            Some((u + s) * tick)
        })
        .sum()
}

//! `herdctl-bench`: the benchmarks of issue 6, as one program that prints one table.
//!
//! Every figure is measured in the same run as its baselines, on the same engine and image: the
//! engine floor (a raw-socket client making the same calls, `floor.rs`), the `docker` CLI, and
//! dockerode driven the way herdctl drives it today (`bench/node/driver.js`). Run it through
//! `scripts/bench`, which builds with the `profiling` profile (the release code, with symbols) and
//! brings up the engine and the image first.
//!
//! ```text
//! herdctl-bench [--quick] [--only warm,cold,stream,rss,retention,gvisor,pool,concurrent,session] [--out FILE]
//! herdctl-bench profile warm-rust|warm-floor|stream-rust|stream-agent|stream-drain N  (callgrind)
//! ```

mod cold;
mod concurrent;
mod cpu;
mod ext;
mod fixture;
mod floor;
mod gvisor;
mod pool;
mod profile;
mod report;
mod retention;
mod rss;
mod session;
mod stats;
mod stream;
mod warm;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use ext::{version_of, Node};
use fixture::{Ctx, IMAGE};
use report::Row;

const ALL: [&str; 9] = [
    "warm",
    "cold",
    "stream",
    "rss",
    "retention",
    "gvisor",
    "pool",
    "concurrent",
    "session",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("rss-child") {
        return match rss::child(args.get(1).map(String::as_str).unwrap_or("")) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.first().map(String::as_str) == Some("profile") {
        let kind = args.get(1).map(String::as_str).unwrap_or("");
        let n = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1);
        return match profile::run(kind, n) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("herdctl-bench profile: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herdctl-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let mut quick = false;
    let mut only: Vec<String> = ALL.iter().map(|s| s.to_string()).collect();
    let mut out: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--only" => {
                let list = it.next().ok_or("--only needs a list")?;
                only = list.split(',').map(str::to_string).collect();
                if let Some(bad) = only.iter().find(|o| !ALL.contains(&o.as_str())) {
                    return Err(format!("--only: {bad:?} is not one of {ALL:?}"));
                }
            }
            "--out" => out = Some(it.next().ok_or("--out needs a file")?.into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let started = Instant::now();
    let ctx = Ctx::new(quick)?;
    let bench_dir = PathBuf::from(
        std::env::var("HERDCTL_BENCH_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    );
    let mut node = Some(Node::start(&bench_dir)?);
    let machine = describe(&ctx, &bench_dir);
    eprintln!("bench: run {} on {}", ctx.run, machine.join("; "));

    let mut rows: Vec<Row> = Vec::new();
    for name in ALL.iter().filter(|n| only.iter().any(|o| o == *n)) {
        let t = Instant::now();
        eprintln!("bench: {name} ...");
        let got = match *name {
            "warm" => warm::run(&ctx, &mut node),
            "cold" => cold::run(&ctx, &mut node),
            "stream" => stream::run(&ctx, &mut node),
            "rss" => rss::run(&ctx, &mut node),
            "retention" => retention::run(&ctx),
            "gvisor" => gvisor::run(&ctx),
            "pool" => pool::run(&ctx),
            "concurrent" => concurrent::run(&ctx),
            "session" => session::run(&ctx, &mut node),
            _ => unreachable!("filtered by ALL"),
        }?;
        eprintln!("bench: {name} took {:.1} s", t.elapsed().as_secs_f64());
        rows.extend(got);
    }
    drop(node);
    let removed = ctx.cleanup();

    let node_runner = rows.iter().any(|r| r.method.starts_with("Node API"));
    let mut text = String::new();
    text.push_str(&format!("Machine: {}\n\n", machine.join("; ")));
    text.push_str(&report::render(&rows));
    text.push('\n');
    if !node_runner {
        text.push_str(
            "Node API figures (warm job via ContainerRunner, JS objects throughput, Node RSS) are \
             not in this table: this checkout's npm package has no ContainerRunner yet.\n",
        );
    }
    text.push_str(&format!(
        "Run {} ({}), {:.0} s; {removed} containers removed afterwards.\n",
        ctx.run,
        if quick { "quick" } else { "full" },
        started.elapsed().as_secs_f64()
    ));
    print!("{text}");
    if let Some(path) = out {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        std::fs::write(&path, &text).map_err(|e| format!("write {}: {e}", path.display()))?;
        eprintln!("bench: wrote {}", path.display());
    }
    Ok(())
}

/// The machine, engine and tools the figures were measured on.
fn describe(ctx: &Ctx, bench_dir: &std::path::Path) -> Vec<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|x| x.1.trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let engine = ctx
        .engine
        .version()
        .map(|v| format!("engine {} (API {})", v.version, v.api_version))
        .unwrap_or_else(|e| format!("engine: {e}"));
    let dockerode =
        std::fs::read_to_string(bench_dir.join("node/node_modules/dockerode/package.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["version"].as_str().map(String::from))
            .unwrap_or_else(|| "?".into());
    vec![
        format!(
            "{model}, {cores} cores, {mem_gib:.0} GiB, Linux {}",
            kernel.trim()
        ),
        engine,
        format!(
            "docker CLI {}",
            version_of("docker", &["version", "--format", "{{.Client.Version}}"])
        ),
        format!("node {}", version_of("node", &["--version"])),
        format!("dockerode {dockerode}"),
        format!("image {IMAGE}"),
    ]
}

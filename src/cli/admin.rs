//! `prune`, `gc` and `doctor`: looking after the containers and the setup.

use std::path::Path;

use herdctl_container::engine::EngineInfo;
use herdctl_container::{
    resolve_docker_config, Engine, Error, JobReport, JobSpec, Runner, RunnerOptions, ADD_GVISOR,
};
use serde_json::json;

use super::args::{DoctorArgs, GcArgs, PruneArgs};
use super::{Context, Failure};

/// `prune`: the agent's oldest stopped containers (and records) beyond `--keep`.
pub fn prune(ctx: &Context, args: PruneArgs) -> Result<u8, Failure> {
    let runner = ctx.runner(args.state_dir.as_deref(), None, None, &[])?;
    let report = runner.prune(&args.agent, args.keep as usize)?;
    print_prune(&report);
    Ok(0)
}

/// `gc`: running ephemeral containers whose owner process is gone are stopped; every stopped
/// container (and record) of agents that are gone is removed.
pub fn gc(ctx: &Context, args: GcArgs) -> Result<u8, Failure> {
    let runner = ctx.runner(args.state_dir.as_deref(), None, None, &[])?;
    let report = runner.gc(&args.live, args.keep as usize)?;
    print_prune(&report);
    Ok(0)
}

fn print_prune(report: &herdctl_container::PruneReport) {
    for id in &report.stopped {
        println!("stopped {}", &id[..id.len().min(12)]);
    }
    for id in &report.removed {
        println!("removed {}", &id[..id.len().min(12)]);
    }
    for w in &report.warnings {
        eprintln!("herdctl-container: warning: {w}");
    }
}

/// `doctor`: the engine, and with `--image` a probe container's effective hardening.
pub fn doctor(ctx: &Context, args: DoctorArgs) -> Result<u8, Failure> {
    // The probe's own files: its state directory and workspace side by side (a workspace inside
    // the state directory would let a job change the runner's files, and is refused).
    let probe_dir = std::env::temp_dir().join(format!("herdctl-doctor-{}", std::process::id()));
    let state_dir = probe_dir.join("state");
    let engine = connect(ctx)?;
    let info = engine.info()?;
    println!("runtimes:     {}", describe_runtimes(&info).join("; "));
    if !info.runtimes.contains_key("runsc") {
        println!("gvisor:       not registered as runsc; {ADD_GVISOR}");
    }
    println!("host kernel:  {}", info.kernel_version);
    let Some(image) = args.image else {
        println!("hardening:    pass --image IMAGE to start a probe container and check it");
        return Ok(0);
    };
    let runner = Runner::new(engine, RunnerOptions::new(&state_dir))?;
    let report = probe(&runner, &probe_dir, image, args.runtime)?;
    let inspect = runner.engine().inspect_container(&report.container_id)?;
    let h = &inspect.host_config;
    println!("user:         {}", inspect.config.user);
    println!("cap drop:     {:?}", h.cap_drop);
    println!("security:     {:?}", h.security_opt);
    println!("memory:       {} bytes, swap {}", h.memory, h.memory_swap);
    println!("pids limit:   {:?}", h.pids_limit);
    println!("network:      {}", h.network_mode);
    println!("init:         {:?}", h.init);
    println!("runtime:      {}", h.runtime);
    println!("outcome:      {}", report.outcome.describe());
    let _ = runner.engine().remove_container(&report.container_id, true);
    let _ = std::fs::remove_dir_all(&probe_dir);
    Ok(if report.outcome.success() { 0 } else { 1 })
}

/// Connects to the engine, printing where it is and which version answers (an unreachable
/// engine is printed too: that is the first thing a doctor run is for).
fn connect(ctx: &Context) -> Result<Engine, Failure> {
    let options = ctx.engine_options(&[])?;
    println!("address:      {} ({})", options.describe(), options.source);
    let engine = match Engine::with_options(options) {
        Ok(engine) => engine,
        Err(e) => {
            println!("engine:       unreachable: {e}");
            return Err(e.into());
        }
    };
    let version = engine.version()?;
    println!(
        "engine:       {} (API {}, using {}) at {}",
        version.version,
        version.api_version,
        engine.api_version(),
        engine.host()
    );
    Ok(engine)
}

/// The engine's runtimes, each with the program it runs (how to tell a sandbox such as gVisor
/// from runc under another name) and which is the default.
fn describe_runtimes(info: &EngineInfo) -> Vec<String> {
    info.runtimes
        .iter()
        .map(|(name, r)| {
            let mut program = vec![if r.path.is_empty() {
                &r.runtime_type
            } else {
                &r.path
            }];
            program.extend(&r.runtime_args);
            let default = if *name == info.default_runtime {
                ", the default"
            } else {
                ""
            };
            let program: Vec<&str> = program.iter().map(|s| s.as_str()).collect();
            format!("{name} ({}{default})", program.join(" "))
        })
        .collect()
}

/// Runs the probe job (in `probe_dir`'s workspace, on `image`) that prints the user, the
/// effective capabilities and no-new-privileges as the kernel sees them, and prints its lines;
/// its files are removed if it fails.
fn probe(
    runner: &Runner,
    probe_dir: &Path,
    image: String,
    runtime: Option<String>,
) -> Result<JobReport, Failure> {
    let workspace = probe_dir.join("workspace");
    std::fs::create_dir_all(&workspace).map_err(|e| Error::io("create the probe workspace", e))?;
    // The probe runs as the default container user, who must be able to use its workspace (the
    // runner checks before the job).
    std::fs::set_permissions(
        &workspace,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .map_err(|e| Error::io("open the probe workspace to the container user", e))?;
    let config = resolve_docker_config(&json!({
        "image": image, "network": "none", "max_containers": 1, "runtime": runtime,
    }))?;
    let spec = JobSpec::new(
        "herdctl-doctor",
        config,
        workspace.to_string_lossy(),
        [
            "sh",
            "-c",
            "id; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; cat /proc/version",
        ],
    );
    let mut lines = Vec::new();
    let report = runner.run(spec, |l| {
        lines.push(String::from_utf8_lossy(l).into_owned())
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(probe_dir);
            return Err(e.into());
        }
    };
    for l in &lines {
        println!("probe:        {l}");
    }
    Ok(report)
}

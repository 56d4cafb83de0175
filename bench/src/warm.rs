//! Warm job: one job in an agent's running persistent container, from the call to the first
//! stdout byte and to the end (outcome known, container released).
//!
//! The job reads a one-line prompt on stdin and prints it back (`cat`): what remains is what the
//! container layer costs. Methods run in rounds, one job each per round, in a new order each
//! round, so the engine's drift over the run is shared by all of them.

use std::io;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::ext::{timed_process, Node};
use crate::fixture::{Ctx, PROMPT, USER};
use crate::floor::{list_path, q, Floor};
use crate::report::{Better, Row};
use crate::stats::Samples;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Rust,
    Floor,
    FloorNoStdin,
    DockerExec,
    Cli,
    Dockerode,
    NodeRunner,
}

const FIGURE_FIRST: &str = "warm job: start → first stdout byte";
const FIGURE_EXIT: &str = "warm job: start → exit";

pub fn run(ctx: &Ctx, node: &mut Option<Node>) -> Result<Vec<Row>, String> {
    let agent = ctx.agent("warm");
    let config = ctx.config(false, 5);
    let prompt = format!("{PROMPT}\n");
    let spec = ctx.job(&agent, &config, &["cat"], prompt.as_bytes());
    // The first job creates the persistent container; every later one finds it.
    let first = ctx
        .runner
        .run(spec.clone(), |_| {})
        .map_err(|e| format!("warm: first job: {e}"))?;
    let container = first.container_name.clone();

    let cli_config = ctx.dir.join("warm-config.json");
    std::fs::write(&cli_config, ctx.docker_block(false, 5).to_string())
        .map_err(|e| format!("write {}: {e}", cli_config.display()))?;
    let cli = std::env::current_exe()
        .map_err(|e| format!("find the bench binary: {e}"))?
        .with_file_name("herdctl-container");

    let mut floor = ctx.floor();
    let floor_list = list_path(&[
        "dev.herdctl.managed=1",
        &format!("dev.herdctl.agent={agent}"),
    ]);
    let dockerode_prefix = format!(
        "herdctl-{}-",
        herdctl_container::sanitize_agent_name(&agent)
    );

    let mut methods = vec![
        Method::Rust,
        Method::Floor,
        Method::FloorNoStdin,
        Method::DockerExec,
        Method::Cli,
    ];
    if node.as_ref().is_some_and(|n| n.has("dockerode-warm")) {
        methods.push(Method::Dockerode);
    }
    if node.as_ref().is_some_and(|n| n.has("runner-warm")) {
        methods.push(Method::NodeRunner);
    }
    let warmup = 2;
    let rounds = ctx.n(6, 60);
    let mut first_ms: Vec<Samples> = vec![Samples::new(); methods.len()];
    let mut exit_ms: Vec<Samples> = vec![Samples::new(); methods.len()];
    // The client's own CPU per job (this process for Rust and the floor, node's for Node).
    let mut cpu_ms: Vec<Samples> = vec![Samples::new(); methods.len()];
    let mut node_cpu = 0.0;
    for round in 0..warmup + rounds {
        for i in crate::stats::order(round, methods.len()) {
            let cpu0 = crate::cpu::process_ms();
            let (f, e) = match methods[i] {
                Method::Rust => rust_job(ctx, &spec)?,
                Method::Floor => floor_job(&mut floor, &container, &floor_list, Some(&prompt))
                    .map_err(|e| format!("warm: floor: {e}"))?,
                Method::FloorNoStdin => floor_job(&mut floor, &container, &floor_list, None)
                    .map_err(|e| format!("warm: floor without stdin: {e}"))?,
                Method::DockerExec => timed_process(
                    Command::new("docker").args([
                        "exec",
                        "-i",
                        "-u",
                        USER,
                        "-w",
                        "/workspace",
                        &container,
                        "cat",
                    ]),
                    prompt.as_bytes(),
                    prompt.as_bytes(),
                )?,
                Method::Cli => timed_process(
                    Command::new(&cli)
                        .args(["run", "--agent", &agent, "--config"])
                        .arg(&cli_config)
                        .args(["--workspace", &ctx.workspace()])
                        .args(["--state-dir", &ctx.state_dir()])
                        .args(["--", "cat"]),
                    prompt.as_bytes(),
                    prompt.as_bytes(),
                )?,
                Method::Dockerode => node_job(
                    node,
                    &mut node_cpu,
                    json!({"op": "dockerode-warm", "container": container, "prompt": PROMPT,
                           "agentPrefix": dockerode_prefix}),
                )?,
                Method::NodeRunner => node_job(
                    node,
                    &mut node_cpu,
                    json!({"op": "runner-warm", "agent": agent, "docker": ctx.docker_block(false, 5),
                           "stateDir": ctx.state_dir(), "workspace": ctx.workspace(), "prompt": PROMPT}),
                )?,
            };
            if round >= warmup {
                first_ms[i].push_ms(f);
                exit_ms[i].push_ms(e);
                match methods[i] {
                    Method::Rust | Method::Floor => cpu_ms[i].push(crate::cpu::process_ms() - cpu0),
                    Method::Dockerode | Method::NodeRunner => cpu_ms[i].push(node_cpu),
                    _ => {}
                }
            }
        }
    }

    let mut rows = Vec::new();
    for (figure, samples) in [(FIGURE_FIRST, &first_ms), (FIGURE_EXIT, &exit_ms)] {
        let at = |m: Method| methods.iter().position(|x| *x == m).map(|i| &samples[i]);
        let floor = at(Method::Floor).expect("the floor always runs");
        let rust = at(Method::Rust).expect("the Rust API always runs");
        rows.push(Row::new(figure, "engine floor (raw socket)", "ms", floor));
        let no_stdin = at(Method::FloorNoStdin).expect("always runs");
        rows.push(
            Row::new(
                figure,
                "engine floor, herdctl's exec (no stdin)",
                "ms",
                no_stdin,
            )
            .vs("floor", floor),
        );
        rows.push(
            Row::new(figure, "Rust API (Runner)", "ms", rust)
                .vs("floor", floor)
                .ratio_target(Better::Lower, 1.15),
        );
        let node_runner = at(Method::NodeRunner);
        if let Some(nr) = node_runner {
            rows.push(
                Row::new(figure, "Node API (ContainerRunner)", "ms", nr)
                    .vs("floor", floor)
                    .ratio_target(Better::Lower, 1.15),
            );
        }
        let docker = at(Method::DockerExec).expect("docker exec always runs");
        rows.push(faster_row(
            Row::new(figure, "`docker exec -i`", "ms", docker).vs("floor", floor),
            rust,
            node_runner,
        ));
        if let Some(d) = at(Method::Dockerode) {
            rows.push(faster_row(
                Row::new(figure, "dockerode, herdctl's way", "ms", d).vs("floor", floor),
                rust,
                node_runner,
            ));
        }
        let cli = at(Method::Cli).expect("the CLI always runs");
        rows.push(
            Row::new(figure, "`herdctl-container run` (CLI)", "ms", cli)
                .vs("`docker exec -i`", docker),
        );
    }
    let cpu_figure = "warm job: client CPU per job";
    for (m, name) in [
        (Method::Floor, "engine floor (raw socket)"),
        (Method::Rust, "Rust API (Runner)"),
        (Method::Dockerode, "dockerode, herdctl's way"),
        (Method::NodeRunner, "Node API (ContainerRunner)"),
    ] {
        if let Some(i) = methods.iter().position(|x| *x == m) {
            rows.push(Row::new(cpu_figure, name, "ms", &cpu_ms[i]));
        }
    }
    Ok(rows)
}

/// A baseline row whose target is "the Rust API (and the Node API, when measured) is faster".
fn faster_row(row: Row, rust: &Samples, node: Option<&Samples>) -> Row {
    let theirs = row.samples.median();
    let mut text = format!("Rust API faster ({:.2}×)", rust.median() / theirs);
    let mut holds = rust.median() < theirs;
    if let Some(n) = node {
        text.push_str(&format!(", Node API faster ({:.2}×)", n.median() / theirs));
        holds &= n.median() < theirs;
    }
    row.target(text, holds)
}

fn rust_job(ctx: &Ctx, spec: &herdctl_container::JobSpec) -> Result<(Duration, Duration), String> {
    let t0 = Instant::now();
    let mut job = ctx
        .runner
        .start(spec.clone())
        .map_err(|e| format!("warm: rust: {e}"))?;
    let mut first = None;
    let mut lines = 0;
    while let Some(_line) = job.next_line() {
        first.get_or_insert_with(|| t0.elapsed());
        lines += 1;
    }
    let report = job.finish();
    let exit = t0.elapsed();
    if !report.outcome.success() || lines != 1 {
        return Err(format!(
            "warm: rust: {} after {lines} lines",
            report.outcome.describe()
        ));
    }
    Ok((first.unwrap_or(exit), exit))
}

/// The calls the runner makes for a warm job, by hand: find the container, create and start the
/// exec, write stdin, read to the end, read the exit code, check the container is still up, list
/// the agent's containers for retention.
///
/// Without a prompt, the exec is herdctl's instead: no stdin, the prompt inside an `sh -c`
/// string (what dockerode runs), so the table shows what attaching stdin costs in the engine.
pub fn floor_job(
    f: &mut Floor,
    container: &str,
    list: &str,
    prompt: Option<&str>,
) -> io::Result<(Duration, Duration)> {
    let t0 = Instant::now();
    let found = f
        .call("GET", &format!("/containers/{container}/json"), None)?
        .expect("inspect", &[200])?;
    let id = found.str_field("Id")?;
    let (first, exit_code) = match prompt {
        Some(p) => exec_cat(f, &id, p, t0)?,
        None => exec_echo(f, &id, t0)?,
    };
    f.call("GET", &format!("/containers/{id}/json"), None)?
        .expect("inspect", &[200])?;
    f.call("GET", list, None)?.expect("list", &[200])?;
    if exit_code != 0 {
        return Err(io::Error::other(format!("cat exited {exit_code}")));
    }
    Ok((first, t0.elapsed()))
}

/// Exec `sh -c "printf '%s\n' '<prompt>'"` without stdin, as herdctl does.
fn exec_echo(f: &mut Floor, id: &str, t0: Instant) -> io::Result<(Duration, i64)> {
    let script = format!("printf '%s\\n' '{PROMPT}'");
    let body = format!(
        r#"{{"AttachStdin":false,"AttachStdout":true,"AttachStderr":true,"Tty":false,"Cmd":["sh","-c",{}],"Env":[{}],"User":{},"WorkingDir":"/workspace"}}"#,
        q(&script),
        q(&format!("HERDCTL_JOB_ID=floor-{}", t0.elapsed().as_nanos())),
        q(USER)
    );
    let exec_id = create_exec(f, id, &body)?;
    let h = f.exec_start(&exec_id)?;
    finish_exec(f, h, &exec_id, PROMPT.len() + 1, t0)
}

/// `POST /containers/{id}/exec` with `body`; the exec's id.
fn create_exec(f: &mut Floor, id: &str, body: &str) -> io::Result<String> {
    f.call("POST", &format!("/containers/{id}/exec"), Some(body))?
        .expect("exec create", &[201])?
        .str_field("Id")
}

/// Exec `cat` with `prompt` on stdin, read its output, then its exit code; returns the time of
/// the first stdout byte (from `t0`) and the code.
pub fn exec_cat(f: &mut Floor, id: &str, prompt: &str, t0: Instant) -> io::Result<(Duration, i64)> {
    let body = format!(
        r#"{{"AttachStdin":true,"AttachStdout":true,"AttachStderr":true,"Tty":false,"Cmd":["cat"],"Env":[{}],"User":{},"WorkingDir":"/workspace"}}"#,
        q(&format!("HERDCTL_JOB_ID=floor-{}", t0.elapsed().as_nanos())),
        q(USER)
    );
    let exec_id = create_exec(f, id, &body)?;
    let mut h = f.exec_start(&exec_id)?;
    h.send_stdin(prompt.as_bytes())?;
    finish_exec(f, h, &exec_id, prompt.len(), t0)
}

/// Reads a started exec's output to its end (it must be `expect` bytes), then its exit code.
fn finish_exec(
    f: &mut Floor,
    h: crate::floor::Hijacked,
    exec_id: &str,
    expect: usize,
    t0: Instant,
) -> io::Result<(Duration, i64)> {
    let mut first = None;
    let mut out = 0;
    h.demux(|d| {
        first.get_or_insert_with(|| t0.elapsed());
        out += d.len();
    })?;
    if out != expect {
        return Err(io::Error::other(format!("cat printed {out} bytes")));
    }
    // The engine fills the code within milliseconds of the stream's end; `null` means "not yet".
    loop {
        let code = f
            .call("GET", &format!("/exec/{exec_id}/json"), None)?
            .expect("exec inspect", &[200])?
            .int_field("ExitCode")?;
        if let Some(c) = code {
            return Ok((first.unwrap_or_else(|| t0.elapsed()), c));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A job in the Node driver: it reports its own times, measured inside Node.
pub(crate) fn node_job(
    node: &mut Option<Node>,
    cpu_ms: &mut f64,
    cmd: serde_json::Value,
) -> Result<(Duration, Duration), String> {
    let n = node.as_mut().ok_or("no node driver")?;
    let v = n.call(cmd)?;
    *cpu_ms = Node::num(&v, "cpu_ms")?;
    let ms = |k| Node::num(&v, k).map(|x| Duration::from_secs_f64(x / 1000.0));
    Ok((ms("first_ms")?, ms("exit_ms")?))
}

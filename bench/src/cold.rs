//! Cold ephemeral job: acquire a fresh container, run the job in it, release it (the runner stops
//! it and applies retention), end to end.
//!
//! Retention keeps `KEEP` containers per agent, and every method starts only after its agent has
//! that many, so each timed job also removes one old container: the steady state of a busy agent.

use std::collections::VecDeque;
use std::io;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::ext::{timed_process, Node};
use crate::fixture::{now_ms, Ctx, IMAGE, PROMPT, RUN_LABEL, USER};
use crate::floor::{list_path, Floor};
use crate::report::{Better, Row};
use crate::stats::Samples;
use crate::warm::{exec_cat, node_job};

/// Containers kept per agent.
const KEEP: u32 = 2;
const FIGURE: &str = "cold ephemeral job: acquire + run + release";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Rust,
    Floor,
    DockerRun,
    Dockerode,
}

pub fn run(ctx: &Ctx, node: &mut Option<Node>) -> Result<Vec<Row>, String> {
    let prompt = format!("{PROMPT}\n");
    let agent = ctx.agent("cold");
    let config = ctx.config(true, KEEP);
    let spec = ctx.job(&agent, &config, &["cat"], prompt.as_bytes());

    // The floor creates what the runner creates: copy the body from a container the runner made.
    let first = ctx
        .runner
        .run(spec.clone(), |_| {})
        .map_err(|e| format!("cold: first job: {e}"))?;
    let floor_agent = ctx.agent("cold-floor");
    let mut floor = ctx.floor();
    let body = floor_body(&mut floor, &first.container_id, &floor_agent)
        .map_err(|e| format!("cold: read the runner's create body: {e}"))?;
    let mut floor_state = FloorState {
        body,
        list: list_path(&[
            "dev.herdctl.managed=1",
            &format!("dev.herdctl.agent={floor_agent}"),
        ]),
        kept: VecDeque::new(),
        prefix: format!(
            "herdctl-{}-",
            herdctl_container::sanitize_agent_name(&floor_agent)
        ),
    };

    let dockerode_agent = ctx.agent("cold-dockerode");
    let dockerode_prefix = format!(
        "herdctl-{}-",
        herdctl_container::sanitize_agent_name(&dockerode_agent)
    );

    let mut methods = vec![Method::Rust, Method::Floor, Method::DockerRun];
    if node.as_ref().is_some_and(|n| n.has("dockerode-cold")) {
        methods.push(Method::Dockerode);
    }
    // Warm-up: the runner and the floor fill their agents up to KEEP; everything runs once.
    let warmup = KEEP as usize + 1;
    let rounds = ctx.n(3, 8);
    let mut exit_ms: Vec<Samples> = vec![Samples::new(); methods.len()];
    for round in 0..warmup + rounds {
        for i in crate::stats::order(round, methods.len()) {
            let slow = matches!(methods[i], Method::DockerRun | Method::Dockerode);
            if round + 1 < warmup && slow {
                continue;
            }
            let n = round * methods.len() + i;
            let e = match methods[i] {
                Method::Rust => rust_job(ctx, &spec)?,
                Method::Floor => floor_job(&mut floor, &mut floor_state, &prompt, n)
                    .map_err(|e| format!("cold: floor: {e}"))?,
                Method::DockerRun => {
                    timed_process(
                        Command::new("docker")
                            .args(["run", "-i", "--rm", "--init", "--network", "none"])
                            .args(["-u", USER, "-w", "/workspace"])
                            .args(["--label", "dev.herdctl.test=1", "--label"])
                            .arg(format!("{RUN_LABEL}={}", ctx.run))
                            .args(["--name", &ctx.name("docker-run", n), IMAGE, "cat"]),
                        prompt.as_bytes(),
                        prompt.as_bytes(),
                    )?
                    .1
                }
                Method::Dockerode => {
                    let create = dockerode_create(ctx, &format!("{dockerode_prefix}{n}"));
                    node_job(
                        node,
                        &mut 0.0,
                        json!({"op": "dockerode-cold", "create": create, "prompt": PROMPT,
                               "agentPrefix": dockerode_prefix}),
                    )?
                    .1
                }
            };
            if round >= warmup {
                exit_ms[i].push_ms(e);
            }
        }
    }

    let at = |m: Method| methods.iter().position(|x| *x == m).map(|i| &exit_ms[i]);
    let floor = at(Method::Floor).expect("the floor always runs");
    let rust = at(Method::Rust).expect("the Rust API always runs");
    let mut rows = vec![
        Row::new(FIGURE, "engine floor (raw socket)", "ms", floor),
        Row::new(FIGURE, "Rust API (Runner)", "ms", rust)
            .vs("floor", floor)
            .ratio_target(Better::Lower, 1.15),
    ];
    let docker = at(Method::DockerRun).expect("docker run always runs");
    // No target: `docker run` makes the command the container's main process (no exec, no
    // stop), which a persistent-capable runner cannot do; the row says what that shortcut saves.
    rows.push(Row::new(FIGURE, "`docker run -i --rm --init`", "ms", docker).vs("floor", floor));
    if let Some(d) = at(Method::Dockerode) {
        let faster = d.median() / rust.median();
        rows.push(
            Row::new(FIGURE, "dockerode, herdctl's way (stop -t 5)", "ms", d)
                .vs("floor", floor)
                .target(
                    format!("Rust API ≥ 5× faster ({faster:.1}×)"),
                    faster >= 5.0,
                ),
        );
    }
    Ok(rows)
}

fn rust_job(ctx: &Ctx, spec: &herdctl_container::JobSpec) -> Result<Duration, String> {
    let t0 = Instant::now();
    let report = ctx
        .runner
        .run(spec.clone(), |_| {})
        .map_err(|e| format!("cold: rust: {e}"))?;
    let took = t0.elapsed();
    if !report.outcome.success() {
        return Err(format!("cold: rust: {}", report.outcome.describe()));
    }
    if !report.warnings.is_empty() {
        return Err(format!("cold: rust: warnings {:?}", report.warnings));
    }
    Ok(took)
}

struct FloorState {
    /// The create body, with `@CREATED@` where the creation time goes.
    body: String,
    list: String,
    /// The floor agent's containers, oldest first: the floor's "retention" removes the oldest
    /// past KEEP after the same list call the runner makes.
    kept: VecDeque<String>,
    prefix: String,
}

/// The runner's calls for a cold ephemeral job, by hand: create, inspect (the runner checks the
/// engine applied its security settings), start, exec `cat`, exit code, inspect, stop, list,
/// remove the oldest past the limit.
fn floor_job(f: &mut Floor, s: &mut FloorState, prompt: &str, n: usize) -> io::Result<Duration> {
    let t0 = Instant::now();
    let body = s.body.replace("@CREATED@", &now_ms().to_string());
    let id = f
        .call(
            "POST",
            &format!("/containers/create?name={}{n}", s.prefix),
            Some(&body),
        )?
        .expect("create", &[201])?
        .str_field("Id")?;
    f.call("GET", &format!("/containers/{id}/json"), None)?
        .expect("inspect", &[200])?;
    f.call("POST", &format!("/containers/{id}/start"), None)?
        .expect("start", &[204])?;
    let (_, code) = exec_cat(f, &id, prompt, t0)?;
    f.call("GET", &format!("/containers/{id}/json"), None)?
        .expect("inspect", &[200])?;
    f.call("POST", &format!("/containers/{id}/stop?t=2"), None)?
        .expect("stop", &[204])?;
    s.kept.push_back(id);
    f.call("GET", &s.list, None)?.expect("list", &[200])?;
    while s.kept.len() > KEEP as usize {
        let old = s.kept.pop_front().expect("longer than KEEP");
        f.call(
            "DELETE",
            &format!("/containers/{old}?force=false&v=true"),
            None,
        )?
        .expect("remove", &[204])?;
    }
    if code != 0 {
        return Err(io::Error::other(format!("cat exited {code}")));
    }
    Ok(t0.elapsed())
}

/// The create body of a container the runner made, for the floor's agent.
fn floor_body(f: &mut Floor, id: &str, agent: &str) -> io::Result<String> {
    let raw = f
        .call("GET", &format!("/containers/{id}/json"), None)?
        .expect("inspect", &[200])?;
    let got: Value = serde_json::from_slice(&raw.body).map_err(io::Error::other)?;
    let (c, h) = (&got["Config"], &got["HostConfig"]);
    let mut labels = c["Labels"].clone();
    labels["dev.herdctl.agent"] = json!(agent);
    labels["dev.herdctl.created"] = json!("@CREATED@");
    let body = json!({
        "Image": c["Image"], "Cmd": c["Cmd"], "User": c["User"], "Env": c["Env"],
        "WorkingDir": c["WorkingDir"], "Labels": labels, "ExposedPorts": {},
        "HostConfig": {
            "Mounts": h["Mounts"], "Memory": h["Memory"], "MemorySwap": h["MemorySwap"],
            "PidsLimit": h["PidsLimit"], "CapDrop": h["CapDrop"], "SecurityOpt": h["SecurityOpt"],
            "NetworkMode": h["NetworkMode"], "Init": h["Init"],
        },
    });
    Ok(body.to_string())
}

/// herdctl's create options for an ephemeral container (its ContainerManager): `sleep infinity`
/// as PID 1 with no init, binds for the workspace and the sessions, the security flags.
fn dockerode_create(ctx: &Ctx, name: &str) -> Value {
    let sessions = format!("{}/docker-sessions", ctx.state_dir());
    let _ = std::fs::create_dir_all(&sessions);
    json!({
        "Image": IMAGE,
        "name": name,
        "Tty": false,
        "OpenStdin": true,
        "StdinOnce": false,
        "Cmd": ["sleep", "infinity"],
        "WorkingDir": "/workspace",
        "Env": ["TERM=xterm-256color", "HOME=/home/claude"],
        "Labels": ctx.own_labels(),
        "User": USER,
        "HostConfig": {
            "Memory": 2u64 << 30,
            "MemorySwap": 2u64 << 30,
            "NetworkMode": "none",
            "Binds": [
                format!("{}:/workspace:rw", ctx.workspace()),
                format!("{sessions}:/home/claude/.claude/projects/-workspace:rw"),
            ],
            "SecurityOpt": ["no-new-privileges:true"],
            "CapDrop": ["ALL"],
            "ReadonlyRootfs": false,
            "AutoRemove": false,
        },
    })
}

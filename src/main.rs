//! `herdctl-container`: run agent jobs in containers, and look after the containers, from a shell.
//!
//! Every failure prints one line (`herdctl-container: <what failed>`) and exits non-zero; a job's
//! own exit code is mirrored.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use std::sync::Arc;

use herdctl_container::engine::{EngineOptions, PullProgress};
use herdctl_container::{
    resolve_docker_config, Engine, Error, JobSpec, Outcome, Runner, RunnerOptions,
};
use serde_json::{json, Map, Value};

const USAGE: &str = "usage:
  herdctl-container run --agent NAME [--image IMAGE] [--persistent] [--keep N] [--network none|bridge|host]
                        [--memory SIZE] [--user UID[:GID]] [--workspace DIR] [--state-dir DIR]
                        [--env KEY=VALUE]... [--timeout SECONDS] [--config FILE.json]
                        [--pull never|if-missing|always] -- COMMAND [ARG]...
  herdctl-container ps [--agent NAME] [--json]
  herdctl-container prune --agent NAME --keep N
  herdctl-container gc --keep N [--live-agent NAME]...
  herdctl-container doctor [--image IMAGE]

run forwards stdin to the command, streams its stdout lines, and exits with its exit code.
The engine is the docker CLI's: DOCKER_HOST, else DOCKER_CONTEXT, else the current docker context,
else /var/run/docker.sock (doctor says which). The state directory defaults to ./.herdctl.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herdctl-container: {e}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(args: &[String]) -> Result<ExitCode, Error> {
    let Some((command, rest)) = args.split_first() else {
        println!("{USAGE}");
        return Ok(ExitCode::from(2));
    };
    let mut flags = Flags::parse(rest)?;
    match command.as_str() {
        "run" => run(&mut flags),
        "ps" => ps(&mut flags),
        "prune" => prune(&mut flags),
        "gc" => gc(&mut flags),
        "doctor" => doctor(&mut flags),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(Error::invalid(
            "command",
            format!("{other:?} is not a command; expected run, ps, prune, gc or doctor"),
        )),
    }
}

/// `--name value` pairs (repeatable), bare `--switch`es, and the argv after `--`.
struct Flags {
    pairs: Vec<(String, String)>,
    switches: Vec<String>,
    argv: Vec<String>,
    /// Names already taken, to tell "given twice" from "unknown".
    taken: Vec<String>,
}

const SWITCHES: [&str; 2] = ["persistent", "json"];

impl Flags {
    fn parse(args: &[String]) -> Result<Flags, Error> {
        let mut flags = Flags {
            pairs: Vec::new(),
            switches: Vec::new(),
            argv: Vec::new(),
            taken: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--" {
                flags.argv = it.cloned().collect();
                break;
            }
            let Some(name) = a.strip_prefix("--") else {
                return Err(Error::invalid(
                    a.clone(),
                    "expected a --flag; put the command after --",
                ));
            };
            if SWITCHES.contains(&name) {
                flags.switches.push(name.to_string());
                continue;
            }
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => {
                    let v = it.next().ok_or_else(|| {
                        Error::invalid(format!("--{name}"), "expected a value after it")
                    })?;
                    (name.to_string(), v.clone())
                }
            };
            flags.pairs.push((name, value));
        }
        Ok(flags)
    }

    fn take(&mut self, name: &str) -> Option<String> {
        self.taken.push(name.to_string());
        let i = self.pairs.iter().position(|(n, _)| n == name)?;
        Some(self.pairs.remove(i).1)
    }

    fn take_all(&mut self, name: &str) -> Vec<String> {
        let (taken, kept) = std::mem::take(&mut self.pairs)
            .into_iter()
            .partition(|(n, _)| n == name);
        self.pairs = kept;
        taken.into_iter().map(|(_, v)| v).collect()
    }

    fn switch(&mut self, name: &str) -> bool {
        let had = self.switches.iter().any(|s| s == name);
        self.switches.retain(|s| s != name);
        had
    }

    fn required(&mut self, name: &str) -> Result<String, Error> {
        self.take(name)
            .ok_or_else(|| Error::invalid(format!("--{name}"), "is required"))
    }

    fn number(&mut self, name: &str) -> Result<Option<u64>, Error> {
        self.take(name)
            .map(|v| {
                v.parse().map_err(|_| {
                    Error::invalid(format!("--{name}"), format!("{v:?} is not a whole number"))
                })
            })
            .transpose()
    }

    /// Refuses leftovers, so a typo is an error instead of a silently ignored flag.
    fn done(&self) -> Result<(), Error> {
        if let Some((name, _)) = self.pairs.first() {
            let problem = if self.taken.contains(name) {
                "is given more than once"
            } else {
                "is not a flag of this command"
            };
            return Err(Error::invalid(format!("--{name}"), problem));
        }
        if let Some(name) = self.switches.first() {
            return Err(Error::invalid(
                format!("--{name}"),
                "is not a flag of this command",
            ));
        }
        Ok(())
    }
}

fn runner(flags: &mut Flags) -> Result<Runner, Error> {
    let state_dir = flags.take("state-dir").unwrap_or_else(|| ".herdctl".into());
    let mut options = RunnerOptions::new(state_dir);
    if let Some(policy) = flags.take("pull") {
        options.pull = policy.parse()?;
    }
    options.pull_progress = Some(Arc::new(|p: &PullProgress| {
        let id =
            p.id.as_deref()
                .map(|i| format!("{i}: "))
                .unwrap_or_default();
        eprintln!(
            "pull: {id}{} {}",
            p.status,
            p.progress.as_deref().unwrap_or("")
        );
    }));
    Runner::new(Engine::connect()?, options)
}

fn run(flags: &mut Flags) -> Result<ExitCode, Error> {
    let agent = flags.required("agent")?;
    let mut docker = match flags.take("config") {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::io(format!("read --config {path}"), e))?;
            serde_json::from_str::<Value>(&text).map_err(|e| {
                Error::invalid("--config", format!("{path} is not a JSON object: {e}"))
            })?
        }
        None => Value::Object(Map::new()),
    };
    let Value::Object(block) = &mut docker else {
        return Err(Error::invalid(
            "--config",
            "expected a JSON object (a docker: block)",
        ));
    };
    for (flag, field) in [
        ("image", "image"),
        ("network", "network"),
        ("memory", "memory"),
        ("user", "user"),
    ] {
        if let Some(v) = flags.take(flag) {
            block.insert(field.into(), json!(v));
        }
    }
    if let Some(keep) = flags.number("keep")? {
        block.insert("max_containers".into(), json!(keep));
    }
    if flags.switch("persistent") {
        block.insert("ephemeral".into(), json!(false));
    }
    let config = resolve_docker_config(&docker)?;
    let workspace = match flags.take("workspace") {
        Some(w) => w,
        None => std::env::current_dir()
            .map_err(|e| Error::io("read the current directory", e))?
            .to_string_lossy()
            .into_owned(),
    };
    let env = flags.take_all("env");
    let timeout = flags.number("timeout")?;
    let runner = runner(flags)?;
    flags.done()?;
    if flags.argv.is_empty() {
        return Err(Error::invalid("command", "expected the command after --"));
    }

    let mut spec = JobSpec::new(agent, config, workspace, flags.argv.clone());
    spec.env = env;
    spec.deadline = timeout.map(Duration::from_secs);
    // A terminal is not input: waiting for Ctrl-D there would only look like a hang.
    if !std::io::stdin().is_terminal() {
        std::io::stdin()
            .read_to_end(&mut spec.stdin)
            .map_err(|e| Error::io("read stdin", e))?;
    }

    let stdout = std::io::stdout();
    let report = runner.run(spec, |line| {
        let mut out = stdout.lock();
        // A closed stdout (a pipe into `head`) is the reader's choice, not the job's failure.
        let _ = out.write_all(line).and_then(|_| out.write_all(b"\n"));
    })?;
    if !report.stderr_tail.is_empty() && !report.outcome.success() {
        eprint!("{}", report.stderr_tail);
    }
    for w in &report.warnings {
        eprintln!("herdctl-container: warning: {w}");
    }
    Ok(match report.outcome {
        Outcome::Exited(code) | Outcome::CommandNotFound { code } => exit_code(code),
        other => {
            eprintln!(
                "herdctl-container: {} (container {})",
                other.describe(),
                report.container_name
            );
            match other {
                Outcome::Killed { code, .. } => exit_code(code),
                Outcome::ContainerDied {
                    exit_code: Some(c), ..
                } => exit_code(c),
                Outcome::TimedOut(_) => ExitCode::from(124),
                Outcome::Cancelled => ExitCode::from(130),
                _ => ExitCode::from(1),
            }
        }
    })
}

fn exit_code(code: i64) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn ps(flags: &mut Flags) -> Result<ExitCode, Error> {
    let agent = flags.take("agent");
    let as_json = flags.switch("json");
    let runner = runner(flags)?;
    flags.done()?;
    let found = runner.list(agent.as_deref())?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&found).expect("plain structs always serialize")
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<12}  {:<10}  {:<10}  {:<24}  NAME",
        "ID", "MODE", "STATE", "AGENT"
    );
    for c in found {
        println!(
            "{:<12}  {:<10}  {:<10}  {:<24}  {}",
            &c.id[..c.id.len().min(12)],
            c.mode,
            c.state,
            c.agent,
            c.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn prune(flags: &mut Flags) -> Result<ExitCode, Error> {
    let agent = flags.required("agent")?;
    let keep = flags
        .number("keep")?
        .ok_or_else(|| Error::invalid("--keep", "is required"))?;
    let runner = runner(flags)?;
    flags.done()?;
    let report = runner.prune(&agent, keep as usize)?;
    print_prune(&report);
    Ok(ExitCode::SUCCESS)
}

fn gc(flags: &mut Flags) -> Result<ExitCode, Error> {
    let keep = flags
        .number("keep")?
        .ok_or_else(|| Error::invalid("--keep", "is required"))?;
    let live = flags.take_all("live-agent");
    let runner = runner(flags)?;
    flags.done()?;
    let report = runner.gc(&live, keep as usize)?;
    print_prune(&report);
    Ok(ExitCode::SUCCESS)
}

fn print_prune(report: &herdctl_container::PruneReport) {
    for id in &report.removed {
        println!("removed {}", &id[..id.len().min(12)]);
    }
    for w in &report.warnings {
        eprintln!("herdctl-container: warning: {w}");
    }
}

fn doctor(flags: &mut Flags) -> Result<ExitCode, Error> {
    let image = flags.take("image");
    let state_dir = std::env::temp_dir().join(format!("herdctl-doctor-{}", std::process::id()));
    flags.done()?;
    let options = EngineOptions::from_env()?;
    println!("address:      {} ({})", options.describe(), options.source);
    let engine = Engine::with_options(options)?;
    let version = engine.version()?;
    println!(
        "engine:       {} (API {}, using {})",
        version.version,
        version.api_version,
        engine.api_version()
    );
    let Some(image) = image else {
        println!("hardening:    pass --image IMAGE to start a probe container and check it");
        return Ok(ExitCode::SUCCESS);
    };
    let runner = Runner::new(engine, RunnerOptions::new(&state_dir))?;
    let workspace = state_dir.join("workspace");
    std::fs::create_dir_all(&workspace).map_err(|e| Error::io("create the probe workspace", e))?;
    let config =
        resolve_docker_config(&json!({"image": image, "network": "none", "max_containers": 1}))?;
    let spec = JobSpec::new(
        "herdctl-doctor",
        config,
        workspace.to_string_lossy(),
        [
            "sh",
            "-c",
            "id; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status",
        ],
    );
    let mut lines = Vec::new();
    let report = runner.run(spec, |l| {
        lines.push(String::from_utf8_lossy(l).into_owned())
    })?;
    for l in &lines {
        println!("probe:        {l}");
    }
    let inspect = runner.engine().inspect_container(&report.container_id)?;
    let h = &inspect.host_config;
    println!("user:         {}", inspect.config.user);
    println!("cap drop:     {:?}", h.cap_drop);
    println!("security:     {:?}", h.security_opt);
    println!("memory:       {} bytes, swap {}", h.memory, h.memory_swap);
    println!("pids limit:   {:?}", h.pids_limit);
    println!("network:      {}", h.network_mode);
    println!("init:         {:?}", h.init);
    println!("outcome:      {}", report.outcome.describe());
    let _ = runner.engine().remove_container(&report.container_id, true);
    let _ = std::fs::remove_dir_all(&state_dir);
    Ok(if report.outcome.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

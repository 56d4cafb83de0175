//! `run`: one job, its stdin from ours, its stdout to ours, its exit code as ours.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::time::Duration;

use herdctl_container::{
    is_secret_name, resolve_docker_config, Error, Job, JobReport, JobSpec, Outcome,
};
use serde_json::{json, Map, Value};

use super::args::RunArgs;
use super::signals::Watch;
use super::{Context, Failure, OWN_FAILURE};

/// The exit code of a job that ran out of time, as `timeout(1)`'s.
const TIMED_OUT: u8 = 124;

/// Runs the job; the exit code is the job's own (see the README's table).
pub fn run(ctx: &Context, args: RunArgs) -> Result<u8, Failure> {
    // Everything that can be checked without the engine is checked first.
    let config = resolve_docker_config(&docker_block(&args)?)?;
    let env = job_env(&args.env, |k| std::env::var(k).ok())?;
    // A path typed on the command line is relative to where it was typed, as docker's `-v .:/x`
    // is; the runner itself takes absolute paths only.
    let workspace = std::path::absolute(args.workspace.as_deref().unwrap_or("."))
        .map_err(|e| Error::io("read the current directory", e))?
        .to_string_lossy()
        .into_owned();
    let secrets = secrets_of(&config.env, &env);

    let watch = Watch::install().map_err(|e| Error::io("install the signal handlers", e))?;
    let mut spec = JobSpec::new(args.agent, config, workspace, args.argv);
    spec.env = env;
    spec.deadline = args.timeout.map(Duration::from_secs);
    // A terminal is not input: waiting for Ctrl-D there would only look like a hang.
    if !std::io::stdin().is_terminal() {
        std::io::stdin()
            .read_to_end(&mut spec.stdin)
            .map_err(|e| Error::io("read stdin", e))?;
    }
    let runner = ctx.runner(
        args.state_dir.as_deref(),
        args.pull,
        args.warm_pool,
        &secrets,
    )?;
    // The warm pool this run kept is removed when it ends, however it ends.
    let _close = ClosePools(&runner);

    watch.starting();
    let mut job = match runner.start(spec) {
        Ok(job) => job,
        // Interrupted while starting, and the start failed anyway: the signal's code.
        Err(_) if watch.exit_code().is_some() => {
            return Ok(watch.exit_code().unwrap_or(OWN_FAILURE))
        }
        Err(e) => return Err(e.into()),
    };
    watch.running(job.canceller());
    print_lines(&mut job);
    let report = job.finish();
    let code = exit_code(&report.outcome, watch.exit_code());
    print_end(&report);
    Ok(code)
}

/// The values of the secret-named variables of the config's env and the `--env` flags
/// (`NAME=value`), for the runner to redact from everything it prints.
fn secrets_of(config_env: &BTreeMap<String, String>, env: &[String]) -> Vec<String> {
    let mut secrets: Vec<String> = config_env
        .iter()
        .filter(|(k, _)| is_secret_name(k))
        .map(|(_, v)| v.clone())
        .collect();
    secrets.extend(
        env.iter()
            .filter_map(|e| e.split_once('='))
            .filter(|(k, _)| is_secret_name(k))
            .map(|(_, v)| v.to_string()),
    );
    secrets
}

/// The job's output lines on our stdout, as they come.
fn print_lines(job: &mut Job) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    while let Some(line) = job.next_line() {
        // A closed stdout (a pipe into `head`) is the reader's choice, not the job's failure.
        let _ = out
            .write_all(line)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
    }
}

/// After the job, on stderr: a failed job's stderr tail, the runner's warnings, and for an end
/// other than the command's own exit, what happened and where its record is.
fn print_end(report: &JobReport) {
    if !report.stderr_tail.is_empty() && !report.outcome.success() {
        eprint!("{}", report.stderr_tail);
        if !report.stderr_tail.ends_with('\n') {
            eprintln!();
        }
    }
    for w in &report.warnings {
        eprintln!("herdctl-container: warning: {w}");
    }
    if !matches!(
        report.outcome,
        Outcome::Exited(_) | Outcome::CommandNotFound { .. }
    ) {
        eprintln!(
            "herdctl-container: {} (container {}; 'herdctl-container logs {}' shows its record)",
            report.outcome.describe(),
            report.container_name,
            report.container_name
        );
    }
}

/// Retires the warm pools a run used, when it returns.
struct ClosePools<'a>(&'a herdctl_container::Runner);

impl Drop for ClosePools<'_> {
    fn drop(&mut self) {
        for w in self.0.close().warnings {
            eprintln!("herdctl-container: warning: {w}");
        }
    }
}

/// The exit code for an outcome, as docker's `run` gives it; `signalled` is 128 + the signal
/// that cancelled the job, if one did.
pub fn exit_code(outcome: &Outcome, signalled: Option<u8>) -> u8 {
    let own = |code: i64| u8::try_from(code).unwrap_or(OWN_FAILURE);
    match outcome {
        Outcome::Exited(code)
        | Outcome::CommandNotFound { code }
        | Outcome::Killed { code, .. } => own(*code),
        Outcome::ContainerDied {
            exit_code: Some(code),
            ..
        } => own(*code),
        Outcome::TimedOut(_) => TIMED_OUT,
        Outcome::Cancelled => signalled.unwrap_or(130),
        _ => OWN_FAILURE,
    }
}

/// The most a `--config` file may hold.
const CONFIG_LIMIT: u64 = 1 << 20;

/// herdctl's `docker:` block: the `--config` file's, with the flags over it.
fn docker_block(args: &RunArgs) -> Result<Value, Failure> {
    let mut docker = match &args.config {
        Some(path) => {
            // Read within a bound: a docker: block is a few KB, and `--config /dev/zero` (or
            // a pipe that never ends) must not take every byte of memory first.
            let mut text = String::new();
            std::fs::File::open(path)
                .and_then(|f| f.take(CONFIG_LIMIT + 1).read_to_string(&mut text))
                .map_err(|e| Error::io(format!("read --config {path}"), e))?;
            if text.len() as u64 > CONFIG_LIMIT {
                return Err(Error::invalid(
                    "--config",
                    format!("{path} is larger than 1 MiB; expected a JSON docker: block"),
                )
                .into());
            }
            serde_json::from_str::<Value>(&text)
                .map_err(|e| Error::invalid("--config", format!("{path} is not JSON: {e}")))?
        }
        None => Value::Object(Map::new()),
    };
    let Value::Object(block) = &mut docker else {
        return Err(Error::invalid("--config", "expected a JSON object (a docker: block)").into());
    };
    for (field, value) in [
        ("image", &args.image),
        ("network", &args.network),
        ("memory", &args.memory),
        ("user", &args.user),
        ("runtime", &args.runtime),
    ] {
        if let Some(v) = value {
            block.insert(field.into(), json!(v));
        }
    }
    if let Some(keep) = args.keep {
        block.insert("max_containers".into(), json!(keep));
    }
    if args.persistent {
        block.insert("ephemeral".into(), json!(false));
    }
    Ok(docker)
}

/// `-e` entries as `KEY=VALUE`: `KEY` alone takes this process's value (and is left out when it
/// has none, as docker does), so a secret need not be on the command line.
fn job_env(
    entries: &[String],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, Failure> {
    let mut out = Vec::new();
    for entry in entries {
        let key = entry.split('=').next().unwrap_or("");
        let valid = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(Error::argument(
                "--env",
                format!("{key:?} is not a variable name; expected KEY=VALUE or KEY, KEY of letters, digits and _"),
            )
            .into());
        }
        if entry.contains('=') {
            out.push(entry.clone());
        } else if let Some(v) = lookup(entry) {
            out.push(format!("{entry}={v}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_dockers() {
        assert_eq!(exit_code(&Outcome::Exited(0), None), 0);
        assert_eq!(exit_code(&Outcome::Exited(2), None), 2);
        assert_eq!(
            exit_code(&Outcome::CommandNotFound { code: 127 }, None),
            127
        );
        assert_eq!(
            exit_code(&Outcome::CommandNotFound { code: 126 }, None),
            126
        );
        assert_eq!(
            exit_code(
                &Outcome::Killed {
                    code: 137,
                    oom: true
                },
                None
            ),
            137
        );
        assert_eq!(
            exit_code(
                &Outcome::ContainerDied {
                    exit_code: None,
                    oom_killed: false
                },
                None
            ),
            125
        );
        assert_eq!(
            exit_code(&Outcome::TimedOut(Duration::from_secs(1)), None),
            124
        );
        assert_eq!(exit_code(&Outcome::Cancelled, Some(143)), 143);
        assert_eq!(exit_code(&Outcome::Cancelled, None), 130);
        assert_eq!(
            exit_code(&Outcome::Failed(Error::LineTooLong { limit: 1 }), None),
            125
        );
        assert_eq!(exit_code(&Outcome::Exited(300), None), 125);
    }

    #[test]
    fn env_takes_key_value_or_a_key_from_here() {
        let lookup = |k: &str| (k == "FROM_HERE").then(|| "v=1".to_string());
        let env = job_env(
            &[
                "A=b=c".into(),
                "FROM_HERE".into(),
                "UNSET".into(),
                "E=".into(),
            ],
            lookup,
        )
        .unwrap();
        assert_eq!(env, ["A=b=c", "FROM_HERE=v=1", "E="]);
        for bad in ["=x", "1A=x", "A-B=x", ""] {
            let e = job_env(&[bad.into()], lookup).unwrap_err();
            assert!(e.to_string().starts_with("invalid --env: "), "{e}");
        }
    }
}

//! Help texts: the overview and one page per subcommand, the flags listed from the same table
//! the parser uses.

use super::args::{top_flags, Flag, Sub};

/// The version line, `herdctl-container 0.1.0`.
pub fn version() -> String {
    format!("herdctl-container {}", env!("CARGO_PKG_VERSION"))
}

const EXIT_CODES: &str = "\
Exit codes (as docker's):
  0        the command succeeded
  N        run: the job's own exit code (137 when it was killed, OOM included)
  1        logs, inspect: no job record matches
  124      run: the job's --timeout passed; it was cancelled
  125      herdctl-container itself failed: a bad flag or config, no engine, a missing image
  126/127  run: the command could not be run / was not found in the container
  129/130/143  run: cancelled by SIGHUP / SIGINT (Ctrl-C) / SIGTERM";

const ENVIRONMENT: &str = "\
Environment:
  DOCKER_HOST            the engine: unix:///path, tcp://host:port or ssh://[user@]host[:port]
  DOCKER_TLS_VERIFY, DOCKER_CERT_PATH
                         TLS for a tcp:// engine: ca.pem, cert.pem and key.pem (default: ~/.docker)
  DOCKER_CONTEXT         a docker context, when DOCKER_HOST is not set; else the current context
                         of ~/.docker/config.json (DOCKER_CONFIG), else /var/run/docker.sock;
                         doctor prints which
  HERDCTL_CONTAINER_LOG  debug prints one line per engine call on stderr (like --log-level debug)
  HERDCTL_CONTAINER_WARM_POOL
                         run: warm containers to keep per agent (like --warm-pool)
  ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN
                         credentials handed to each job (never to the container's config)";

/// The overview: every subcommand in a line.
pub fn overview() -> String {
    let mut out = format!(
        "{}\nRun herdctl's agent jobs in Docker containers, and look after the containers.\n\n\
         Usage: herdctl-container [--log-level LEVEL] COMMAND [FLAGS]\n\nCommands:\n",
        version()
    );
    for sub in Sub::ALL {
        out.push_str(&format!("  {:<9}{}\n", sub.name(), summary(sub)));
    }
    out.push_str("\nFlags:\n");
    out.push_str(&flag_lines(top_flags()));
    out.push_str(
        "\n'herdctl-container COMMAND --help' (or 'help COMMAND') shows a command's flags.\n\n",
    );
    out.push_str(EXIT_CODES);
    out.push_str("\n\n");
    out.push_str(ENVIRONMENT);
    out
}

fn summary(sub: Sub) -> &'static str {
    match sub {
        Sub::Run => "run a command as an agent's job in its container",
        Sub::Ps => "list this project's containers with each one's last job",
        Sub::Logs => "print a job's output (the redacted ends of stdout and stderr)",
        Sub::Inspect => "print job records as JSON: outcome, timings, warnings, tails",
        Sub::Prune => "remove an agent's oldest stopped containers and records",
        Sub::Gc => "remove the stopped containers and records of agents that are gone",
        Sub::Doctor => "check the engine and a container's effective hardening",
        Sub::Help => "print help, of one command or of all",
        Sub::Version => "print the version",
    }
}

fn usage_line(sub: Sub) -> &'static str {
    match sub {
        Sub::Run => "herdctl-container run --agent NAME [FLAGS] [--] COMMAND [ARG]...",
        Sub::Ps => "herdctl-container ps [--agent NAME] [--json | -q]",
        Sub::Logs => "herdctl-container logs CONTAINER|JOB|AGENT",
        Sub::Inspect => "herdctl-container inspect CONTAINER|JOB|AGENT...",
        Sub::Prune => "herdctl-container prune --agent NAME --keep N",
        Sub::Gc => "herdctl-container gc --keep N [--live-agent NAME]...",
        Sub::Doctor => "herdctl-container doctor [--image IMAGE [--runtime NAME]]",
        Sub::Help => "herdctl-container help [COMMAND]",
        Sub::Version => "herdctl-container version",
    }
}

fn details(sub: Sub) -> &'static str {
    match sub {
        Sub::Run => {
            "\
Forwards stdin to COMMAND (when stdin is not a terminal), streams its stdout, prints the end of
its stderr when it fails, and exits with its exit code. No shell is involved.

Ctrl-C, SIGTERM or SIGHUP cancel the job as the API's cancel does: its processes are killed and
its container released (an ephemeral one is stopped and kept for inspection); the exit code is
130, 143 or 129. A second Ctrl-C exits at once, once the kill was sent.

Every job leaves a record in <state-dir>/jobs/<agent>/: see 'herdctl-container logs'."
        }
        Sub::Ps => {
            "\
Lists the containers this project made (found by label), newest first, with each one's age and
its last job's outcome and exit code (from the job records in --state-dir)."
        }
        Sub::Logs => {
            "\
Prints the redacted end of a job's stdout (to stdout) and stderr (to stderr), from its record:
this works after the container is gone. A container (or an agent) names its last job; a job id
(or a prefix of at least 4 characters of a container or job id) names that job. Jobs run through exec, so
'docker logs' of the container shows nothing of them."
        }
        Sub::Inspect => {
            "\
Prints the records of the named jobs as a JSON array: the job's outcome, exit code, OOM flag,
per-phase timings in milliseconds, warnings, container, image, config hash and output tails."
        }
        Sub::Prune => {
            "\
Removes the agent's oldest stopped containers so that at most N remain, and its job records
beyond the newest N (at least one stays). Running containers are never removed."
        }
        Sub::Gc => {
            "\
Removes every stopped container (and job record) of agents not named by --live-agent, and
prunes the live agents to --keep each. Safe to run from several processes at once."
        }
        Sub::Doctor => {
            "\
Prints the engine's version and the API version in use, and the OCI runtimes it offers (with how
to add gVisor when it has none); with --image, starts a probe container (under --runtime, when
given) and prints its effective user, capabilities, no-new-privileges, limits, network, runtime
and the kernel it runs on."
        }
        Sub::Help => "Prints the overview, or one command's help.",
        Sub::Version => "Prints the version (also: herdctl-container --version or -V).",
    }
}

/// One subcommand's help page.
pub fn page(sub: Sub) -> String {
    let mut out = format!(
        "Usage: {}\n\n{}\n\nFlags:\n{}",
        usage_line(sub),
        details(sub),
        flag_lines(sub.flags())
    );
    if sub == Sub::Run {
        out.push('\n');
        out.push_str(EXIT_CODES);
        out.push('\n');
    }
    out
}

fn flag_lines(flags: &[Flag]) -> String {
    let mut out = String::new();
    for f in flags {
        let short = f.short.map(|c| format!("-{c}, ")).unwrap_or_default();
        let value = f.value.map(|v| format!(" {v}")).unwrap_or_default();
        let names = format!("{short}--{}{value}", f.long);
        let repeat = if f.repeats { " (repeatable)" } else { "" };
        if names.len() <= 24 {
            out.push_str(&format!("  {names:<25}{}{repeat}\n", f.help));
        } else {
            out.push_str(&format!("  {names}\n  {:<25}{}{repeat}\n", "", f.help));
        }
    }
    out
}

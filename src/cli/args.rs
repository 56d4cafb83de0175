//! The command line as typed values, parsed before anything touches the engine or a file: a bad
//! flag is reported as such, never as an unreachable engine.
//!
//! One table of flags per subcommand ([`Sub::flags`]) drives both the parser and the help, so
//! the two cannot disagree. lexopt hands us tokens (`-q`, `--name=value`, `--`); this module
//! checks them against the table, refuses repeats of single-valued flags, and suggests the
//! nearest flag for a misspelt one.

use std::ffi::OsString;

use herdctl_container::engine::LogLevel;
use herdctl_container::PullPolicy;

/// The whole command line.
#[derive(Debug, PartialEq)]
pub struct Cli {
    /// `--log-level`, given before or after the subcommand.
    pub log_level: Option<LogLevel>,
    /// What to do.
    pub command: Command,
}

/// A subcommand with its arguments.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// Run a job (boxed: it is far larger than the others).
    Run(Box<RunArgs>),
    /// List containers.
    Ps(PsArgs),
    /// Print a job's output tails.
    Logs(LogsArgs),
    /// Print job records as JSON.
    Inspect(InspectArgs),
    /// Remove an agent's oldest stopped containers.
    Prune(PruneArgs),
    /// Remove containers of agents that are gone.
    Gc(GcArgs),
    /// Check the engine and the hardening.
    Doctor(DoctorArgs),
    /// Print help: the overview, or one subcommand's.
    Help(Option<Sub>),
    /// Print the version.
    Version,
}

/// `run`'s arguments.
#[derive(Debug, Default, PartialEq)]
pub struct RunArgs {
    pub agent: String,
    pub image: Option<String>,
    pub persistent: bool,
    pub keep: Option<u64>,
    pub network: Option<String>,
    pub memory: Option<String>,
    pub user: Option<String>,
    pub runtime: Option<String>,
    pub workspace: Option<String>,
    pub state_dir: Option<String>,
    /// `KEY=VALUE`, or `KEY` to pass this process's value on (docker's `-e KEY`).
    pub env: Vec<String>,
    pub timeout: Option<u64>,
    pub config: Option<String>,
    pub pull: Option<PullPolicy>,
    /// Idle containers to keep warm for the agent while the job runs.
    pub warm_pool: Option<u64>,
    pub argv: Vec<String>,
}

/// `ps`'s arguments.
#[derive(Debug, Default, PartialEq)]
pub struct PsArgs {
    pub agent: Option<String>,
    pub json: bool,
    pub quiet: bool,
    pub state_dir: Option<String>,
}

/// `logs`'s arguments.
#[derive(Debug, Default, PartialEq)]
pub struct LogsArgs {
    pub key: String,
    pub state_dir: Option<String>,
}

/// `inspect`'s arguments.
#[derive(Debug, Default, PartialEq)]
pub struct InspectArgs {
    pub keys: Vec<String>,
    pub state_dir: Option<String>,
}

/// `prune`'s arguments.
#[derive(Debug, Default, PartialEq)]
pub struct PruneArgs {
    pub agent: String,
    pub keep: u64,
    pub state_dir: Option<String>,
}

/// `gc`'s arguments.
#[derive(Debug, Default, PartialEq)]
pub struct GcArgs {
    pub keep: u64,
    pub live: Vec<String>,
    pub state_dir: Option<String>,
}

/// `doctor`'s arguments.
#[derive(Debug, Default, PartialEq)]
pub struct DoctorArgs {
    pub image: Option<String>,
    pub runtime: Option<String>,
}

/// A subcommand's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    Run,
    Ps,
    Logs,
    Inspect,
    Prune,
    Gc,
    Doctor,
    Help,
    Version,
}

/// One flag of a subcommand: its names, its value's name (none for a switch) and its help line.
#[derive(Debug)]
pub struct Flag {
    pub long: &'static str,
    pub short: Option<char>,
    pub value: Option<&'static str>,
    /// May be given more than once.
    pub repeats: bool,
    pub help: &'static str,
}

const fn flag(long: &'static str, value: Option<&'static str>, help: &'static str) -> Flag {
    Flag {
        long,
        short: None,
        value,
        repeats: false,
        help,
    }
}

const STATE_DIR: Flag = flag(
    "state-dir",
    Some("DIR"),
    "herdctl's state directory (default: ./.herdctl)",
);
const LOG_LEVEL: Flag = flag(
    "log-level",
    Some("LEVEL"),
    "info (default) or debug: one line per engine call on stderr",
);
const HELP: Flag = Flag {
    short: Some('h'),
    ..flag("help", None, "print this help")
};

const RUN_FLAGS: &[Flag] = &[
    flag(
        "agent",
        Some("NAME"),
        "the agent's qualified name (required)",
    ),
    flag(
        "image",
        Some("IMAGE"),
        "the image (default: herdctl/runtime:latest)",
    ),
    flag(
        "persistent",
        None,
        "reuse the agent's container across jobs (default: a fresh one per job)",
    ),
    flag(
        "keep",
        Some("N"),
        "containers (and job records) the agent keeps (default: 5)",
    ),
    flag("network", Some("MODE"), "none, bridge (default) or host"),
    flag(
        "memory",
        Some("SIZE"),
        "memory limit, like 512m or 2g (default: 2g)",
    ),
    flag(
        "user",
        Some("UID[:GID]"),
        "the user in the container (default: yours; root gets 1000:1000)",
    ),
    flag(
        "runtime",
        Some("NAME"),
        "the engine's OCI runtime, like runsc for gVisor (default: the engine's)",
    ),
    flag(
        "workspace",
        Some("DIR"),
        "mounted at /workspace (default: the current directory)",
    ),
    STATE_DIR,
    Flag {
        short: Some('e'),
        repeats: true,
        ..flag(
            "env",
            Some("KEY[=VALUE]"),
            "a variable for the job; KEY alone passes on this process's value",
        )
    },
    flag(
        "timeout",
        Some("SECONDS"),
        "cancel the job after this long (exit 124)",
    ),
    flag(
        "config",
        Some("FILE"),
        "a JSON file with herdctl's docker: block; flags override it",
    ),
    flag(
        "pull",
        Some("POLICY"),
        "never (default), if-missing or always",
    ),
    flag(
        "warm-pool",
        Some("N"),
        "take a warm container (any process's over this state directory) instead of making one, and keep N warm while the job runs; this run's idle ones are removed at exit (default: HERDCTL_CONTAINER_WARM_POOL, else 0)",
    ),
    LOG_LEVEL,
    HELP,
];

const PS_FLAGS: &[Flag] = &[
    flag("agent", Some("NAME"), "only this agent's containers"),
    flag("json", None, "print JSON"),
    Flag {
        short: Some('q'),
        ..flag("quiet", None, "print only container ids")
    },
    Flag {
        short: Some('a'),
        ..flag(
            "all",
            None,
            "every container, stopped ones too (the default; for docker's habit)",
        )
    },
    STATE_DIR,
    LOG_LEVEL,
    HELP,
];

const LOGS_FLAGS: &[Flag] = &[STATE_DIR, LOG_LEVEL, HELP];
const INSPECT_FLAGS: &[Flag] = &[STATE_DIR, LOG_LEVEL, HELP];

const PRUNE_FLAGS: &[Flag] = &[
    flag("agent", Some("NAME"), "the agent (required)"),
    flag(
        "keep",
        Some("N"),
        "stopped containers (and job records) to keep (required)",
    ),
    STATE_DIR,
    LOG_LEVEL,
    HELP,
];

const GC_FLAGS: &[Flag] = &[
    flag(
        "keep",
        Some("N"),
        "stopped containers each live agent keeps (required)",
    ),
    Flag {
        repeats: true,
        ..flag(
            "live-agent",
            Some("NAME"),
            "an agent that still exists (repeat for each); every other agent's stopped containers and records go",
        )
    },
    STATE_DIR,
    LOG_LEVEL,
    HELP,
];

const DOCTOR_FLAGS: &[Flag] = &[
    flag(
        "image",
        Some("IMAGE"),
        "start a probe container of this image and check its hardening",
    ),
    flag(
        "runtime",
        Some("NAME"),
        "run the probe under this OCI runtime, like runsc (gVisor)",
    ),
    LOG_LEVEL,
    HELP,
];

const TOP_FLAGS: &[Flag] = &[
    LOG_LEVEL,
    HELP,
    Flag {
        short: Some('V'),
        ..flag("version", None, "print the version")
    },
];

impl Sub {
    /// Every subcommand, in the order help lists them.
    pub const ALL: [Sub; 9] = [
        Sub::Run,
        Sub::Ps,
        Sub::Logs,
        Sub::Inspect,
        Sub::Prune,
        Sub::Gc,
        Sub::Doctor,
        Sub::Help,
        Sub::Version,
    ];

    /// The name typed on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Sub::Run => "run",
            Sub::Ps => "ps",
            Sub::Logs => "logs",
            Sub::Inspect => "inspect",
            Sub::Prune => "prune",
            Sub::Gc => "gc",
            Sub::Doctor => "doctor",
            Sub::Help => "help",
            Sub::Version => "version",
        }
    }

    fn parse(name: &str) -> Option<Sub> {
        Sub::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The flags it takes.
    pub fn flags(self) -> &'static [Flag] {
        match self {
            Sub::Run => RUN_FLAGS,
            Sub::Ps => PS_FLAGS,
            Sub::Logs => LOGS_FLAGS,
            Sub::Inspect => INSPECT_FLAGS,
            Sub::Prune => PRUNE_FLAGS,
            Sub::Gc => GC_FLAGS,
            Sub::Doctor => DOCTOR_FLAGS,
            Sub::Help | Sub::Version => &[HELP],
        }
    }
}

/// The flags the overview's help lists.
pub fn top_flags() -> &'static [Flag] {
    TOP_FLAGS
}

/// A command line that does not parse: what is wrong, and which subcommand's help explains it.
#[derive(Debug, PartialEq)]
pub struct Usage {
    pub message: String,
    pub sub: Option<Sub>,
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.sub {
            Some(sub) => write!(
                f,
                "{}; see 'herdctl-container {} --help'",
                self.message,
                sub.name()
            ),
            None => write!(f, "{}; see 'herdctl-container --help'", self.message),
        }
    }
}

fn usage(sub: Option<Sub>, message: impl Into<String>) -> Usage {
    Usage {
        message: message.into(),
        sub,
    }
}

/// Parses the arguments after the program's name.
pub fn parse<I>(args: I) -> Result<Cli, Usage>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut parser = lexopt::Parser::from_args(args);
    let mut log_level = None;
    let command = match top_level(&mut parser, &mut log_level)? {
        Top::Sub(sub) => sub_command(&mut parser, sub, &mut log_level)?,
        Top::Done(command) => command,
    };
    Ok(Cli { log_level, command })
}

/// What the arguments before a command's name come to.
enum Top {
    /// A command's name: its own flags and arguments follow.
    Sub(Sub),
    /// Help or the version, asked for before any command (or no command at all: help).
    Done(Command),
}

/// Reads the arguments before the command's name: the global flags (`--log-level`, help, the
/// version), up to the name of the command.
fn top_level(parser: &mut lexopt::Parser, log_level: &mut Option<LogLevel>) -> Result<Top, Usage> {
    loop {
        let arg = parser.next().map_err(|e| lexopt_error(None, e))?;
        match arg {
            None => return Ok(Top::Done(Command::Help(None))),
            Some(lexopt::Arg::Short('h')) | Some(lexopt::Arg::Long("help")) => {
                return Ok(Top::Done(Command::Help(None)))
            }
            Some(lexopt::Arg::Short('V')) | Some(lexopt::Arg::Long("version")) => {
                return Ok(Top::Done(Command::Version))
            }
            Some(lexopt::Arg::Long("log-level")) => {
                let v = text(None, "--log-level", parser.value())?;
                *log_level = Some(parse_level(None, &v)?);
            }
            Some(lexopt::Arg::Value(v)) => {
                let name = v.to_string_lossy().into_owned();
                return Ok(Top::Sub(sub_named(&name)?));
            }
            Some(other) => {
                let given = display_arg(&other);
                return Err(unknown_flag(None, &given, TOP_FLAGS));
            }
        }
    }
}

/// The command called `name`, or an error that suggests the nearest name.
fn sub_named(name: &str) -> Result<Sub, Usage> {
    Sub::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Sub::ALL.iter().map(|s| s.name()).collect();
        let hint = suggest(name, &names)
            .map(|s| format!(" (did you mean '{s}'?)"))
            .unwrap_or_default();
        usage(
            None,
            format!("invalid command: {name:?} is not a command{hint}"),
        )
    })
}

/// Reads the arguments after the command's name: its flags (checked against its own list, each
/// at most once unless it repeats), its positional arguments and, for `run`, the command to run;
/// then builds the command.
fn sub_command(
    parser: &mut lexopt::Parser,
    sub: Sub,
    log_level: &mut Option<LogLevel>,
) -> Result<Command, Usage> {
    let mut seen = Seen::default();
    let mut positionals: Vec<String> = Vec::new();
    let mut argv: Vec<String> = Vec::new();
    while let Some(arg) = parser.next().map_err(|e| lexopt_error(Some(sub), e))? {
        let (given, flag) = match arg {
            lexopt::Arg::Value(v) => {
                let v = os_text(Some(sub), "an argument", v)?;
                if sub == Sub::Run {
                    argv = command_argv(parser, v)?;
                    break;
                }
                positionals.push(v);
                continue;
            }
            lexopt::Arg::Short(c) => {
                let flag = sub.flags().iter().find(|f| f.short == Some(c));
                (format!("-{c}"), flag)
            }
            lexopt::Arg::Long(l) => {
                let flag = sub.flags().iter().find(|f| f.long == l);
                (format!("--{l}"), flag)
            }
        };
        let Some(flag) = flag else {
            return Err(unknown_flag(Some(sub), &given, sub.flags()));
        };
        if flag.long == "help" {
            return Ok(Command::Help(Some(sub)));
        }
        let value = match flag.value {
            Some(_) => Some(text(
                Some(sub),
                &format!("--{}", flag.long),
                parser.value(),
            )?),
            None => None,
        };
        if flag.long == "log-level" {
            *log_level = Some(parse_level(Some(sub), value.as_deref().unwrap_or(""))?);
            continue;
        }
        if !flag.repeats && seen.has(flag.long) {
            return Err(usage(
                Some(sub),
                format!("invalid --{}: is given more than once", flag.long),
            ));
        }
        seen.0.push((flag.long, value));
    }
    build(sub, seen, positionals, argv)
}

/// `run`'s command: its first word (`first`) and every argument after it as they are, flags
/// included (they are the command's own, not ours).
fn command_argv(parser: &mut lexopt::Parser, first: String) -> Result<Vec<String>, Usage> {
    let sub = Some(Sub::Run);
    let mut argv = vec![first];
    let rest = parser.raw_args().map_err(|e| lexopt_error(sub, e))?;
    for a in rest {
        argv.push(os_text(sub, "the command", a)?);
    }
    Ok(argv)
}

/// The flags given, in order, with their values.
#[derive(Default)]
struct Seen(Vec<(&'static str, Option<String>)>);

impl Seen {
    fn has(&self, long: &str) -> bool {
        self.0.iter().any(|(l, _)| *l == long)
    }

    fn one(&self, long: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(l, _)| *l == long)
            .and_then(|(_, v)| v.clone())
    }

    fn all(&self, long: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(l, _)| *l == long)
            .filter_map(|(_, v)| v.clone())
            .collect()
    }

    fn required(&self, sub: Sub, long: &str) -> Result<String, Usage> {
        self.one(long)
            .ok_or_else(|| usage(Some(sub), format!("invalid --{long}: is required")))
    }

    fn number(&self, sub: Sub, long: &str) -> Result<Option<u64>, Usage> {
        self.one(long)
            .map(|v| {
                v.trim().parse().map_err(|_| {
                    usage(
                        Some(sub),
                        format!("invalid --{long}: {v:?} is not a whole number"),
                    )
                })
            })
            .transpose()
    }
}

/// Builds the command from what [`sub_command`] read, checking what each command requires.
fn build(
    sub: Sub,
    seen: Seen,
    positionals: Vec<String>,
    argv: Vec<String>,
) -> Result<Command, Usage> {
    Ok(match sub {
        Sub::Run => Command::Run(Box::new(build_run(&seen, argv)?)),
        Sub::Ps => {
            no_positionals(sub, &positionals)?;
            Command::Ps(PsArgs {
                agent: seen.one("agent"),
                json: seen.has("json"),
                quiet: seen.has("quiet"),
                state_dir: seen.one("state-dir"),
            })
        }
        Sub::Logs => Command::Logs(build_logs(&seen, positionals)?),
        Sub::Inspect => {
            if positionals.is_empty() {
                return Err(usage(Some(sub), NO_KEY));
            }
            Command::Inspect(InspectArgs {
                keys: positionals,
                state_dir: seen.one("state-dir"),
            })
        }
        Sub::Prune => Command::Prune(build_prune(&seen, &positionals)?),
        Sub::Gc => Command::Gc(build_gc(&seen, &positionals)?),
        Sub::Doctor => {
            no_positionals(sub, &positionals)?;
            Command::Doctor(DoctorArgs {
                image: seen.one("image"),
                runtime: seen.one("runtime"),
            })
        }
        // Only the first argument is read: `help run anything` is still help for run.
        Sub::Help => Command::Help(positionals.first().map(|n| sub_named(n)).transpose()?),
        Sub::Version => {
            no_positionals(sub, &positionals)?;
            Command::Version
        }
    })
}

/// The refusal when logs or inspect are given nothing to look at.
const NO_KEY: &str =
    "invalid CONTAINER|JOB|AGENT: is required (a container's name or id, a job id or an agent)";

/// `run`'s arguments: the agent and the command are required; the pull policy is read here so a
/// typo fails before any engine call.
fn build_run(seen: &Seen, argv: Vec<String>) -> Result<RunArgs, Usage> {
    let sub = Sub::Run;
    let agent = seen.required(sub, "agent")?;
    let pull = match seen.one("pull") {
        Some(p) => Some(p.parse::<PullPolicy>().map_err(|_| {
            usage(
                Some(sub),
                format!("invalid --pull: {p:?} is not a pull policy; expected never, if-missing or always"),
            )
        })?),
        None => None,
    };
    if argv.is_empty() {
        return Err(usage(
            Some(sub),
            "invalid command: expected the command to run after the flags (or after --)",
        ));
    }
    Ok(RunArgs {
        agent,
        image: seen.one("image"),
        persistent: seen.has("persistent"),
        keep: seen.number(sub, "keep")?,
        network: seen.one("network"),
        memory: seen.one("memory"),
        user: seen.one("user"),
        runtime: seen.one("runtime"),
        workspace: seen.one("workspace"),
        state_dir: seen.one("state-dir"),
        env: seen.all("env"),
        timeout: seen.number(sub, "timeout")?,
        config: seen.one("config"),
        pull,
        warm_pool: seen.number(sub, "warm-pool")?,
        argv,
    })
}

/// `logs`' arguments: exactly one container, job or agent.
fn build_logs(seen: &Seen, positionals: Vec<String>) -> Result<LogsArgs, Usage> {
    let sub = Some(Sub::Logs);
    let mut p = positionals.into_iter();
    let key = p.next().ok_or_else(|| usage(sub, NO_KEY))?;
    if let Some(extra) = p.next() {
        return Err(usage(
            sub,
            format!("unexpected argument {extra:?}; logs takes one container or job"),
        ));
    }
    Ok(LogsArgs {
        key,
        state_dir: seen.one("state-dir"),
    })
}

/// `prune`'s arguments: flags only; the agent and how many of its containers to keep are required.
fn build_prune(seen: &Seen, positionals: &[String]) -> Result<PruneArgs, Usage> {
    let sub = Sub::Prune;
    no_positionals(sub, positionals)?;
    let agent = seen.required(sub, "agent")?;
    let keep = required_keep(seen, sub)?;
    Ok(PruneArgs {
        agent,
        keep,
        state_dir: seen.one("state-dir"),
    })
}

/// `gc`'s arguments: flags only; how many containers of a gone agent to keep is required.
fn build_gc(seen: &Seen, positionals: &[String]) -> Result<GcArgs, Usage> {
    let sub = Sub::Gc;
    no_positionals(sub, positionals)?;
    let keep = required_keep(seen, sub)?;
    Ok(GcArgs {
        keep,
        live: seen.all("live-agent"),
        state_dir: seen.one("state-dir"),
    })
}

/// Refuses a positional argument to a command that takes only flags (a stray word is a mistake,
/// not something to ignore).
fn no_positionals(sub: Sub, positionals: &[String]) -> Result<(), Usage> {
    match positionals.first() {
        None => Ok(()),
        Some(p) => Err(usage(
            Some(sub),
            format!("unexpected argument {p:?}; {} takes only flags", sub.name()),
        )),
    }
}

/// `--keep` where a command cannot do without it (prune, gc: how many to keep is theirs to say).
fn required_keep(seen: &Seen, sub: Sub) -> Result<u64, Usage> {
    seen.number(sub, "keep")?
        .ok_or_else(|| usage(Some(sub), "invalid --keep: is required"))
}

fn parse_level(sub: Option<Sub>, v: &str) -> Result<LogLevel, Usage> {
    v.parse().map_err(|_| {
        usage(
            sub,
            format!("invalid --log-level: {v:?} is not a log level; expected info or debug"),
        )
    })
}

fn text(
    sub: Option<Sub>,
    flag: &str,
    value: Result<OsString, lexopt::Error>,
) -> Result<String, Usage> {
    let value =
        value.map_err(|_| usage(sub, format!("invalid {flag}: expected a value after it")))?;
    os_text(sub, flag, value)
}

fn os_text(sub: Option<Sub>, what: &str, value: OsString) -> Result<String, Usage> {
    value
        .into_string()
        .map_err(|v| usage(sub, format!("invalid {what}: {v:?} is not valid UTF-8")))
}

fn display_arg(arg: &lexopt::Arg<'_>) -> String {
    match arg {
        lexopt::Arg::Short(c) => format!("-{c}"),
        lexopt::Arg::Long(l) => format!("--{l}"),
        lexopt::Arg::Value(v) => v.to_string_lossy().into_owned(),
    }
}

fn lexopt_error(sub: Option<Sub>, e: lexopt::Error) -> Usage {
    match e {
        lexopt::Error::UnexpectedValue { option, .. } => usage(
            sub,
            format!("invalid {option}: takes no value (it is a switch)"),
        ),
        lexopt::Error::MissingValue {
            option: Some(option),
        } => usage(sub, format!("invalid {option}: expected a value after it")),
        other => usage(sub, other.to_string()),
    }
}

fn unknown_flag(sub: Option<Sub>, given: &str, flags: &[Flag]) -> Usage {
    let where_ = match sub {
        Some(s) => format!("a flag of {}", s.name()),
        None => "a flag here (flags of a command go after it)".to_string(),
    };
    let hint = match given.strip_prefix("--") {
        Some(long) => {
            let names: Vec<&str> = flags.iter().map(|f| f.long).collect();
            suggest(long, &names).map(|s| format!(" (did you mean --{s}?)"))
        }
        None => None,
    }
    .unwrap_or_default();
    usage(sub, format!("invalid {given}: is not {where_}{hint}"))
}

/// The candidate nearest to `given`: within two edits (a swap of neighbours counts as one), or
/// the only one that starts with it.
pub fn suggest<'a>(given: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let best = candidates
        .iter()
        .map(|c| (distance(given, c), *c))
        .min_by_key(|(d, _)| *d)?;
    let limit = if given.len() <= 3 { 1 } else { 2 };
    if best.0 <= limit {
        return Some(best.1);
    }
    let mut starting = candidates.iter().filter(|c| c.starts_with(given));
    match (starting.next(), starting.next()) {
        (Some(only), None) if given.len() >= 2 => Some(only),
        _ => None,
    }
}

/// Edit distance with adjacent swaps (optimal string alignment), over bytes: flag names are
/// ASCII.
fn distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests;

//! The `herdctl-container` command: typed arguments ([`args`]), help ([`help`]), and one module
//! per group of subcommands. The core does the work; this only parses, prints and picks exit
//! codes.

pub mod admin;
pub mod args;
pub mod dial;
pub mod help;
pub mod progress;
pub mod run;
pub mod show;
pub mod signals;

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use herdctl_container::engine::{stderr_logger, EngineOptions, LogLevel, PullProgress};
use herdctl_container::{is_secret_name, Engine, Error, Redactor, Runner, RunnerOptions};

/// The exit code of the CLI's own failures, as docker's: a bad flag or config, no engine, a
/// missing image. A job's codes are its own.
pub const OWN_FAILURE: u8 = 125;

/// Why a command failed, and so which exit code it gets.
#[derive(Debug)]
pub enum Failure {
    /// The command line does not parse.
    Usage(args::Usage),
    /// The core failed.
    Core(Error),
    /// `logs` or `inspect` found no record (docker's `No such container` exits 1).
    NoRecord(String),
}

impl Failure {
    /// The exit code.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) | Failure::Core(_) => OWN_FAILURE,
            Failure::NoRecord(_) => 1,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(u) => u.fmt(f),
            Failure::Core(e) => e.fmt(f),
            Failure::NoRecord(m) => f.write_str(m),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Core(e)
    }
}

/// What every command shares: the log level and the secrets a log line must not show.
pub struct Context {
    /// `--log-level`, else `HERDCTL_CONTAINER_LOG`.
    pub log_level: LogLevel,
}

impl Context {
    /// The engine options: the docker CLI's engine (`DOCKER_HOST`, a docker context, the
    /// platform socket), and the debug log when asked for, redacted of this
    /// process's secret-looking env values and of `secrets`.
    pub fn engine_options(&self, secrets: &[String]) -> Result<EngineOptions, Failure> {
        let mut opts = EngineOptions::from_env()?;
        opts.on_call = match self.log_level {
            LogLevel::Debug => {
                let mine = std::env::vars()
                    .filter(|(k, _)| is_secret_name(k))
                    .map(|(_, v)| v);
                let redactor = Redactor::new(mine.chain(secrets.iter().cloned()));
                Some(stderr_logger("herdctl-container: ", redactor))
            }
            LogLevel::Info => None,
        };
        Ok(opts)
    }

    /// A runner over the engine with this state directory, pull policy and progress on stderr;
    /// `secrets` are kept out of the debug log.
    pub fn runner(
        &self,
        state_dir: Option<&str>,
        pull: Option<herdctl_container::PullPolicy>,
        warm_pool: Option<u64>,
        secrets: &[String],
    ) -> Result<Runner, Failure> {
        let engine = Engine::with_options(self.engine_options(secrets)?)?;
        let mut options = RunnerOptions::new(state_dir.unwrap_or(DEFAULT_STATE_DIR));
        if let Some(p) = pull {
            options.pull = p;
        }
        // Beyond what usize holds is beyond the maximum too: the runner says which.
        options.warm_pool = warm_pool.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let view = Mutex::new(progress::PullView::new(
            std::io::stderr(),
            std::io::stderr().is_terminal(),
        ));
        options.pull_progress = Some(Arc::new(move |p: &PullProgress| {
            // The view holds only what it printed: a panic elsewhere cannot break it.
            view.lock().unwrap_or_else(|p| p.into_inner()).show(p);
        }));
        Ok(Runner::new(engine, options)?)
    }
}

/// The state directory when `--state-dir` is not given, as herdctl's.
pub const DEFAULT_STATE_DIR: &str = ".herdctl";

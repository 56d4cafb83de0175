//! `herdctl-container`: run agent jobs in containers, and look after the containers, from a shell.
//!
//! Every failure prints one line (`herdctl-container: <what failed>`) and exits with docker's
//! codes: 125 for the CLI's own failures, the job's own code otherwise (see the README's table).

mod cli;

use std::process::ExitCode;

use cli::args::{self, Command};
use cli::{admin, help, run, show, Context, Failure};
use herdctl_container::engine::log_level_from_env;

fn main() -> ExitCode {
    let code = match dispatch() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herdctl-container: {e}");
            e.code()
        }
    };
    ExitCode::from(code)
}

fn dispatch() -> Result<u8, Failure> {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // Internal, for the Node addon's TLS engines: kept out of the help and the flag tables.
    if argv.first().is_some_and(|a| a == "dial-stdio") {
        return cli::dial::run(&argv[1..]);
    }
    let cli = args::parse(argv).map_err(Failure::Usage)?;
    let log_level = match cli.log_level {
        Some(level) => level,
        None => log_level_from_env()?,
    };
    let ctx = Context { log_level };
    match cli.command {
        Command::Help(None) => {
            println!("{}", help::overview());
            Ok(0)
        }
        Command::Help(Some(sub)) => {
            print!("{}", help::page(sub));
            Ok(0)
        }
        Command::Version => {
            println!("{}", help::version());
            Ok(0)
        }
        Command::Run(a) => run::run(&ctx, *a),
        Command::Ps(a) => show::ps(&ctx, a),
        Command::Logs(a) => show::logs(a),
        Command::Inspect(a) => show::inspect(a),
        Command::Prune(a) => admin::prune(&ctx, a),
        Command::Gc(a) => admin::gc(&ctx, a),
        Command::Doctor(a) => admin::doctor(&ctx, a),
    }
}

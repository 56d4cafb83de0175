use super::*;

fn ok(args: &[&str]) -> Cli {
    parse(args.iter().copied()).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn err(args: &[&str]) -> String {
    match parse(args.iter().copied()) {
        Ok(cli) => panic!("{args:?} parsed: {cli:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn run_takes_typed_flags_and_the_command_after_them() {
    let cli = ok(&[
        "run",
        "--agent",
        "fleet.a",
        "--image=img:1",
        "--persistent",
        "--keep",
        "3",
        "-e",
        "A=1",
        "--env",
        "B",
        "-eC=3",
        "--timeout",
        "30",
        "--pull",
        "if-missing",
        "--warm-pool",
        "2",
        "--",
        "sh",
        "-c",
        "echo --agent",
    ]);
    let Command::Run(run) = cli.command else {
        panic!("{cli:?}")
    };
    assert_eq!(run.agent, "fleet.a");
    assert_eq!(run.image.as_deref(), Some("img:1"));
    assert!(run.persistent);
    assert_eq!(run.keep, Some(3));
    assert_eq!(run.env, ["A=1", "B", "C=3"]);
    assert_eq!(run.timeout, Some(30));
    assert_eq!(run.pull, Some(PullPolicy::IfMissing));
    assert_eq!(run.warm_pool, Some(2));
    assert_eq!(run.argv, ["sh", "-c", "echo --agent"]);
}

#[test]
fn run_without_dashes_takes_the_first_word_as_the_command() {
    let Command::Run(run) = ok(&["run", "--agent", "a", "ls", "-h", "--help"]).command else {
        panic!()
    };
    assert_eq!(
        run.argv,
        ["ls", "-h", "--help"],
        "the command's flags are its own"
    );
}

#[test]
fn help_and_version_everywhere() {
    assert_eq!(ok(&[]).command, Command::Help(None));
    assert_eq!(ok(&["--help"]).command, Command::Help(None));
    assert_eq!(ok(&["-h"]).command, Command::Help(None));
    assert_eq!(ok(&["help"]).command, Command::Help(None));
    assert_eq!(ok(&["--version"]).command, Command::Version);
    assert_eq!(ok(&["-V"]).command, Command::Version);
    assert_eq!(ok(&["version"]).command, Command::Version);
    for sub in Sub::ALL {
        for form in [
            vec![sub.name(), "--help"],
            vec![sub.name(), "-h"],
            vec!["help", sub.name()],
        ] {
            assert_eq!(ok(&form).command, Command::Help(Some(sub)), "{form:?}");
        }
    }
    // Help wins over a missing required flag.
    assert_eq!(
        ok(&["run", "--help"]).command,
        Command::Help(Some(Sub::Run))
    );
    assert_eq!(
        ok(&["prune", "--agent", "x", "-h"]).command,
        Command::Help(Some(Sub::Prune))
    );
}

#[test]
fn ps_has_dockers_short_flags() {
    let Command::Ps(ps) = ok(&["ps", "-q", "-a", "--agent", "x"]).command else {
        panic!()
    };
    assert!(ps.quiet);
    assert_eq!(ps.agent.as_deref(), Some("x"));
    let Command::Ps(ps) = ok(&["ps", "-qa"]).command else {
        panic!()
    };
    assert!(ps.quiet, "short flags combine");
}

#[test]
fn misspelt_flags_and_commands_get_a_suggestion() {
    assert_eq!(
        err(&["ps", "--jsn"]),
        "invalid --jsn: is not a flag of ps (did you mean --json?); see 'herdctl-container ps --help'"
    );
    assert!(err(&["ps", "--agnet", "x"]).contains("(did you mean --agent?)"));
    assert!(err(&["run", "--persist"]).contains("(did you mean --persistent?)"));
    assert!(err(&["gc", "--live", "a"]).contains("(did you mean --live-agent?)"));
    assert_eq!(
        err(&["pss"]),
        "invalid command: \"pss\" is not a command (did you mean 'ps'?); see 'herdctl-container --help'"
    );
    assert!(!err(&["ps", "--colour", "red"]).contains("did you mean"));
}

#[test]
fn bad_values_name_the_flag() {
    assert!(err(&["ps", "--agent"]).starts_with("invalid --agent: expected a value after it"));
    assert!(err(&["run", "--agent", "a", "--keep", "x", "--", "true"])
        .starts_with("invalid --keep: \"x\" is not a whole number"));
    assert!(err(&["run", "--agent", "a", "--pull", "sometimes", "true"])
        .starts_with("invalid --pull: \"sometimes\" is not a pull policy"));
    assert!(err(&["ps", "--json=yes"]).starts_with("invalid --json: takes no value"));
    assert!(err(&["--log-level", "loud", "ps"]).starts_with("invalid --log-level: \"loud\""));
    assert!(
        err(&["run", "--agent", "a", "--memory", "1g", "--memory", "2g", "true"])
            .starts_with("invalid --memory: is given more than once")
    );
}

#[test]
fn required_things_are_required() {
    assert!(err(&["run", "--", "true"]).starts_with("invalid --agent: is required"));
    assert!(err(&["run", "--agent", "a"]).starts_with("invalid command: expected the command"));
    assert!(err(&["prune", "--agent", "a"]).starts_with("invalid --keep: is required"));
    assert!(err(&["gc"]).starts_with("invalid --keep: is required"));
    assert!(err(&["logs"]).starts_with("invalid CONTAINER|JOB|AGENT: is required"));
    assert!(err(&["inspect"]).starts_with("invalid CONTAINER|JOB|AGENT: is required"));
    assert!(err(&["ps", "extra"]).starts_with("unexpected argument \"extra\""));
    assert!(err(&["logs", "a", "b"]).starts_with("unexpected argument \"b\""));
}

#[test]
fn log_level_goes_before_or_after_the_command() {
    let cli = ok(&["--log-level", "debug", "ps"]);
    assert_eq!(cli.log_level, Some(LogLevel::Debug));
    let cli = ok(&["ps", "--log-level=debug"]);
    assert_eq!(cli.log_level, Some(LogLevel::Debug));
    assert_eq!(ok(&["ps"]).log_level, None);
    assert!(err(&["--json", "ps"]).contains("flags of a command go after it"));
}

#[test]
fn logs_and_inspect_take_containers_or_jobs() {
    let Command::Logs(l) = ok(&["logs", "herdctl-job-1-a", "--state-dir", "/s"]).command else {
        panic!()
    };
    assert_eq!(l.key, "herdctl-job-1-a");
    assert_eq!(l.state_dir.as_deref(), Some("/s"));
    let Command::Inspect(i) = ok(&["inspect", "a", "b"]).command else {
        panic!()
    };
    assert_eq!(i.keys, ["a", "b"]);
}

#[test]
fn suggestions_are_near_or_a_unique_prefix() {
    let names = ["json", "agent", "quiet", "all", "state-dir"];
    assert_eq!(suggest("jsno", &names), Some("json"));
    assert_eq!(suggest("stat", &names), Some("state-dir"));
    assert_eq!(suggest("a", &names), None, "too short to guess");
    assert_eq!(suggest("zzzzzz", &names), None);
    assert_eq!(distance("agnet", "agent"), 1);
    assert_eq!(distance("", "abc"), 3);
}

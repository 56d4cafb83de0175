//! Secrets never leave the library, against the real engine: not in an error an engine quotes
//! the request body in, not in part at the cut of a tail.
//!
//! The echoing engine is a proxy in front of the real one (`common::proxy`) that answers exec
//! create with a 500 quoting the request body, env and all: a real engine cannot be made to do
//! that on demand, but some engines and proxies do it, and everything else here stays real.
//!
//! This binary sets `ANTHROPIC_API_KEY` in its own environment (the runner discovers credentials
//! there), so its tests live apart from the others.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};

use common::fleet::Fleet;
use common::proxy::{echo_500, Proxy};
use herdctl_container::agent::{AgentJob, AgentRequest, Command, ExecuteOptions};
use herdctl_container::{Engine, Error, Outcome, Runner, RunnerOptions, REDACTED};
use serde_json::json;

const API_KEY: &str = "sk-ant-api03-echo-test-0123456789";
const GITHUB_TOKEN: &str = "ghp_echotest_0123456789";
const DB_PASSWORD: &str = "hunter2-echo-test";
const MCP_TOKEN: &str = "mcp-token-echo-test-0123";

/// Sets the API key in this process's environment, once, before any test reads it (every test
/// calls this first; `Once` makes the others wait until it is set).
fn api_key_in_env() {
    static SET: Once = Once::new();
    SET.call_once(|| std::env::set_var("ANTHROPIC_API_KEY", API_KEY));
}

/// Every secret of these tests.
const SECRETS: [&str; 4] = [API_KEY, GITHUB_TOKEN, DB_PASSWORD, MCP_TOKEN];

/// Whether any secret, or any piece of one 6 bytes or longer, is in `text`.
fn leaks(text: &str) -> Option<String> {
    for secret in SECRETS {
        for len in 6..=secret.len() {
            for start in 0..=secret.len() - len {
                let piece = &secret[start..start + len];
                if text.contains(piece) {
                    return Some(piece.to_string());
                }
            }
        }
    }
    None
}

/// The error's message, its Debug and its source chain.
fn all_text(e: &Error) -> String {
    let mut text = format!("{e}\n{e:?}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!("\n{s}\n{s:?}"));
        source = s.source();
    }
    text
}

/// A proxy whose exec create of the job (the one carrying the key) answers 500 quoting the
/// request body, the first secret found in it
/// placed `at` bytes before the engine message's display cut (2048) when `at` is given; and a
/// count of the bodies it echoed that held the API key (proof that the fault happened).
fn echoing_proxy(at: Option<usize>) -> (Proxy, Arc<AtomicUsize>) {
    let echoed = Arc::new(AtomicUsize::new(0));
    let count = echoed.clone();
    let proxy = Proxy::start(move |method, path, body| {
        if method != "POST" || !path.ends_with("/exec") {
            return None;
        }
        let text = String::from_utf8_lossy(body);
        if !text.contains(API_KEY) {
            // The runner's own execs (its check of a fresh container) carry no env: forwarded.
            return None;
        }
        count.fetch_add(1, Ordering::SeqCst);
        let pad = match (at, text.find(API_KEY)) {
            // The message is the pad, "invalid request body: " (22 bytes), then the body.
            (Some(at), Some(i)) => 2048usize.saturating_sub(22 + i + at),
            _ => 0,
        };
        Some(echo_500(body, pad))
    });
    (proxy, echoed)
}

fn runner_over(proxy: &Proxy, fleet: &Fleet) -> Runner {
    Runner::new(
        Engine::unix(&proxy.path).expect("the proxy answers"),
        RunnerOptions::new(fleet.state.path()),
    )
    .unwrap()
}

fn config_env() -> serde_json::Value {
    json!({ "env": { "GITHUB_TOKEN": GITHUB_TOKEN, "DB_PASSWORD": DB_PASSWORD, "MODE": "plain" } })
}

#[test]
fn an_engine_error_quoting_the_request_body_carries_no_secret() {
    api_key_in_env();
    let fleet = Fleet::new();
    // Whole, and with the key straddling the cut of the shown message at a few offsets.
    for at in [
        None,
        Some(1),
        Some(API_KEY.len() / 2),
        Some(API_KEY.len() - 1),
    ] {
        let (proxy, echoed) = echoing_proxy(at);
        let runner = runner_over(&proxy, &fleet);
        let agent = fleet.agent("echo");
        let config = fleet.config(config_env());
        let spec = fleet.job(&agent, &config, ["cat"]);
        let e = runner.start(spec).expect_err("exec create fails");
        assert_eq!(echoed.load(Ordering::SeqCst), 1, "the proxy echoed the key");
        assert_eq!(e.code(), "ENGINE_ERROR", "{e}");
        let text = all_text(&e);
        assert!(text.contains(REDACTED), "{text}");
        assert_eq!(leaks(&text), None, "at {at:?}: {text}");
    }
}

/// A password with characters JSON escapes (`"`, `\`, `<`, `&`) is in the quoted body only as
/// JSON writes it (`\"`, `\\`): the redactor looked for it as given, and the error carried it.
#[test]
fn a_secret_that_json_escapes_is_redacted_as_the_quoted_body_writes_it() {
    api_key_in_env();
    let fleet = Fleet::new();
    let (proxy, echoed) = echoing_proxy(None);
    let runner = runner_over(&proxy, &fleet);
    let agent = fleet.agent("echo-escaped");
    let odd = r#"pa"ss\wo<r>&d-echo"#;
    let config = fleet.config(json!({ "env": { "DB_PASSWORD": odd } }));
    let e = runner
        .start(fleet.job(&agent, &config, ["cat"]))
        .expect_err("exec create fails");
    assert_eq!(echoed.load(Ordering::SeqCst), 1, "the proxy echoed the key");
    let text = all_text(&e);
    assert!(text.contains(REDACTED), "{text}");
    let escaped = serde_json::to_string(odd).unwrap();
    let escaped = &escaped[1..escaped.len() - 1];
    for form in [odd, escaped] {
        for len in 6..=form.len() {
            for start in 0..=form.len() - len {
                let piece = &form[start..start + len];
                assert!(!text.contains(piece), "{piece:?} of {form:?} in: {text}");
            }
        }
    }
}

/// A secret whose name does not say so (`DATABASE_URL`) is in the quoted body like any other
/// env value: from an engine's error, every env value goes.
#[test]
fn an_env_value_of_any_name_is_redacted_from_an_engine_error() {
    api_key_in_env();
    let fleet = Fleet::new();
    let (proxy, echoed) = echoing_proxy(None);
    let runner = runner_over(&proxy, &fleet);
    let agent = fleet.agent("echo-any-name");
    let url = "postgres://app:url-pass-echo-test@db.internal/app";
    let config = fleet.config(json!({ "env": { "DATABASE_URL": url } }));
    let mut spec = fleet.job(&agent, &config, ["cat"]);
    spec.env
        .push("EXTRA_DSN=mysql://u:dsn-pass-echo-test@h/d".into());
    let e = runner.start(spec).expect_err("exec create fails");
    assert_eq!(echoed.load(Ordering::SeqCst), 1, "the proxy echoed the key");
    let text = all_text(&e);
    for secret in ["url-pass-echo-test", "dsn-pass-echo-test"] {
        assert!(!text.contains(secret), "{secret} in: {text}");
    }
    assert!(text.contains("DATABASE_URL=[REDACTED]"), "{text}");
    // A config error keeps its own words, even where an env value is one of them.
    let config = fleet.config(json!({ "env": { "MODE": "expected" } }));
    let mut bad = config.clone();
    bad.host_config_override = Some(json!({"Privileged": "yes"}));
    let e = runner
        .start(fleet.job(&agent, &bad, ["cat"]))
        .expect_err("refused");
    assert!(e.to_string().contains("expected true or false"), "{e}");
}

#[test]
fn an_agent_job_error_quoting_the_request_body_carries_no_secret() {
    api_key_in_env();
    let fleet = Fleet::new();
    let (proxy, echoed) = echoing_proxy(None);
    let runner = runner_over(&proxy, &fleet);
    // Not "-echo-": the secrets hold it, and the container's name in the message would match.
    let agent = fleet.agent("agent-quoted");
    let command = Command::raw(vec!["cat".into()], Vec::new()).unwrap();
    let request = AgentRequest {
        config: fleet.config(config_env()),
        agent: json!({
            "name": "agent-quoted",
            "qualifiedName": agent,
            "working_directory": fleet.workspace.path(),
            "mcp_servers": {"gh": {"command": "gh-mcp", "env": {"GH_TOKEN": MCP_TOKEN}}},
        }),
        options: ExecuteOptions::new("hello"),
        command,
        deadline: None,
        translate_paths: false,
        tool_handler: None,
    };
    // The job got a container, so its failed exec create is its closing error message (what
    // herdctl records), not an error from start.
    let mut job = AgentJob::start(&runner, request).expect("the job has a container");
    let mut messages = Vec::new();
    while let Some(m) = job.next_message() {
        messages.push(m);
    }
    assert_eq!(echoed.load(Ordering::SeqCst), 1, "the proxy echoed the key");
    let text = messages.join("\n");
    assert!(text.contains("\"type\":\"error\""), "{text}");
    assert!(text.contains(REDACTED), "{text}");
    assert_eq!(leaks(&text), None, "{text}");
}

/// The job prints to stderr the API key (from its env) with the 8 KiB tail's cut falling inside
/// it; cut before it was redacted, the key's end survived at the front of the tail.
#[test]
fn a_key_across_the_stderr_tail_cut_leaves_no_fragment() {
    api_key_in_env();
    let fleet = Fleet::new();
    let agent = fleet.agent("tail-cut");
    let config = fleet.config(json!({ "ephemeral": false }));
    let len = API_KEY.len();
    for offset in [1, len / 2, len - 1] {
        // 10 KiB of x, the key, then x up to 8 KiB past the cut: the cut is `offset` bytes
        // into the key.
        let after = 8192 - len + offset;
        let script = format!(
            "head -c 10240 /dev/zero | tr '\\0' x >&2; printf %s \"$ANTHROPIC_API_KEY\" >&2; head -c {after} /dev/zero | tr '\\0' x >&2; exit 1"
        );
        let spec = fleet.job(&agent, &config, ["sh", "-c", &script]);
        let (_, report) = fleet.run(spec);
        assert!(
            matches!(report.outcome, Outcome::Exited(1)),
            "{:?}",
            report.outcome
        );
        let tail = &report.stderr_tail;
        assert!(
            tail.starts_with(REDACTED),
            "offset {offset}: {}",
            &tail[..40]
        );
        assert!(
            tail.replace(REDACTED, "").bytes().all(|b| b == b'x'),
            "offset {offset}: {}",
            &tail[..40]
        );
        assert_eq!(tail.len(), REDACTED.len() + after);
    }
}

/// Jobs of one persistent container share its uid, but each runs with a group id of its own:
/// the kernel lets a process read another's environment only with the same ids, so one job
/// cannot read another's secrets through `/proc`.
#[test]
fn a_job_cannot_read_another_jobs_environment_in_a_shared_container() {
    api_key_in_env();
    let fleet = Fleet::new();
    let agent = fleet.agent("env-peek");
    let config = fleet.config(json!({ "ephemeral": false }));
    let mut victim = fleet.job(&agent, &config, ["sleep", "30"]);
    victim.env.push("JOB_A_ONLY=job-a-secret-value".into());
    let victim = fleet.runner.start(victim).expect("the first job starts");
    // The first job's exec may not have spawned its process yet: wait for it (10 s at most).
    let peek = "procs() { for f in /proc/[0-9]*; do tr '\\0' ' ' < $f/cmdline; echo; done; }; \
                i=0; until procs | grep -q '^sleep 30' || [ $i -ge 100 ]; do i=$((i+1)); sleep 0.1; done; \
                for f in /proc/[0-9]*; do tr '\\0' '\\n' < $f/environ 2>/dev/null; done \
                | grep -c JOB_A_ONLY; \
                procs | grep -c '^sleep 30'";
    let (lines, report) = fleet.run(fleet.job(&agent, &config, ["sh", "-c", peek]));
    victim.canceller().cancel().expect("cancel");
    let victim = victim.finish();
    assert!(
        matches!(victim.outcome, Outcome::Cancelled),
        "{:?}",
        victim.outcome
    );
    assert_eq!(
        report.container_id, victim.container_id,
        "one shared container"
    );
    // No environment read; the other job's process is there (its command line is public).
    assert_eq!(lines, ["0", "1"], "{:?}", report.outcome);
}

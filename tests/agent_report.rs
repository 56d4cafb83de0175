//! The job's report on the message that closes an agent job, against the real engine. herdctl
//! reads nothing after the first `result` or `error`, so that message must carry it whole:
//! outcome, exit code, timings, warnings, container, image and config hash.

mod common;

use std::time::{Duration, Instant};

use common::fleet::Fleet;
use herdctl_container::agent::{AgentJob, AgentRequest, Command, ExecuteOptions};
use herdctl_container::invocation::Strategy;
use herdctl_container::{DockerConfig, JobSummary};
use serde_json::{json, Value};

fn request(fleet: &Fleet, agent: &str, config: DockerConfig, command: Command) -> AgentRequest {
    AgentRequest {
        config,
        agent: json!({"name": "a", "qualifiedName": agent, "working_directory": fleet.workspace.path()}),
        options: ExecuteOptions::new("hello"),
        command,
        deadline: None,
        translate_paths: false,
        tool_handler: None,
    }
}

fn raw(script: &str) -> Command {
    Command::raw(vec!["sh".into(), "-c".into(), script.into()], vec![]).unwrap()
}

/// Reads as herdctl does: up to the first `result` or `error`, then stops (dropping the job
/// cancels it, as herdctl's `return()` does).
fn as_herdctl(fleet: &Fleet, request: AgentRequest) -> Value {
    let mut job = AgentJob::start(&fleet.runner, request).unwrap();
    while let Some(m) = job.next_message() {
        let m: Value = serde_json::from_str(&m).unwrap();
        if m["type"] == "result" || m["type"] == "error" {
            return m;
        }
    }
    panic!("the job ended without a result or an error");
}

fn report_of(message: &Value) -> JobSummary {
    serde_json::from_value(message["container_report"].clone())
        .unwrap_or_else(|e| panic!("container_report: {e}: {message}"))
}

#[test]
fn the_result_carries_the_whole_report() {
    let fleet = Fleet::new();
    let agent = fleet.agent("report-ok");
    let config = fleet.config(json!({}));
    let result = as_herdctl(
        &fleet,
        request(&fleet, &agent, config, Command::Runtime(Strategy::Cli)),
    );
    assert_eq!(result["type"], "result");
    assert_eq!(result["subtype"], "success", "the agent's own fields stay");
    let report = report_of(&result);
    assert_eq!(
        (report.outcome.as_str(), report.success, report.exit_code),
        ("exited", true, Some(0))
    );
    assert_eq!(report.image, common::IMAGE);
    let container = fleet
        .runner
        .engine()
        .inspect_container(&report.container_id)
        .unwrap();
    assert_eq!(
        container.name.trim_start_matches('/'),
        report.container_name
    );
    assert_eq!(
        container.config.labels["dev.herdctl.config-hash"],
        report.config_hash
    );
    assert!(
        !container.state.running,
        "the report comes after the release"
    );
    let t = &report.timings;
    assert!(t.acquire.is_some() && t.create.is_some() && t.end.is_some());
    assert!(t.release.is_some(), "{t:?}");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn a_failed_job_ends_with_an_error_that_carries_the_report() {
    let fleet = Fleet::new();
    let agent = fleet.agent("report-fail");
    let config = fleet.config(json!({}));
    let error = as_herdctl(
        &fleet,
        request(&fleet, &agent, config, raw("echo oops >&2; exit 3")),
    );
    assert_eq!(error["type"], "error");
    let report = report_of(&error);
    assert_eq!(
        (report.outcome.as_str(), report.success, report.exit_code),
        ("exited", false, Some(3))
    );
    assert!(report.stderr_tail.contains("oops"), "{report:?}");
    assert_eq!(report.container_name, error["container"]);
}

#[test]
fn warnings_reach_the_result() {
    let fleet = Fleet::new();
    let agent = fleet.agent("report-warn");
    let config = fleet.config(json!({"host_config": {"Memory": 0}}));
    let result = as_herdctl(
        &fleet,
        request(&fleet, &agent, config, Command::Runtime(Strategy::Cli)),
    );
    let report = report_of(&result);
    assert!(report.success);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("no memory limit")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn an_agent_that_lingers_after_its_result_is_stopped_and_its_result_still_arrives() {
    let fleet = Fleet::new();
    let agent = fleet.agent("report-linger");
    let config = fleet.config(json!({}));
    let t0 = Instant::now();
    let mut job = AgentJob::start(
        &fleet.runner,
        request(
            &fleet,
            &agent,
            config,
            raw(r#"echo '{"type":"result","subtype":"success"}'; echo '{"type":"after"}'; sleep 60"#),
        ),
    )
    .unwrap();
    let mut messages = Vec::new();
    while let Some(m) = job.next_message() {
        messages.push(serde_json::from_str::<Value>(&m).unwrap());
    }
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let kinds: Vec<&str> = messages
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["result", "after"],
        "no error after a result: {messages:?}"
    );
    let report = report_of(&messages[0]);
    assert_eq!(report.outcome, "cancelled");
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("after its result")),
        "{:?}",
        report.warnings
    );
}

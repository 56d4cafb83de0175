use std::time::Duration;

use super::*;
use crate::run::job::{Outcome, Timings};

fn head(state: &Path, agent: &str, job: &str, keep: usize) -> Head {
    Head {
        state_dir: state.to_path_buf(),
        agent: agent.into(),
        job: job.into(),
        mode: Mode::Ephemeral,
        started_ms: 1_000,
        keep,
    }
}

fn report(container: &str, outcome: Outcome) -> JobReport {
    JobReport {
        outcome,
        container_id: format!("{container}0123456789abcdef"),
        container_name: format!("herdctl-{container}"),
        stderr_tail: "oops\n".into(),
        timings: Timings {
            acquire: Some(Duration::from_micros(1_500)),
            ..Timings::default()
        },
        warnings: vec!["the engine dropped Memory".into()],
        image: "herdctl/runtime:latest".into(),
        config_hash: "abc123".into(),
        redactor: Redactor::default(),
    }
}

#[test]
fn a_record_reads_back_with_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &head(dir.path(), "fleet.a", "herdctl-job-1-aa", 5),
        &report(
            "c1",
            Outcome::Killed {
                code: 137,
                oom: true,
            },
        ),
        "last line",
        &Redactor::default(),
    )
    .unwrap();
    assert!(path.starts_with(dir.path().join("jobs").join("fleet.a")));
    let found = list(dir.path(), Some("fleet.a")).unwrap();
    assert_eq!(found.len(), 1);
    let r = &found[0];
    assert_eq!(r.job, "herdctl-job-1-aa");
    assert_eq!(r.agent, "fleet.a");
    assert_eq!(r.outcome, "killed");
    assert_eq!(r.exit_code, Some(137));
    assert!(r.oom_killed);
    assert_eq!(r.stdout_tail, "last line");
    assert_eq!(r.stderr_tail, "oops\n");
    assert_eq!(r.container_name, "herdctl-c1");
    assert_eq!(r.raw["image"], "herdctl/runtime:latest");
    assert_eq!(r.raw["config_hash"], "abc123");
    assert_eq!(r.raw["mode"], "ephemeral");
    assert_eq!(r.raw["report"]["timings"]["acquire_ms"], 1.5);
    assert_eq!(r.raw["report"]["timings"]["create_ms"], Value::Null);
    assert_eq!(r.raw["report"]["warnings"][0], "the engine dropped Memory");
    assert_eq!(
        r.raw["report"]["message"],
        Outcome::Killed {
            code: 137,
            oom: true
        }
        .describe()
    );
}

#[test]
fn every_string_is_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "sk-ant-very-secret-value";
    let mut rep = report("c1", Outcome::Exited(1));
    rep.stderr_tail = format!("token {secret}");
    rep.warnings = vec![format!("warning about {secret}")];
    write(
        &head(dir.path(), "a", "herdctl-job-1-aa", 5),
        &rep,
        &format!("printed {secret}"),
        &Redactor::new([secret]),
    )
    .unwrap();
    let files = files(&dir.path().join("jobs").join("a")).unwrap();
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(!text.contains("very-secret"), "{text}");
    assert!(text.contains("[REDACTED]"), "{text}");
}

#[test]
fn find_takes_a_job_id_a_container_name_or_an_id_prefix_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    for (i, job) in ["herdctl-job-1-aa", "herdctl-job-2-bb"].iter().enumerate() {
        write(
            &head(dir.path(), "a", job, 5),
            &report("persist", Outcome::Exited(i as i64)),
            "",
            &Redactor::default(),
        )
        .unwrap();
        // Record names start with the end time in milliseconds.
        std::thread::sleep(Duration::from_millis(3));
    }
    let by_job = find(dir.path(), "herdctl-job-1-aa").unwrap().unwrap();
    assert_eq!(by_job.exit_code, Some(0));
    let by_name = find(dir.path(), "herdctl-persist").unwrap().unwrap();
    assert_eq!(by_name.job, "herdctl-job-2-bb", "a container's last job");
    let by_id = find(dir.path(), "persist0123").unwrap().unwrap();
    assert_eq!(by_id.job, "herdctl-job-2-bb");
    assert!(
        find(dir.path(), "per").unwrap().is_none(),
        "too short a prefix"
    );
    assert!(find(dir.path(), "nothing-like-it").unwrap().is_none());
}

#[test]
fn an_agent_keeps_its_newest_records() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..4 {
        write(
            &head(dir.path(), "a", &format!("herdctl-job-{i}-aa"), 2),
            &report("c", Outcome::Exited(i)),
            "",
            &Redactor::default(),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }
    let kept: Vec<String> = list(dir.path(), Some("a"))
        .unwrap()
        .into_iter()
        .map(|r| r.job)
        .collect();
    assert_eq!(kept, ["herdctl-job-3-aa", "herdctl-job-2-aa"]);
    assert_eq!(prune(dir.path(), "a", 1).unwrap(), 1);
    assert_eq!(list(dir.path(), Some("a")).unwrap().len(), 1);
}

#[test]
fn gc_drops_records_of_gone_agents_unless_their_container_exists() {
    let dir = tempfile::tempdir().unwrap();
    for (agent, container) in [("live", "c1"), ("gone", "c2"), ("running", "c3")] {
        write(
            &head(dir.path(), agent, &format!("herdctl-job-1-{agent}"), 5),
            &report(container, Outcome::Exited(0)),
            "",
            &Redactor::default(),
        )
        .unwrap();
    }
    let existing: HashSet<String> = ["c30123456789abcdef".to_string()].into();
    assert_eq!(gc(dir.path(), &["live".into()], 5, &existing).unwrap(), 1);
    let agents: HashSet<String> = list(dir.path(), None)
        .unwrap()
        .into_iter()
        .map(|r| r.agent)
        .collect();
    assert_eq!(agents, ["live".to_string(), "running".to_string()].into());
    assert!(!dir.path().join("jobs").join("gone").exists());
}

#[test]
fn reading_tolerates_unknown_and_missing_fields_and_skips_non_records() {
    let dir = tempfile::tempdir().unwrap();
    let agent_dir = dir.path().join("jobs").join("a");
    std::fs::create_dir_all(&agent_dir).unwrap();
    std::fs::write(
        agent_dir.join("0000000000002-herdctl-job-2-x.json"),
        r#"{"record": 9, "job": "herdctl-job-2-x", "agent": "a", "ended_ms": 2,
            "future": {"field": 1}, "report": {"outcome": "exited", "exit_code": 3}}"#,
    )
    .unwrap();
    std::fs::write(agent_dir.join("0000000000003-broken.json"), "{not json").unwrap();
    std::fs::write(agent_dir.join(".0000000000004-tmp.json.tmp"), "{}").unwrap();
    let found = list(dir.path(), None).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].exit_code, Some(3));
    assert_eq!(found[0].container_id, "");
    assert!(!found[0].oom_killed);
}

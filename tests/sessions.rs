//! Live tests of `session`: herdctl's `openSession` in the test image (stand-in `claude` with
//! stream-json input, stand-in Agent SDK with streaming input), against the real engine.
//!
//! This binary sets `ANTHROPIC_API_KEY` in its own environment (the runner discovers credentials
//! there), so its tests live apart from the others.

mod common;

use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use common::fleet::Fleet;
use herdctl_container::agent::ExecuteOptions;
use herdctl_container::engine::ExecSpec;
use herdctl_container::invocation::Strategy;
use herdctl_container::mcp::ToolCall;
use herdctl_container::session::{
    AgentSession, HookSpec, SessionEvent, SessionHandle, SessionRequest,
};
use herdctl_container::{agent_dir_name, Error, Outcome};
use serde_json::{json, Value};

const API_KEY: &str = "sk-ant-api03-session-test-0123456789";

fn api_key_in_env() {
    static SET: Once = Once::new();
    SET.call_once(|| std::env::set_var("ANTHROPIC_API_KEY", API_KEY));
}

/// A session under test: its events as they came, and a watchdog that closes it should a test
/// wait for an event that never comes (the wait then fails instead of hanging).
struct Live {
    session: AgentSession,
    handle: SessionHandle,
    messages: Vec<Value>,
    hooks: Vec<Value>,
    _watchdog: std::sync::mpsc::Sender<()>,
}

impl Live {
    fn open(fleet: &Fleet, request: SessionRequest) -> Live {
        api_key_in_env();
        let session =
            AgentSession::open(&fleet.runner, request).unwrap_or_else(|e| panic!("open: {e}"));
        let handle = session.handle();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let h = handle.clone();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(Duration::from_secs(120))
            {
                h.close();
            }
        });
        Live {
            session,
            handle,
            messages: Vec::new(),
            hooks: Vec::new(),
            _watchdog: tx,
        }
    }

    /// Reads events until a message for which `stop` holds; returns the messages read.
    fn until(&mut self, what: &str, stop: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut read = Vec::new();
        loop {
            match self.session.next_event() {
                Some(SessionEvent::Message(m)) => {
                    let m: Value = serde_json::from_str(&m).expect("every message is JSON");
                    self.messages.push(m.clone());
                    read.push(m.clone());
                    if stop(&m) {
                        return read;
                    }
                }
                Some(SessionEvent::Hook(input)) => self.hooks.push(input),
                None => panic!("the session ended while waiting for {what}: {read:#?}"),
            }
        }
    }

    /// Reads until the end of the current turn (its `result`).
    fn result(&mut self) -> Vec<Value> {
        self.until("a result", |m| m["type"] == "result")
    }

    /// Sends a turn and reads it to its result.
    fn turn(&mut self, text: &str) -> Vec<Value> {
        self.handle
            .send(text)
            .unwrap_or_else(|e| panic!("send: {e}"));
        self.result()
    }
}

fn request(
    fleet: &Fleet,
    agent: &str,
    prompt: &str,
    strategy: Strategy,
    extra: Value,
) -> SessionRequest {
    SessionRequest::new(
        fleet.config(extra),
        json!({
            "name": agent.rsplit('.').next(),
            "qualifiedName": agent,
            "working_directory": {"root": fleet.workspace.path()},
        }),
        ExecuteOptions::new(prompt),
        strategy,
    )
}

fn texts(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m["type"] == "assistant")
        .filter_map(|m| {
            m["message"]["content"][0]["text"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

fn container_state(fleet: &Fleet, agent: &str) -> (String, String) {
    let found = fleet.containers(agent);
    assert_eq!(found.len(), 1, "{found:?}");
    (found[0].id.clone(), found[0].state.clone())
}

/// Several turns, an interrupt, the commands, a model switch and stopping background tasks,
/// then a close that releases the container as a job's end does.
fn a_session_holds_turns_and_answers_every_control(strategy: Strategy, ephemeral: bool) {
    let fleet = Fleet::new();
    let agent = fleet.agent("session");
    let mut s = Live::open(
        &fleet,
        request(
            &fleet,
            &agent,
            "hello",
            strategy,
            json!({"ephemeral": ephemeral}),
        ),
    );
    let first = s.result();
    assert_eq!(first[0]["type"], "system", "{first:#?}");
    assert_eq!(first[0]["cwd"], "/workspace");
    let session_id = first.last().unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(first.last().unwrap()["subtype"], "success");

    // The commands, while idle.
    let commands = s.handle.list_commands().unwrap();
    let names: Vec<&str> = commands
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"compact"), "{commands}");
    assert!(commands[0].get("argumentHint").is_some(), "{commands}");

    // A second turn continues the same session.
    let second = s.turn("second turn");
    let result = second.last().unwrap();
    assert_eq!(result["session_id"], session_id.as_str());
    assert_eq!(result["standin"]["earlier_turns"], 1, "{result}");
    assert!(second.iter().all(|m| m["subtype"] != "init"), "{second:#?}");

    // An interrupt ends the turn, not the session.
    s.handle.send("#sleep 60").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    s.handle.interrupt().unwrap();
    let interrupted = s.result();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let result = interrupted.last().unwrap();
    assert_eq!(result["subtype"], "error_during_execution", "{result}");
    assert_eq!(result["standin"]["interrupted"], true);

    // A new model for the next turns.
    s.handle.set_model(Some("claude-other-9")).unwrap();
    let third = s.turn("#say after the switch");
    assert!(
        third
            .iter()
            .filter(|m| m["type"] == "assistant")
            .all(|m| m["message"]["model"] == "claude-other-9"),
        "{third:#?}"
    );
    assert!(texts(&third).contains(&"after the switch".to_string()));

    // Stopping one background task: idempotent, and refused for a kind that cannot stop.
    let started = s.turn("#background 60\n#background 60 monitor_mcp");
    let ids: Vec<String> = started
        .iter()
        .filter_map(|m| m["standin_task_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 2, "{started:#?}");
    s.handle.stop_task(&ids[0]).unwrap();
    let stopped = s.until("the task's notification", |m| {
        m["subtype"] == "task_notification"
    });
    assert_eq!(stopped.last().unwrap()["status"], "stopped");
    assert_eq!(stopped.last().unwrap()["task_id"], ids[0].as_str());
    s.handle.stop_task(&ids[0]).unwrap();
    s.handle.stop_task("task_never_was").unwrap();
    let e = s.handle.stop_task(&ids[1]).unwrap_err();
    assert_eq!(e.code(), "AGENT_ERROR", "{e}");
    assert!(e.to_string().contains("unsupported_type"), "{e}");

    // A slash command is a turn.
    let slash = s.turn("/compact");
    assert_eq!(slash.last().unwrap()["type"], "result");

    let (id, _) = container_state(&fleet, &agent);
    let t = Instant::now();
    let report = s.session.close();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "close took {:?}",
        t.elapsed()
    );
    // The agent had nothing left to do: it exited by itself on EOF.
    assert!(report.outcome.success(), "{}", report.outcome.describe());
    let (after, state) = container_state(&fleet, &agent);
    assert_eq!(after, id);
    assert_eq!(state, if ephemeral { "exited" } else { "running" });
    let e = s.handle.send("too late").unwrap_err();
    assert_eq!(e.code(), "SESSION_ENDED");
}

#[test]
fn a_cli_session_holds_turns_and_answers_every_control() {
    a_session_holds_turns_and_answers_every_control(Strategy::Cli, true);
}

#[test]
fn an_sdk_session_holds_turns_and_answers_every_control() {
    a_session_holds_turns_and_answers_every_control(Strategy::Sdk, false);
}

#[test]
fn a_control_call_is_answered_while_nobody_reads_the_messages() {
    // 12 MB of messages, far past the session's queue: its reader stops reading the agent for
    // the slow consumer, but a waiting call lifts that, so the answer behind the flood arrives.
    let fleet = Fleet::new();
    let agent = fleet.agent("session-flood");
    let mut s = Live::open(
        &fleet,
        request(
            &fleet,
            &agent,
            "#lines 6000 2000\n#sleep 60",
            Strategy::Cli,
            json!({}),
        ),
    );
    std::thread::sleep(Duration::from_secs(2));
    let h = s.handle.clone();
    let t = Instant::now();
    let answered = std::thread::spawn(move || h.interrupt());
    while !answered.is_finished() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(answered.is_finished(), "no answer within 30 s");
    answered.join().unwrap().unwrap();
    // Nothing was dropped on the way: the lines up to the interrupt, in order, then the
    // interrupted turn's result.
    let turn = s.result();
    let lines: Vec<i64> = turn
        .iter()
        .filter_map(|m| m["standin_line"].as_i64())
        .collect();
    assert!(
        lines.len() > 500,
        "{} lines: the queue filled first",
        lines.len()
    );
    assert_eq!(lines, (0..lines.len() as i64).collect::<Vec<_>>());
    assert_eq!(turn.last().unwrap()["standin"]["interrupted"], true);
    s.session.close();
}

#[test]
fn hooks_reach_the_session_as_events() {
    let fleet = Fleet::new();
    for strategy in [Strategy::Cli, Strategy::Sdk] {
        let agent = fleet.agent("session-hooks");
        let mut r = request(
            &fleet,
            &agent,
            "#background 60\n#tool CronDelete {\"id\":\"cron-1\"}\n#tool Read {}",
            strategy,
            json!({}),
        );
        r.hooks = vec![
            HookSpec {
                event: "Stop".into(),
                matcher: None,
            },
            HookSpec {
                event: "PostToolUse".into(),
                matcher: Some("CronDelete".into()),
            },
        ];
        let mut s = Live::open(&fleet, r);
        let turn = s.result();
        assert_eq!(turn.last().unwrap()["subtype"], "success", "{turn:#?}");
        let events: Vec<&str> = s
            .hooks
            .iter()
            .map(|h| h["hook_event_name"].as_str().unwrap())
            .collect();
        assert_eq!(
            events,
            ["PostToolUse", "Stop"],
            "{strategy:?}: {:#?}",
            s.hooks
        );
        assert_eq!(s.hooks[0]["tool_name"], "CronDelete");
        assert_eq!(s.hooks[0]["tool_input"]["id"], "cron-1");
        let stop = &s.hooks[1];
        assert_eq!(stop["session_id"], turn.last().unwrap()["session_id"]);
        assert_eq!(stop["background_tasks"][0]["status"], "running", "{stop}");
        // Both tool calls are in the messages; only the matching one ran the hook.
        let tools: Vec<&Value> = turn
            .iter()
            .filter(|m| m["message"]["content"][0]["type"] == "tool_use")
            .collect();
        assert_eq!(tools.len(), 2);
        s.session.close();
    }
}

#[test]
fn a_session_without_hooks_asks_for_none() {
    let fleet = Fleet::new();
    let agent = fleet.agent("session-nohooks");
    let mut s = Live::open(
        &fleet,
        request(
            &fleet,
            &agent,
            "#tool CronDelete {}",
            Strategy::Cli,
            json!({}),
        ),
    );
    s.result();
    assert!(s.hooks.is_empty(), "{:?}", s.hooks);
    s.session.close();
}

/// Waits until `handle`'s call (run on a thread) is pending in the agent: the agent is frozen, so
/// the call cannot be answered. Returns the thread's result.
fn pending<T: Send + 'static>(
    call: impl FnOnce() -> herdctl_container::Result<T> + Send + 'static,
) -> std::thread::JoinHandle<herdctl_container::Result<T>> {
    let t = std::thread::spawn(call);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !t.is_finished(),
        "the call was answered; the agent should be frozen"
    );
    t
}

#[test]
fn a_container_killed_mid_session_ends_it_with_an_error_and_fails_waiting_calls() {
    let fleet = Fleet::new();
    let agent = fleet.agent("session-killed");
    let mut s = Live::open(
        &fleet,
        request(&fleet, &agent, "hello", Strategy::Cli, json!({})),
    );
    s.result();
    s.handle.send("#freeze 60").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let h = s.handle.clone();
    let waiting = pending(move || h.interrupt());
    let h = s.handle.clone();
    let listing = pending(move || h.set_model(Some("x")));
    let (id, _) = container_state(&fleet, &agent);
    // SIGTERM to the container's init: a KILL would read as an OOM kill (exit 137 with a memory
    // limit, the only sign Podman gives; the OOM test covers that).
    fleet.runner.engine().kill_container(&id, "TERM").unwrap();
    let end = s.until("the error", |m| m["type"] == "error");
    let error = end.last().unwrap();
    assert_eq!(error["outcome"], "container_died", "{error}");
    assert_eq!(error["exit_code"], 143, "{error}");
    assert_eq!(error["oom_killed"], false, "{error}");
    assert_eq!(
        error["container_report"]["outcome"], "container_died",
        "{error}"
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("the agent session ended before it was closed: the container stopped"),
        "{error}"
    );
    assert_eq!(s.session.next_event(), None);
    for e in [
        waiting.join().unwrap().unwrap_err(),
        listing.join().unwrap().unwrap_err(),
    ] {
        assert_eq!(e.code(), "SESSION_ENDED", "{e}");
        assert!(
            e.to_string().contains("ended before the agent answered"),
            "{e}"
        );
    }
    assert_eq!(s.handle.send("hi").unwrap_err().code(), "SESSION_ENDED");
    assert!(s.handle.is_finished());
    let report = s.session.close();
    assert!(
        matches!(report.outcome, Outcome::ContainerDied { .. }),
        "{:?}",
        report.outcome
    );
}

#[test]
fn an_out_of_memory_session_says_so() {
    let fleet = Fleet::new();
    let agent = fleet.agent("session-oom");
    let mut s = Live::open(
        &fleet,
        request(
            &fleet,
            &agent,
            "hello",
            Strategy::Sdk,
            json!({"memory": "96m"}),
        ),
    );
    s.result();
    s.handle.send("#freeze 1\n#eat-memory 400").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let h = s.handle.clone();
    let waiting = pending(move || h.list_commands().and_then(|_| h.interrupt()));
    let end = s.until("the error", |m| m["type"] == "error");
    let error = end.last().unwrap();
    assert_eq!(error["oom_killed"], true, "{error}");
    assert_eq!(error["exit_code"], 137, "{error}");
    let e = waiting.join().unwrap().unwrap_err();
    assert_eq!(e.code(), "SESSION_ENDED", "{e}");
    s.session.close();
}

/// The pid of the child `#spawn-child` started, from its message.
fn child_pid(messages: &[Value]) -> i64 {
    messages
        .iter()
        .find_map(|m| m["standin_child_pid"].as_i64())
        .expect("a spawned child")
}

fn alive(fleet: &Fleet, container: &str, pid: i64) -> bool {
    let out = fleet
        .runner
        .engine()
        .exec_run(
            container,
            &ExecSpec::new(["kill", "-0", &pid.to_string()]),
            b"",
        )
        .unwrap();
    out.exit_code == 0
}

#[test]
fn close_kills_a_running_turn_within_2s_and_fails_waiting_calls() {
    let fleet = Fleet::new();
    let agent = fleet.agent("session-close");
    let mut s = Live::open(
        &fleet,
        request(
            &fleet,
            &agent,
            "#spawn-child\n#say spawned",
            Strategy::Cli,
            json!({}),
        ),
    );
    let pid = child_pid(&s.result());
    s.handle.send("#sleep 60").unwrap();
    s.handle.send("#freeze 60").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.handle.interrupt().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let h = s.handle.clone();
    let waiting = pending(move || h.stop_task("task_x"));
    let (id, _) = container_state(&fleet, &agent);
    let t = Instant::now();
    let report = s.session.close();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "close took {took:?}");
    assert!(
        matches!(report.outcome, Outcome::Cancelled),
        "{:?}",
        report.outcome
    );
    let e = waiting.join().unwrap().unwrap_err();
    assert_eq!(e.code(), "SESSION_ENDED");
    assert!(e.to_string().contains("closed"), "{e}");
    // Ephemeral: stopped and kept for inspection, its processes gone with it.
    let (after, state) = container_state(&fleet, &agent);
    assert_eq!((after.as_str(), state.as_str()), (id.as_str(), "exited"));
    let _ = pid;
}

#[test]
fn closing_a_session_in_a_persistent_container_leaves_other_jobs_running() {
    let fleet = Fleet::new();
    let agent = fleet.agent("session-shared");
    let config = json!({"ephemeral": false});
    let mut s = Live::open(
        &fleet,
        request(
            &fleet,
            &agent,
            "#spawn-child\n#say spawned",
            Strategy::Sdk,
            config.clone(),
        ),
    );
    let pid = child_pid(&s.result());
    s.handle.send("#sleep 60").unwrap();
    let other = fleet.job(
        &agent,
        &fleet.config(config),
        ["sh", "-c", "echo up; sleep 30; echo done"],
    );
    let mut job = fleet.runner.start(other).unwrap();
    assert_eq!(job.next_line(), Some(&b"up"[..]));
    let (id, _) = container_state(&fleet, &agent);
    assert!(alive(&fleet, &id, pid));
    let t = Instant::now();
    let report = s.session.close();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "close took {:?}",
        t.elapsed()
    );
    assert!(
        matches!(report.outcome, Outcome::Cancelled),
        "{:?}",
        report.outcome
    );
    // The session's processes are gone (its child included); the other job runs on.
    assert!(!alive(&fleet, &id, pid), "the session's child survived");
    let (_, state) = container_state(&fleet, &agent);
    assert_eq!(state, "running");
    let ps = fleet
        .runner
        .engine()
        .exec_run(&id, &ExecSpec::new(["ps", "-o", "args"]), b"")
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(ps.contains("sleep 30"), "the other job was stopped: {ps}");
    assert!(!ps.contains("sdk-runner"), "{ps}");
    job.canceller().cancel().unwrap();
    assert!(matches!(job.finish().outcome, Outcome::Cancelled));
}

#[test]
fn a_dropped_session_is_closed_and_its_container_released() {
    let fleet = Fleet::new();
    let agent = fleet.agent("session-dropped");
    let mut s = Live::open(
        &fleet,
        request(&fleet, &agent, "hello", Strategy::Cli, json!({})),
    );
    s.result();
    s.handle.send("#sleep 60").unwrap();
    let handle = s.handle.clone();
    let t = Instant::now();
    drop(s);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(handle.is_finished());
    assert_eq!(container_state(&fleet, &agent).1, "exited");
    assert_eq!(handle.interrupt().unwrap_err().code(), "SESSION_ENDED");
}

/// herdctl's session code (its listing, its resume check, its delete) reads the flat
/// `docker-sessions/`: a session's transcript gets its second name there, as an agent job's does,
/// once its first turn ends (while the session is still open) and it is kept after the close.
#[test]
fn a_sessions_transcript_is_named_in_herdctls_flat_view_while_it_runs() {
    use std::os::unix::fs::MetadataExt;
    let fleet = Fleet::new();
    let agent = fleet.agent("session-flat");
    let mut live = Live::open(
        &fleet,
        request(&fleet, &agent, "one", Strategy::Cli, json!({})),
    );
    let id = live.result().last().unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let sessions = fleet.state.path().join("docker-sessions");
    let own = sessions
        .join(agent_dir_name(&agent))
        .join(format!("{id}.jsonl"));
    let flat = sessions.join(format!("{id}.jsonl"));
    let seen = std::fs::symlink_metadata(&flat)
        .unwrap_or_else(|e| panic!("{} while the session is open: {e}", flat.display()));
    assert!(seen.file_type().is_file(), "a hard link, not a symlink");
    assert_eq!(seen.ino(), std::fs::metadata(&own).unwrap().ino());
    live.turn("two");
    live.session.close();
    let (own, seen) = (
        std::fs::symlink_metadata(&own).unwrap(),
        std::fs::symlink_metadata(&flat).unwrap(),
    );
    assert_eq!((own.ino(), own.nlink()), (seen.ino(), 2));
}

#[test]
fn resume_and_fork_work_as_in_execute() {
    let fleet = Fleet::new();
    let agent = fleet.agent("session-resume");
    let mut first = Live::open(
        &fleet,
        request(&fleet, &agent, "one", Strategy::Cli, json!({})),
    );
    first.result();
    first.turn("two");
    let id = first.messages.last().unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    first.session.close();

    // Resume, on the other runtime: the same transcript (one session directory per agent).
    let mut r = request(&fleet, &agent, "three", Strategy::Sdk, json!({}));
    r.options.resume = Some(id.clone());
    let mut resumed = Live::open(&fleet, r);
    let turn = resumed.result();
    assert_eq!(turn[0]["standin"]["resumed"], true, "{turn:#?}");
    let result = turn.last().unwrap();
    assert_eq!(result["session_id"], id.as_str());
    assert_eq!(result["standin"]["earlier_turns"], 2);
    resumed.session.close();

    let mut r = request(&fleet, &agent, "four", Strategy::Cli, json!({}));
    r.options.resume = Some(id.clone());
    r.options.fork = true;
    let mut forked = Live::open(&fleet, r);
    let turn = forked.result();
    assert_eq!(turn[0]["standin"]["forked"], true, "{turn:#?}");
    let fork_id = turn.last().unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(fork_id, id);
    assert_eq!(turn.last().unwrap()["standin"]["earlier_turns"], 3);
    // Later turns stay on the fork.
    let next = forked.turn("five");
    assert_eq!(next.last().unwrap()["session_id"], fork_id.as_str());
    forked.session.close();
}

#[test]
fn injected_tools_and_credentials_reach_the_session_privately() {
    let fleet = Fleet::new();
    let host = fleet.workspace.path().to_string_lossy().into_owned();
    let token = "ghp_session_mcp_0123456789";
    for strategy in [Strategy::Cli, Strategy::Sdk] {
        let agent = fleet.agent("session-mcp");
        let calls: Arc<Mutex<Vec<ToolCall>>> = Arc::default();
        let seen = calls.clone();
        let handler = move |call: &ToolCall| -> Result<Value, String> {
            seen.lock().unwrap().push(call.clone());
            Ok(
                json!({"content": [{"type": "text", "text": format!("sent {}", call.arguments["file_path"])}]}),
            )
        };
        let mut r = request(
            &fleet,
            &agent,
            "#echo-env ANTHROPIC_API_KEY",
            strategy,
            json!({}),
        );
        r.options = ExecuteOptions::from_json(&json!({
            "prompt": "#echo-env ANTHROPIC_API_KEY",
            "injectedMcpServers": {"files": {"name": "files", "tools": [
                {"name": "send_file", "inputSchema": {"type": "object"}}]}}
        }))
        .unwrap();
        r.agent["mcp_servers"] =
            json!({"gh": {"command": "gh-mcp", "env": {"GITHUB_TOKEN": token}}});
        r.tool_handler = Some(Arc::new(handler));
        let mut s = Live::open(&fleet, r);
        let first = s.result();
        let env = first
            .iter()
            .find_map(|m| m.get("standin_env"))
            .expect("the env report");
        assert_eq!(env["set"], true, "{strategy:?}");
        assert_eq!(env["length"], API_KEY.len());
        // A later turn calls the injected tool through the session's bridge.
        let turn = s.turn("#mcp-call files send_file {\"file_path\":\"/workspace/a.txt\"}");
        let report = turn
            .iter()
            .find_map(|m| m.get("standin_mcp"))
            .expect("an MCP report");
        assert_eq!(
            report["result"]["content"][0]["text"],
            format!("sent \"{host}/a.txt\"")
        );
        assert_eq!(calls.lock().unwrap().len(), 1);
        // Neither secret is on a command line or in the container's config.
        let (id, _) = container_state(&fleet, &agent);
        let ps = fleet
            .runner
            .engine()
            .exec_run(&id, &ExecSpec::new(["ps", "-o", "args"]), b"")
            .unwrap();
        let args = String::from_utf8_lossy(&ps.stdout);
        assert!(args.contains("claude") || args.contains("node"), "{args}");
        for secret in [API_KEY, token] {
            assert!(!args.contains(secret), "{strategy:?}: {args}");
        }
        let inspect = std::process::Command::new("docker")
            .args(["inspect", &id])
            .output()
            .unwrap();
        let inspect = String::from_utf8_lossy(&inspect.stdout);
        for secret in [API_KEY, token] {
            assert!(
                !inspect.contains(secret),
                "{strategy:?}: the container's config"
            );
        }
        s.session.close();
    }
}

#[test]
fn an_agent_that_exits_mid_session_ends_it_with_its_stderr() {
    let fleet = Fleet::new();
    let agent = fleet.agent("session-exit");
    let mut s = Live::open(
        &fleet,
        request(&fleet, &agent, "hello", Strategy::Cli, json!({})),
    );
    s.result();
    s.handle.send("#stderr it broke\n#exit 3").unwrap();
    let end = s.until("the error", |m| m["type"] == "error");
    let error = end.last().unwrap();
    assert_eq!(error["outcome"], "exited");
    assert_eq!(error["exit_code"], 3);
    assert_eq!(
        error["message"],
        "the agent session ended before it was closed: exited with code 3; stderr: it broke"
    );
    assert_eq!(s.session.next_event(), None);
    assert!(matches!(s.session.close().outcome, Outcome::Exited(3)));
}

#[test]
fn a_session_that_cannot_start_says_why_before_any_container() {
    let fleet = Fleet::new();
    let agent = fleet.agent("session-nostart");
    let mut r = request(&fleet, &agent, "hi", Strategy::Cli, json!({}));
    r.agent["working_directory"] = json!("/no/such/workspace/dir");
    let e = AgentSession::open(&fleet.runner, r)
        .err()
        .expect("no session");
    assert_eq!(e.code(), "INVALID_CONFIG");
    assert!(fleet.containers(&agent).is_empty());
    let mut r = request(&fleet, &agent, "hi", Strategy::Cli, json!({}));
    r.options = ExecuteOptions::from_json(&json!({"prompt": "",
        "injectedMcpServers": {"files": {"tools": []}}}))
    .unwrap();
    let e = AgentSession::open(&fleet.runner, r)
        .err()
        .expect("no session");
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
}

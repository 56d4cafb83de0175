//! Session turn: a turn in a live session (herdctl's `openSession`), from `send` to the turn's
//! first message, against a warm job in the same persistent container from its start to its
//! first output (issue 15's target: within 1.2×).
//!
//! Two warm jobs set the bar: the `cat` job of `warm.rs` (what the container layer alone costs)
//! and an agent job running the same stand-in `claude` the session runs (what a one-shot chat
//! message costs today: an exec, and the agent's own start). A session pays neither: its turn is
//! one line on an open stdin. Methods run in rounds, in a new order each round; the sessions stay
//! open across the rounds, as a chat's would.

use std::time::{Duration, Instant};

use herdctl_container::agent::{AgentJob, AgentRequest, Command, ExecuteOptions};
use herdctl_container::invocation::Strategy;
use herdctl_container::session::{AgentSession, SessionEvent, SessionRequest};
use serde_json::json;

use crate::ext::Node;
use crate::fixture::{Ctx, PROMPT};
use crate::report::{Better, Row};
use crate::stats::Samples;
use crate::warm::node_job;

const FIGURE: &str = "session turn: send → first message";
/// The turn (and the agent job's prompt): one stand-in reply.
const TURN: &str = "#say hi";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    CatJob,
    AgentJob,
    Turn,
    NodeAgentJob,
    NodeTurn,
}

pub fn run(ctx: &Ctx, node: &mut Option<Node>) -> Result<Vec<Row>, String> {
    let agent = ctx.agent("session");
    let config = ctx.config(false, 5);
    let cat = ctx.job(&agent, &config, &["cat"], format!("{PROMPT}\n").as_bytes());
    // The first job creates the persistent container; every job and session below finds it.
    ctx.runner
        .run(cat.clone(), |_| {})
        .map_err(|e| format!("session: first job: {e}"))?;
    let agent_json =
        json!({"name": "session", "qualifiedName": agent, "working_directory": ctx.workspace()});
    let request = || AgentRequest {
        config: config.clone(),
        agent: agent_json.clone(),
        options: ExecuteOptions::new(TURN),
        command: Command::Runtime(Strategy::Cli),
        deadline: None,
        translate_paths: false,
        tool_handler: None,
    };
    let mut session = AgentSession::open(
        &ctx.runner,
        SessionRequest::new(
            config.clone(),
            agent_json.clone(),
            ExecuteOptions::new(""),
            Strategy::Cli,
        ),
    )
    .map_err(|e| format!("session: open: {e}"))?;

    let mut methods = vec![Method::CatJob, Method::AgentJob, Method::Turn];
    let node_session = node
        .as_ref()
        .is_some_and(|n| n.has("runner-session-turn") && n.has("runner-agent-warm"));
    if node_session {
        methods.extend([Method::NodeAgentJob, Method::NodeTurn]);
    }
    let node_cmd = |op: &str| {
        json!({"op": op, "agent": agent, "docker": ctx.docker_block(false, 5),
               "stateDir": ctx.state_dir(), "workspace": ctx.workspace(), "prompt": TURN})
    };
    let warmup = 2;
    let rounds = ctx.n(6, 40);
    let mut first: Vec<Samples> = vec![Samples::new(); methods.len()];
    let mut node_cpu = 0.0;
    for round in 0..warmup + rounds {
        for i in crate::stats::order(round, methods.len()) {
            let took = match methods[i] {
                Method::CatJob => cat_job(ctx, &cat)?,
                Method::AgentJob => agent_job(ctx, request())?,
                Method::Turn => turn(&mut session)?,
                Method::NodeAgentJob => {
                    node_job(node, &mut node_cpu, node_cmd("runner-agent-warm"))?.0
                }
                Method::NodeTurn => {
                    node_job(node, &mut node_cpu, node_cmd("runner-session-turn"))?.0
                }
            };
            if round >= warmup {
                first[i].push_ms(took);
            }
        }
    }
    session.close();
    if node_session {
        node_job(node, &mut node_cpu, node_cmd("runner-session-close"))?;
    }

    let at = |m: Method| methods.iter().position(|x| *x == m).map(|i| &first[i]);
    let cat = at(Method::CatJob).expect("always runs");
    let job = at(Method::AgentJob).expect("always runs");
    let turn = at(Method::Turn).expect("always runs");
    let mut rows = vec![
        Row::new(
            FIGURE,
            "Rust API: warm `cat` job, start → first byte",
            "ms",
            cat,
        ),
        Row::new(
            FIGURE,
            "Rust API: warm agent job (stand-in claude), start → first message",
            "ms",
            job,
        ),
        Row::new(
            FIGURE,
            "Rust API: session turn (stand-in claude)",
            "ms",
            turn,
        )
        .vs("warm `cat` job", cat)
        .ratio_target(Better::Lower, 1.2),
        Row::new(
            FIGURE,
            "Rust API: session turn (stand-in claude)",
            "ms",
            turn,
        )
        .vs("warm agent job", job)
        .ratio_target(Better::Lower, 1.2),
    ];
    if let (Some(nj), Some(nt)) = (at(Method::NodeAgentJob), at(Method::NodeTurn)) {
        rows.push(Row::new(
            FIGURE,
            "Node API: warm agent job, start → first message",
            "ms",
            nj,
        ));
        rows.push(
            Row::new(FIGURE, "Node API: session turn (openSession)", "ms", nt)
                .vs("Node warm agent job", nj)
                .ratio_target(Better::Lower, 1.2),
        );
    }
    Ok(rows)
}

fn cat_job(ctx: &Ctx, spec: &herdctl_container::JobSpec) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut job = ctx
        .runner
        .start(spec.clone())
        .map_err(|e| format!("session: cat job: {e}"))?;
    let mut first = None;
    while job.next_line().is_some() {
        first.get_or_insert_with(|| t0.elapsed());
    }
    let report = job.finish();
    if !report.outcome.success() {
        return Err(format!("session: cat job: {}", report.outcome.describe()));
    }
    first.ok_or_else(|| "session: the cat job printed nothing".into())
}

fn agent_job(ctx: &Ctx, request: AgentRequest) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut job =
        AgentJob::start(&ctx.runner, request).map_err(|e| format!("session: agent job: {e}"))?;
    let first = job.next_message().map(|_| t0.elapsed());
    while job.next_message().is_some() {}
    let report = job.finish();
    if !report.outcome.success() {
        return Err(format!("session: agent job: {}", report.outcome.describe()));
    }
    first.ok_or_else(|| "session: the agent job printed nothing".into())
}

/// One turn: the time to its first message; then read to its result.
fn turn(session: &mut AgentSession) -> Result<Duration, String> {
    let t0 = Instant::now();
    session
        .handle()
        .send(TURN)
        .map_err(|e| format!("session: send: {e}"))?;
    let mut first = None;
    loop {
        match session.next_event() {
            Some(SessionEvent::Message(m)) => {
                first.get_or_insert_with(|| t0.elapsed());
                if m.contains(r#""type":"result""#) {
                    return Ok(first.expect("set above"));
                }
            }
            Some(SessionEvent::Hook(_)) => {}
            None => return Err("session: the session ended mid-benchmark".into()),
        }
    }
}

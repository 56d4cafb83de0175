//! Remote engines (issue 16), against real daemons on loopback: a second dockerd the test starts
//! (TLS with client certificates on 127.0.0.1, a unix socket of its own) with an sshd in front
//! of it (see `common::remote`). Through each of a unix socket, TCP with TLS, SSH and a docker
//! context, and through the TLS helper the Node addon uses (`herdctl-container dial-stdio`): a
//! job (4 MiB through `cat`, stdin and output at once), a cancel, retention and a
//! persistent container's reuse. Then two agents on two engines in one runner, a context chosen
//! by the config file, `doctor`'s report, the rules of another machine's engine (credentials as
//! exec env, no MCP socket, injected tools refused), and the refusals (a wrong CA, no client
//! certificate, plain HTTP to TLS, an ssh that cannot connect, a remote socket that is not there).
//!
//! One test function, so the second engine is started once and stopped at its end; the
//! transports run side by side on threads.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fleet::run_on;
use common::remote::SecondEngine;
use common::IMAGE;
use herdctl_container::agent::{AgentJob, AgentRequest, Command, ExecuteOptions};
use herdctl_container::engine::{EngineOptions, Host, SshTarget, TlsFiles};
use herdctl_container::invocation::Strategy;
use herdctl_container::mcp::ToolCall;
use herdctl_container::{
    resolve_docker_config, Credentials, DockerConfig, Engine, JobSpec, Outcome, Runner,
    RunnerOptions,
};
use serde_json::{json, Value};
use tempfile::TempDir;

const TLS_CONTEXT: &str = "herdctl-test-tls";
const SSH_CONTEXT: &str = "herdctl-test-ssh";

/// One way to reach the second engine.
struct Transport {
    name: &'static str,
    options: EngineOptions,
}

fn config(extra: Value) -> DockerConfig {
    let mut block = json!({
        "image": IMAGE, "network": "none", "memory": "256m", "labels": {"herdctl-test": "1"},
    });
    for (k, v) in extra.as_object().unwrap() {
        block[k] = v.clone();
    }
    resolve_docker_config(&block).unwrap()
}

/// A state directory and a workspace any container user may write.
fn dirs() -> (TempDir, TempDir) {
    let (state, ws) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(ws.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    (state, ws)
}

fn agent(transport: &str, what: &str) -> String {
    format!("test.remote-{transport}-{what}-{}", std::process::id())
}

fn tls_options(second: &SecondEngine, certs: &Path) -> EngineOptions {
    EngineOptions {
        host: Host::Tcp(second.tcp.clone()),
        tls: Some(TlsFiles::from_dir(certs)),
        ..EngineOptions::default()
    }
}

fn ssh_options(second: &SecondEngine, url: &str) -> EngineOptions {
    let mut o = EngineOptions::for_address(url).unwrap();
    o.ssh_options = second.ssh_options();
    o
}

/// A docker config directory holding two contexts in docker's own store layout: one over TLS
/// (with its TLS files in the store) and one over SSH, the latter current in `config.json`.
fn docker_config(second: &SecondEngine) -> TempDir {
    let cfg = TempDir::new().unwrap();
    let store = |name: &str, host: &str| {
        let digest = sha256_hex(name);
        let meta = cfg.path().join("contexts/meta").join(&digest);
        std::fs::create_dir_all(&meta).unwrap();
        let body = json!({"Name": name, "Metadata": {"Description": "herdctl test"},
            "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": false}}});
        std::fs::write(meta.join("meta.json"), body.to_string()).unwrap();
        digest
    };
    let digest = store(TLS_CONTEXT, &format!("tcp://{}", second.tcp));
    let tls = cfg.path().join("contexts/tls").join(digest).join("docker");
    std::fs::create_dir_all(&tls).unwrap();
    for f in ["ca.pem", "cert.pem", "key.pem"] {
        std::fs::copy(second.client_certs.join(f), tls.join(f)).unwrap();
    }
    store(SSH_CONTEXT, &second.ssh_url());
    std::fs::write(
        cfg.path().join("config.json"),
        json!({"auths": {}, "currentContext": SSH_CONTEXT}).to_string(),
    )
    .unwrap();
    cfg
}

/// The sha256 of a context name, as docker names its store directories (with sha256sum).
fn sha256_hex(s: &str) -> String {
    let out = std::process::Command::new("sh")
        .args(["-c", "printf %s \"$1\" | sha256sum", "sh", s])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// A lookup of only these variables: the test never changes its own environment.
fn env_of(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

#[test]
fn remote_engines() {
    let second = SecondEngine::start();
    let cfg = docker_config(&second);
    let by_context = EngineOptions::from_env_lookup(&env_of(&[
        ("DOCKER_CONFIG", cfg.path().display().to_string()),
        ("DOCKER_CONTEXT", TLS_CONTEXT.into()),
    ]))
    .unwrap();
    assert!(by_context.tls.is_some(), "{by_context:?}");
    let transports = [
        Transport {
            name: "unix",
            options: EngineOptions {
                host: Host::Unix(second.socket.clone()),
                ..EngineOptions::default()
            },
        },
        Transport {
            name: "tls",
            options: tls_options(&second, &second.client_certs),
        },
        Transport {
            name: "ssh",
            options: ssh_options(&second, &second.ssh_url()),
        },
        Transport {
            name: "context",
            options: by_context,
        },
        // As the Node addon (built without TLS) reaches it: through `herdctl-container
        // dial-stdio`, a process per connection.
        Transport {
            name: "tls-helper",
            options: EngineOptions {
                tls_helper: Some(env!("CARGO_BIN_EXE_herdctl-container").into()),
                ..tls_options(&second, &second.client_certs)
            },
        },
    ];
    let failures: Vec<String> = std::thread::scope(|s| {
        let running: Vec<_> = transports
            .iter()
            .map(|t| (t.name, s.spawn(move || scenarios(t))))
            .collect();
        running
            .into_iter()
            .filter_map(|(name, h)| {
                h.join()
                    .err()
                    .map(|p| format!("[{name}] {}", panic_text(&p)))
            })
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    refusals(&second);
    two_agents_on_two_engines(&second);
    current_context_and_doctor(&second, cfg.path());
    another_machines_rules(&second);
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}

/// A job, a cancel, retention and a persistent reuse through one transport.
fn scenarios(t: &Transport) {
    let engine = Engine::with_options(t.options.clone()).unwrap_or_else(|e| panic!("connect: {e}"));
    let (state, ws) = dirs();
    let runner = Runner::new(engine, RunnerOptions::new(state.path())).unwrap();
    let workspace = ws.path().to_string_lossy().into_owned();

    // A job: 4 MiB in through stdin while the same 4 MiB come back (both directions at once
    // over one connection), stderr apart, and the end of stdin reaching `cat`.
    let a = agent(t.name, "job");
    let lines: Vec<String> = (0..4096)
        .map(|i| format!("{i:05}-{}", "x".repeat(1018)))
        .collect();
    let mut spec = JobSpec::new(
        &a,
        config(json!({})),
        &workspace,
        ["sh", "-c", "cat; echo bye >&2"],
    );
    spec.stdin = format!("{}\n", lines.join("\n")).into_bytes();
    let (out, report) = run_on(&runner, spec);
    assert!(
        report.outcome.success(),
        "job: {}",
        report.outcome.describe()
    );
    assert!(
        out == lines,
        "job: {} lines back of {}",
        out.len(),
        lines.len()
    );
    assert!(
        report.stderr_tail.contains("bye"),
        "job: {:?}",
        report.stderr_tail
    );

    // A cancel: the job ends Cancelled at once, its container stopped and kept.
    let a = agent(t.name, "cancel");
    let mut job = runner
        .start(JobSpec::new(
            &a,
            config(json!({})),
            &workspace,
            ["sh", "-c", "echo up; sleep 600"],
        ))
        .unwrap_or_else(|e| panic!("cancel: start: {e}"));
    assert_eq!(job.next_line(), Some(&b"up"[..]), "cancel");
    let canceller = job.canceller();
    let asked = Instant::now();
    let cancelling = std::thread::spawn(move || canceller.cancel());
    assert_eq!(job.next_line(), None, "cancel");
    cancelling
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("cancel: {e}"));
    assert!(matches!(job.finish().outcome, Outcome::Cancelled), "cancel");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "cancel took {:?}",
        asked.elapsed()
    );
    let found = runner.list(Some(&a)).unwrap();
    assert_eq!(found.len(), 1, "cancel: {found:?}");
    assert_eq!(
        found[0].state, "exited",
        "cancel: stopped, kept for inspection"
    );

    // Retention: three stopped containers, pruned to the newest.
    let a = agent(t.name, "retention");
    let mut last = String::new();
    for _ in 0..3 {
        let (_, r) = run_on(
            &runner,
            JobSpec::new(&a, config(json!({})), &workspace, ["true"]),
        );
        assert!(r.outcome.success(), "retention: {}", r.outcome.describe());
        last = r.container_id;
    }
    assert_eq!(runner.list(Some(&a)).unwrap().len(), 3, "retention");
    let pruned = runner
        .prune(&a, 1)
        .unwrap_or_else(|e| panic!("retention: prune: {e}"));
    assert_eq!(pruned.removed.len(), 2, "retention: {pruned:?}");
    let kept = runner.list(Some(&a)).unwrap();
    assert_eq!(kept.len(), 1, "retention");
    assert_eq!(kept[0].id, last, "retention keeps the newest");

    // Persistent: two jobs, and a second runner (a fresh connection), in one container.
    let a = agent(t.name, "persistent");
    let persistent = config(json!({"ephemeral": false}));
    let (one, r1) = run_on(
        &runner,
        JobSpec::new(&a, persistent.clone(), &workspace, ["echo", "one"]),
    );
    let (two, r2) = run_on(
        &runner,
        JobSpec::new(&a, persistent.clone(), &workspace, ["echo", "two"]),
    );
    assert_eq!(
        (one, two),
        (vec!["one".to_string()], vec!["two".to_string()]),
        "persistent"
    );
    assert_eq!(r1.container_id, r2.container_id, "persistent: reused");
    let again = Runner::new(
        Engine::with_options(t.options.clone()).unwrap(),
        RunnerOptions::new(state.path()),
    )
    .unwrap();
    let (_, r3) = run_on(&again, JobSpec::new(&a, persistent, &workspace, ["true"]));
    assert_eq!(
        r1.container_id, r3.container_id,
        "persistent: found by another runner"
    );
    let found = runner.list(Some(&a)).unwrap();
    assert_eq!(found.len(), 1, "persistent: {found:?}");
    assert_eq!(found[0].state, "running", "persistent");
}

fn refusals(second: &SecondEngine) {
    let e = Engine::with_options(tls_options(second, &second.wrong_ca)).unwrap_err();
    assert!(
        e.to_string().contains(&format!(
            "TLS handshake: the engine's certificate is not signed by the CA in {}/ca.pem",
            second.wrong_ca.display()
        )),
        "{e}"
    );
    let e = Engine::with_options(tls_options(second, &second.no_client_cert)).unwrap_err();
    assert!(
        e.to_string().contains("refused this client's certificate"),
        "{e}"
    );
    // Through the TLS helper, the helper's own words arrive.
    let through_helper = EngineOptions {
        tls_helper: Some(env!("CARGO_BIN_EXE_herdctl-container").into()),
        ..tls_options(second, &second.wrong_ca)
    };
    let e = Engine::with_options(through_helper)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "herdctl-container to tcp://{} exited with exit status: 125: herdctl-container: ",
            second.tcp
        )) && e.contains("is not signed by the CA in"),
        "{e}"
    );
    let plain = EngineOptions {
        host: Host::Tcp(second.tcp.clone()),
        ..EngineOptions::default()
    };
    let e = Engine::with_options(plain).unwrap_err();
    assert!(
        e.to_string().contains("HTTPS"),
        "plain HTTP to the TLS port: {e}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let e = Engine::with_options(ssh_options(second, &format!("ssh://root@127.0.0.1:{port}")))
        .unwrap_err();
    let text = e.to_string();
    assert_eq!(e.code(), "ENGINE_UNREACHABLE", "{text}");
    assert!(
        text.contains(&format!(
            "ssh to ssh://root@127.0.0.1:{port} exited with exit status: 255"
        )) && text.contains("Connection refused"),
        "{text}"
    );
    let url = format!(
        "ssh://root@127.0.0.1:{}/tmp/herdctl-no-such.sock",
        second.ssh_port
    );
    let e = Engine::with_options(ssh_options(second, &url)).unwrap_err();
    assert!(
        e.to_string().contains("/tmp/herdctl-no-such.sock"),
        "the remote docker's words: {e}"
    );
}

/// One runner, its own engine the shared main one, one agent placed on the second engine.
fn two_agents_on_two_engines(second: &SecondEngine) {
    let main = Engine::connect().unwrap_or_else(|e| panic!("the main engine: {e}"));
    let remote = Engine::with_options(tls_options(second, &second.client_certs)).unwrap();
    let (state, ws) = dirs();
    let (here, there) = (agent("placed", "local"), agent("placed", "remote"));
    let mut options = RunnerOptions::new(state.path());
    options
        .agent_engines
        .insert(there.clone(), tls_options(second, &second.client_certs));
    let runner = Runner::new(main.clone(), options).unwrap();
    let workspace = ws.path().to_string_lossy().into_owned();
    let spec = |a: &str| JobSpec::new(a, config(json!({})), &workspace, ["echo", "hello"]);
    let (r_here, r_there) = std::thread::scope(|s| {
        let h = s.spawn(|| run_on(&runner, spec(&here)));
        let t = s.spawn(|| run_on(&runner, spec(&there)));
        (h.join().unwrap().1, t.join().unwrap().1)
    });
    assert!(r_here.outcome.success() && r_there.outcome.success());
    let checks = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        main.inspect_container(&r_here.container_id)
            .expect("on the main engine");
        remote
            .inspect_container(&r_there.container_id)
            .expect("on the second engine");
        let e = main.inspect_container(&r_there.container_id).unwrap_err();
        assert_eq!(e.code(), "NOT_FOUND", "not on the main engine: {e}");
        assert_eq!(
            runner.engine_for(&there).unwrap().host(),
            &Host::Tcp(second.tcp.clone())
        );
        let all: Vec<String> = runner
            .list(None)
            .unwrap()
            .into_iter()
            .map(|c| c.agent)
            .collect();
        assert!(all.contains(&here) && all.contains(&there), "{all:?}");
        let pruned = runner.prune(&there, 0).unwrap();
        assert_eq!(pruned.removed, std::slice::from_ref(&r_there.container_id));
    }));
    // The main engine is shared: its container goes whatever the checks said.
    let _ = main.remove_container(&r_here.container_id, true);
    if let Err(p) = checks {
        std::panic::resume_unwind(p);
    }
}

/// The current context of a config file (an ssh one) runs a job; `doctor` names the address and
/// where it came from.
fn current_context_and_doctor(second: &SecondEngine, cfg: &Path) {
    let mut options =
        EngineOptions::from_env_lookup(&env_of(&[("DOCKER_CONFIG", cfg.display().to_string())]))
            .unwrap();
    assert_eq!(
        options.source.to_string(),
        format!(
            "docker context \"{SSH_CONTEXT}\", the current context in {}/config.json",
            cfg.display()
        )
    );
    assert!(matches!(options.host, Host::Ssh(SshTarget { .. })));
    options.ssh_options = second.ssh_options();
    let (state, ws) = dirs();
    let runner = Runner::new(
        Engine::with_options(options).unwrap(),
        RunnerOptions::new(state.path()),
    )
    .unwrap();
    let (out, r) = run_on(
        &runner,
        JobSpec::new(
            agent("current", "ctx"),
            config(json!({})),
            ws.path().to_string_lossy(),
            ["echo", "via ssh"],
        ),
    );
    assert!(r.outcome.success(), "{}", r.outcome.describe());
    assert_eq!(out, ["via ssh"]);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herdctl-container"))
        .arg("doctor")
        .env_remove("DOCKER_HOST")
        .env("DOCKER_CONFIG", cfg)
        .env("DOCKER_CONTEXT", TLS_CONTEXT)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tls_dir = cfg
        .join("contexts/tls")
        .join(sha256_hex(TLS_CONTEXT))
        .join("docker");
    let want = format!(
        "address:      tcp://{} (TLS verified against {}/ca.pem, client certificate {}/cert.pem) (docker context \"{TLS_CONTEXT}\", from DOCKER_CONTEXT)",
        second.tcp,
        tls_dir.display(),
        tls_dir.display()
    );
    assert!(
        stdout.lines().any(|l| l == want),
        "want {want:?} in:\n{stdout}"
    );
    assert!(stdout.contains("engine:"), "{stdout}");
}

/// On an engine of another machine (ssh): the credentials file's token goes to the exec, no
/// credentials or MCP socket mount is made, and injected tools are refused. On a loopback TCP
/// engine, the same job gets the mounts.
fn another_machines_rules(second: &SecondEngine) {
    let home = TempDir::new().unwrap();
    std::fs::create_dir(home.path().join(".claude")).unwrap();
    std::fs::write(
        home.path().join(".claude/.credentials.json"),
        json!({"claudeAiOauth": {"accessToken": "sk-ant-oat01-test-remote-token", "refreshToken": "r-secret-1234567", "expiresAt": 1_900_000_000_000u64}}).to_string(),
    )
    .unwrap();
    let creds =
        Credentials::resolve(env_of(&[("HOME", home.path().display().to_string())])).unwrap();
    let probe = "[ -e /home/claude/.claude/.credentials.json ] && echo file || echo no-file; \
                 [ -n \"$CLAUDE_CODE_OAUTH_TOKEN\" ] && echo token || echo no-token; \
                 [ -e /home/claude/.claude/herdctl-mcp ] && echo mcp || echo no-mcp";
    for (name, options, want) in [
        (
            "ssh",
            ssh_options(second, &second.ssh_url()),
            ["no-file", "token", "no-mcp"],
        ),
        (
            "tls",
            tls_options(second, &second.client_certs),
            ["file", "no-token", "mcp"],
        ),
    ] {
        assert_eq!(options.is_local(), name == "tls");
        let (state, ws) = dirs();
        let runner = Runner::new(
            Engine::with_options(options).unwrap(),
            RunnerOptions::new(state.path()),
        )
        .unwrap();
        let mut spec = JobSpec::new(
            agent(name, "creds"),
            config(json!({})),
            ws.path().to_string_lossy(),
            ["sh", "-c", probe],
        );
        spec.credentials = Some(creds.clone());
        let (out, r) = run_on(&runner, spec);
        assert!(r.outcome.success(), "[{name}] {}", r.outcome.describe());
        assert_eq!(out, want, "[{name}]");

        let a = agent(name, "tools");
        let request = AgentRequest {
            config: config(json!({})),
            agent: json!({"name": "tools", "qualifiedName": a, "working_directory": {"root": ws.path()}}),
            options: ExecuteOptions::from_json(&json!({"prompt": "hi", "injectedMcpServers": {
                "files": {"name": "files", "tools": [{"name": "send_file"}]}}}))
            .unwrap(),
            command: Command::Runtime(Strategy::Cli),
            deadline: None,
            translate_paths: false,
            tool_handler: Some(Arc::new(|_: &ToolCall| Ok(json!(null)))),
        };
        let started = AgentJob::start(&runner, request);
        if name == "ssh" {
            let e = started
                .err()
                .expect("injected tools refused on another machine's engine");
            assert!(
                e.to_string().starts_with(
                    "invalid injectedMcpServers: the agent's engine ssh://root@127.0.0.1:"
                ),
                "{e}"
            );
        } else {
            let job = started
                .unwrap_or_else(|e| panic!("[{name}] injected tools on a local engine: {e}"));
            drop(job);
        }
    }
}

//! Connecting to the real engine: negotiation, ping/version/info, and the errors a user meets
//! first (no engine at that path, no permission on the socket).

mod common;

use std::os::unix::net::UnixListener;
use std::process::Command;

use common::Live;
use herdctl_container::engine::{Engine, EngineOptions, Host, CLIENT_MAX_API, CLIENT_MIN_API};

#[test]
fn connects_negotiates_and_reports_the_engine() {
    let live = Live::new();
    let engine = &live.engine;
    let version = engine.version().unwrap();
    let daemon_minor: u32 = version
        .api_version
        .trim_start_matches("1.")
        .parse()
        .unwrap();
    let expected = format!("1.{}", daemon_minor.min(CLIENT_MAX_API));
    assert_eq!(engine.api_version(), expected);
    assert!(daemon_minor >= CLIENT_MIN_API);
    engine.ping().unwrap();
    let info = engine.info().unwrap();
    assert_eq!(info.os_type, "linux");
    assert!(info.ncpu >= 1 && info.mem_total > 0, "{info:?}");
    // Clones share the pool and the version.
    let clone = engine.clone();
    std::thread::spawn(move || clone.ping().unwrap())
        .join()
        .unwrap();
}

#[test]
fn docker_host_names_the_socket() {
    let opts = EngineOptions {
        host: Host::parse("unix:///var/run/docker.sock").unwrap(),
        ..EngineOptions::default()
    };
    let engine = Engine::with_options(opts).unwrap();
    assert_eq!(engine.host().to_string(), "unix:///var/run/docker.sock");
    engine.ping().unwrap();
}

#[test]
fn a_wrong_socket_path_says_the_engine_is_unreachable_there() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-docker.sock");
    let err = Engine::unix(&missing).unwrap_err();
    assert_eq!(err.code(), "ENGINE_UNREACHABLE");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot reach the Docker engine at {}: no such socket; start it (dockerd) or point DOCKER_HOST at it; 'herdctl-container doctor' checks the setup",
            missing.display()
        )
    );

    // A socket file nobody listens on any more (a killed daemon leaves one behind).
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let err = Engine::unix(&stale).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("{}: connection refused;", stale.display())),
        "{err}"
    );
}

/// Root may open any socket, so this test runs itself again as uid 65534 (nobody), for whom the
/// engine's socket (root:docker, 0660) is closed.
#[test]
fn a_socket_we_may_not_open_says_permission_denied() {
    let socket = "/var/run/docker.sock";
    if std::env::var_os("HERDCTL_TEST_AS_NOBODY").is_some() {
        let err = Engine::unix(socket).unwrap_err();
        assert_eq!(err.code(), "PERMISSION_DENIED", "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("permission denied on the Docker socket {socket};")),
            "{err}"
        );
        println!("checked-as-nobody");
        return;
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_socket_we_may_not_open_says_permission_denied",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HERDCTL_TEST_AS_NOBODY", "1")
        .output()
        .expect("setpriv (util-linux) runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("checked-as-nobody"),
        "the run as nobody failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// DOCKER_HOST is read from the environment, which tests share: so this test runs itself again
/// with DOCKER_HOST pointing at a socket that does not exist.
#[test]
fn docker_host_from_the_environment_is_honoured() {
    if let Some(path) = std::env::var_os("HERDCTL_TEST_DOCKER_HOST_PATH") {
        let err = Engine::connect().unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "cannot reach the Docker engine at {}: ",
                path.to_string_lossy()
            )),
            "{err}"
        );
        println!("checked-docker-host");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("elsewhere.sock");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "docker_host_from_the_environment_is_honoured",
            "--nocapture",
        ])
        .env("DOCKER_HOST", format!("unix://{}", path.display()))
        .env("HERDCTL_TEST_DOCKER_HOST_PATH", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("checked-docker-host"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn one_engine_serves_many_threads_through_its_pool() {
    let live = Live::new();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let engine = live.engine.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    engine.ping().unwrap();
                    assert!(!engine.version().unwrap().api_version.is_empty());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

use std::collections::HashMap;

use serde_json::json;

use super::*;

/// A docker config directory in a temp dir, and an environment pointing at it.
struct Fixture {
    dir: tempfile::TempDir,
    env: HashMap<String, String>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut env = HashMap::new();
        env.insert("HOME".into(), dir.path().display().to_string());
        Fixture { dir, env }
    }

    fn config_dir(&self) -> PathBuf {
        self.dir.path().join(".docker")
    }

    fn set(mut self, k: &str, v: &str) -> Fixture {
        self.env.insert(k.into(), v.into());
        self
    }

    /// A context as `docker context create` stores it (with keys in any case: Go reads them so).
    fn context(self, name: &str, meta: serde_json::Value, tls: &[&str]) -> Fixture {
        let digest = sha256_hex(name.as_bytes());
        let meta_dir = self.config_dir().join("contexts/meta").join(&digest);
        std::fs::create_dir_all(&meta_dir).unwrap();
        std::fs::write(meta_dir.join("meta.json"), meta.to_string()).unwrap();
        if !tls.is_empty() {
            let tls_dir = self
                .config_dir()
                .join("contexts/tls")
                .join(&digest)
                .join("docker");
            std::fs::create_dir_all(&tls_dir).unwrap();
            for f in tls {
                std::fs::write(tls_dir.join(f), "").unwrap();
            }
        }
        self
    }

    fn current(self, name: &str) -> Fixture {
        std::fs::create_dir_all(self.config_dir()).unwrap();
        std::fs::write(
            self.config_dir().join("config.json"),
            json!({"auths": {}, "currentContext": name}).to_string(),
        )
        .unwrap();
        self
    }

    /// Resolves with the platform socket at `<dir>/docker.sock` (absent unless made).
    fn resolve(&self) -> Result<Resolved> {
        let env = |k: &str| self.env.get(k).cloned();
        self.resolver(&env).resolve()
    }

    fn given(&self, address: &str) -> Result<Resolved> {
        let env = |k: &str| self.env.get(k).cloned();
        self.resolver(&env).given(address, "engines[\"a\"]")
    }

    fn resolver<'a>(&self, env: &'a dyn Fn(&str) -> Option<String>) -> Resolver<'a> {
        Resolver {
            env,
            default_socket: self.dir.path().join("docker.sock"),
            podman_socket: self.dir.path().join("podman-root.sock"),
        }
    }
}

fn meta(name: &str, host: &str) -> serde_json::Value {
    json!({"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": false}}})
}

#[test]
fn docker_host_wins_over_contexts() {
    let f = Fixture::new()
        .context("remote", meta("remote", "ssh://me@box"), &[])
        .current("remote")
        .set("DOCKER_CONTEXT", "remote")
        .set("DOCKER_HOST", "unix:///run/other.sock");
    let r = f.resolve().unwrap();
    assert_eq!(r.host, Host::Unix("/run/other.sock".into()));
    assert_eq!(r.source, AddressSource::DockerHost);
    assert_eq!(r.tls, None);
}

#[test]
fn tls_comes_from_the_environment_for_tcp_only() {
    // Any non-empty value turns verification on, "0" included, as in the docker CLI.
    let f = Fixture::new()
        .set("DOCKER_HOST", "tcp://127.0.0.1:2376")
        .set("DOCKER_TLS_VERIFY", "0");
    let r = f.resolve().unwrap();
    assert_eq!(r.tls.unwrap().ca, f.config_dir().join("ca.pem"));
    let f = f.set("DOCKER_CERT_PATH", "/etc/fleet/certs");
    assert_eq!(
        f.resolve().unwrap().tls.unwrap().ca,
        Path::new("/etc/fleet/certs/ca.pem")
    );
    let f = f.set("DOCKER_HOST", "ssh://me@box");
    assert_eq!(f.resolve().unwrap().tls, None);
    let f = Fixture::new()
        .set("DOCKER_HOST", "tcp://box:2376")
        .set("DOCKER_TLS", "1");
    let e = f.resolve().unwrap_err();
    assert!(
        e.to_string()
            .starts_with("invalid DOCKER_TLS: TLS without verifying the engine is not supported"),
        "{e}"
    );
}

#[test]
fn docker_context_names_a_stored_context() {
    let f = Fixture::new()
        .context(
            "build-box",
            json!({"name": "build-box", "endpoints": {"DOCKER": {"host": "ssh://ci@build-box:2222"}}}),
            &[],
        )
        .set("DOCKER_CONTEXT", "build-box");
    let r = f.resolve().unwrap();
    assert_eq!(r.host.to_string(), "ssh://ci@build-box:2222");
    assert_eq!(
        r.source.to_string(),
        "docker context \"build-box\", from DOCKER_CONTEXT"
    );
}

#[test]
fn the_current_context_is_read_from_config_json() {
    let f = Fixture::new()
        .context(
            "tls-box",
            meta("tls-box", "tcp://10.1.2.3:2376"),
            &["ca.pem", "cert.pem", "key.pem"],
        )
        .current("tls-box");
    let r = f.resolve().unwrap();
    assert_eq!(r.host, Host::Tcp("10.1.2.3:2376".into()));
    let tls = r.tls.unwrap();
    let digest = sha256_hex(b"tls-box");
    let tls_dir = f
        .config_dir()
        .join("contexts/tls")
        .join(digest)
        .join("docker");
    assert_eq!(tls.ca, tls_dir.join("ca.pem"));
    assert_eq!(
        tls.client,
        Some((tls_dir.join("cert.pem"), tls_dir.join("key.pem")))
    );
    assert_eq!(
        r.source.to_string(),
        format!(
            "docker context \"tls-box\", the current context in {}/config.json",
            f.config_dir().display()
        )
    );
    // DOCKER_CONTEXT comes before the config file; "default" is the platform socket.
    let r = f.set("DOCKER_CONTEXT", "default").resolve().unwrap();
    assert!(matches!(r.host, Host::Unix(_)));
    assert_eq!(r.source, AddressSource::Default);
}

#[test]
fn docker_config_moves_the_config_directory() {
    let f = Fixture::new();
    let moved = f.dir.path().join("elsewhere");
    let f = f
        .set("DOCKER_CONFIG", &moved.display().to_string())
        .current("x1");
    // The config in ~/.docker is not read: DOCKER_CONFIG points elsewhere, where none is.
    assert_eq!(f.resolve().unwrap().source, AddressSource::Default);
}

#[test]
fn contexts_that_cannot_be_used_are_refused_clearly() {
    let f = Fixture::new().set("DOCKER_CONTEXT", "gone");
    let e = f.resolve().unwrap_err();
    assert!(
        e.to_string()
            .starts_with("invalid DOCKER_CONTEXT: docker context \"gone\" does not exist (no "),
        "{e}"
    );
    let f = Fixture::new().set("DOCKER_CONTEXT", "-bad");
    assert!(f
        .resolve()
        .unwrap_err()
        .to_string()
        .contains("is not a docker context name"));
    let f = Fixture::new()
        .context(
            "skip",
            json!({"Name": "skip", "Endpoints": {"docker": {"Host": "tcp://h:2376", "SkipTLSVerify": true}}}),
            &["ca.pem"],
        )
        .set("DOCKER_CONTEXT", "skip");
    assert!(f
        .resolve()
        .unwrap_err()
        .to_string()
        .contains("SkipTLSVerify is set"));
    let f = Fixture::new()
        .context(
            "noca",
            meta("noca", "tcp://h:2376"),
            &["cert.pem", "key.pem"],
        )
        .set("DOCKER_CONTEXT", "noca");
    assert!(f
        .resolve()
        .unwrap_err()
        .to_string()
        .contains("has TLS files but no ca.pem"));
    let f = Fixture::new()
        .context("other", meta("not-other", "unix:///x.sock"), &[])
        .set("DOCKER_CONTEXT", "other");
    assert!(f
        .resolve()
        .unwrap_err()
        .to_string()
        .contains("its Name is not the context's name"));
    let f = Fixture::new()
        .context("nohost", json!({"Name": "nohost", "Endpoints": {}}), &[])
        .set("DOCKER_CONTEXT", "nohost");
    assert!(f
        .resolve()
        .unwrap_err()
        .to_string()
        .contains("has no docker endpoint"));
    let f = Fixture::new()
        .context("npipe", meta("npipe", "npipe:////./pipe/docker"), &[])
        .set("DOCKER_CONTEXT", "npipe");
    let e = f.resolve().unwrap_err();
    assert!(
        e.to_string()
            .starts_with("invalid docker context \"npipe\" ("),
        "{e}"
    );
    assert!(e.to_string().contains("is not supported"), "{e}");
}

#[test]
fn a_broken_config_file_is_an_error_not_a_silent_default() {
    let f = Fixture::new();
    std::fs::create_dir_all(f.config_dir()).unwrap();
    std::fs::write(f.config_dir().join("config.json"), "{not json").unwrap();
    let e = f.resolve().unwrap_err();
    assert!(e.to_string().contains("config.json: not JSON"), "{e}");
    std::fs::write(
        f.config_dir().join("config.json"),
        r#"{"currentContext": 7}"#,
    )
    .unwrap();
    assert!(f
        .resolve()
        .unwrap_err()
        .to_string()
        .contains("currentContext is not a string"));
    std::fs::write(
        f.config_dir().join("config.json"),
        r#"{"currentContext": ""}"#,
    )
    .unwrap();
    assert_eq!(f.resolve().unwrap().source, AddressSource::Default);
}

#[test]
fn fallbacks_only_when_the_platform_socket_is_missing() {
    let f = Fixture::new();
    let run = f.dir.path().join("run");
    std::fs::create_dir_all(run.join("podman")).unwrap();
    let f = f.set("XDG_RUNTIME_DIR", &run.display().to_string());
    // Nothing anywhere: the platform socket, which then fails with "no such socket".
    let r = f.resolve().unwrap();
    assert_eq!(r.source, AddressSource::Default);
    assert_eq!(r.host, Host::Unix(f.dir.path().join("docker.sock")));
    // Podman's, rootless Podman's, rootless Docker's: the last wins, in that order.
    std::fs::write(f.dir.path().join("podman-root.sock"), "").unwrap();
    assert_eq!(
        f.resolve().unwrap().source,
        AddressSource::Fallback { engine: "Podman" }
    );
    std::fs::write(run.join("podman/podman.sock"), "").unwrap();
    assert_eq!(
        f.resolve().unwrap().host,
        Host::Unix(run.join("podman/podman.sock"))
    );
    std::fs::write(run.join("docker.sock"), "").unwrap();
    let r = f.resolve().unwrap();
    assert_eq!(r.host, Host::Unix(run.join("docker.sock")));
    assert_eq!(
        r.source.to_string(),
        "rootless Docker's socket, since /var/run/docker.sock does not exist"
    );
    // The platform socket, once it exists, wins over every fallback.
    std::fs::write(f.dir.path().join("docker.sock"), "").unwrap();
    assert_eq!(f.resolve().unwrap().source, AddressSource::Default);
}

#[test]
fn a_given_address_is_a_url_or_a_context_name() {
    let f = Fixture::new().context("lab", meta("lab", "ssh://lab"), &[]);
    let r = f.given("tcp://127.0.0.1:2375").unwrap();
    assert_eq!(
        (r.host, r.source),
        (Host::Tcp("127.0.0.1:2375".into()), AddressSource::Given)
    );
    let r = f.given("lab").unwrap();
    assert_eq!(r.host.to_string(), "ssh://lab");
    assert_eq!(r.source.to_string(), "docker context \"lab\"");
    let e = f.given("tcp://nope").unwrap_err();
    assert!(e.to_string().starts_with("invalid engines[\"a\"]: "), "{e}");
}

//! A fleet for the runner's live tests: a runner over a temporary state directory, agents with
//! unique names, and every container of those agents removed when the fleet is dropped.

use std::process::Command;
use std::sync::Mutex;

use herdctl_container::{
    resolve_docker_config, DockerConfig, Engine, JobReport, JobSpec, ManagedContainer, Runner,
    RunnerOptions,
};
use serde_json::{json, Value};
use tempfile::TempDir;

use super::{unique, IMAGE};

pub struct Fleet {
    pub runner: Runner,
    pub state: TempDir,
    pub workspace: TempDir,
    agents: Mutex<Vec<String>>,
}

impl Fleet {
    /// A runner over the real engine; fails the test loudly when none answers (never skips).
    pub fn new() -> Fleet {
        let state = TempDir::new().expect("a temp dir");
        let workspace = TempDir::new().expect("a temp dir");
        // The container user (1000:1000 when the tests run as root) must be able to write its
        // workspace: the runner refuses a job whose agent could not.
        std::fs::set_permissions(
            workspace.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("a writable workspace");
        let runner = Fleet::runner_in(&state);
        Fleet {
            runner,
            state,
            workspace,
            agents: Mutex::new(Vec::new()),
        }
    }

    fn runner_in(state: &TempDir) -> Runner {
        let engine = Engine::connect().unwrap_or_else(|e| {
            panic!("live tests need a Docker engine (run scripts/ensure-engine): {e}")
        });
        Runner::new(engine, RunnerOptions::new(state.path())).expect("a runner")
    }

    /// Another runner over the same state directory, as a second herdctl instance would have.
    pub fn second_runner(&self) -> Runner {
        Fleet::runner_in(&self.state)
    }

    /// A qualified agent name no other test uses; its containers are removed on drop.
    pub fn agent(&self, what: &str) -> String {
        let name = unique(what).replace("herdctl-test-", "test.");
        self.agents.lock().unwrap().push(name.clone());
        name
    }

    /// A resolved config: the test image, network none, 256 MiB, labelled as a test container,
    /// with `extra` (YAML-shaped fields) on top.
    pub fn config(&self, extra: Value) -> DockerConfig {
        let mut block = json!({
            "image": IMAGE,
            "network": "none",
            "memory": "256m",
            // `dev.herdctl.` is the runner's own prefix; user labels may not use it.
            "labels": { "herdctl-test": "1" },
        });
        for (k, v) in extra.as_object().expect("extra is an object") {
            block[k] = v.clone();
        }
        resolve_docker_config(&block).unwrap_or_else(|e| panic!("test config: {e}"))
    }

    /// A job of `agent` running `argv` in the fleet's workspace.
    pub fn job<S: Into<String>>(
        &self,
        agent: &str,
        config: &DockerConfig,
        argv: impl IntoIterator<Item = S>,
    ) -> JobSpec {
        JobSpec::new(
            agent,
            config.clone(),
            self.workspace.path().to_string_lossy(),
            argv,
        )
    }

    /// Runs a job to its end: its stdout lines (lossy UTF-8) and its report.
    pub fn run(&self, spec: JobSpec) -> (Vec<String>, JobReport) {
        run_on(&self.runner, spec)
    }

    /// The agent's containers, newest first.
    pub fn containers(&self, agent: &str) -> Vec<ManagedContainer> {
        self.runner.list(Some(agent)).expect("list containers")
    }
}

/// [`Fleet::run`] on any runner.
pub fn run_on(runner: &Runner, spec: JobSpec) -> (Vec<String>, JobReport) {
    let mut lines = Vec::new();
    let report = runner
        .run(spec, |l| {
            lines.push(String::from_utf8_lossy(l).into_owned())
        })
        .unwrap_or_else(|e| panic!("start job: {e}"));
    (lines, report)
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for agent in self.agents.lock().unwrap().drain(..) {
            let Ok(found) = self.runner.list(Some(&agent)) else {
                continue;
            };
            for c in found {
                if let Err(e) = self.runner.engine().remove_container(&c.id, true) {
                    eprintln!("cleanup: remove container {}: {e}", c.name);
                }
            }
        }
    }
}

/// The SHA-256 of `data` in hex, computed by the host's `sha256sum` (no hash crate is a
/// dependency of this project).
pub fn sha256_hex(data: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum on the host");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

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
    /// Runners with a warm pool: closed on drop, before the agents' containers are removed, so
    /// no keeper warms a container after the cleanup.
    pool_runners: Mutex<Vec<Runner>>,
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
            pool_runners: Mutex::new(Vec::new()),
        }
    }

    fn runner_in(state: &TempDir) -> Runner {
        let engine = Engine::connect().unwrap_or_else(|e| {
            panic!("live tests need a Docker engine (run scripts/ensure-engine): {e}")
        });
        Runner::new(engine, RunnerOptions::new(state.path())).expect("a runner")
    }

    /// A runner over the fleet's state directory that keeps `size` warm containers per
    /// ephemeral agent.
    pub fn pool_runner(&self, size: usize) -> Runner {
        self.pool_runner_with(size, false)
    }

    /// [`Fleet::pool_runner`] with the runner's opt-in for settings that loosen the container.
    pub fn pool_runner_with(&self, size: usize, allow_unsafe_host_config: bool) -> Runner {
        let engine = Engine::connect().unwrap_or_else(|e| {
            panic!("live tests need a Docker engine (run scripts/ensure-engine): {e}")
        });
        let mut options = RunnerOptions::new(self.state.path());
        options.warm_pool = Some(size);
        options.allow_unsafe_host_config = allow_unsafe_host_config;
        let runner = Runner::new(engine, options).expect("a runner");
        self.pool_runners.lock().unwrap().push(runner.clone());
        runner
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
        for runner in self.pool_runners.lock().unwrap().drain(..) {
            runner.close();
        }
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

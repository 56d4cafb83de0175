//! What every benchmark shares: the engine, a runner over a scratch state directory, the image,
//! agent names unique to this run, and the cleanup that removes every container the run made.
//!
//! Every container carries the label `herdctl-bench-run=<run id>` (and `dev.herdctl.test=1`, or
//! `herdctl-test=1` where the runner's own prefix is reserved), so the cleanup removes exactly this
//! run's containers and never another engineer's.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use herdctl_container::engine::Host;
use herdctl_container::{
    resolve_docker_config, Credentials, DockerConfig, Engine, JobSpec, Runner, RunnerOptions,
};
use serde_json::{json, Value};

use crate::floor::Floor;

/// The image the benchmarks run (built by scripts/build-test-images).
pub const IMAGE: &str = "herdctl-test/runtime:latest";
/// The user every container and exec runs as (the image's `claude`).
pub const USER: &str = "1000:1000";
/// The label that marks this run's containers.
pub const RUN_LABEL: &str = "herdctl-bench-run";
/// The prompt of a job: one JSON line, echoed back as the job's only message.
pub const PROMPT: &str = r#"{"type":"result","subtype":"success","result":"ok"}"#;

pub struct Ctx {
    /// This run's id: part of every agent and container name.
    pub run: String,
    pub engine: Engine,
    pub socket: PathBuf,
    pub runner: Runner,
    /// Scratch root: `state/` (the runner's state directory) and `workspace/`.
    pub dir: PathBuf,
    pub quick: bool,
}

impl Ctx {
    pub fn new(quick: bool) -> Result<Ctx, String> {
        let engine = Engine::connect().map_err(|e| format!("connect to the engine: {e}"))?;
        let socket = match engine.host() {
            Host::Unix(p) => p.clone(),
            other => return Err(format!("the floor needs a unix socket, not {other:?}")),
        };
        if engine.image_inspect(IMAGE).ok().flatten().is_none() {
            return Err(format!("{IMAGE} is missing; run scripts/build-test-images"));
        }
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let run = format!("{}-{}", std::process::id(), ms % 100_000_000);
        let dir = std::env::temp_dir().join(format!("herdctl-bench-{run}"));
        for sub in ["state", "workspace"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| format!("scratch dir: {e}"))?;
        }
        // The container user must be able to write its workspace: the runner checks.
        std::fs::set_permissions(
            dir.join("workspace"),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .map_err(|e| format!("scratch dir: {e}"))?;
        let runner = Runner::new(engine.clone(), RunnerOptions::new(dir.join("state")))
            .map_err(|e| format!("runner: {e}"))?;
        Ok(Ctx {
            run,
            engine,
            socket,
            runner,
            dir,
            quick,
        })
    }

    /// `quick` or `full` iteration counts.
    pub fn n(&self, quick: usize, full: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }

    /// An agent name unique to this run.
    pub fn agent(&self, what: &str) -> String {
        format!("bench.{what}-{}", self.run)
    }

    pub fn workspace(&self) -> String {
        self.dir.join("workspace").to_string_lossy().into_owned()
    }

    pub fn state_dir(&self) -> String {
        self.dir.join("state").to_string_lossy().into_owned()
    }

    /// The docker block (YAML shape) of every benchmark agent: herdctl's defaults, with network
    /// none, the image's user, and this run's labels.
    pub fn docker_block(&self, ephemeral: bool, keep: u32) -> Value {
        json!({
            "image": IMAGE,
            "network": "none",
            "user": USER,
            "ephemeral": ephemeral,
            "max_containers": keep,
            "labels": { "herdctl-test": "1", RUN_LABEL: self.run },
        })
    }

    pub fn config(&self, ephemeral: bool, keep: u32) -> DockerConfig {
        resolve_docker_config(&self.docker_block(ephemeral, keep))
            .expect("the benchmark's own docker block is valid")
    }

    /// A job of `agent`, with no credentials (so the environment cannot change what is measured).
    pub fn job(&self, agent: &str, config: &DockerConfig, argv: &[&str], stdin: &[u8]) -> JobSpec {
        let mut spec = JobSpec::new(
            agent,
            config.clone(),
            self.workspace(),
            argv.iter().copied(),
        );
        spec.stdin = stdin.to_vec();
        spec.credentials = Some(Credentials::none());
        spec
    }

    pub fn floor(&self) -> Floor {
        Floor::new(&self.socket)
    }

    /// A unique container name for containers the benchmark creates itself.
    pub fn name(&self, what: &str, i: usize) -> String {
        format!("herdctl-bench-{what}-{}-{i}", self.run)
    }

    /// Labels (as a JSON object) for containers the benchmark creates itself.
    pub fn own_labels(&self) -> Value {
        json!({ "dev.herdctl.test": "1", RUN_LABEL: self.run })
    }

    /// Removes every container of this run; returns how many.
    pub fn cleanup(&self) -> usize {
        let filter = format!("{RUN_LABEL}={}", self.run);
        let found = match self
            .engine
            .list_containers(&[(RUN_LABEL, Some(&self.run))], true)
        {
            Ok(f) => f,
            Err(e) => {
                eprintln!("bench: cleanup: list containers labelled {filter}: {e}");
                return 0;
            }
        };
        let mut removed = 0;
        for c in found {
            match self.engine.remove_container(&c.id, true) {
                Ok(_) => removed += 1,
                Err(e) => eprintln!("bench: cleanup: remove {}: {e}", c.id),
            }
        }
        removed
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        self.cleanup();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Milliseconds since the epoch, as the runner's `dev.herdctl.created` label holds them.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

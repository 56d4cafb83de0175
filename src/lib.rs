//! Run Claude Code agent jobs in Docker containers, for herdctl.
//!
//! This crate is the core of herdctl-container: a **blocking** Docker Engine API client (over the
//! unix socket, or TCP with TLS, or SSH; the engine found as the docker CLI finds it), and on top
//! of it container lifecycle (ephemeral or persistent), retention, credentials,
//! path translation, security defaults and job execution with streaming output.
//!
//! Why blocking: every caller we serve (a CLI, napi worker threads, Rust tools that may run inside
//! their own async runtime) can afford a thread per job, and a blocking client has no runtime to
//! start, share or deadlock. Every call returns when it is done or when its timeout passes.
//!
//! # Quickstart
//!
//! ```no_run
//! use herdctl_container::{resolve_docker_config, Engine, JobSpec, Outcome, Runner, RunnerOptions};
//!
//! # fn main() -> herdctl_container::Result<()> {
//! // DOCKER_HOST, a docker context, else /var/run/docker.sock; the API version is negotiated here.
//! let runner = Runner::new(Engine::connect()?, RunnerOptions::new("/srv/herdctl/.herdctl"))?;
//! // herdctl's docker block, in its YAML (snake_case) or resolved (camelCase) shape.
//! let config = resolve_docker_config(&serde_json::json!({
//!     "image": "herdctl/runtime:latest", "memory": "2g", "network": "none", "ephemeral": false,
//! }))?;
//! let mut spec = JobSpec::new("fleet.reviewer", config, "/srv/repo", ["claude", "-p", "--output-format", "stream-json", "--verbose"]);
//! spec.stdin = b"Review the last commit".to_vec(); // the prompt: any size, never on argv
//! spec.deadline = Some(std::time::Duration::from_secs(3600));
//!
//! let mut job = runner.start(spec)?;           // errors here: the job never ran
//! let canceller = job.canceller();             // hand to another thread to cancel
//! while let Some(line) = job.next_line() {     // whole lines, as they arrive
//!     println!("{}", String::from_utf8_lossy(line));
//! }
//! let report = job.finish();                   // outcome, timings, redacted stderr tail
//! if let Outcome::ContainerDied { oom_killed: true, .. } = report.outcome {
//!     eprintln!("raise docker.memory");
//! }
//! # drop(canceller); Ok(()) }
//! ```
//!
//! # Where things live
//!
//! Data flows one way: config ([`resolve_docker_config`], [`Credentials`]), then the plan
//! (the mounts of a [`MountPlan`], the container's create request with its security defaults,
//! labels and [`config_hash`], the job's exec; pure, with what the host holds handed in), then the
//! host made ready (session and socket directories, the credentials copy), then engine calls
//! ([`engine`]), then an [`Outcome`]. [`Runner`] ties them together: [`Runner::start`] is plan,
//! acquire, exec. On top, herdctl's shapes: [`invocation`] turns a herdctl agent into the argv and
//! stdin of `claude -p` or an Agent SDK `query()`; [`agent`] runs one herdctl execute call as a
//! job of SDK messages, and [`mcp`] bridges its injected MCP servers into the container;
//! [`session`] holds a live multi-turn session (herdctl's `openSession`) open in the container.
//! With [`RunnerOptions::warm_pool`], ephemeral jobs take containers made ahead of need
//! ([`Runner::warm`], [`Runner::close`]). The modules' layers are in the README ("Layout").
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod credentials;
pub mod engine;
mod error;
mod hash;
mod herdctl;
mod host;
mod labels;
mod paths;
mod plan;
mod redact;
mod run;

pub use herdctl::{agent, invocation, mcp, session};
pub use run::job::records;
pub use run::retention;

pub use config::{
    format_memory, merge_host_config, parse_memory_to_bytes, parse_port_binding, parse_tmpfs_mount,
    parse_user, parse_volume_mount, AccessMode, DockerConfig, DockerLayers, NetworkMode,
    PortBinding, TmpfsMount, UserSpec, VolumeMount, AGENT_FIELDS, ALLOW_UNSAFE_ENV,
    DEFAULT_CPU_SHARES, DEFAULT_DOCKER_IMAGE, DEFAULT_MAX_CONTAINERS, DEFAULT_MEMORY_BYTES,
    DEFAULT_MEMORY_LIMIT, DEFAULT_NON_ROOT_USER, DEFAULT_PIDS_LIMIT, MIN_MEMORY_BYTES,
};
pub use credentials::{CredentialSource, Credentials, CREDENTIAL_ENV_VARS};
pub use engine::Engine;
pub use error::{Error, Result, TimeoutPhase};
pub use hash::{canonical_json, hash_value};
pub use host::{host_user, process_user, resolve_docker_config, resolve_layered};
pub use labels::Mode;
pub use paths::{
    agent_dir_name, normalize_path, sanitize_agent_name, translate_json_paths, workspace_root,
    Direction, PathMap, CONTAINER_CREDENTIALS_FILE, CONTAINER_HOME, CONTAINER_SESSION_DIR,
    CONTAINER_WORKSPACE,
};
pub use plan::{
    agent_session_dir, config_hash, Mount, MountPlan, MountRequest, MountRole, SessionLayout,
};
pub use redact::{is_secret_name, Redactor, MIN_SECRET_LEN, REDACTED};
pub use run::isolation::ADD_GVISOR;
pub use run::job::{Canceller, Job, JobReport, JobSummary, Outcome, Timings};
pub use run::options::{
    runtime_argument, PullPolicy, PullProgressFn, RunnerOptions, PULL_ENV, WARM_POOL_ENV,
};
pub use run::pool::{close_all as close_warm_pools, MAX_WARM_POOL};
pub use run::prune_report::PruneReport;
pub use run::runner::{ManagedContainer, Runner};
pub use run::spec::JobSpec;

//! A job's plan: from the resolved config, the agent, the prepared mounts and what the host said
//! about them, the container this job needs (its create request, labels, config hash and what
//! the after-create check expects) and the exec that runs the job in it. Pure: everything the
//! host or the clock knows is handed in, so the whole plan is unit-tested without an engine or
//! a file system.

use std::collections::BTreeMap;

use super::{create_body, Expected, MountPlan};
use crate::config::{DockerConfig, Passed};
use crate::credentials::Credentials;
use crate::engine::create_models::ContainerCreate;
use crate::engine::ExecSpec;
use crate::labels::{self, Mode};
use crate::paths::{sanitize_agent_name, CONTAINER_WORKSPACE};
use crate::Result;

/// What [`JobPlan::new`] needs, beyond the config.
pub(crate) struct PlanInput<'a> {
    /// The agent's qualified name.
    pub agent: &'a str,
    pub config: &'a DockerConfig,
    /// The mounts, as the host prepared them.
    pub mounts: &'a MountPlan,
    /// The [`labels::MOUNT_IDS`] value: each mount source's identity on the host now.
    pub mount_ids: &'a str,
    /// This process's owner id, for an ephemeral container's [`labels::OWNER`] label.
    pub owner: Option<&'a str>,
    /// When the container is made, in unix milliseconds: its `created` label.
    pub created_ms: u64,
    /// The opt-in to loosening settings: the config's or the runner's.
    pub allow: bool,
    /// The config's `host_config` override, once it [passed the gate](crate::config::gate_override).
    pub host_config: Option<&'a Passed>,
}

/// The container a job needs.
#[derive(Debug, Clone)]
pub(crate) struct JobPlan {
    pub mode: Mode,
    /// The config hash ([`super::config_hash`]), in the labels and the persistent name.
    pub hash: String,
    /// The agent's name as container names may hold it.
    pub sanitized: String,
    /// The create request, labels included.
    pub body: ContainerCreate,
    /// What the inspect after create must show.
    pub expected: Expected,
    /// The container user, `uid[:gid]`.
    pub user: String,
}

impl JobPlan {
    /// The plan of one job's container.
    pub(crate) fn new(input: &PlanInput<'_>) -> Result<JobPlan> {
        let config = input.config;
        let hash = super::config_hash(config, input.mounts);
        let mode = if config.ephemeral {
            Mode::Ephemeral
        } else {
            Mode::Persistent
        };
        let labels = container_labels(input, mode, &hash);
        let body = create_body(config, input.mounts, &labels, input.host_config)?;
        Ok(JobPlan {
            mode,
            hash,
            sanitized: sanitize_agent_name(input.agent),
            body,
            expected: Expected::new(input.allow, input.mounts),
            user: config.user.to_string(),
        })
    }
}

/// The container's labels: the runner's own (agent, mode, hash, created), the mount identities,
/// the owner of an ephemeral one, and the config's.
fn container_labels(input: &PlanInput<'_>, mode: Mode, hash: &str) -> BTreeMap<String, String> {
    let mut labels = labels::container_labels(
        input.agent,
        mode,
        hash,
        input.created_ms,
        &input.config.labels,
    );
    labels.insert(labels::MOUNT_IDS.into(), input.mount_ids.into());
    if let (Mode::Ephemeral, Some(owner)) = (mode, input.owner) {
        labels.insert(labels::OWNER.into(), owner.into());
    }
    labels
}

/// What a job runs: its argv, as the container user, in its working directory (the workspace
/// by default), with its stdin attached.
pub(crate) struct ExecRequest<'a> {
    pub config: &'a DockerConfig,
    pub argv: &'a [String],
    /// `KEY=value` entries of the job itself, after the config's and the credentials'.
    pub env: &'a [String],
    pub working_dir: Option<&'a str>,
    pub credentials: &'a Credentials,
    /// Whether the engine is on this machine: else the credentials file's token goes to the
    /// exec's env (a file of this machine cannot be mounted there).
    pub local: bool,
}

/// The exec of a job. Every env value goes here, never into the create request: `docker
/// inspect` shows create-time env to anyone who may talk to the engine. The job's own argv is
/// checked here, before any container is made or taken, so an error names its arguments (not a
/// wrapper's) and leaves nothing behind.
pub(crate) fn job_exec(req: &ExecRequest<'_>) -> Result<ExecSpec> {
    let mut env: Vec<String> = req
        .config
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.extend(if req.local {
        req.credentials.exec_env()
    } else {
        req.credentials.remote_exec_env()
    });
    env.extend(req.env.iter().cloned());
    let mut exec = ExecSpec::new(req.argv.iter().map(String::as_str));
    exec.env = env;
    exec.user = Some(req.config.user.to_string());
    exec.working_dir = Some(req.working_dir.unwrap_or(CONTAINER_WORKSPACE).to_string());
    exec.attach_stdin = true;
    exec.check()?;
    Ok(exec)
}

#[cfg(test)]
mod tests;

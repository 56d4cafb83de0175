//! One job to run: what a caller hands [`Runner::start`](crate::Runner::start)(crate::Runner::start).

use std::time::Duration;

use crate::config::DockerConfig;
use crate::credentials::Credentials;
use crate::redact::Redactor;

/// One job to run.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The agent's qualified name (exact; it becomes the `dev.herdctl.agent` label).
    pub agent: String,
    /// The agent's resolved docker config.
    pub config: DockerConfig,
    /// The host directory mounted at `/workspace`.
    pub workspace: String,
    /// The program and its arguments; no shell is involved.
    pub argv: Vec<String>,
    /// Bytes written to the program's stdin, then closed. Any size.
    pub stdin: Vec<u8>,
    /// Keep the program's stdin open for the caller instead: the runner writes nothing (not
    /// `stdin` either), and the caller takes the stdin with [`crate::Job::take_stdin`] and writes
    /// as long as the job runs (a live session, [`crate::herdctl::session`]). Default: false.
    pub stdin_open: bool,
    /// Extra environment for this job only, as `KEY=value`.
    pub env: Vec<String>,
    /// The working directory inside the container. Default: `/workspace`.
    pub working_dir: Option<String>,
    /// Cancel the job when it runs longer than this. Default: none.
    pub deadline: Option<Duration>,
    /// The credentials; `None` discovers them in this process's environment (env var first, then
    /// the Claude credentials file) at the job's start, so a refreshed token is picked up, and
    /// runs without any when none are configured.
    pub credentials: Option<Credentials>,
    /// More values to redact from everything the job reports (its errors, warnings and stderr
    /// tail), besides the credentials and the values of the config's env entries whose names
    /// look secret: secrets the job is given some other way (on stdin, say). Default: none.
    pub secrets: Vec<String>,
}

impl JobSpec {
    /// A job with no stdin, env, deadline or explicit credentials.
    pub fn new(
        agent: impl Into<String>,
        config: DockerConfig,
        workspace: impl Into<String>,
        argv: impl IntoIterator<Item = impl Into<String>>,
    ) -> JobSpec {
        JobSpec {
            agent: agent.into(),
            config,
            workspace: workspace.into(),
            argv: argv.into_iter().map(Into::into).collect(),
            stdin: Vec::new(),
            stdin_open: false,
            env: Vec::new(),
            working_dir: None,
            deadline: None,
            credentials: None,
            secrets: Vec::new(),
        }
    }

    /// Every env value the job's exec gets from its config and its own env, whatever its name.
    pub(crate) fn env_values(&self) -> Vec<&str> {
        let own = self
            .env
            .iter()
            .filter_map(|e| e.split_once('='))
            .map(|(_, v)| v);
        self.config
            .env
            .values()
            .map(String::as_str)
            .chain(own)
            .collect()
    }

    /// The redactor of this job's secrets, given its credentials.
    pub(crate) fn redactor(&self, credentials: &Credentials) -> Redactor {
        // The job's own `KEY=value` env is treated like the config's (the CLI's `--env`).
        let job_env: Vec<(String, String)> = self
            .env
            .iter()
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        credentials
            .redactor()
            .with_env(&self.config.env)
            .with_env(job_env.iter().map(|(k, v)| (k, v)))
            .with_secrets(&self.secrets)
    }
}

//! Which Claude credentials a job gets, and how they reach the container without leaking.
//!
//! Order (the seed's): `ANTHROPIC_API_KEY` / `CLAUDE_CODE_OAUTH_TOKEN` from the environment, given
//! to each exec (never to the container's create config, which `docker inspect` shows, and never on
//! a command line); else the Claude credentials file (`$CLAUDE_CONFIG_DIR/.credentials.json`, else
//! `$HOME/.claude/.credentials.json`), of which a sanitised copy (no refresh token) is mounted
//! read-only at [`CONTAINER_CREDENTIALS_FILE`](crate::CONTAINER_CREDENTIALS_FILE).
//!
//! Resolve once per job: a token refreshed on the host then reaches a reused container, because
//! [`Credentials::write_container_copy`] rewrites the copy the container already has mounted.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::redact::Redactor;
use crate::{Error, Result};

/// The env variables that carry credentials, in the order they are looked up.
pub const CREDENTIAL_ENV_VARS: [&str; 2] = ["ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"];

/// The fields of `claudeAiOauth` copied into the container's credentials file. A list of what
/// may go rather than of what may not, so a secret field added to the file later stays out.
const OAUTH_FIELDS_KEPT: [&str; 4] = ["accessToken", "expiresAt", "scopes", "subscriptionType"];

/// Where a job's credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// The named variables of the environment (or of the map passed to
    /// [`Credentials::resolve`]).
    Env(Vec<String>),
    /// The Claude credentials file at this host path.
    File(PathBuf),
    /// Nothing is configured: the job runs without credentials (a command that needs none, or an
    /// agent that will report its own login error).
    None,
}

/// The credentials of one job. `Debug` shows where they come from, never a value.
#[derive(Clone)]
pub struct Credentials {
    source: CredentialSource,
    /// `(name, value)` for the env source.
    env: Vec<(String, String)>,
    /// The sanitised `{"claudeAiOauth": {...}}` for the file source.
    sanitised: Option<Value>,
    expires_at_ms: Option<u64>,
    redactor: Redactor,
}

impl Credentials {
    /// Resolves credentials through `lookup` (an env lookup: `|k| std::env::var(k).ok()`, or a
    /// map's `get`): the variables of [`CREDENTIAL_ENV_VARS`] that are set and non-empty, else the
    /// credentials file found through `CLAUDE_CONFIG_DIR` or `HOME`.
    ///
    /// Errors: [`Error::InvalidConfig`] (field `credentials`) when nothing is found or the file has
    /// no access token; [`Error::Io`] when the file exists but cannot be read. No error shows a
    /// secret.
    pub fn resolve(lookup: impl Fn(&str) -> Option<String>) -> Result<Credentials> {
        let env: Vec<(String, String)> = CREDENTIAL_ENV_VARS
            .iter()
            .filter_map(|k| {
                lookup(k)
                    .filter(|v| !v.is_empty())
                    .map(|v| (k.to_string(), v))
            })
            .collect();
        if !env.is_empty() {
            return Ok(Credentials {
                source: CredentialSource::Env(env.iter().map(|(k, _)| k.clone()).collect()),
                redactor: Redactor::new(env.iter().map(|(_, v)| v)),
                env,
                sanitised: None,
                expires_at_ms: None,
            });
        }
        let path = match (
            lookup("CLAUDE_CONFIG_DIR").filter(|v| !v.is_empty()),
            lookup("HOME").filter(|v| !v.is_empty()),
        ) {
            (Some(dir), _) => Path::new(&dir).join(".credentials.json"),
            (None, Some(home)) => Path::new(&home).join(".claude").join(".credentials.json"),
            (None, None) => {
                return Err(Error::invalid(
                    "credentials",
                    "no ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN is set, and neither CLAUDE_CONFIG_DIR nor HOME points at a credentials file; set one of them or log in with 'claude'",
                ))
            }
        };
        Credentials::from_file(&path)
    }

    /// [`Credentials::resolve`] over this process's environment.
    pub fn from_process_env() -> Result<Credentials> {
        Credentials::resolve(|k| std::env::var(k).ok())
    }

    /// Like [`Credentials::resolve`], but when nothing at all is configured (no variable set, no
    /// credentials file) the answer is [`Credentials::none`] instead of an error. A configured
    /// source that is broken (a file without a token) is still an error. The runner uses this:
    /// not every job needs credentials.
    pub fn discover(lookup: impl Fn(&str) -> Option<String>) -> Result<Credentials> {
        let env_set = CREDENTIAL_ENV_VARS
            .iter()
            .any(|k| lookup(k).is_some_and(|v| !v.is_empty()));
        let file = match lookup("CLAUDE_CONFIG_DIR").filter(|v| !v.is_empty()) {
            Some(dir) => Some(Path::new(&dir).join(".credentials.json")),
            None => lookup("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| Path::new(&home).join(".claude").join(".credentials.json")),
        };
        if !env_set && !file.is_some_and(|f| f.exists()) {
            return Ok(Credentials::none());
        }
        Credentials::resolve(lookup)
    }

    /// No credentials: nothing to give the exec, nothing to mount, nothing to redact.
    pub fn none() -> Credentials {
        Credentials {
            source: CredentialSource::None,
            env: Vec::new(),
            sanitised: None,
            expires_at_ms: None,
            redactor: Redactor::new(Vec::<String>::new()),
        }
    }

    /// Reads the Claude credentials file at `path` (`{"claudeAiOauth": {"accessToken": ...}}`).
    pub fn from_file(path: &Path) -> Result<Credentials> {
        let doc = read_file(path)?;
        let shown = path.display();
        let oauth = doc
            .get("claudeAiOauth")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                Error::invalid(
                    "credentials",
                    format!("{shown} has no \"claudeAiOauth\" object; log in again with 'claude'"),
                )
            })?;
        let access = oauth
            .get("accessToken")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                Error::invalid(
                    "credentials",
                    format!(
                        "{shown} has no \"claudeAiOauth.accessToken\"; log in again with 'claude'"
                    ),
                )
            })?;
        let kept: Map<String, Value> = OAUTH_FIELDS_KEPT
            .iter()
            .filter_map(|k| oauth.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect();
        let mut secrets = vec![access.to_string()];
        if let Some(refresh) = oauth.get("refreshToken").and_then(Value::as_str) {
            secrets.push(refresh.to_string());
        }
        let mut sanitised = Map::new();
        sanitised.insert("claudeAiOauth".into(), Value::Object(kept));
        Ok(Credentials {
            source: CredentialSource::File(path.to_path_buf()),
            env: Vec::new(),
            expires_at_ms: oauth.get("expiresAt").and_then(Value::as_u64),
            sanitised: Some(Value::Object(sanitised)),
            redactor: Redactor::new(secrets),
        })
    }

    /// Where these credentials come from.
    pub fn source(&self) -> &CredentialSource {
        &self.source
    }

    /// The `KEY=value` entries to give each exec (empty for the file source). Never put them in a
    /// container's create config or on a command line.
    pub fn exec_env(&self) -> Vec<String> {
        self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// The `KEY=value` entries to give each exec on an engine of another machine, where the
    /// sanitised file cannot be mounted: the env source's entries, or for the file source its
    /// access token as `CLAUDE_CODE_OAUTH_TOKEN` (read afresh for every job, as the copy is).
    /// Never put them in a container's create config or on a command line.
    pub fn remote_exec_env(&self) -> Vec<String> {
        let token = self
            .sanitised
            .as_ref()
            .and_then(|s| s.get("claudeAiOauth"))
            .and_then(|o| o.get("accessToken"))
            .and_then(Value::as_str);
        match token {
            Some(token) if self.env.is_empty() => vec![format!("CLAUDE_CODE_OAUTH_TOKEN={token}")],
            _ => self.exec_env(),
        }
    }

    /// A redactor holding every secret value of these credentials (env values, and the access and
    /// refresh tokens of the file). Extend it with [`Redactor::with_env`] for the config's env.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// When the file's access token expires, in unix milliseconds, if the file says.
    pub fn expires_at_ms(&self) -> Option<u64> {
        self.expires_at_ms
    }

    /// Where [`Credentials::write_container_copy`] puts the copy for `agent`:
    /// `<state_dir>/docker-credentials/<agent_dir_name>/.credentials.json`.
    pub fn container_copy_path(state_dir: &Path, agent: &str) -> PathBuf {
        state_dir
            .join("docker-credentials")
            .join(crate::paths::agent_dir_name(agent))
            .join(".credentials.json")
    }

    /// The sanitised `{"claudeAiOauth": {...}}` of the file source, which the host writes as
    /// the container's copy ([`Credentials::write_container_copy`]); `None` for the env source.
    pub(crate) fn sanitised(&self) -> Option<&Value> {
        self.sanitised.as_ref()
    }
}

/// The credentials file at `path` as JSON. Its text never reaches an error: serde_json's syntax
/// errors carry a position only.
fn read_file(path: &Path) -> Result<Value> {
    let shown = path.display();
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::invalid(
                "credentials",
                format!("no ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN is set and there is no credentials file at {shown}; set one of them or log in with 'claude'"),
            ))
        }
        Err(e) => return Err(Error::io(format!("read credentials file {shown}"), e)),
    };
    serde_json::from_slice::<Value>(&text).map_err(|e| {
        Error::invalid(
            "credentials",
            format!(
                "{shown} is not valid JSON (line {} column {}); log in again with 'claude'",
                e.line(),
                e.column()
            ),
        )
    })
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("source", &self.source)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

/// The redactor of a process, which only the credentials module can build: it knows where
/// the secrets are.
impl Redactor {
    /// A redactor of what this process holds secret without a job: the values of the credential
    /// variables of its environment ([`crate::CREDENTIAL_ENV_VARS`]), and the tokens of the
    /// Claude credentials file when it can be read. For errors raised before a job's own
    /// redactor exists (a broken credentials file, a bad request) or outside any job.
    pub fn from_process_env() -> Redactor {
        let lookup = |k: &str| std::env::var(k).ok();
        match Credentials::discover(lookup) {
            Ok(c) => c.redactor().clone(),
            Err(_) => Redactor::new(CREDENTIAL_ENV_VARS.iter().filter_map(|k| lookup(k))),
        }
    }
}

#[cfg(test)]
mod tests;

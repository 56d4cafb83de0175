//! Which engine to talk to, found the way the docker CLI finds it: `DOCKER_HOST` (with
//! `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH` for a `tcp://` host), else the context named by
//! `DOCKER_CONTEXT`, else the current context of `~/.docker/config.json` (`DOCKER_CONFIG`
//! moves that directory), else the platform's socket. Contexts are read from docker's own store
//! (`contexts/meta/<sha256 of the name>/meta.json`, TLS files in `contexts/tls/<same>/docker/`),
//! so `docker context use` moves this library along with the CLI.
//!
//! Fallbacks, ours and not the CLI's: when `/var/run/docker.sock` does not exist, rootless
//! Docker's `$XDG_RUNTIME_DIR/docker.sock`, then rootless Podman's
//! `$XDG_RUNTIME_DIR/podman/podman.sock`, then Podman's `/run/podman/podman.sock`, the first
//! that exists. Why fallbacks rather than options only: they come after the platform socket, so
//! they turn what would be a certain "no such socket" into a working engine and change nothing
//! where the CLI's choice works; and they are the sockets those engines make by default, in
//! directories only their owner (or root) can write. Why not before the platform socket: a
//! machine with both would move its fleet to another engine the day someone starts rootless
//! Docker.
//!
//! JSON keys are matched as Go's `encoding/json` (which wrote the files) matches them: the exact
//! key first, else any letter case.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::tls::TlsFiles;
use super::transport::Host;
use crate::hash::sha256_hex;
use crate::{Error, Result};

/// The platform's engine socket on Linux.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// Rootful Podman's socket.
const PODMAN_SOCKET: &str = "/run/podman/podman.sock";

/// Where an engine address came from, as `doctor` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AddressSource {
    /// Given by the caller: an option, or an agent's placement.
    Given,
    /// The `DOCKER_HOST` environment variable.
    DockerHost,
    /// A docker context.
    Context {
        /// The context's name.
        name: String,
        /// Who named it.
        chosen_by: ContextChoice,
    },
    /// The platform's socket, [`DEFAULT_SOCKET`]. The default.
    #[default]
    Default,
    /// A socket tried because [`DEFAULT_SOCKET`] does not exist.
    Fallback {
        /// Whose socket it is: `rootless Docker`, `rootless Podman` or `Podman`.
        engine: &'static str,
    },
}

/// Who named the docker context in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextChoice {
    /// The caller, by name.
    Given,
    /// The `DOCKER_CONTEXT` environment variable.
    DockerContext,
    /// `currentContext` in this config file (`docker context use` writes it).
    ConfigFile(PathBuf),
}

impl fmt::Display for AddressSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressSource::Given => f.write_str("given in the options"),
            AddressSource::DockerHost => f.write_str("DOCKER_HOST"),
            AddressSource::Context { name, chosen_by } => {
                write!(f, "docker context {name:?}")?;
                match chosen_by {
                    ContextChoice::Given => Ok(()),
                    ContextChoice::DockerContext => f.write_str(", from DOCKER_CONTEXT"),
                    ContextChoice::ConfigFile(file) => {
                        write!(f, ", the current context in {}", file.display())
                    }
                }
            }
            AddressSource::Default => f.write_str("the platform default"),
            AddressSource::Fallback { engine } => {
                write!(
                    f,
                    "{engine}'s socket, since {DEFAULT_SOCKET} does not exist"
                )
            }
        }
    }
}

/// An engine address with its TLS files and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub host: Host,
    pub tls: Option<TlsFiles>,
    pub source: AddressSource,
}

/// Resolves addresses against an environment (a lookup, so tests need not touch the process's)
/// and the files it points at.
pub(crate) struct Resolver<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    default_socket: PathBuf,
    podman_socket: PathBuf,
}

impl<'a> Resolver<'a> {
    /// Over this environment, with the platform's socket paths.
    pub fn new(env: &'a dyn Fn(&str) -> Option<String>) -> Resolver<'a> {
        Resolver {
            env,
            default_socket: PathBuf::from(DEFAULT_SOCKET),
            podman_socket: PathBuf::from(PODMAN_SOCKET),
        }
    }

    /// A variable's value; the CLI takes an empty one as unset.
    fn var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.is_empty())
    }

    /// The docker CLI's order: `DOCKER_HOST`, `DOCKER_CONTEXT`, the config's current context,
    /// the platform socket (then the fallbacks).
    pub fn resolve(&self) -> Result<Resolved> {
        if let Some(host) = self.var("DOCKER_HOST") {
            return self.url(&host, "DOCKER_HOST", AddressSource::DockerHost);
        }
        if let Some(name) = self.var("DOCKER_CONTEXT") {
            return self.context(&name, ContextChoice::DockerContext, "DOCKER_CONTEXT");
        }
        if let Some((name, file)) = self.current_context()? {
            let field = format!("currentContext in {}", file.display());
            return self.context(&name, ContextChoice::ConfigFile(file), &field);
        }
        Ok(self.default_socket())
    }

    /// An address given by the caller: a URL (`unix://`, `tcp://`, `ssh://`; a `tcp://` host
    /// takes its TLS from `DOCKER_TLS_VERIFY` / `DOCKER_CERT_PATH`, as `docker -H` does), or the
    /// name of a docker context.
    ///
    /// What is wrong with the address itself (the errors naming `field`) is the caller's
    /// argument; what is wrong in a context's files or the TLS variables stays config.
    pub fn given(&self, address: &str, field: &str) -> Result<Resolved> {
        let resolved = if address.contains("://") {
            self.url(address, field, AddressSource::Given)
        } else {
            self.context(address, ContextChoice::Given, field)
        };
        resolved.map_err(|e| match e {
            Error::InvalidConfig { field: ref f, .. } if f == field => e.into_argument(),
            other => other,
        })
    }

    fn url(&self, value: &str, field: &str, source: AddressSource) -> Result<Resolved> {
        let host = Host::parse_as(value, field)?;
        let tls = match host {
            Host::Tcp(_) => self.env_tls()?,
            _ => None,
        };
        Ok(Resolved { host, tls, source })
    }

    /// `DOCKER_TLS_VERIFY` (any non-empty value, as in the CLI: even `0`) turns on TLS with the
    /// files of `DOCKER_CERT_PATH`, else of the config directory.
    fn env_tls(&self) -> Result<Option<TlsFiles>> {
        if self.var("DOCKER_TLS_VERIFY").is_none() {
            if self.var("DOCKER_TLS").is_some() {
                return Err(Error::invalid(
                    "DOCKER_TLS",
                    "TLS without verifying the engine is not supported; set DOCKER_TLS_VERIFY=1 and put the engine's CA in $DOCKER_CERT_PATH/ca.pem",
                ));
            }
            return Ok(None);
        }
        let dir = match self.var("DOCKER_CERT_PATH") {
            Some(dir) => PathBuf::from(dir),
            None => self.config_dir().ok_or_else(|| {
                Error::invalid(
                    "DOCKER_CERT_PATH",
                    "not set, and no HOME (or DOCKER_CONFIG) to find ~/.docker in; set it to the directory of ca.pem, cert.pem and key.pem",
                )
            })?,
        };
        Ok(Some(TlsFiles::from_dir(dir)))
    }

    /// `DOCKER_CONFIG`, else `$HOME/.docker`.
    fn config_dir(&self) -> Option<PathBuf> {
        self.var("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| self.var("HOME").map(|h| Path::new(&h).join(".docker")))
    }

    /// `currentContext` of the config file, when it names one.
    fn current_context(&self) -> Result<Option<(String, PathBuf)>> {
        let Some(dir) = self.config_dir() else {
            return Ok(None);
        };
        let file = dir.join("config.json");
        let Some(config) = read_json(&file)? else {
            return Ok(None);
        };
        match get_ci(&config, "currentContext") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(name)) if name.is_empty() => Ok(None),
            Some(Value::String(name)) => Ok(Some((name.clone(), file))),
            Some(_) => Err(Error::invalid(
                file.display().to_string(),
                "currentContext is not a string",
            )),
        }
    }

    /// The endpoint of context `name`, with its TLS files.
    fn context(&self, name: &str, chosen_by: ContextChoice, field: &str) -> Result<Resolved> {
        if name == "default" {
            // The CLI's built-in context: DOCKER_HOST (unset here, or it would have won), else
            // the platform socket.
            return Ok(self.default_socket());
        }
        check_context_name(name, field)?;
        let dir = self.config_dir().ok_or_else(|| {
            Error::invalid(
                field,
                format!("docker context {name:?} cannot be found: no HOME or DOCKER_CONFIG"),
            )
        })?;
        // docker's store names a context's directories by the SHA-256 of its name.
        let digest = sha256_hex(name.as_bytes());
        let meta_file = dir.join("contexts/meta").join(&digest).join("meta.json");
        let meta = read_json(&meta_file)?.ok_or_else(|| {
            Error::invalid(
                field,
                format!(
                    "docker context {name:?} does not exist (no {}); 'docker context ls' lists them",
                    meta_file.display()
                ),
            )
        })?;
        let what = format!("docker context {name:?} ({})", meta_file.display());
        let (host, skip_verify) = context_endpoint(&meta, name, &what)?;
        let tls_dir = dir.join("contexts/tls").join(&digest).join("docker");
        let tls = context_tls(&host, skip_verify, &tls_dir, &what)?;
        Ok(Resolved {
            host,
            tls,
            source: AddressSource::Context {
                name: name.to_string(),
                chosen_by,
            },
        })
    }

    /// The platform socket, or the first fallback that exists when it does not.
    fn default_socket(&self) -> Resolved {
        let default = Resolved {
            host: Host::Unix(self.default_socket.clone()),
            tls: None,
            source: AddressSource::Default,
        };
        if self.default_socket.exists() {
            return default;
        }
        let runtime = self.var("XDG_RUNTIME_DIR").map(PathBuf::from);
        let candidates = [
            runtime
                .as_ref()
                .map(|d| (d.join("docker.sock"), "rootless Docker")),
            runtime
                .as_ref()
                .map(|d| (d.join("podman/podman.sock"), "rootless Podman")),
            Some((self.podman_socket.clone(), "Podman")),
        ];
        for (path, engine) in candidates.into_iter().flatten() {
            if path.exists() {
                return Resolved {
                    host: Host::Unix(path),
                    tls: None,
                    source: AddressSource::Fallback { engine },
                };
            }
        }
        default
    }
}

/// Refuses what docker's own rule (`^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$`) does not accept as a context
/// name: such a value was meant as neither, or as a mistyped address, and the error says both.
fn check_context_name(name: &str, field: &str) -> Result<()> {
    let valid = name.len() >= 2
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b));
    if !valid {
        return Err(Error::invalid(
            field,
            format!("{name:?} is not a docker context name (letters, digits, '_', '.', '+', '-'; two or more) nor an address like unix:///path, tcp://host:port or ssh://user@host"),
        ));
    }
    Ok(())
}

/// The docker endpoint of a context's `meta` (described as `what` in errors): its host, and
/// whether it asks to skip verifying the engine's certificate. The meta must be the context's
/// own (its `Name` is `name`).
fn context_endpoint(meta: &Value, name: &str, what: &str) -> Result<(Host, bool)> {
    match get_ci(meta, "Name") {
        Some(Value::String(n)) if n == name => {}
        _ => return Err(Error::invalid(what, "its Name is not the context's name")),
    }
    let endpoint = get_ci(meta, "Endpoints")
        .and_then(|e| get_ci(e, "docker"))
        .ok_or_else(|| Error::invalid(what, "has no docker endpoint"))?;
    let host = match get_ci(endpoint, "Host") {
        Some(Value::String(h)) if !h.is_empty() => h,
        _ => return Err(Error::invalid(what, "its docker endpoint has no Host")),
    };
    let host = Host::parse_as(host, what)?;
    let skip_verify = matches!(get_ci(endpoint, "SkipTLSVerify"), Some(Value::Bool(true)));
    Ok((host, skip_verify))
}

/// The TLS files of a context's `tcp://` host, from its `tls_dir` in the store. An engine that
/// is not verified against its CA is refused: `SkipTLSVerify`, or TLS files without `ca.pem`.
fn context_tls(
    host: &Host,
    skip_verify: bool,
    tls_dir: &Path,
    what: &str,
) -> Result<Option<TlsFiles>> {
    match host {
        Host::Tcp(_) if skip_verify => Err(Error::invalid(
            what,
            "SkipTLSVerify is set; an engine whose certificate is not verified is not supported: give the context the engine's CA (docker context update --docker ca=...)",
        )),
        Host::Tcp(_) if tls_dir.join("ca.pem").exists() => Ok(Some(TlsFiles::from_dir(tls_dir))),
        Host::Tcp(_) if tls_dir.exists() => Err(Error::invalid(
            what,
            format!("has TLS files but no ca.pem in {}; the engine must be verified against its CA", tls_dir.display()),
        )),
        _ => Ok(None),
    }
}

/// A JSON file; `None` when it does not exist.
fn read_json(file: &Path) -> Result<Option<Value>> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("read {}", file.display()), e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::invalid(file.display().to_string(), format!("not JSON: {e}")))
}

/// A member of a JSON object as Go reads it: the exact key, else one in another letter case.
fn get_ci<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    let map = value.as_object()?;
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

#[cfg(test)]
mod tests;

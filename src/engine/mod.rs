//! A blocking Docker Engine API client: no async runtime, one hand-written HTTP/1.1 path over a
//! unix socket, TCP (with TLS and client certificates) or SSH, keep-alive reuse for ordinary
//! calls, and the exec hijack on the same path. The engine is found as the docker CLI finds it
//! (`DOCKER_HOST`, docker contexts, the platform socket): see [`EngineOptions::from_env`].
//!
//! ```no_run
//! use herdctl_container::engine::{Engine, ExecSpec};
//! # fn main() -> herdctl_container::Result<()> {
//! let engine = Engine::connect()?; // DOCKER_HOST, a docker context, else /var/run/docker.sock
//! println!("engine API {}", engine.api_version());
//! let spec = ExecSpec::new(["echo", "hi"]);
//! let out = engine.exec_run("my-container", &spec, b"")?;
//! assert_eq!(out.stdout, b"hi\n");
//! # Ok(()) }
//! ```
//!
//! Every call returns when it is done or when its deadline passes
//! ([`EngineOptions::call_timeout`]); calls that block by nature (wait, pull, import, an exec's
//! output) have no deadline unless the caller gives one. Errors are [`crate::Error`]s that name
//! the call and carry the daemon's own words.

mod address;
mod call;
mod command;
mod container_models;
mod containers;
pub(crate) mod create_models;
mod dial;
mod errors;
mod exec;
mod frames;
mod hijack;
mod http;
mod images;
mod log;
mod ssh;
mod system;
mod tls;
mod transport;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub use address::{AddressSource, ContextChoice, DEFAULT_SOCKET};
pub use container_models::{
    ContainerConfig, ContainerHostConfig, ContainerInspect, ContainerState, ContainerSummary,
    DeviceMapping, MountPoint, ProcessList,
};
pub use containers::{
    KillOutcome, MemoryStats, RemoveOutcome, StartOutcome, StopOutcome, WaitCondition, WaitStatus,
    Waiter,
};
pub use dial::dial_stdio;
pub use exec::{ExecAbort, ExecInput, ExecInspect, ExecOutput, ExecResult, ExecSpec, ExecStream};
pub use frames::Stream;
pub use images::{ImageConfig, ImageInfo, PullProgress};
use log::process_env_redactor;
pub use log::{log_level_from_env, stderr_logger, CallEvent, CallObserver, LogLevel, LOG_ENV};
pub use ssh::SshTarget;
pub use system::{EngineInfo, EngineRuntime, EngineVersion};
pub use tls::TlsFiles;
pub use transport::Host;

use call::Req;
use transport::{Conn, Dialer};

/// The oldest API version this client speaks: Docker 20.10 and Podman 4 answer 1.41.
pub const CLIENT_MIN_API: u32 = 41;
/// The newest API version this client speaks. Newer daemons (Docker 29 accepts 1.44 and up) are
/// asked for this one.
pub const CLIENT_MAX_API: u32 = 47;

/// How to reach the engine and how long to wait for it.
#[derive(Clone)]
pub struct EngineOptions {
    /// Where the engine listens. Default: `unix:///var/run/docker.sock`.
    pub host: Host,
    /// TLS for a `tcp://` host: the engine's CA and this client's certificate. Default: none
    /// (plain TCP); [`EngineOptions::from_env`] sets it from `DOCKER_TLS_VERIFY` and
    /// `DOCKER_CERT_PATH`, or from the context's TLS files.
    pub tls: Option<TlsFiles>,
    /// Options for the system `ssh` client of an `ssh://` host, each one argument starting with
    /// `-` (`-i/path/key`, `-oPort=2222`, `-F/etc/fleet/ssh_config`), placed before docker's own
    /// (`-oConnectTimeout=`, `-T`) and ours (`-oBatchMode=yes`: nothing may wait for a
    /// password). Default: none (`~/.ssh/config` is the usual place for them).
    pub ssh_options: Vec<String>,
    /// A herdctl-container CLI to reach a TLS engine through (`herdctl-container dial-stdio`, a
    /// process per connection, as `ssh` is), instead of TLS in this process: for builds without
    /// the `tls` feature, like the Node addon (whose package sets the CLI beside it). Default:
    /// none.
    pub tls_helper: Option<PathBuf>,
    /// Where [`EngineOptions::host`] came from, as `doctor` shows it. Default:
    /// [`AddressSource::Default`].
    pub source: AddressSource,
    /// How long a TCP connect (and TLS handshake) may take (a unix connect succeeds or fails at
    /// once; ssh gets it as its `ConnectTimeout`). Default: 5 s.
    pub connect_timeout: Duration,
    /// The deadline of each ordinary call, from connect to the last byte of the answer. Calls
    /// that block by nature (wait, pull, import, an exec's output) have none unless given one.
    /// Default: 60 s.
    pub call_timeout: Duration,
    /// Receives one [`CallEvent`] per call (a debug log). Default: none; [`EngineOptions::from_env`]
    /// sets a stderr printer when `HERDCTL_CONTAINER_LOG=debug`.
    pub on_call: Option<CallObserver>,
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("host", &self.host)
            .field("tls", &self.tls)
            .field("ssh_options", &self.ssh_options)
            .field("tls_helper", &self.tls_helper)
            .field("source", &self.source)
            .field("connect_timeout", &self.connect_timeout)
            .field("call_timeout", &self.call_timeout)
            .field("on_call", &self.on_call.is_some())
            .finish()
    }
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions {
            host: Host::Unix(PathBuf::from(DEFAULT_SOCKET)),
            tls: None,
            ssh_options: Vec::new(),
            tls_helper: None,
            source: AddressSource::Default,
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(60),
            on_call: None,
        }
    }
}

impl EngineOptions {
    /// The defaults, with the engine the docker CLI would use: `DOCKER_HOST` (`unix://`,
    /// `tcp://`, `ssh://`; a `tcp://` host speaks TLS when `DOCKER_TLS_VERIFY` is set, with the
    /// files of `DOCKER_CERT_PATH`), else the docker context named by `DOCKER_CONTEXT`, else the
    /// current context of `~/.docker/config.json`, else `/var/run/docker.sock`; when that socket
    /// does not exist, rootless Docker's or Podman's socket (see [`AddressSource::Fallback`]).
    /// [`EngineOptions::source`] says which. With `HERDCTL_CONTAINER_LOG=debug`, each call is
    /// printed to stderr (redacted of this process's secret-looking env values).
    pub fn from_env() -> crate::Result<EngineOptions> {
        let mut opts = EngineOptions::from_env_lookup(&process_env)?;
        if log_level_from_env()? == LogLevel::Debug {
            opts.on_call = Some(stderr_logger("herdctl-container: ", process_env_redactor()));
        }
        Ok(opts)
    }

    /// [`EngineOptions::from_env`], reading the variables (`DOCKER_HOST`, `DOCKER_CONTEXT`,
    /// `DOCKER_CONFIG`, `HOME`, ...) through `env` rather than from the process: for a caller
    /// that keeps a fleet's environment apart from its own, and for tests.
    pub fn from_env_lookup(env: &dyn Fn(&str) -> Option<String>) -> crate::Result<EngineOptions> {
        let resolved = address::Resolver::new(env).resolve()?;
        Ok(EngineOptions::resolved(resolved))
    }

    /// The defaults, with this engine: an address (`unix:///path`, `tcp://host:port`, with TLS
    /// from `DOCKER_TLS_VERIFY` / `DOCKER_CERT_PATH` as `docker -H` takes it, or
    /// `ssh://[user@]host[:port][/remote.sock]`) or the name of a docker context.
    pub fn for_address(address: &str) -> crate::Result<EngineOptions> {
        EngineOptions::for_address_as(address, "engine address")
    }

    /// [`EngineOptions::for_address`] with the address given as the argument `field` (like
    /// `options.dockerHost`): an address that is wrong itself is an
    /// [`crate::Error::InvalidArgument`] naming `field`; a context's broken files, or TLS
    /// variables, stay [`crate::Error::InvalidConfig`] naming what holds them.
    pub fn for_address_as(address: &str, field: &str) -> crate::Result<EngineOptions> {
        let env = process_env;
        let resolved = address::Resolver::new(&env).given(address, field)?;
        Ok(EngineOptions::resolved(resolved))
    }

    fn resolved(r: address::Resolved) -> EngineOptions {
        EngineOptions {
            host: r.host,
            tls: r.tls,
            source: r.source,
            ..EngineOptions::default()
        }
    }

    /// Whether the engine runs on this machine, as far as its address tells: a unix socket, or
    /// TCP to a loopback address. An `ssh://` engine is taken as another machine's, whatever its
    /// host name. Bind mounts name the engine machine's paths, and the injected MCP servers'
    /// unix sockets reach only a local engine's containers.
    pub fn is_local(&self) -> bool {
        match &self.host {
            Host::Unix(_) => true,
            Host::Tcp(addr) => {
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                host.eq_ignore_ascii_case("localhost")
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            Host::Ssh(_) => false,
        }
    }

    /// The address and, for TLS, its files: `tcp://127.0.0.1:2376 (TLS verified against ...)`.
    pub fn describe(&self) -> String {
        match &self.tls {
            Some(tls) => format!("{} ({tls})", self.host),
            None => self.host.to_string(),
        }
    }
}

/// The process's environment, as the address resolver reads it.
fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// A handle on one Docker engine. Cheap to clone (clones share one pool of idle connections),
/// `Send` and `Sync`: use it from any thread.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    opts: EngineOptions,
    dialer: Dialer,
    /// The negotiated minor version (the major is 1).
    minor: AtomicU32,
    pool: Mutex<Vec<Conn>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("host", &self.inner.opts.host)
            .field("api_version", &self.api_version())
            .finish()
    }
}

impl Engine {
    /// Connects to the engine the docker CLI would use ([`EngineOptions::from_env`]: `DOCKER_HOST`,
    /// a docker context, else `/var/run/docker.sock`) and negotiates the API version.
    pub fn connect() -> crate::Result<Engine> {
        Engine::with_options(EngineOptions::from_env()?)
    }

    /// Connects to the engine on this unix socket, with default timeouts.
    pub fn unix(path: impl Into<PathBuf>) -> crate::Result<Engine> {
        Engine::with_options(EngineOptions {
            host: Host::Unix(path.into()),
            ..EngineOptions::default()
        })
    }

    /// Connects with these options: pings the engine and negotiates the API version, so an engine
    /// that is absent or too old is reported here, not at the first real call.
    pub fn with_options(opts: EngineOptions) -> crate::Result<Engine> {
        let engine = Engine {
            inner: Arc::new(Inner {
                dialer: Dialer::new(&opts)?,
                opts,
                minor: AtomicU32::new(CLIENT_MAX_API),
                pool: Mutex::new(Vec::new()),
            }),
        };
        engine.negotiate()?;
        Ok(engine)
    }

    /// The API version in use, like `1.41`: the lower of the daemon's and [`CLIENT_MAX_API`].
    pub fn api_version(&self) -> String {
        format!("1.{}", self.inner.minor.load(Ordering::Relaxed))
    }

    /// Where this engine listens.
    pub fn host(&self) -> &Host {
        &self.inner.opts.host
    }

    /// The options this engine was made with.
    pub fn options(&self) -> &EngineOptions {
        &self.inner.opts
    }

    /// Pings, reads the daemon's version from the `API-Version` header (or `/version`), and picks
    /// the version to speak. Returns the minor version picked.
    fn negotiate(&self) -> crate::Result<u32> {
        let mut req = Req::new("GET", "/_ping");
        req.versioned = false;
        let response = self.send(req)?;
        if response.status() != 200 {
            return Err(response.error("", &[]));
        }
        let header = response.head.header("api-version").map(str::to_string);
        let call = response.call().to_string();
        response.finish()?;
        let daemon = match header {
            Some(v) => parse_minor(&v).ok_or_else(|| crate::Error::Protocol {
                call,
                detail: format!("API-Version header {v:?} is not 1.NN"),
            })?,
            None => {
                let v = self.raw_version()?;
                parse_minor(&v.api_version).ok_or_else(|| crate::Error::Protocol {
                    call: "GET /version".to_string(),
                    detail: format!("ApiVersion {:?} is not 1.NN", v.api_version),
                })?
            }
        };
        if daemon < CLIENT_MIN_API {
            return Err(self.unsupported_version());
        }
        let chosen = daemon.min(CLIENT_MAX_API);
        self.inner.minor.store(chosen, Ordering::Relaxed);
        Ok(chosen)
    }

    /// The error for a daemon whose range does not meet ours, with both ranges.
    fn unsupported_version(&self) -> crate::Error {
        let (engine_min, engine_max) = match self.raw_version() {
            Ok(v) => (
                v.min_api_version.unwrap_or_else(|| "unknown".into()),
                v.api_version,
            ),
            Err(_) => ("unknown".into(), "unknown".into()),
        };
        crate::Error::UnsupportedApiVersion {
            engine_min,
            engine_max,
            client_min: format!("1.{CLIENT_MIN_API}"),
            client_max: format!("1.{CLIENT_MAX_API}"),
        }
    }

    fn raw_version(&self) -> crate::Result<EngineVersion> {
        let mut req = Req::new("GET", "/version");
        req.versioned = false;
        let response = self.send(req)?;
        if response.status() != 200 {
            return Err(response.error("", &[]));
        }
        response.json()
    }
}

/// `1.41` -> 41; other majors are not spoken.
fn parse_minor(v: &str) -> Option<u32> {
    let (major, minor) = v.trim().split_once('.')?;
    if major != "1" {
        return None;
    }
    minor.parse().ok()
}

/// Deserializes `null` as the type's default: the engine sends `null` for empty lists and maps.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Checks a container or exec name or id before it goes into a path: `[A-Za-z0-9][A-Za-z0-9_.-]*`,
/// with an optional leading `/` (as the engine lists names).
pub(crate) fn check_id(field: &str, value: &str) -> crate::Result<()> {
    let name = value.strip_prefix('/').unwrap_or(value);
    let ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(crate::Error::invalid(
            field,
            format!("{value:?} is not a name or id; expected letters, digits, '_', '.' or '-'"),
        ))
    }
}

/// Checks an image reference before it goes into a path or query: `[A-Za-z0-9._/:@-]`, not
/// starting with `/` and without `..`.
pub(crate) fn check_image(field: &str, value: &str) -> crate::Result<()> {
    let ok = !value.is_empty()
        && !value.starts_with('/')
        && !value.contains("..")
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/:@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(crate::Error::invalid(
            field,
            format!("{value:?} is not an image reference; expected like 'name:tag' or 'host:port/name:tag'"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_minor("1.41"), Some(41));
        assert_eq!(parse_minor(" 1.47 "), Some(47));
        assert_eq!(parse_minor("2.0"), None);
        assert_eq!(parse_minor("141"), None);
        assert_eq!(parse_minor("1.x"), None);
    }

    #[test]
    fn ids_and_images_are_checked_before_they_reach_a_path() {
        assert!(check_id("container", "herdctl-agent_1.x-2").is_ok());
        assert!(check_id("container", "/herdctl-agent").is_ok());
        for bad in ["", "/", "../images/x", "a/b", "a?b", "-x", "a b"] {
            let e = check_id("container", bad).unwrap_err();
            assert!(e.to_string().starts_with("invalid container: "), "{e}");
        }
        assert!(check_image("image", "127.0.0.1:5000/herdctl/runtime:latest").is_ok());
        assert!(check_image("image", "busybox@sha256:abc").is_ok());
        for bad in ["", "/abs", "a/../b", "a b", "a?x=1"] {
            assert!(check_image("image", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn engine_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Engine>();
        assert!(std::mem::size_of::<Engine>() <= 8);
    }
}

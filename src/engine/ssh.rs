//! An engine behind SSH, reached the way the docker CLI reaches it: the system `ssh` client runs
//! `docker system dial-stdio` on the remote machine, and HTTP flows over the process's stdin and
//! stdout. One `ssh` process per connection; connections are pooled like any other.
//!
//! Why the system client and not an SSH library: it already knows the user's keys, agent,
//! `~/.ssh/config` (ProxyJump, ControlMaster) and `known_hosts`, which is what operators expect
//! `ssh://` to mean, and it keeps a crypto stack out of this crate.
//!
//! The process is a [`CommandStream`]: the remote `dial-stdio` passes a half-close on to the
//! engine (the end of an exec's stdin), as docker's does.

use std::fmt;
use std::io;
use std::time::Duration;

use super::command::CommandStream;
use crate::{Error, Result};

/// An `ssh://[user@]host[:port][/path/to/remote.sock]` address, as the docker CLI reads it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SshTarget {
    /// The remote user (`-l`); `None` for ssh's own choice (`~/.ssh/config`, else the local user).
    pub user: Option<String>,
    /// The remote host name or IP address (IPv6 without brackets).
    pub host: String,
    /// The remote port (`-p`); `None` for ssh's own choice.
    pub port: Option<u16>,
    /// The engine's socket on the remote machine; `None` for the remote `docker`'s default.
    pub socket: Option<String>,
}

impl SshTarget {
    /// Parses `ssh://...`. A password in the address is refused (and not repeated in the error).
    pub(crate) fn parse(value: &str, field: &str) -> Result<SshTarget> {
        let bad = |problem: String| Error::invalid(field, problem);
        let rest = value
            .strip_prefix("ssh://")
            .ok_or_else(|| bad(format!("{value:?} is not ssh://[user@]host[:port]")))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (user, host_port) = match authority.rsplit_once('@') {
            Some((user, _)) if user.contains(':') => {
                return Err(bad(
                    "the ssh:// address holds a password, which is not supported (and not shown here); use a key or ssh-agent".into(),
                ))
            }
            Some((user, host)) => (Some(user), host),
            None => (None, authority),
        };
        if rest.contains(['?', '#']) {
            return Err(bad(format!(
                "{value:?} has a query or fragment; expected ssh://[user@]host[:port][/path/to/docker.sock]"
            )));
        }
        if let Some(user) = user {
            if !plain_word(user) {
                return Err(bad(format!("{value:?} has a user name ssh would not take; expected letters, digits, '.', '_' or '-'")));
            }
        }
        let (host, port) = split_host_port(host_port)
            .ok_or_else(|| bad(format!("{value:?} is not ssh://[user@]host[:port]")))?;
        let socket = match path.trim_end_matches('/') {
            "" => None,
            p if p.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
                && !p.contains("..") =>
            {
                Some(p.to_string())
            }
            _ => {
                return Err(bad(format!(
                    "{value:?} has a socket path with characters a remote shell would read; expected letters, digits, '/', '.', '_' or '-'"
                )))
            }
        };
        Ok(SshTarget {
            user: user.map(str::to_string),
            host,
            port,
            socket,
        })
    }

    /// The arguments of `ssh`: the caller's `options`, then docker's (`ConnectTimeout`, `-T`) and
    /// ours (`BatchMode`: a password prompt would hang a job), then `-l`, `-p`, `--`, the host
    /// and the remote command.
    pub(crate) fn args(&self, options: &[String], connect_timeout: Duration) -> Vec<String> {
        let mut args: Vec<String> = options.to_vec();
        let given = |key: &str| {
            options
                .iter()
                .any(|o| o.to_ascii_lowercase().contains(&key.to_ascii_lowercase()))
        };
        if !given("ConnectTimeout") {
            let secs = connect_timeout.as_secs_f64().ceil().max(1.0) as u64;
            args.push(format!("-oConnectTimeout={secs}"));
        }
        if !given("BatchMode") {
            args.push("-oBatchMode=yes".into());
        }
        args.push("-T".into());
        if let Some(user) = &self.user {
            args.extend(["-l".into(), user.clone()]);
        }
        if let Some(port) = self.port {
            args.extend(["-p".into(), port.to_string()]);
        }
        args.extend(["--".into(), self.host.clone(), "docker".into()]);
        if let Some(socket) = &self.socket {
            args.push(format!("--host=unix://{socket}"));
        }
        args.extend(["system".into(), "dial-stdio".into()]);
        args
    }
}

impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ssh://")?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        if let Some(socket) = &self.socket {
            f.write_str(socket)?;
        }
        Ok(())
    }
}

fn plain_word(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`. The host may not start with '-' (ssh would read
/// an option; `--` already stops that, this says so early).
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            a => Some(a.strip_prefix(':')?),
        };
        let v6 = |b: u8| b.is_ascii_hexdigit() || b":.".contains(&b);
        if host.is_empty() || !host.bytes().all(v6) {
            return None;
        }
        (host, port)
    } else {
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if !plain_word(host) {
            return None;
        }
        (host, port)
    };
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p != 0)?),
    };
    Some((host.to_string(), port))
}

/// Starts `ssh` with `args` (see [`SshTarget::args`]) for `target`.
pub(crate) fn spawn(target: &SshTarget, args: &[String]) -> io::Result<CommandStream> {
    CommandStream::spawn(
        "ssh",
        args,
        &target.to_string(),
        &format!(
            "the remote machine needs docker 18.09 or later on the PATH of its login; try 'ssh {target} docker system dial-stdio' by hand"
        ),
        "the ssh client is not installed (no 'ssh' on PATH); install openssh-client",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<SshTarget> {
        SshTarget::parse(s, "DOCKER_HOST")
    }

    #[test]
    fn addresses_parse_like_the_docker_cli() {
        let t = parse("ssh://me@build-1.example.com:2222").unwrap();
        assert_eq!(t.user.as_deref(), Some("me"));
        assert_eq!(t.host, "build-1.example.com");
        assert_eq!(t.port, Some(2222));
        assert_eq!(t.socket, None);
        assert_eq!(t.to_string(), "ssh://me@build-1.example.com:2222");
        let t = parse("ssh://box/run/user/1000/docker.sock").unwrap();
        assert_eq!((t.user.as_deref(), t.port), (None, None));
        assert_eq!(t.socket.as_deref(), Some("/run/user/1000/docker.sock"));
        let t = parse("ssh://root@[::1]:22/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.socket.as_deref()),
            ("::1", Some(22), None)
        );
        assert_eq!(t.to_string(), "ssh://root@[::1]:22");
    }

    #[test]
    fn bad_addresses_are_refused_without_their_password() {
        let e = parse("ssh://me:hunter2hunter2@box").unwrap_err();
        assert!(e.to_string().contains("holds a password"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        for bad in [
            "ssh://",
            "ssh://-oProxyCommand=x",
            "ssh://box:0",
            "ssh://box:99999",
            "ssh://box?x=1",
            "ssh://box/run/$(reboot).sock",
            "ssh://box/a b",
            "ssh://-l@box",
            "ssh://[::1",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(
                e.to_string().starts_with("invalid DOCKER_HOST: "),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn arguments_are_dockers_with_batch_mode() {
        let t = parse("ssh://me@box:2222/var/run/other.sock").unwrap();
        assert_eq!(
            t.args(
                &["-F/etc/fleet/ssh_config".into()],
                Duration::from_millis(4500)
            ),
            [
                "-F/etc/fleet/ssh_config",
                "-oConnectTimeout=5",
                "-oBatchMode=yes",
                "-T",
                "-l",
                "me",
                "-p",
                "2222",
                "--",
                "box",
                "docker",
                "--host=unix:///var/run/other.sock",
                "system",
                "dial-stdio"
            ]
        );
        let args = parse("ssh://box").unwrap().args(
            &["-o ConnectTimeout=30".into(), "-oBatchMode=no".into()],
            Duration::ZERO,
        );
        assert_eq!(
            args,
            [
                "-o ConnectTimeout=30",
                "-oBatchMode=no",
                "-T",
                "--",
                "box",
                "docker",
                "system",
                "dial-stdio"
            ]
        );
    }
}

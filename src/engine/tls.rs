//! TLS to a `tcp://` engine (`DOCKER_TLS_VERIFY`, or a docker context's TLS files): the engine's
//! certificate verified against its CA, and this client's certificate when the engine asks for one
//! (`dockerd --tlsverify` does).
//!
//! In this process with the `tls` feature ([`session`]: rustls). Without it, through a
//! herdctl-container CLI built with it ([`helper_args`]: `herdctl-container dial-stdio`, one
//! process per connection, like `ssh`): the Node addon is built so, since rustls and ring would
//! add 1.4 MB to it (2.42 -> 3.81 MB stripped, measured), over issue 13's 3 MiB, while the CLI
//! that ships beside it has TLS anyway.

use std::fmt;
use std::path::{Path, PathBuf};

#[cfg(feature = "tls")]
pub(crate) mod session;

/// The certificate files of a TLS engine, in docker's layout (`ca.pem`, `cert.pem`, `key.pem`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed the engine's certificate. Required: the engine is always verified
    /// (there is no `--tls` without `--tlsverify` here).
    pub ca: PathBuf,
    /// This client's certificate and its private key, when the engine wants one.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// The files of a directory in docker's layout: `ca.pem`, and `cert.pem` with `key.pem` when
    /// both exist (the docker CLI also goes without a client certificate when they do not).
    pub fn from_dir(dir: impl AsRef<Path>) -> TlsFiles {
        let dir = dir.as_ref();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        TlsFiles {
            ca: dir.join("ca.pem"),
            client: (cert.exists() && key.exists()).then_some((cert, key)),
        }
    }

    /// The arguments of `herdctl-container dial-stdio` for the engine at `addr` (`host:port`).
    pub(crate) fn helper_args(&self, addr: &str) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "dial-stdio".into(),
            format!("tcp://{addr}").into(),
            "--tlscacert".into(),
            self.ca.clone().into(),
        ];
        if let Some((cert, key)) = &self.client {
            args.extend([
                "--tlscert".into(),
                cert.clone().into(),
                "--tlskey".into(),
                key.clone().into(),
            ]);
        }
        args
    }
}

impl fmt::Display for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS verified against {}", self.ca.display())?;
        match &self.client {
            Some((cert, _)) => write!(f, ", client certificate {}", cert.display()),
            None => write!(f, ", no client certificate"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_files_are_used_only_in_pairs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), "").unwrap();
        assert_eq!(TlsFiles::from_dir(dir.path()).client, None);
        std::fs::write(dir.path().join("key.pem"), "").unwrap();
        assert!(TlsFiles::from_dir(dir.path()).client.is_some());
    }

    #[test]
    fn the_helper_gets_the_address_and_the_files() {
        let files = TlsFiles {
            ca: "/c/ca.pem".into(),
            client: Some(("/c/cert.pem".into(), "/c/key.pem".into())),
        };
        assert_eq!(
            files.helper_args("10.0.0.5:2376"),
            [
                "dial-stdio",
                "tcp://10.0.0.5:2376",
                "--tlscacert",
                "/c/ca.pem",
                "--tlscert",
                "/c/cert.pem",
                "--tlskey",
                "/c/key.pem"
            ]
            .map(std::ffi::OsString::from)
        );
    }
}

//! `dial-stdio`, an internal command (not in the help): `herdctl-container dial-stdio
//! tcp://HOST:PORT --tlscacert CA [--tlscert CERT --tlskey KEY]` connects to a TLS engine and
//! carries stdin to it and its answers to stdout, as `docker system dial-stdio` does. The Node
//! addon is built without TLS (issue 13's size) and reaches TLS engines through it.

use std::ffi::OsString;
use std::path::PathBuf;

use herdctl_container::engine::{dial_stdio, EngineOptions, Host, TlsFiles};
use herdctl_container::Error;

use super::Failure;

/// Runs the command with the arguments after `dial-stdio`.
pub fn run(args: &[OsString]) -> Result<u8, Failure> {
    let usage = || {
        Error::argument(
            "dial-stdio",
            "expected tcp://HOST:PORT --tlscacert CA [--tlscert CERT --tlskey KEY]",
        )
    };
    let (address, rest) = args.split_first().ok_or_else(usage)?;
    let address = address.to_str().ok_or_else(usage)?;
    let host = Host::parse(address)?;
    let (mut ca, mut cert, mut key) = (None, None, None);
    let mut rest = rest.iter();
    while let Some(flag) = rest.next() {
        let slot = match flag.to_str() {
            Some("--tlscacert") => &mut ca,
            Some("--tlscert") => &mut cert,
            Some("--tlskey") => &mut key,
            _ => return Err(usage().into()),
        };
        *slot = Some(PathBuf::from(rest.next().ok_or_else(usage)?));
    }
    let client = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err(usage().into()),
    };
    let options = EngineOptions {
        host,
        tls: ca.map(|ca| TlsFiles { ca, client }),
        ..EngineOptions::default()
    };
    dial_stdio(options)?;
    Ok(0)
}

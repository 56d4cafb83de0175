//! The host: everything the runner learns from or does to this machine's file system before a
//! container exists. Who this process is; the job's directories (sessions, MCP sockets) with
//! their modes and owners; the credentials copy; the identity (`dev:inode`) of each mount source;
//! the transcripts linked where herdctl looks. The plan below ([`crate::plan`]) decides what to
//! mount; this layer makes it real and tells the plan what it found.

mod credentials_copy;
mod mounts;
mod sessions;
pub(crate) mod user;

pub(crate) use mounts::{check_mount_sources, mcp_socket_dir, mount_ids, prepare_session_dir};
pub(crate) use sessions::{claim_legacy_transcript, link_new_transcripts};
pub use user::{host_user, process_user, resolve_docker_config, resolve_layered};

use crate::plan::HostPaths;

/// This machine, where the engine runs, answering [`crate::plan::verify`]'s questions about host paths.
pub(crate) struct ThisHost;

impl HostPaths for ThisHost {
    fn same_file(&self, a: &str, b: &str) -> bool {
        a == b
            || std::fs::canonicalize(a)
                .is_ok_and(|a| std::fs::canonicalize(b).is_ok_and(|b| a == b))
    }

    fn device(&self, path_on_host: &str) -> std::result::Result<(), String> {
        crate::config::check_device(path_on_host).map(drop)
    }
}

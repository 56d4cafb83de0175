//! The host: everything the runner learns from or does to this machine's file system before a
//! container exists. Who this process is; the job's directories (sessions, MCP sockets) with
//! their modes and owners; the credentials copy; the identity (`dev:inode`) of each mount source;
//! the transcripts linked where herdctl looks. The plan below ([`crate::plan`]) decides what to
//! mount; this layer makes it real and tells the plan what it found.

mod credentials_copy;
mod mounts;
mod sessions;
pub(crate) mod user;

pub(crate) use mounts::{mcp_socket_dir, mount_ids, prepare_session_dir};
pub(crate) use sessions::{claim_legacy_transcript, link_new_transcripts};
pub use user::{host_user, process_user, resolve_docker_config, resolve_layered};

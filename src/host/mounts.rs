//! The host side of a job's mounts: the paths must exist, the session and MCP socket
//! directories are made with their modes and owners, the credentials copy is written, symlinks
//! are resolved for the plan, and each source's identity is read for the stale-mount check.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use serde_json::Value;

use crate::config::{DockerConfig, EngineSockets, ALLOW_HOW};
use crate::host::user::process_user;
use crate::plan::mounts::{absolute, agent_session_dir, mcp_dir_of, MountSources, RealPaths};
use crate::plan::{MountPlan, MountRequest, MountRole};
use crate::{Error, Result};

impl MountPlan {
    /// Checks and prepares the host side: the workspace and every volume's host path must exist
    /// (an error names the field and the path); the session directory is created (mode 0700) when
    /// missing and, when this process is root, given to the container user; the credentials copy
    /// is written.
    ///
    /// The state directory is where the runner keeps what its next containers mount (session and
    /// socket directories, the credentials copy): a job that could rename or replace anything
    /// there could have the runner mount, chown or overwrite any host path. herdctl keeps it in
    /// `.herdctl` beside the fleet file, often inside an agent's working directory, so wherever
    /// the workspace or a volume holds it, an empty read-only tmpfs is mounted over it: the job
    /// sees an empty directory it cannot remove or rename (a mount point), and nothing of the
    /// runner's. That protects it fully when it sits at the top of a read-write mount (a
    /// directory between could be renamed, and a new one made in its place) or anywhere in a
    /// read-only one; the other cases are refused without the opt-in.
    ///
    /// Whether the container user can use the workspace is a separate step,
    /// [`MountPlan::check_workspace_access`], taken after the runner's refusals of dangerous
    /// sources: its advice (`chown` the workspace) must never be given for `/sys` or a socket.
    pub fn build(req: &MountRequest<'_>) -> Result<MountPlan> {
        let config = req.config;
        let workspace = absolute("working_directory", req.workspace)?;
        must_be_dir("working_directory", &workspace)?;
        let state_dir = absolute("state_dir", req.state_dir)?;
        let session_dir = agent_session_dir(&state_dir, req.agent, req.layout);
        prepare_session_dir(&session_dir, config)?;
        let mcp_dir = mcp_socket_dir(&state_dir, req.agent)?;
        let credentials_copy = match req.credentials {
            Some(creds) => creds
                .write_container_copy(Path::new(&state_dir), req.agent, config.user)?
                .map(|copy| copy.to_string_lossy().into_owned()),
            None => None,
        };
        for (i, v) in config.volumes.iter().enumerate() {
            fs::metadata(&v.host_path).map_err(|e| {
                Error::invalid(
                    format!("docker.volumes[{i}]"),
                    format!(
                        "host path {} cannot be used ({}); create it first (the engine refuses a missing source)",
                        v.host_path,
                        io_reason(&e)
                    ),
                )
            })?;
        }
        let real = real_paths(
            [workspace.as_str(), state_dir.as_str()]
                .into_iter()
                .chain(config.volumes.iter().map(|v| v.host_path.as_str())),
        );
        let sources = MountSources {
            workspace,
            state_dir,
            session_dir,
            mcp_dir,
            credentials_copy,
            config,
        };
        Ok(MountPlan::assemble(sources, &real))
    }

    /// Refuses a workspace the container user cannot use as it is mounted, by the permission
    /// bits the kernel will apply; the runner calls it once the sources are known to be safe.
    pub fn check_workspace_access(&self, config: &DockerConfig) -> Result<()> {
        match self
            .mounts()
            .iter()
            .find(|m| m.role == MountRole::Workspace)
        {
            Some(m) => check_workspace_access(&m.source, config),
            None => Ok(()),
        }
    }
}

/// Refuses, without the opt-in, a workspace or volume whose host path is an engine's socket, a
/// directory holding one (under any name: the sockets are compared by inode), or any other unix
/// socket: a job that can reach the engine's socket can drive the engine, which is root on the
/// host, whatever the container's own settings (a read-only mount does not stop `connect`). The
/// same for a path on, or holding, one of the host's kernel file systems (`/proc`, `/sys`,
/// `/dev`, ...), and for one through which the job could change the runner's state directory
/// (see [`MountPlan::build`]).
pub(crate) fn check_mount_sources(
    mounts: &MountPlan,
    sockets: &EngineSockets,
    allow: bool,
) -> Result<()> {
    if allow {
        return Ok(());
    }
    let field = |role: MountRole| match role {
        MountRole::Workspace => Some("working_directory".to_string()),
        MountRole::Volume(i) => Some(format!("docker.volumes[{i}]")),
        // The runner's own files, under its state directory.
        _ => None,
    };
    for m in mounts.mounts() {
        let Some(field) = field(m.role) else {
            continue;
        };
        if let Some(why) = sockets.door(&m.source) {
            return Err(Error::invalid(field, format!("{why}; {ALLOW_HOW}")));
        }
    }
    if let Some((role, why)) = mounts.exposed_state_dir().first() {
        return Err(Error::invalid(
            field(*role).unwrap_or_default(),
            format!("{why}: a job could replace the runner's own files there (the session and socket directories its next containers mount, the credentials copy it writes), a way out of the container; keep the state directory outside the working directory and the volumes, or at the top of one (it is then hidden from the job), or mount that one read-only; {ALLOW_HOW}"),
        ));
    }
    Ok(())
}

/// Where each of `paths` leads with its symlinks resolved (as the engine resolves a bind
/// mount's source); a path that cannot be resolved is left out (it stands for itself).
fn real_paths<'a>(paths: impl Iterator<Item = &'a str>) -> RealPaths {
    let mut real = BTreeMap::new();
    for p in paths {
        if let Some(r) = fs::canonicalize(p)
            .ok()
            .and_then(|r| r.to_str().map(str::to_string))
        {
            real.insert(p.to_string(), r);
        }
    }
    RealPaths(real)
}

/// The [`labels::MOUNT_IDS`](crate::labels::MOUNT_IDS) value of a mount plan: each source's
/// `dev:inode` (following symlinks, as the engine does), `-` for one that cannot be read now
/// (the engine will say why).
pub(crate) fn mount_ids(plan: &MountPlan) -> String {
    plan.mounts()
        .iter()
        .map(|m| match fs::metadata(&m.source) {
            Ok(meta) => format!("{}:{}", meta.dev(), meta.ino()),
            Err(_) => "-".to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "it does not exist".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

fn must_be_dir(field: &str, path: &str) -> Result<()> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::invalid(field, format!("{path} is not a directory"))),
        Err(e) => Err(Error::invalid(
            field,
            format!(
                "{path} cannot be used ({}); create it or fix the path",
                io_reason(&e)
            ),
        )),
    }
}

/// The container user must be able to use the workspace as it is mounted (read and enter it;
/// write it too when it is mounted rw), or the agent fails halfway through its job with
/// "Permission denied". Checked here, before any container, by the permission bits the kernel
/// will apply: the containers drop every capability, so not even a root user in them overrides
/// them. Supplementary groups and ACLs are not read, so this errs towards refusing; an override
/// that adds capabilities or privilege (`host_config`, behind the opt-in) skips the check.
fn check_workspace_access(workspace: &str, config: &DockerConfig) -> Result<()> {
    let loosened = config
        .host_config_override
        .as_ref()
        .and_then(Value::as_object)
        .is_some_and(|o| {
            // By value, as the gate reads them: `CapAdd: []` or `Privileged: false` loosen
            // nothing, and need no opt-in.
            o.iter().any(|(k, v)| {
                let adds =
                    k.eq_ignore_ascii_case("CapAdd") || k.eq_ignore_ascii_case("Capabilities");
                (adds && v.as_array().is_some_and(|a| !a.is_empty()))
                    || (k.eq_ignore_ascii_case("Privileged") && v.as_bool() == Some(true))
            })
        });
    if loosened {
        return Ok(());
    }
    let meta = fs::metadata(workspace)
        .map_err(|e| Error::io(format!("stat working directory {workspace}"), e))?;
    let user = config.user;
    let mode = meta.mode();
    let granted = if user.uid == meta.uid() {
        (mode >> 6) & 0o7
    } else if user.gid == Some(meta.gid()) {
        (mode >> 3) & 0o7
    } else {
        mode & 0o7
    };
    let read_only = config.workspace_mode.is_read_only();
    let needed = if read_only { 0o5 } else { 0o7 };
    if granted & needed == needed {
        return Ok(());
    }
    let owner = format!("{}:{}", meta.uid(), meta.gid());
    let what = if read_only { "read" } else { "write" };
    let ro_hint = if read_only {
        ""
    } else {
        ", or mount it read-only (workspace_mode: ro)"
    };
    Err(Error::invalid(
        "docker.user",
        format!(
            "the container runs as {user}, which cannot {what} the workspace {workspace} (owned by {owner}, mode {:o}); set docker.user to \"{owner}\" in the fleet config (\"0:0\" runs the agent as root), or give the workspace to {user} (chown -R {user} {workspace}){ro_hint}",
            mode & 0o7777
        ),
    ))
}

/// The agent's MCP socket directory, `<stateDir>/mcp/<agent_dir_name>`, created when missing.
/// Modes are set, not left to the umask: `mcp/` 0700 (no other host user gets past it), the
/// agent's directory 0711 (the container's user, whatever its uid, reaches a socket it is told the
/// name of; containers mount this directory itself, so `mcp/` need not be open to them).
pub(crate) fn mcp_socket_dir(state_dir: &str, agent: &str) -> Result<String> {
    let root = format!("{state_dir}/mcp");
    let dir = mcp_dir_of(state_dir, agent);
    let set = |path: &str, mode: u32| {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
            .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(mode)))
            .map_err(|e| Error::io(format!("create MCP socket directory {path}"), e))
    };
    set(&root, 0o700)?;
    set(&dir, 0o711)?;
    Ok(dir)
}

/// Creates the session directory (0700) and makes sure the container user can write it.
pub(crate) fn prepare_session_dir(dir: &str, config: &DockerConfig) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("create session directory {dir}"), e))?;
    let meta =
        fs::metadata(dir).map_err(|e| Error::io(format!("stat session directory {dir}"), e))?;
    let user = config.user;
    if user.is_root() || meta.uid() == user.uid {
        return Ok(());
    }
    if process_user().is_some_and(|u| u.is_root()) {
        return std::os::unix::fs::chown(dir, Some(user.uid), user.gid).map_err(|e| {
            Error::io(
                format!("give session directory {dir} to uid {}", user.uid),
                e,
            )
        });
    }
    if meta.mode() & 0o002 != 0 {
        return Ok(());
    }
    Err(Error::invalid(
        "docker.user",
        format!(
            "the container runs as uid {}, which cannot write the session directory {dir} (owned by uid {}); run herdctl as that user or as root, or leave docker.user unset",
            user.uid,
            meta.uid()
        ),
    ))
}

#[cfg(test)]
mod tests;

//! The mount plan of a job: what is bind-mounted where, checked against the host's file system.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use serde_json::{json, Value};

use super::{
    agent_dir_name, normalize_path, PathMap, CONTAINER_CREDENTIALS_FILE, CONTAINER_SESSION_DIR,
    CONTAINER_WORKSPACE,
};
use crate::config::{process_user, DockerConfig};
use crate::credentials::Credentials;
use crate::herdctl::mcp::CONTAINER_MCP_DIR;
use crate::{Error, Result};

impl std::str::FromStr for SessionLayout {
    type Err = Error;

    /// `per-agent` or `flat`; an error names the argument `sessionLayout`.
    fn from_str(s: &str) -> Result<SessionLayout> {
        SessionLayout::parse_as(s, "sessionLayout")
    }
}

impl SessionLayout {
    /// `per-agent` or `flat`, given as the argument `field` (an [`Error::InvalidArgument`]
    /// naming it otherwise).
    pub fn parse_as(value: &str, field: &str) -> Result<SessionLayout> {
        match value {
            "per-agent" => Ok(SessionLayout::PerAgent),
            "flat" => Ok(SessionLayout::Flat),
            other => Err(Error::argument(
                field,
                format!("{other:?} is not a session layout; expected \"per-agent\" or \"flat\""),
            )),
        }
    }
}

/// How session directories are laid out under `<stateDir>/docker-sessions/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionLayout {
    /// `<stateDir>/docker-sessions/<agent_dir_name>/` is what the agent's containers see, so one
    /// agent cannot read another's transcripts; agent jobs also give every transcript a second
    /// name (a hard link) in `docker-sessions/` itself, the flat view herdctl's session code
    /// reads. The default.
    #[default]
    PerAgent,
    /// `<stateDir>/docker-sessions/` shared by all agents, where herdctl's existing session
    /// discovery looks.
    Flat,
}

/// What a mount is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountRole {
    /// The agent's working directory at `/workspace`.
    Workspace,
    /// The agent's session directory at [`CONTAINER_SESSION_DIR`].
    Sessions,
    /// The sanitised credentials file at [`CONTAINER_CREDENTIALS_FILE`], read-only.
    Credentials,
    /// The agent's MCP socket directory at [`crate::herdctl::mcp::CONTAINER_MCP_DIR`], read-only.
    McpSockets,
    /// `docker.volumes[i]`.
    Volume(usize),
    /// An empty read-only tmpfs over the runner's state directory where the workspace or a
    /// volume shows it (see [`MountPlan::build`]); its `source` is empty.
    StateDirMask,
}

/// One bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The normalised host path.
    pub source: String,
    /// The normalised container path.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// What it is for.
    pub role: MountRole,
}

impl Mount {
    /// The engine's `HostConfig.Mounts` entry. Always `Mounts`, never `Binds`: with `Binds` the
    /// engine silently creates a missing host directory owned by root; `Mounts` fails instead.
    pub fn to_engine(&self) -> Value {
        if self.role == MountRole::StateDirMask {
            return json!({"Type": "tmpfs", "Target": self.target, "ReadOnly": true});
        }
        json!({"Type": "bind", "Source": self.source, "Target": self.target, "ReadOnly": self.read_only})
    }
}

/// What [`MountPlan::build`] needs.
#[derive(Debug, Clone, Copy)]
pub struct MountRequest<'a> {
    /// The agent's resolved docker config (volumes, workspace mode, user).
    pub config: &'a DockerConfig,
    /// The workspace on the host: an absolute path (see [`crate::workspace_root`]).
    pub workspace: &'a str,
    /// herdctl's state directory (`.herdctl`), absolute.
    pub state_dir: &'a str,
    /// The agent's qualified name.
    pub agent: &'a str,
    /// Per-agent or flat session directories.
    pub layout: SessionLayout,
    /// This job's credentials; for the file source, the sanitised copy is (re)written and mounted.
    pub credentials: Option<&'a Credentials>,
}

/// The bind mounts of a job, in order: workspace, session directory, MCP socket directory,
/// credentials (file source only), then `docker.volumes`, then a mask over the state directory
/// wherever the workspace or a volume shows it. Build it for every job: that rewrites the
/// credentials copy, so a token refreshed on the host reaches a reused container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    mounts: Vec<Mount>,
    session_dir: String,
    /// The workspace or volumes through which a job could still change the state directory,
    /// with why (refused without the opt-in: see `plan::check_mount_sources`).
    exposed: Vec<(MountRole, String)>,
}

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
        let workspace = normalize_path(req.workspace).ok_or_else(|| {
            Error::invalid(
                "working_directory",
                format!(
                    "{} is not an absolute path; expected a path starting with /",
                    crate::config::quote(req.workspace)
                ),
            )
        })?;
        must_be_dir("working_directory", &workspace)?;
        let state_dir = normalize_path(req.state_dir).ok_or_else(|| {
            Error::invalid(
                "state_dir",
                format!(
                    "{} is not an absolute path; expected a path starting with /",
                    crate::config::quote(req.state_dir)
                ),
            )
        })?;

        let session_dir = agent_session_dir(&state_dir, req.agent, req.layout);
        prepare_session_dir(&session_dir, config)?;

        let mut mounts = vec![
            Mount {
                source: workspace,
                target: CONTAINER_WORKSPACE.into(),
                read_only: config.workspace_mode.is_read_only(),
                role: MountRole::Workspace,
            },
            Mount {
                source: session_dir.clone(),
                target: CONTAINER_SESSION_DIR.into(),
                read_only: false,
                role: MountRole::Sessions,
            },
            // Always mounted, though most jobs inject no MCP server: a persistent container
            // cannot gain a mount later, and a mount that came and went with the job's options
            // would change the config hash and replace the container.
            Mount {
                source: mcp_socket_dir(&state_dir, req.agent)?,
                target: CONTAINER_MCP_DIR.into(),
                read_only: true,
                role: MountRole::McpSockets,
            },
        ];
        if let Some(creds) = req.credentials {
            if let Some(copy) =
                creds.write_container_copy(Path::new(&state_dir), req.agent, config.user)?
            {
                mounts.push(Mount {
                    source: copy.to_string_lossy().into_owned(),
                    target: CONTAINER_CREDENTIALS_FILE.into(),
                    read_only: true,
                    role: MountRole::Credentials,
                });
            }
        }
        for (i, v) in config.volumes.iter().enumerate() {
            let field = format!("docker.volumes[{i}]");
            fs::metadata(&v.host_path).map_err(|e| {
                Error::invalid(
                    &field,
                    format!(
                        "host path {} cannot be used ({}); create it first (the engine refuses a missing source)",
                        v.host_path,
                        io_reason(&e)
                    ),
                )
            })?;
            mounts.push(Mount {
                source: v.host_path.clone(),
                target: v.container_path.clone(),
                read_only: v.mode.is_read_only(),
                role: MountRole::Volume(i),
            });
        }
        let mut exposed = Vec::new();
        let mut masks: Vec<Mount> = Vec::new();
        for m in &mounts {
            if !matches!(m.role, MountRole::Workspace | MountRole::Volume(_)) {
                continue;
            }
            let view = state_dir_view(m, &state_dir);
            if let Some(why) = view.unsafe_why {
                exposed.push((m.role, why));
            }
            if let Some(at) = view.at.filter(|at| masks.iter().all(|k| k.target != *at)) {
                masks.push(Mount {
                    source: String::new(),
                    target: at,
                    read_only: true,
                    role: MountRole::StateDirMask,
                });
            }
        }
        mounts.extend(masks);
        Ok(MountPlan {
            mounts,
            session_dir,
            exposed,
        })
    }

    /// The workspace or volumes through which a job could still change the runner's state
    /// directory despite the mask, each with why.
    pub(crate) fn exposed_state_dir(&self) -> &[(MountRole, String)] {
        &self.exposed
    }

    /// A plan of the given mounts, without touching the file system (for hash tests).
    #[cfg(test)]
    pub(crate) fn from_mounts(mounts: Vec<Mount>) -> MountPlan {
        MountPlan {
            mounts,
            session_dir: String::new(),
            exposed: Vec::new(),
        }
    }

    /// Without the MCP socket directory: for an engine on another machine, where a unix socket
    /// of this one cannot reach (injected tools are refused there).
    pub(crate) fn without_mcp_sockets(mut self) -> MountPlan {
        self.mounts.retain(|m| m.role != MountRole::McpSockets);
        self
    }

    /// The mounts, in order.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// The engine's `HostConfig.Mounts` array.
    pub fn engine_mounts(&self) -> Vec<Value> {
        self.mounts.iter().map(Mount::to_engine).collect()
    }

    /// The host session directory (where herdctl finds the transcripts).
    pub fn session_dir(&self) -> &str {
        &self.session_dir
    }

    /// Host/container path translation over the directory mounts (the credentials file and the
    /// MCP sockets are left out: nothing the host needs lives behind them).
    pub fn path_map(&self) -> PathMap {
        PathMap::new(
            self.mounts
                .iter()
                .filter(|m| {
                    !matches!(
                        m.role,
                        MountRole::Credentials | MountRole::McpSockets | MountRole::StateDirMask
                    )
                })
                .map(|m| (m.source.as_str(), m.target.as_str())),
        )
    }
}

/// How a workspace or volume shows the runner's state directory.
#[derive(Debug, Default, PartialEq, Eq)]
struct StateDirView {
    /// Where the container sees the state directory, to mask.
    at: Option<String>,
    /// Why the job could still change the state directory, the mask notwithstanding.
    unsafe_why: Option<String>,
}

/// How bind mount `m` shows `state_dir` (normalised), by its path as written and with its
/// symlinks resolved (which the engine does): both must agree, since a symlink inside a
/// writable mount is the job's to replace.
fn state_dir_view(m: &Mount, state_dir: &str) -> StateDirView {
    let real = |p: &str| {
        fs::canonicalize(p)
            .ok()
            .and_then(|r| r.to_str().map(str::to_string))
            .unwrap_or_else(|| p.to_string())
    };
    let (source, state) = (real(&m.source), real(state_dir));
    let writable = !m.read_only;
    let holds = |outer: &str, inner: &str| crate::paths::is_within(inner, outer);
    if holds(state_dir, &m.source) || holds(&state, &source) {
        return StateDirView {
            at: None,
            unsafe_why: Some(format!(
                "{} is inside the runner's state directory {state_dir}",
                m.source
            )),
        };
    }
    if holds(&source, &state) {
        let rel = state[source.len()..].trim_start_matches('/');
        let at = normalize_path(&format!("{}/{rel}", m.target));
        // A directory between the mount's top and the state directory can be renamed by the
        // job (only a mount point cannot), and another made in its place.
        let lexical = holds(&m.source, state_dir)
            .then(|| state_dir[m.source.len()..].trim_start_matches('/'));
        let unsafe_why = writable
            .then(|| {
                if rel.contains('/') {
                    Some(format!("the runner's state directory {state_dir} is {rel} in it, below a directory the job could rename"))
                } else if lexical.is_some_and(|l| l != rel) {
                    Some(format!("the runner's state directory {state_dir} is reached through a symlink in it"))
                } else {
                    None
                }
            })
            .flatten();
        return StateDirView { at, unsafe_why };
    }
    if writable && holds(&m.source, state_dir) {
        return StateDirView {
            at: None,
            unsafe_why: Some(format!(
                "the runner's state directory {state_dir} is reached through a symlink in it"
            )),
        };
    }
    StateDirView::default()
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

/// The host directory an agent's containers see as their session directory:
/// `<state_dir>/docker-sessions/<agent_dir_name>` (per agent), or `<state_dir>/docker-sessions`
/// (flat). Pure: nothing is created.
pub fn agent_session_dir(state_dir: &str, agent: &str, layout: SessionLayout) -> String {
    let root = format!("{}/docker-sessions", state_dir.trim_end_matches('/'));
    match layout {
        SessionLayout::PerAgent => format!("{root}/{}", agent_dir_name(agent)),
        SessionLayout::Flat => root,
    }
}

impl MountPlan {
    /// Refuses a workspace the container user cannot use as it is mounted, by the permission
    /// bits the kernel will apply; the runner calls it once the sources are known to be safe.
    pub fn check_workspace_access(&self, config: &DockerConfig) -> Result<()> {
        match self.mounts.iter().find(|m| m.role == MountRole::Workspace) {
            Some(m) => check_workspace_access(&m.source, config),
            None => Ok(()),
        }
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
    let dir = format!("{root}/{}", agent_dir_name(agent));
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

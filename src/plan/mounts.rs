//! The mount plan of a job: what is bind-mounted where. Pure: what the host holds (which paths
//! exist, where symlinks lead) is learnt by the host layer and handed in ([`RealPaths`]); the
//! directories are made there too (`host/mounts.rs`, which also holds [`MountPlan::build`]).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::config::DockerConfig;
use crate::credentials::Credentials;
use crate::paths::{
    agent_dir_name, normalize_path, PathMap, CONTAINER_CREDENTIALS_FILE, CONTAINER_MCP_DIR,
    CONTAINER_SESSION_DIR, CONTAINER_WORKSPACE,
};
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
    /// The agent's MCP socket directory at [`CONTAINER_MCP_DIR`], read-only.
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

/// The host's answers the plan needs: each path's target with its symlinks resolved, as the
/// engine will resolve a bind mount's source. Learnt by the host layer (`host/mounts.rs`); a
/// path it could not resolve stands for itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RealPaths(pub BTreeMap<String, String>);

impl RealPaths {
    fn of(&self, path: &str) -> String {
        self.0
            .get(path)
            .cloned()
            .unwrap_or_else(|| path.to_string())
    }
}

/// Where each of a job's mounts comes from, as the host prepared it (see [`MountPlan::build`]).
#[derive(Debug, Clone)]
pub(crate) struct MountSources<'a> {
    /// The workspace, normalised.
    pub workspace: String,
    /// The state directory, normalised.
    pub state_dir: String,
    /// The session directory the containers mount.
    pub session_dir: String,
    /// The agent's MCP socket directory.
    pub mcp_dir: String,
    /// The credentials copy, for the file source on a local engine.
    pub credentials_copy: Option<String>,
    /// The config, for the workspace's mode and the volumes.
    pub config: &'a DockerConfig,
}

impl MountPlan {
    /// The plan of the mounts of [`MountSources`]: the runner's own mounts, the volumes, and a
    /// read-only tmpfs over the state directory wherever the workspace or a volume shows it.
    /// Pure: the host was looked at before (`real`).
    pub(crate) fn assemble(src: MountSources<'_>, real: &RealPaths) -> MountPlan {
        let config = src.config;
        let mut mounts = vec![
            Mount {
                source: src.workspace,
                target: CONTAINER_WORKSPACE.into(),
                read_only: config.workspace_mode.is_read_only(),
                role: MountRole::Workspace,
            },
            Mount {
                source: src.session_dir.clone(),
                target: CONTAINER_SESSION_DIR.into(),
                read_only: false,
                role: MountRole::Sessions,
            },
            // Always mounted, though most jobs inject no MCP server: a persistent container
            // cannot gain a mount later, and a mount that came and went with the job's options
            // would change the config hash and replace the container.
            Mount {
                source: src.mcp_dir,
                target: CONTAINER_MCP_DIR.into(),
                read_only: true,
                role: MountRole::McpSockets,
            },
        ];
        if let Some(copy) = src.credentials_copy {
            mounts.push(Mount {
                source: copy,
                target: CONTAINER_CREDENTIALS_FILE.into(),
                read_only: true,
                role: MountRole::Credentials,
            });
        }
        mounts.extend(config.volumes.iter().enumerate().map(|(i, v)| Mount {
            source: v.host_path.clone(),
            target: v.container_path.clone(),
            read_only: v.mode.is_read_only(),
            role: MountRole::Volume(i),
        }));
        let (masks, exposed) = state_dir_masks(&mounts, &src.state_dir, real);
        mounts.extend(masks);
        MountPlan {
            mounts,
            session_dir: src.session_dir,
            exposed,
        }
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

/// The masks over the state directory that the workspace and volumes need, and those of them
/// through which a job could still change it (each with why).
fn state_dir_masks(
    mounts: &[Mount],
    state_dir: &str,
    real: &RealPaths,
) -> (Vec<Mount>, Vec<(MountRole, String)>) {
    let mut exposed = Vec::new();
    let mut masks: Vec<Mount> = Vec::new();
    for m in mounts {
        if !matches!(m.role, MountRole::Workspace | MountRole::Volume(_)) {
            continue;
        }
        let view = state_dir_view(m, state_dir, real);
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
    (masks, exposed)
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
/// symlinks resolved (which the engine does; the host found them, see [`RealPaths`]): both must agree, since a symlink inside a
/// writable mount is the job's to replace.
fn state_dir_view(m: &Mount, state_dir: &str, real: &RealPaths) -> StateDirView {
    let (source, state) = (real.of(&m.source), real.of(state_dir));
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

/// The agent's MCP socket directory on the host: `<stateDir>/mcp/<agent_dir_name>`.
pub(crate) fn mcp_dir_of(state_dir: &str, agent: &str) -> String {
    format!("{state_dir}/mcp/{}", agent_dir_name(agent))
}

/// `raw`, normalised, or an error naming `field`: the engine and the plan work with absolute
/// paths only.
pub(crate) fn absolute(field: &str, raw: &str) -> Result<String> {
    normalize_path(raw).ok_or_else(|| {
        Error::invalid(
            field,
            format!(
                "{} is not an absolute path; expected a path starting with /",
                crate::error::quote(raw)
            ),
        )
    })
}

#[cfg(test)]
mod tests;

//! Where things live: the container's fixed paths, agent names made safe for names and
//! directories, and the mount plan of a job (workspace, session directory, credentials, volumes).
//!
//! Path translation between host and container: [`PathMap`] and [`translate_json_paths`].

mod translate;

pub use translate::{translate_json_paths, Direction, PathMap};

use crate::{Error, Result};

/// Where the workspace is mounted in the container (herdctl's image contract).
pub const CONTAINER_WORKSPACE: &str = "/workspace";

/// `HOME` in the container (herdctl's image contract).
pub const CONTAINER_HOME: &str = "/home/claude";

/// Where Claude Code keeps the session files of a job whose cwd is `/workspace`.
pub const CONTAINER_SESSION_DIR: &str = "/home/claude/.claude/projects/-workspace";

/// Where the agent's MCP socket directory is mounted in its containers (read-only; see
/// [`crate::mcp`]). Inside Claude Code's own directory, which the runner's mounts already claim,
/// so a user's volume or tmpfs (at `/run`, say) never collides with it.
pub const CONTAINER_MCP_DIR: &str = "/home/claude/.claude/herdctl-mcp";

/// Where Claude Code reads its OAuth credentials in the container.
pub const CONTAINER_CREDENTIALS_FILE: &str = "/home/claude/.claude/.credentials.json";

/// The container paths the runner mounts itself, with what it mounts there.
const RESERVED: [(&str, &str); 4] = [
    (CONTAINER_WORKSPACE, "the workspace"),
    (CONTAINER_SESSION_DIR, "the session directory"),
    (CONTAINER_CREDENTIALS_FILE, "the credentials file"),
    (CONTAINER_MCP_DIR, "the MCP socket directory"),
];

/// The reserved path a user mount at `path` (normalised) would collide with: the same path, a
/// path inside it (shadowing part of it) or an ancestor of it (the engine would create the
/// runner's mount points inside the user's host directory).
pub(crate) fn reserved_conflict(path: &str) -> Option<&'static str> {
    RESERVED
        .iter()
        .find(|(r, _)| is_within(path, r) || is_within(r, path))
        .map(|(r, _)| *r)
}

/// What the runner mounts at a reserved path, for error messages.
pub(crate) fn reserved_role(reserved: &str) -> &'static str {
    RESERVED
        .iter()
        .find(|(r, _)| *r == reserved)
        .map(|(_, role)| *role)
        .unwrap_or("its own files")
}

/// True when normalised absolute `path` is `root` or below it, by whole path components
/// (`/workspace2` is not within `/workspace`).
pub(crate) fn is_within(path: &str, root: &str) -> bool {
    root == "/"
        || path == root
        || (path.len() > root.len()
            && path.starts_with(root)
            && path.as_bytes()[root.len()] == b'/')
}

/// Lexically normalises an absolute path: repeated slashes, `.` and trailing slashes go, `..`
/// removes the component before it and stops at `/` (so nothing escapes the root). `None` when the
/// path is not absolute. The file system is not consulted: symlinks stay as written.
///
/// ```
/// use herdctl_container::normalize_path;
/// assert_eq!(normalize_path("/a//b/./c/../d/").as_deref(), Some("/a/b/d"));
/// assert_eq!(normalize_path("/../../etc").as_deref(), Some("/etc"));
/// assert_eq!(normalize_path("a/b"), None);
/// ```
pub fn normalize_path(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// An agent's qualified name made safe for container names: every character outside
/// `[a-zA-Z0-9_.-]` becomes `-`, a leading `.` becomes `-`, and names longer than 64 characters
/// are cut. Whenever that changed the name, `-` and 10 hex characters of the SHA-256 of the
/// original are appended, so `a b` and `a/b` get different names. Names that need no change are
/// returned as they are, which keeps herdctl's `herdctl-<agent>-` container names.
///
/// Not injective: an agent literally named `my-agent-8cae0b6284` gets the same result as `my
/// agent`. That is harmless for container names (a container is recognised by its exact
/// `dev.herdctl.agent` label, and every name carries a unique or config-hash suffix), but it is
/// why directories use [`agent_dir_name`] instead.
///
/// ```
/// use herdctl_container::sanitize_agent_name;
/// assert_eq!(sanitize_agent_name("fleet.sub.agent-1"), "fleet.sub.agent-1");
/// assert_eq!(sanitize_agent_name("my agent"), "my-agent-8cae0b6284");
/// ```
pub fn sanitize_agent_name(qualified: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = qualified
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if out.starts_with('.') {
        out.replace_range(0..1, "-");
    }
    if out.len() > MAX {
        // Cannot split a character: `out` is ASCII by construction.
        out.truncate(MAX);
    }
    if out != qualified || out.is_empty() {
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(&crate::hash::sha256_hex(qualified.as_bytes())[..10]);
    }
    out
}

/// The name of an agent's own directory (its session, MCP socket and credentials directories):
/// the agent's qualified name made readable and safe (as [`sanitize_agent_name`] does, cut to 48
/// characters), then `-` and 16 hex characters of the SHA-256 of the exact name, always.
///
/// Why the hash is always there: a directory decides whose transcripts an agent's container sees,
/// so two agents must never share one. Appending the hash only to names that needed a change (as
/// container names do) lets an agent literally named `a-b-<that hash>` land in `a b`'s directory
/// and resume its sessions. With the hash of the exact name in every directory name, two names
/// share a directory only if their SHA-256 prefixes collide (64 bits). The result never starts
/// with `.` and ends in a hex digit, so it is never `.`, `..`, or a `*.jsonl` name that herdctl
/// would list as a session in the flat `docker-sessions/` directory.
///
/// ```
/// use herdctl_container::agent_dir_name;
/// assert_eq!(agent_dir_name("fleet.agent"), "fleet.agent-153de8d6d426a323");
/// assert_ne!(agent_dir_name("my agent"), agent_dir_name("my-agent-8cae0b6284"));
/// ```
pub fn agent_dir_name(qualified: &str) -> String {
    const READABLE: usize = 48;
    let mut out: String = qualified
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(READABLE)
        .collect();
    if out.starts_with('.') {
        out.replace_range(0..1, "-");
    }
    if !out.is_empty() {
        out.push('-');
    }
    out.push_str(&crate::hash::sha256_hex(qualified.as_bytes())[..16]);
    out
}

/// The workspace root from herdctl's `working_directory`: a string, or an object with `root`.
/// The path must be absolute; it is normalised, not checked for existence (the mount plan does that).
pub fn workspace_root(working_directory: &serde_json::Value) -> Result<String> {
    let raw = match working_directory {
        serde_json::Value::String(s) => s.as_str(),
        serde_json::Value::Object(m) => match m.get("root") {
            Some(serde_json::Value::String(s)) => s.as_str(),
            _ => {
                return Err(Error::invalid(
                    "working_directory.root",
                    "missing or not a string; expected an absolute path",
                ))
            }
        },
        _ => {
            return Err(Error::invalid(
                "working_directory",
                "expected an absolute path or an object with \"root\"",
            ))
        }
    };
    normalize_path(raw).ok_or_else(|| {
        Error::invalid(
            "working_directory",
            format!(
                "{} is not an absolute path; expected a path starting with /",
                crate::error::quote(raw)
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn normalizes() {
        for (i, o) in [
            ("/", "/"),
            ("//", "/"),
            ("/a/b/", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/..", "/"),
            ("/a/b/../../..", "/"),
            ("/workspace/../../etc/passwd", "/etc/passwd"),
            ("/a/.../b", "/a/.../b"),
        ] {
            assert_eq!(normalize_path(i).as_deref(), Some(o), "{i}");
        }
        assert_eq!(normalize_path(""), None);
        assert_eq!(normalize_path("a"), None);
        assert_eq!(normalize_path("./a"), None);
    }

    #[test]
    fn within_is_by_component() {
        assert!(is_within("/workspace", "/workspace"));
        assert!(is_within("/workspace/a", "/workspace"));
        assert!(!is_within("/workspace2", "/workspace"));
        assert!(!is_within("/work", "/workspace"));
        assert!(is_within("/anything", "/"));
    }

    #[test]
    fn reserved_paths() {
        assert_eq!(reserved_conflict("/workspace/x"), Some("/workspace"));
        assert_eq!(
            reserved_conflict("/home/claude"),
            Some(CONTAINER_SESSION_DIR)
        );
        assert_eq!(reserved_conflict("/"), Some("/workspace"));
        assert_eq!(reserved_conflict("/home/claude/.cache"), None);
        assert_eq!(reserved_conflict("/workspace2"), None);
        assert_eq!(
            reserved_role(CONTAINER_CREDENTIALS_FILE),
            "the credentials file"
        );
    }

    #[test]
    fn sanitizes_agent_names() {
        assert_eq!(sanitize_agent_name("agent_1.x-y"), "agent_1.x-y");
        let s = sanitize_agent_name("a b");
        assert!(s.starts_with("a-b-") && s.len() == 14, "{s}");
        assert_ne!(sanitize_agent_name("a b"), sanitize_agent_name("a/b"));
        assert_ne!(sanitize_agent_name("a b"), "a-b");
        assert!(sanitize_agent_name("..").starts_with("-.-"));
        assert!(sanitize_agent_name(".hidden").starts_with("-hidden-"));
        assert_eq!(sanitize_agent_name("").len(), 10);
        let long = "x".repeat(100);
        let s = sanitize_agent_name(&long);
        assert_eq!(s.len(), 64 + 11);
        assert_ne!(s, sanitize_agent_name(&"x".repeat(101)));
        assert!(sanitize_agent_name("ünï").starts_with("-n--"));
    }

    /// `count` names of up to 15 characters of `alphabet`, from a seeded LCG: the same names on
    /// every run, so a failure can be replayed.
    fn generated_names(alphabet: &str, seed: u64, count: usize) -> impl Iterator<Item = String> {
        let alphabet: Vec<char> = alphabet.chars().collect();
        let mut x = seed;
        (0..count).map(move |_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (x >> 60) as usize;
            (0..len)
                .map(|i| alphabet[((x >> (i * 4)) % alphabet.len() as u64) as usize])
                .collect()
        })
    }

    /// Property: over many generated names, the result only has allowed characters, is never `.`
    /// or `..`, keeps valid names as they are, and no two distinct names share a result.
    #[test]
    fn sanitize_is_safe_and_injective() {
        let mut seen = std::collections::HashMap::new();
        for name in generated_names("ab.-_ /:Ü@", 42, 20_000) {
            let s = sanitize_agent_name(&name);
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
                "{s}"
            );
            assert!(!s.is_empty() && !s.starts_with('.'), "{name:?} -> {s}");
            let valid = !name.is_empty()
                && !name.starts_with('.')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if valid {
                assert_eq!(s, name);
            }
            if let Some(prev) = seen.insert(s.clone(), name.clone()) {
                assert_eq!(prev, name, "{prev:?} and {name:?} both give {s}");
            }
        }
        assert!(seen.len() > 5_000);
    }

    /// Issue 9.16: an agent literally named like another agent's sanitised name got its
    /// directory. Sanitised names still collide that way (they only name containers); directory
    /// names do not.
    #[test]
    fn agent_dir_names_do_not_collide_where_sanitised_names_do() {
        let literal = sanitize_agent_name("a b");
        assert_eq!(sanitize_agent_name(&literal), sanitize_agent_name("a b"));
        assert_ne!(agent_dir_name(&literal), agent_dir_name("a b"));
        assert_ne!(agent_dir_name("a.x"), agent_dir_name("a.x "));
        assert_eq!(
            agent_dir_name("a b"),
            agent_dir_name("a b"),
            "deterministic"
        );
        assert!(agent_dir_name("a b").starts_with("a-b-"));
        assert_eq!(agent_dir_name("").len(), 16);
        assert!(agent_dir_name("..").starts_with("-.-"));
        assert!(!agent_dir_name("x.jsonl").ends_with(".jsonl"));
        assert_eq!(agent_dir_name(&"x".repeat(300)).len(), 48 + 1 + 16);
    }

    /// Property: over generated names (and each name's own sanitised form, the spelling that
    /// collided before), directory names are safe, never hidden, never `*.jsonl`, and distinct.
    #[test]
    fn agent_dir_names_are_safe_and_injective() {
        let mut seen = std::collections::HashMap::new();
        for name in generated_names("ab.-_ /:Ü@0f", 7, 10_000) {
            for name in [name.clone(), sanitize_agent_name(&name)] {
                let d = agent_dir_name(&name);
                assert!(
                    d.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
                    "{d}"
                );
                assert!(!d.starts_with('.') && !d.ends_with(".jsonl"), "{d}");
                if let Some(prev) = seen.insert(d.clone(), name.clone()) {
                    assert_eq!(prev, name, "{prev:?} and {name:?} both give {d}");
                }
            }
        }
    }

    #[test]
    fn workspace_roots() {
        assert_eq!(workspace_root(&json!("/srv/ws/")).unwrap(), "/srv/ws");
        assert_eq!(
            workspace_root(&json!({"root": "/srv/ws"})).unwrap(),
            "/srv/ws"
        );
        assert_eq!(
            workspace_root(&json!("ws")).unwrap_err().to_string(),
            "invalid working_directory: \"ws\" is not an absolute path; expected a path starting with /"
        );
        assert!(workspace_root(&json!({"root": 1})).is_err());
        assert!(workspace_root(&json!(3)).is_err());
    }
}

//! Translation of paths between the host and the container.
//!
//! Paths are normalised first (`.`, `..`, repeated slashes), so `/workspace/../etc` is `/etc` and
//! maps nowhere: nothing escapes above a mount root. Mounts match by whole path components
//! (`/workspace2` is not under `/workspace`), the longest root first, so a nested mount wins over
//! the one around it, as it does in the container.

use serde_json::Value;

use super::{is_within, normalize_path};

/// Which way to translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From container paths to host paths (messages coming out of a job).
    ToHost,
    /// From host paths to container paths (paths going into a job).
    ToContainer,
}

/// A bidirectional map between host and container paths, built from mount roots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathMap {
    /// (host root, container root), longest host root first.
    by_host: Vec<(String, String)>,
    /// (container root, host root), longest container root first.
    by_container: Vec<(String, String)>,
}

impl PathMap {
    /// A map over `(host root, container root)` pairs. Pairs with a relative path are ignored
    /// (no mount has one: the mount plan normalises every path).
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> PathMap {
        let mut by_host: Vec<(String, String)> = pairs
            .into_iter()
            .filter_map(|(h, c)| Some((normalize_path(h)?, normalize_path(c)?)))
            .collect();
        let mut by_container: Vec<(String, String)> = by_host
            .iter()
            .map(|(h, c)| (c.clone(), h.clone()))
            .collect();
        // Longest root first; ties in a stable order so the choice never depends on input order.
        let order = |a: &(String, String), b: &(String, String)| {
            b.0.len().cmp(&a.0.len()).then_with(|| a.cmp(b))
        };
        by_host.sort_by(order);
        by_container.sort_by(order);
        PathMap {
            by_host,
            by_container,
        }
    }

    /// The container path of an absolute host path; `None` when it is relative or outside every
    /// mount.
    pub fn to_container(&self, host_path: &str) -> Option<String> {
        map(&self.by_host, host_path)
    }

    /// The host path of an absolute container path; `None` when it is relative or outside every
    /// mount.
    pub fn to_host(&self, container_path: &str) -> Option<String> {
        map(&self.by_container, container_path)
    }

    /// Translates one path in `direction`.
    pub fn translate(&self, path: &str, direction: Direction) -> Option<String> {
        match direction {
            Direction::ToHost => self.to_host(path),
            Direction::ToContainer => self.to_container(path),
        }
    }
}

fn map(table: &[(String, String)], path: &str) -> Option<String> {
    let norm = normalize_path(path)?;
    let (from, to) = table.iter().find(|(from, _)| is_within(&norm, from))?;
    let rest = if from == "/" {
        &norm[1..]
    } else {
        norm[from.len()..].trim_start_matches('/')
    };
    Some(match (to.as_str(), rest) {
        (to, "") => to.to_string(),
        ("/", rest) => format!("/{rest}"),
        (to, rest) => format!("{to}/{rest}"),
    })
}

/// Translates, in place, every string in `message` (at any depth; object keys are left alone) that
/// is a whole absolute path under a mount, and returns how many it changed. Strings that are not a
/// single path (relative, or with a line break) and paths outside every mount are left as they are.
///
/// ```
/// use herdctl_container::{translate_json_paths, Direction, PathMap};
/// let map = PathMap::new([("/srv/ws", "/workspace")]);
/// let mut msg = serde_json::json!({"tool": {"file_path": "/workspace/src/main.rs"}, "text": "/etc/passwd"});
/// assert_eq!(translate_json_paths(&mut msg, &map, Direction::ToHost), 1);
/// assert_eq!(msg["tool"]["file_path"], "/srv/ws/src/main.rs");
/// ```
pub fn translate_json_paths(message: &mut Value, map: &PathMap, direction: Direction) -> usize {
    match message {
        Value::String(s) => {
            if !s.starts_with('/') || s.contains(['\n', '\r', '\0']) {
                return 0;
            }
            match map.translate(s, direction) {
                Some(t) if t != *s => {
                    *s = t;
                    1
                }
                _ => 0,
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .map(|v| translate_json_paths(v, map, direction))
            .sum(),
        Value::Object(fields) => fields
            .values_mut()
            .map(|v| translate_json_paths(v, map, direction))
            .sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map() -> PathMap {
        PathMap::new([
            ("/srv/ws", "/workspace"),
            (
                "/state/docker-sessions/a",
                "/home/claude/.claude/projects/-workspace",
            ),
            ("/data", "/workspace-data"),
            ("/cache", "/workspace/.cache"),
        ])
    }

    #[test]
    fn both_ways() {
        let m = map();
        assert_eq!(m.to_host("/workspace").as_deref(), Some("/srv/ws"));
        assert_eq!(
            m.to_host("/workspace/a/b.txt").as_deref(),
            Some("/srv/ws/a/b.txt")
        );
        assert_eq!(m.to_host("/workspace-data/x").as_deref(), Some("/data/x"));
        assert_eq!(m.to_container("/srv/ws/a").as_deref(), Some("/workspace/a"));
        assert_eq!(m.to_container("/srv/ws/").as_deref(), Some("/workspace"));
        assert_eq!(
            m.to_container("/state/docker-sessions/a/s1.jsonl")
                .as_deref(),
            Some("/home/claude/.claude/projects/-workspace/s1.jsonl")
        );
    }

    #[test]
    fn by_component_not_by_prefix() {
        let m = PathMap::new([("/h/ws", "/workspace")]);
        assert_eq!(m.to_host("/workspace2/x"), None);
        assert_eq!(m.to_container("/h/ws2"), None);
        assert_eq!(m.to_host("/work"), None);
    }

    #[test]
    fn longest_mount_wins() {
        let m = map();
        assert_eq!(
            m.to_host("/workspace/.cache/x").as_deref(),
            Some("/cache/x")
        );
        assert_eq!(
            m.to_host("/workspace/.cachex").as_deref(),
            Some("/srv/ws/.cachex")
        );
        // Input order does not matter.
        let rev = PathMap::new([("/cache", "/workspace/.cache"), ("/srv/ws", "/workspace")]);
        assert_eq!(
            rev.to_host("/workspace/.cache/x").as_deref(),
            Some("/cache/x")
        );
    }

    #[test]
    fn no_escape_above_a_mount() {
        let m = map();
        assert_eq!(m.to_host("/workspace/../etc/passwd"), None);
        assert_eq!(m.to_host("/workspace/a/../../../etc"), None);
        assert_eq!(m.to_host("/workspace/a/../b").as_deref(), Some("/srv/ws/b"));
        assert_eq!(m.to_container("/srv/ws/../../root"), None);
        assert_eq!(m.to_host("workspace/a"), None);
        assert_eq!(m.to_host(""), None);
    }

    #[test]
    fn root_mounts() {
        let m = PathMap::new([("/", "/host")]);
        assert_eq!(m.to_container("/etc").as_deref(), Some("/host/etc"));
        assert_eq!(m.to_host("/host/etc").as_deref(), Some("/etc"));
        assert_eq!(m.to_host("/host").as_deref(), Some("/"));
        assert_eq!(m.to_host("/other"), None);
    }

    #[test]
    fn json_messages() {
        let m = map();
        let mut msg = json!({
            "type": "assistant",
            "session_id": "abc",
            "cwd": "/workspace",
            "message": {"content": [
                {"type": "tool_use", "input": {"file_path": "/workspace/src/a.rs", "pattern": "/workspace/**"}},
                {"type": "text", "text": "/workspace/a\nmore"},
                {"type": "text", "text": "see /workspace/a"},
            ]},
            "/workspace/key": "/usr/bin/node",
            "n": 3,
        });
        assert_eq!(translate_json_paths(&mut msg, &m, Direction::ToHost), 3);
        assert_eq!(msg["cwd"], "/srv/ws");
        assert_eq!(
            msg["message"]["content"][0]["input"]["file_path"],
            "/srv/ws/src/a.rs"
        );
        assert_eq!(
            msg["message"]["content"][0]["input"]["pattern"],
            "/srv/ws/**"
        );
        assert_eq!(msg["message"]["content"][1]["text"], "/workspace/a\nmore");
        assert_eq!(msg["message"]["content"][2]["text"], "see /workspace/a");
        assert_eq!(msg["/workspace/key"], "/usr/bin/node");
        assert_eq!(
            translate_json_paths(&mut msg, &m, Direction::ToContainer),
            3
        );
        assert_eq!(msg["cwd"], "/workspace");
    }

    /// Property: with non-nested roots, host -> container -> host gives the normalised host path,
    /// and container -> host -> container the normalised container path; and no translated path
    /// ever lands outside the root it was mapped to, whatever `..` the input holds.
    #[test]
    fn round_trips_over_generated_paths() {
        let m = PathMap::new([
            ("/h/ws", "/workspace"),
            ("/h/data", "/mnt/data"),
            ("/s", "/home/claude/s"),
        ]);
        let roots_host = ["/h/ws", "/h/data", "/s"];
        let roots_container = ["/workspace", "/mnt/data", "/home/claude/s"];
        let parts = ["a", "b", "..", ".", "", "workspace", "ws", "c.txt", "..."];
        let mut x: u64 = 1;
        let mut checked = 0;
        for i in 0..30_000usize {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = (x >> 59) as usize % 7;
            let tail: Vec<&str> = (0..n)
                .map(|k| parts[((x >> (k * 5)) % parts.len() as u64) as usize])
                .collect();
            let tail = tail.join("/");
            let r = i % 3;
            let host = format!("{}/{tail}", roots_host[r]);
            let container = format!("{}/{tail}", roots_container[r]);
            if let Some(c) = m.to_container(&host) {
                assert!(
                    roots_container.iter().any(|root| is_within(&c, root)),
                    "{host} -> {c}"
                );
                assert_eq!(m.to_host(&c), normalize_path(&host), "{host} -> {c}");
                checked += 1;
            } else {
                let n = normalize_path(&host).unwrap();
                assert!(
                    !roots_host.iter().any(|root| is_within(&n, root)),
                    "{host} should map"
                );
            }
            if let Some(h) = m.to_host(&container) {
                assert!(
                    roots_host.iter().any(|root| is_within(&h, root)),
                    "{container} -> {h}"
                );
                assert_eq!(m.to_container(&h), normalize_path(&container));
            } else {
                let n = normalize_path(&container).unwrap();
                assert!(
                    !roots_container.iter().any(|root| is_within(&n, root)),
                    "{container} should map"
                );
            }
        }
        assert!(checked > 10_000);
    }
}

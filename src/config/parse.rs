//! The string parsers of the docker config, with herdctl's semantics for every input it accepts
//! and an error naming the field, the value and the accepted form for everything else.

use super::{AccessMode, PortBinding, TmpfsMount, UserSpec, VolumeMount, DEFAULT_NON_ROOT_USER};
use crate::paths::{normalize_path, reserved_conflict};
use crate::{Error, Result};

/// herdctl's `parseMemoryToBytes`: a number with an optional binary unit, case-insensitive:
/// `2048` (bytes), `1k`/`1kb`/`1KB`, `512m`, `2gb`, `1t`, `1.5g` (fractions floored to a byte), `1 g`
/// (spaces between number and unit). The engine's minimum is checked by the resolver, not here.
///
/// ```
/// assert_eq!(herdctl_container::parse_memory_to_bytes("1.5g").unwrap(), 1610612736);
/// ```
pub fn parse_memory_to_bytes(memory: &str) -> Result<u64> {
    memory_bytes("docker.memory", memory)
}

pub(crate) fn memory_bytes(field: &str, memory: &str) -> Result<u64> {
    let bad = || {
        Error::invalid(
            field,
            format!(
                "{} is not a size; expected a number with an optional unit k, m, g or t (binary), like \"2g\", \"512m\", \"1.5g\" or \"2048\" (bytes)",
                quote(memory)
            ),
        )
    };
    let lower = memory.to_ascii_lowercase();
    // Grammar (herdctl's): digits, optional ".digits", optional spaces, optional unit, optional "b".
    let int_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (int_part, rest) = lower.split_at(int_end);
    if int_part.is_empty() {
        return Err(bad());
    }
    let (frac_part, rest) = match rest.strip_prefix('.') {
        Some(r) => {
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            if end == 0 {
                return Err(bad());
            }
            r.split_at(end)
        }
        None => ("", rest),
    };
    let rest = rest.trim_start_matches(char::is_whitespace);
    let (shift, rest) = match rest.as_bytes().first() {
        Some(b'k') => (10, &rest[1..]),
        Some(b'm') => (20, &rest[1..]),
        Some(b'g') => (30, &rest[1..]),
        Some(b't') => (40, &rest[1..]),
        _ => (0, rest),
    };
    if !(rest.is_empty() || rest == "b") {
        return Err(bad());
    }
    let too_big = || {
        Error::invalid(
            field,
            format!("{} is too large; expected at most 16 EiB", quote(memory)),
        )
    };
    let int: u128 = int_part.parse().map_err(|_| too_big())?;
    let mult: u128 = 1 << shift;
    // The fraction in exact integer arithmetic: floor(0.DIGITS * mult). Digits past the 18th are
    // dropped so that the product fits (10^18 * 2^40 < 2^128); they shift the result by well under
    // a byte.
    let digits = &frac_part[..frac_part.len().min(18)];
    let frac: u128 = if digits.is_empty() {
        0
    } else {
        // Cannot fail: at most 18 ASCII digits.
        let d: u128 = digits.parse().map_err(|_| bad())?;
        d * mult / 10u128.pow(digits.len() as u32)
    };
    let total = int
        .checked_mul(mult)
        .and_then(|v| v.checked_add(frac))
        .ok_or_else(too_big)?;
    u64::try_from(total).map_err(|_| too_big())
}

/// The shortest spelling of `bytes` that [`parse_memory_to_bytes`] reads back to the same value:
/// the largest unit that divides it exactly (`2147483648` gives `"2g"`, `1000` gives `"1000"`).
pub fn format_memory(bytes: u64) -> String {
    for (shift, unit) in [(40, "t"), (30, "g"), (20, "m"), (10, "k")] {
        if bytes != 0 && bytes % (1u64 << shift) == 0 {
            return format!("{}{}", bytes >> shift, unit);
        }
    }
    bytes.to_string()
}

/// herdctl's `parsePortBinding`: `"8080:80"` (host:container) or `"3000"` (the same port on both).
pub fn parse_port_binding(port: &str) -> Result<PortBinding> {
    port_binding("docker.ports", port)
}

pub(crate) fn port_binding(field: &str, port: &str) -> Result<PortBinding> {
    let bad = || {
        Error::invalid(
            field,
            format!(
                "{} is not a port binding; expected \"HOST:CONTAINER\" or \"PORT\" with ports 1-65535, like \"8080:80\" or \"3000\"",
                quote(port)
            ),
        )
    };
    let one = |s: &str| -> Result<u16> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        match s.parse::<u32>() {
            Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
            _ => Err(bad()),
        }
    };
    match port.split(':').collect::<Vec<_>>().as_slice() {
        [p] => {
            let p = one(p)?;
            Ok(PortBinding {
                host_port: p,
                container_port: p,
            })
        }
        [h, c] => Ok(PortBinding {
            host_port: one(h)?,
            container_port: one(c)?,
        }),
        _ => Err(bad()),
    }
}

/// herdctl's `parseTmpfsMount`: `"/tmp"` or `"/tmp:size=100m,mode=1777"` (options after the first
/// colon). The path must be absolute and clear of the paths the runner mounts.
pub fn parse_tmpfs_mount(tmpfs: &str) -> Result<TmpfsMount> {
    tmpfs_mount("docker.tmpfs", tmpfs)
}

pub(crate) fn tmpfs_mount(field: &str, tmpfs: &str) -> Result<TmpfsMount> {
    let (path, options) = match tmpfs.split_once(':') {
        Some((p, o)) => (p, (!o.is_empty()).then(|| o.to_string())),
        None => (tmpfs, None),
    };
    let path = container_path(field, tmpfs, path, "\"/PATH\" or \"/PATH:OPTIONS\", like \"/tmp\" or \"/tmp:size=100m,mode=1777\"")?;
    Ok(TmpfsMount { path, options })
}

/// herdctl's `parseVolumeMount`: `"/host:/container"` or `"/host:/container:ro"` (or `:rw`). Both
/// paths must be absolute; they are normalised (`.`, `..`, repeated and trailing slashes); the
/// container path must be clear of the paths the runner mounts. Whether the host path exists is
/// checked when the mount plan is built.
pub fn parse_volume_mount(volume: &str) -> Result<VolumeMount> {
    volume_mount("docker.volumes", volume)
}

pub(crate) fn volume_mount(field: &str, volume: &str) -> Result<VolumeMount> {
    let parts: Vec<&str> = volume.split(':').collect();
    let (host, container, mode) = match parts.as_slice() {
        [h, c] => (*h, *c, "rw"),
        [h, c, m] => (*h, *c, *m),
        _ => {
            return Err(Error::invalid(
                field,
                format!("{} is not a volume; expected {VOLUME_FORM}", quote(volume)),
            ))
        }
    };
    volume_from_parts(field, volume, host, container, mode)
}

const VOLUME_FORM: &str = "\"/HOST:/CONTAINER\" or \"/HOST:/CONTAINER:ro|rw\" with absolute paths";

/// Validates a volume given as parts (`whole` is how it is shown in errors).
pub(crate) fn volume_from_parts(
    field: &str,
    whole: &str,
    host: &str,
    container: &str,
    mode: &str,
) -> Result<VolumeMount> {
    let mode = match mode {
        "ro" => AccessMode::Ro,
        "rw" => AccessMode::Rw,
        m => {
            return Err(Error::invalid(
                field,
                format!(
                    "{}: mode {} is neither \"ro\" nor \"rw\"; expected {VOLUME_FORM}",
                    quote(whole),
                    quote(m)
                ),
            ))
        }
    };
    let host_path = normalize_path(host).ok_or_else(|| {
        Error::invalid(
            field,
            format!(
                "{}: host path {} is not absolute; expected {VOLUME_FORM}",
                quote(whole),
                quote(host)
            ),
        )
    })?;
    let container_path = container_path(field, whole, container, VOLUME_FORM)?;
    Ok(VolumeMount {
        host_path,
        container_path,
        mode,
    })
}

/// Normalises a container path and checks that it is absolute and clears the runner's mounts.
pub(crate) fn container_path(field: &str, whole: &str, path: &str, form: &str) -> Result<String> {
    let norm = normalize_path(path).ok_or_else(|| {
        Error::invalid(
            field,
            format!(
                "{}: container path {} is not absolute; expected {form}",
                quote(whole),
                quote(path)
            ),
        )
    })?;
    if let Some(reserved) = reserved_conflict(&norm) {
        return Err(Error::invalid(
            field,
            format!(
                "{}: container path {norm} overlaps {reserved}, where the runner mounts {}; use a path outside /workspace and /home/claude/.claude",
                quote(whole),
                crate::paths::reserved_role(reserved),
            ),
        ));
    }
    Ok(norm)
}

/// A container user, `"UID"` or `"UID:GID"` with decimal ids (`"0"` is root, allowed when written
/// explicitly).
pub fn parse_user(user: &str) -> Result<UserSpec> {
    let bad = || {
        Error::invalid(
            "docker.user",
            format!(
                "{} is not a numeric user; expected \"UID\" or \"UID:GID\", like \"1000\" or \"1000:1000\"",
                quote(user)
            ),
        )
    };
    let id = |s: &str| -> Result<u32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    match user.split_once(':') {
        Some((u, g)) => Ok(UserSpec {
            uid: id(u)?,
            gid: Some(id(g)?),
        }),
        None => Ok(UserSpec {
            uid: id(user)?,
            gid: None,
        }),
    }
}

/// The uid:gid of this process, read without unsafe code: the owner of `/proc/self` is the
/// process's effective uid and gid. `None` when `/proc` is not mounted (or not Linux) and a probe
/// file in the temp directory cannot be made either.
pub fn process_user() -> Option<UserSpec> {
    use std::os::unix::fs::MetadataExt;
    let from = |m: std::fs::Metadata| UserSpec {
        uid: m.uid(),
        gid: Some(m.gid()),
    };
    if let Ok(m) = std::fs::metadata("/proc/self") {
        return Some(from(m));
    }
    // Without procfs: a file we create is owned by our effective uid (its group may follow the
    // directory's on BSD-like systems; good enough where /proc is missing).
    let probe = tempfile_probe()?;
    let m = std::fs::metadata(&probe).ok();
    let _ = std::fs::remove_file(&probe);
    m.map(from)
}

fn tempfile_probe() -> Option<std::path::PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let p = std::env::temp_dir().join(format!(
        ".herdctl-uid-probe-{}-{nanos}",
        std::process::id()
    ));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .ok()
        .map(|_| p)
}

/// herdctl's `getHostUser`, made safe: this process's uid:gid, so files the agent writes in the
/// workspace belong to the host user; but when this process is root (or its user cannot be
/// read), [`DEFAULT_NON_ROOT_USER`]: a container runs as root only when `user` says so.
pub fn host_user() -> UserSpec {
    match process_user() {
        Some(u) if !u.is_root() => u,
        _ => DEFAULT_NON_ROOT_USER,
    }
}

/// A string for an error message: JSON-quoted (so spaces and control characters show) and cut to
/// 80 characters. Never call it with a secret.
pub(crate) fn quote(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    let mut q = serde_json::Value::String(cut).to_string();
    if s.chars().count() > 80 {
        q.push_str("...");
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<impl std::fmt::Debug>) -> String {
        r.expect_err("expected an error").to_string()
    }

    #[test]
    fn memory_valid_inputs() {
        let cases: &[(&str, u64)] = &[
            ("1024", 1024),
            ("0", 0),
            ("1b", 1),
            ("1k", 1024),
            ("1kb", 1024),
            ("1KB", 1024),
            ("1Kb", 1024),
            ("512M", 512 << 20),
            ("512m", 512 << 20),
            ("2g", 2 << 30),
            ("2gb", 2 << 30),
            ("2GB", 2 << 30),
            ("1t", 1 << 40),
            ("1.5g", 1610612736),
            ("1 g", 1 << 30),
            ("1  gb", 1 << 30),
            ("1\tg", 1 << 30),
            ("0.5k", 512),
            ("1.0001k", 1024),   // 1024.1024 floored
            ("0.3", 0),          // fractions of a byte floor to nothing
            ("1.999999999999999999999b", 1),
            ("16777215.999999t", 18446744073708452104), // 2^64 - 2^40 + floor(0.999999 * 2^40)
        ];
        for (s, want) in cases {
            assert_eq!(parse_memory_to_bytes(s).unwrap(), *want, "{s}");
        }
    }

    #[test]
    fn memory_invalid_inputs() {
        for s in [
            "1x", "-1g", "g", "", " 2g", "2g ", "1.g", ".5g", "1..5g", "2gg", "2bb", "2 b b", "1e3",
            "0x10", "2g,", "+2g", "1_000", "２g",
        ] {
            let e = err(parse_memory_to_bytes(s));
            assert!(e.starts_with("invalid docker.memory: "), "{s}: {e}");
        }
        assert_eq!(
            err(parse_memory_to_bytes("1x")),
            "invalid docker.memory: \"1x\" is not a size; expected a number with an optional unit k, m, g or t (binary), like \"2g\", \"512m\", \"1.5g\" or \"2048\" (bytes)"
        );
        assert_eq!(
            err(parse_memory_to_bytes("16777216t")),
            "invalid docker.memory: \"16777216t\" is too large; expected at most 16 EiB"
        );
        assert!(err(parse_memory_to_bytes("99999999999999999999999999999999999999999")).contains("too large"));
    }

    /// Property: format then parse is the identity, and N<unit> parses to N * 2^shift, over a
    /// deterministic spread of values.
    #[test]
    fn memory_format_parse_round_trip() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..20_000u64 {
            // xorshift64: deterministic, covers small and large magnitudes.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes = match i % 4 {
                0 => x,
                1 => x >> (x % 64),
                2 => (x % 100_000) << (10 * (1 + x % 4)),
                _ => i,
            };
            let s = format_memory(bytes);
            assert_eq!(parse_memory_to_bytes(&s).unwrap(), bytes, "{s}");
            let n = x % 5000;
            for (shift, unit) in [(0, ""), (10, "k"), (20, "M"), (30, "g"), (40, "T")] {
                assert_eq!(
                    parse_memory_to_bytes(&format!("{n}{unit}")).unwrap(),
                    n << shift
                );
                assert_eq!(
                    parse_memory_to_bytes(&format!("{n} {unit}b")).unwrap(),
                    n << shift
                );
            }
        }
        assert_eq!(format_memory(2 << 30), "2g");
        assert_eq!(format_memory(1000), "1000");
        assert_eq!(format_memory(0), "0");
    }

    #[test]
    fn ports() {
        assert_eq!(
            parse_port_binding("8080:80").unwrap(),
            PortBinding {
                host_port: 8080,
                container_port: 80
            }
        );
        assert_eq!(
            parse_port_binding("3000").unwrap(),
            PortBinding {
                host_port: 3000,
                container_port: 3000
            }
        );
        assert_eq!(parse_port_binding("65535:1").unwrap().host_port, 65535);
        for s in [
            "80:80:80", "0", "65536", "8080:0", "0:80", "", ":", "80:", ":80", "abc", "-1",
            "+80", "80 ", "1.5", "99999999999",
        ] {
            let e = err(parse_port_binding(s));
            assert!(e.starts_with("invalid docker.ports: "), "{s}: {e}");
        }
        assert_eq!(
            err(parse_port_binding("80:80:80")),
            "invalid docker.ports: \"80:80:80\" is not a port binding; expected \"HOST:CONTAINER\" or \"PORT\" with ports 1-65535, like \"8080:80\" or \"3000\""
        );
    }

    #[test]
    fn tmpfs() {
        assert_eq!(
            parse_tmpfs_mount("/tmp").unwrap(),
            TmpfsMount {
                path: "/tmp".into(),
                options: None
            }
        );
        assert_eq!(
            parse_tmpfs_mount("/tmp:size=100m,mode=1777").unwrap(),
            TmpfsMount {
                path: "/tmp".into(),
                options: Some("size=100m,mode=1777".into())
            }
        );
        assert_eq!(parse_tmpfs_mount("/run/x/:").unwrap().path, "/run/x");
        assert_eq!(parse_tmpfs_mount("/run/x/:").unwrap().options, None);
        assert_eq!(
            err(parse_tmpfs_mount("tmp")),
            "invalid docker.tmpfs: \"tmp\": container path \"tmp\" is not absolute; expected \"/PATH\" or \"/PATH:OPTIONS\", like \"/tmp\" or \"/tmp:size=100m,mode=1777\""
        );
        for s in ["", ":size=1m", "/workspace", "/workspace/x", "/", "/home/claude", "/tmp/../workspace"] {
            assert!(err(parse_tmpfs_mount(s)).starts_with("invalid docker.tmpfs: "), "{s}");
        }
    }

    #[test]
    fn volumes() {
        assert_eq!(
            parse_volume_mount("/h:/c").unwrap(),
            VolumeMount {
                host_path: "/h".into(),
                container_path: "/c".into(),
                mode: AccessMode::Rw
            }
        );
        assert_eq!(parse_volume_mount("/h:/c:ro").unwrap().mode, AccessMode::Ro);
        assert_eq!(parse_volume_mount("/h:/c:rw").unwrap().mode, AccessMode::Rw);
        let v = parse_volume_mount("/h//x/./y/../:/c/d/").unwrap();
        assert_eq!((v.host_path.as_str(), v.container_path.as_str()), ("/h/x", "/c/d"));
        assert_eq!(
            err(parse_volume_mount("/only/one")),
            "invalid docker.volumes: \"/only/one\" is not a volume; expected \"/HOST:/CONTAINER\" or \"/HOST:/CONTAINER:ro|rw\" with absolute paths"
        );
        assert_eq!(
            err(parse_volume_mount("/a:/b:rw2")),
            "invalid docker.volumes: \"/a:/b:rw2\": mode \"rw2\" is neither \"ro\" nor \"rw\"; expected \"/HOST:/CONTAINER\" or \"/HOST:/CONTAINER:ro|rw\" with absolute paths"
        );
        assert_eq!(
            err(parse_volume_mount("data:/data")),
            "invalid docker.volumes: \"data:/data\": host path \"data\" is not absolute; expected \"/HOST:/CONTAINER\" or \"/HOST:/CONTAINER:ro|rw\" with absolute paths"
        );
        assert_eq!(
            err(parse_volume_mount("/data:/workspace")),
            "invalid docker.volumes: \"/data:/workspace\": container path /workspace overlaps /workspace, where the runner mounts the workspace; use a path outside /workspace and /home/claude/.claude"
        );
        for s in [
            "/a:b", "/a:", ":/b", "~/a:/b", "/a:/b:ro:x", "/a:/workspace/sub",
            "/a:/home/claude/.claude/projects/-workspace", "/a:/home/claude/.claude", "/a:/",
            "/a:/home", "/a:/home/claude/.claude/.credentials.json", "/a:/x/../workspace",
        ] {
            assert!(err(parse_volume_mount(s)).starts_with("invalid docker.volumes: "), "{s}");
        }
        // Siblings by name are not inside: /workspace2 is not under /workspace.
        assert_eq!(parse_volume_mount("/a:/workspace2").unwrap().container_path, "/workspace2");
        assert_eq!(parse_volume_mount("/a:/home/claude/data").unwrap().container_path, "/home/claude/data");
    }

    #[test]
    fn users() {
        assert_eq!(parse_user("1000").unwrap(), UserSpec { uid: 1000, gid: None });
        assert_eq!(parse_user("1000:50").unwrap(), UserSpec { uid: 1000, gid: Some(50) });
        assert!(parse_user("0").unwrap().is_root());
        assert_eq!(parse_user("1000:50").unwrap().to_string(), "1000:50");
        for s in ["", "abc", "root", "1000:", ":1000", "-1", "1000:1000:1", "4294967296", " 1", "1.0"] {
            let e = err(parse_user(s));
            assert!(e.starts_with("invalid docker.user: "), "{s}: {e}");
        }
        assert_eq!(
            err(parse_user("root")),
            "invalid docker.user: \"root\" is not a numeric user; expected \"UID\" or \"UID:GID\", like \"1000\" or \"1000:1000\""
        );
    }

    #[test]
    fn host_user_is_never_root() {
        let real = process_user().expect("/proc/self is readable on the test machines");
        let h = host_user();
        assert!(!h.is_root());
        if real.is_root() {
            assert_eq!(h, DEFAULT_NON_ROOT_USER);
        } else {
            assert_eq!(h, real);
        }
        // The probe agrees with procfs about the uid.
        let probe = tempfile_probe().expect("temp dir is writable");
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata(&probe).unwrap().uid();
        std::fs::remove_file(&probe).unwrap();
        assert_eq!(uid, real.uid);
    }

    #[test]
    fn quote_cuts_long_values() {
        let long = "x".repeat(100);
        assert_eq!(quote(&long), format!("\"{}\"...", "x".repeat(80)));
        assert_eq!(quote("a\"b\n"), "\"a\\\"b\\n\"");
    }
}

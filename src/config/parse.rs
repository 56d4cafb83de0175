//! The string parsers of the docker config, with herdctl's semantics for every input it accepts
//! and an error naming the field, the value and the accepted form for everything else.
//!
//! Where herdctl's own parser throws, the problem starts with herdctl's words (`Invalid memory
//! format`, `Invalid port format`, `Invalid volume format`, `Invalid volume mode`), so code and
//! tests that match them keep working; the detail follows.

use super::{AccessMode, PortBinding, TmpfsMount, UserSpec, VolumeMount};
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
    let lower = memory.to_ascii_lowercase();
    let Some((int_part, frac_part, shift)) = memory_parts(&lower) else {
        return Err(Error::invalid(
            field,
            format!(
                "Invalid memory format: {} is not a size; expected a number with an optional unit k, m, g or t (binary), like \"2g\", \"512m\", \"1.5g\" or \"2048\" (bytes)",
                quote(memory)
            ),
        ));
    };
    memory_total(int_part, frac_part, shift).ok_or_else(|| {
        Error::invalid(
            field,
            format!("{} is too large; expected at most 16 EiB", quote(memory)),
        )
    })
}

/// herdctl's grammar of a size (`lower`, in lower case): digits, optional ".digits", optional
/// spaces, optional unit, optional "b". Returns the integer digits, the fraction's digits and the
/// unit as a power of two; `None` for anything else.
fn memory_parts(lower: &str) -> Option<(&str, &str, u32)> {
    let int_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (int_part, rest) = lower.split_at(int_end);
    if int_part.is_empty() {
        return None;
    }
    let (frac_part, rest) = match rest.strip_prefix('.') {
        Some(r) => {
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            if end == 0 {
                return None;
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
    (rest.is_empty() || rest == "b").then_some((int_part, frac_part, shift))
}

/// The bytes `int_part.frac_part` units of `1 << shift` make, floored to a byte; `None` past
/// `u64` (the parts are digits only, so too many of them is the only way to fail).
fn memory_total(int_part: &str, frac_part: &str, shift: u32) -> Option<u64> {
    let int: u128 = int_part.parse().ok()?;
    let mult: u128 = 1 << shift;
    // The fraction in exact integer arithmetic: floor(0.DIGITS * mult). Digits past the 18th are
    // dropped so that the product fits (10^18 * 2^40 < 2^128); they shift the result by well under
    // a byte.
    let digits = &frac_part[..frac_part.len().min(18)];
    let frac: u128 = if digits.is_empty() {
        0
    } else {
        // Cannot fail: at most 18 ASCII digits.
        let d: u128 = digits.parse().ok()?;
        d * mult / 10u128.pow(digits.len() as u32)
    };
    let total = int.checked_mul(mult)?.checked_add(frac)?;
    u64::try_from(total).ok()
}

/// The shortest spelling of `bytes` that [`parse_memory_to_bytes`] reads back to the same value:
/// the largest unit that divides it exactly (`2147483648` gives `"2g"`, `1000` gives `"1000"`).
pub fn format_memory(bytes: u64) -> String {
    for (shift, unit) in [(40, "t"), (30, "g"), (20, "m"), (10, "k")] {
        if bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
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
                "Invalid port format: {} is not a port binding; expected \"HOST:CONTAINER\" or \"PORT\" with ports 1-65535, like \"8080:80\" or \"3000\"",
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
    let path = container_path(
        field,
        tmpfs,
        path,
        "\"/PATH\" or \"/PATH:OPTIONS\", like \"/tmp\" or \"/tmp:size=100m,mode=1777\"",
    )?;
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
                format!(
                    "Invalid volume format: {} is not a volume; expected {VOLUME_FORM}",
                    quote(volume)
                ),
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
                    "Invalid volume mode: {} in {} is neither \"ro\" nor \"rw\"; expected {VOLUME_FORM}",
                    quote(m),
                    quote(whole)
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

pub(crate) use crate::error::quote;

#[cfg(test)]
mod tests;

//! What a host path hands to a container: a device it may use, or a door to the engine.
//!
//! These look at this machine's file system, so they run when a job starts (the engine is assumed
//! to run on this machine, as the mount plan assumes for volumes), never when a config is read.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Devices a container may get without the opt-in: GPUs and accelerators (NVIDIA's device nodes,
/// the DRM render and card nodes, AMD's compute node, the kernel's accel class), and the
/// harmless nodes every container has anyway. Raw disks, `/dev/mem`, `/dev/kvm`, `/dev/fuse`,
/// `/dev/net/tun`, `/dev/vfio` (direct PCI access) and every other device need the opt-in.
const DEVICE_FILES: [&str; 10] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/kfd",
    "/dev/nvidiactl",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm-tools",
    "/dev/nvidia-modeset",
];
/// Directories whose character devices are all GPU or accelerator nodes.
const DEVICE_DIRS: [&str; 3] = ["/dev/dri", "/dev/nvidia-caps", "/dev/accel"];

fn allowed_device_path(p: &str) -> bool {
    DEVICE_FILES.contains(&p)
        || p.strip_prefix("/dev/nvidia")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        || DEVICE_DIRS.iter().any(|d| crate::paths::is_within(p, d))
}

/// Checks `Devices[i].PathOnHost` as the engine will use it: symlinks resolved, and a directory
/// standing for every device node below it. `Ok` with the group ids that own the devices (a
/// non-root container user may need one of them in `GroupAdd`); `Err` with why it needs the
/// opt-in, or why it is not a device at all.
pub(crate) fn check_device(path_on_host: &str) -> Result<Vec<u32>, String> {
    let real = fs::canonicalize(path_on_host)
        .map_err(|e| format!("{path_on_host} cannot be used as a device on this host ({e})"))?;
    let real_s = real.to_string_lossy();
    let meta = fs::metadata(&real).map_err(|e| format!("{real_s}: {e}"))?;
    let mut gids = Vec::new();
    if meta.is_dir() {
        if !allowed_device_path(&real_s) {
            return Err(format!(
                "{path_on_host} is a directory of devices ({real_s}) that are not GPU devices"
            ));
        }
        walk_devices(&real, &mut |p, m| {
            if m.file_type().is_block_device() {
                return Err(format!("{} is a block device", p.display()));
            }
            gids.push(m.gid());
            Ok(())
        })?;
    } else if meta.file_type().is_char_device() && allowed_device_path(&real_s) {
        gids.push(meta.gid());
    } else if meta.file_type().is_char_device() || meta.file_type().is_block_device() {
        let shown = if real_s == path_on_host {
            String::new()
        } else {
            format!(" ({real_s})")
        };
        return Err(format!(
            "{path_on_host}{shown} is not a GPU device; a device gives the job the host's hardware"
        ));
    } else {
        return Err(format!("{path_on_host} is not a device"));
    }
    gids.sort_unstable();
    gids.dedup();
    Ok(gids)
}

/// Every device node below `dir`, as the engine finds them (without following symlinks).
fn walk_devices(
    dir: &Path,
    each: &mut dyn FnMut(&Path, &fs::Metadata) -> Result<(), String>,
) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(m) = fs::symlink_metadata(&path) else {
            continue;
        };
        let t = m.file_type();
        if t.is_dir() {
            walk_devices(&path, each)?;
        } else if t.is_char_device() || t.is_block_device() {
            each(&path, &m)?;
        }
    }
    Ok(())
}

/// Where engines listen on most hosts, besides the address this runner uses: Docker's socket
/// under both names, Podman's, and containerd's (driving containerd is root on the host too).
const KNOWN_SOCKETS: [&str; 4] = [
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/podman/podman.sock",
    "/run/containerd/containerd.sock",
];

/// File systems through which a job reaches the host's kernel and processes, not files: `/proc`
/// (another process's environment, memory maps and root directory: `/proc/PID/root` of a process
/// of the job's uid is the host's `/`, engine socket included; kernel parameters as root), `/sys`
/// (kernel and device settings), device nodes and terminals (`/dev`, `/dev/pts`: a host terminal
/// of the job's uid takes keystrokes), POSIX message queues, cgroups, and the kernel's debug,
/// tracing, security, BPF and firmware file systems.
const KERNEL_FS: [&str; 18] = [
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "mqueue",
    "cgroup",
    "cgroup2",
    "debugfs",
    "tracefs",
    "securityfs",
    "bpf",
    "pstore",
    "efivarfs",
    "configfs",
    "fusectl",
    "binfmt_misc",
    "selinuxfs",
    "nsfs",
];

/// The engine sockets on this host, and every directory above them, by device and inode: a
/// mount of any of these (under any name: a symlink, another bind of `/run`) hands the job the
/// engine. And the host's kernel file systems ([`KERNEL_FS`]), by where they are mounted: a
/// mount of a path on one, or of a directory holding one (engines bind recursively), hands the
/// job the host's processes or kernel settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct EngineSockets {
    /// (device, inode, the socket it leads to, whether it is the socket itself).
    doors: Vec<(u64, u64, PathBuf, bool)>,
    /// (mount point, file system type) of every kernel file system mounted on this host.
    kernel: Vec<(String, String)>,
}

impl EngineSockets {
    /// The sockets among `own` (the runner's engine socket, if it talks to one over unix) and
    /// the usual places that exist on this host.
    pub(crate) fn find(own: Option<&Path>) -> EngineSockets {
        let mut doors = Vec::new();
        let candidates = own
            .into_iter()
            .map(Path::to_path_buf)
            .chain(KNOWN_SOCKETS.iter().map(PathBuf::from));
        for socket in candidates {
            let Ok(real) = fs::canonicalize(&socket) else {
                continue;
            };
            match fs::metadata(&real) {
                Ok(m) if m.file_type().is_socket() => {}
                _ => continue,
            }
            for (i, dir) in real.ancestors().enumerate() {
                if let Ok(m) = fs::metadata(dir) {
                    doors.push((m.dev(), m.ino(), socket.clone(), i == 0));
                }
            }
        }
        EngineSockets {
            doors,
            kernel: kernel_mounts(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()),
        }
    }

    /// Why a bind mount of host path `source` would let the job reach an engine or another
    /// service's socket, if it would.
    pub(crate) fn door(&self, source: &str) -> Option<String> {
        let m = fs::metadata(source).ok()?;
        let found = self
            .doors
            .iter()
            .find(|(dev, ino, _, _)| *dev == m.dev() && *ino == m.ino());
        match found {
            Some((_, _, socket, true)) => Some(format!(
                "{source} is the engine's socket ({}): a job that can reach it can drive the engine, which is root on the host",
                socket.display()
            )),
            Some((_, _, socket, false)) => Some(format!(
                "{source} holds the engine's socket ({}): a job that can reach it can drive the engine, which is root on the host",
                socket.display()
            )),
            None if m.file_type().is_socket() => Some(format!(
                "{source} is a unix socket: a job that can reach it talks to whatever serves it, with that service's rights (the engine's socket is root on the host)"
            )),
            None => self.kernel_door(source),
        }
    }

    /// Why host path `source` (its symlinks resolved, as the engine resolves them) is on, or
    /// holds, one of the host's kernel file systems, if it is.
    fn kernel_door(&self, source: &str) -> Option<String> {
        let real = fs::canonicalize(source).ok()?;
        let real = real.to_str()?;
        let (point, kind) = self.kernel.iter().find(|(point, _)| {
            crate::paths::is_within(real, point) || crate::paths::is_within(point, real)
        })?;
        let what = if crate::paths::is_within(real, point) {
            "is on"
        } else {
            "holds"
        };
        let shown = if real == source {
            String::new()
        } else {
            format!(" ({real})")
        };
        Some(format!(
            "{source}{shown} {what} {point}, the host's {kind} file system: a job that sees it reaches the host's processes or kernel, past the container's isolation (through /proc, another process's environment and its root directory, which holds the engine's socket)"
        ))
    }
}

/// The kernel file systems ([`KERNEL_FS`]) among the mounts of `mountinfo` (the text of
/// `/proc/self/mountinfo`), as (mount point, type).
fn kernel_mounts(mountinfo: &str) -> Vec<(String, String)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // `ID PARENT DEV ROOT POINT OPTIONS [TAGS...] - TYPE SOURCE SUPER-OPTIONS`
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let kind = right.split(' ').next()?;
            KERNEL_FS
                .contains(&kind)
                .then(|| (unescape_octal(point), kind.to_string()))
        })
        .collect()
}

/// A mountinfo path with its `\NNN` escapes (space, tab, newline, backslash) decoded.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // At most \377: one byte.
        let octal = b.get(i + 1..i + 4).filter(|d| {
            (b'0'..=b'3').contains(&d[0]) && d.iter().all(|c| (b'0'..=b'7').contains(c))
        });
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn devices_by_what_they_are() {
        assert_eq!(check_device("/dev/null").map(|g| g.len()), Ok(1));
        // A symlink is read as its target.
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("gpu");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        assert!(check_device(link.to_str().unwrap()).is_ok());
        let e = check_device(dir.path().to_str().unwrap()).unwrap_err();
        assert!(e.contains("not GPU devices"), "{e}");
        let e = check_device("/etc/passwd").unwrap_err();
        assert_eq!(e, "/etc/passwd is not a device");
        let e = check_device("/dev/nope-not-here").unwrap_err();
        assert!(
            e.starts_with("/dev/nope-not-here cannot be used as a device"),
            "{e}"
        );
        if Path::new("/dev/kmsg").exists() {
            let e = check_device("/dev/kmsg").unwrap_err();
            assert!(e.contains("is not a GPU device"), "{e}");
        }
        let e = check_device("/dev").unwrap_err();
        assert!(e.contains("not GPU devices"), "{e}");
        assert!(allowed_device_path("/dev/nvidia0"));
        assert!(allowed_device_path("/dev/dri/renderD128"));
        assert!(!allowed_device_path("/dev/nvidia"));
        assert!(!allowed_device_path("/dev/nvidiafoo"));
        assert!(!allowed_device_path("/dev/sda"));
        assert!(!allowed_device_path("/dev/dri2/x"));
    }

    #[test]
    fn sockets_their_directories_and_their_aliases_are_doors() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        fs::create_dir(&run).unwrap();
        let sock = run.join("engine.sock");
        let _listener = UnixListener::bind(&sock).unwrap();
        let alias = dir.path().join("alias");
        std::os::unix::fs::symlink(&run, &alias).unwrap();
        let doors = EngineSockets::find(Some(&sock));
        let door = |p: &Path| doors.door(p.to_str().unwrap());
        assert!(door(&sock).unwrap().contains("is the engine's socket"));
        assert!(door(&run).unwrap().contains("holds the engine's socket"));
        assert!(door(&alias).unwrap().contains("holds the engine's socket"));
        assert!(door(&alias.join("engine.sock"))
            .unwrap()
            .contains("is the engine's socket"));
        assert!(door(Path::new("/"))
            .unwrap()
            .contains("holds the engine's socket"));
        let other = dir.path().join("other");
        fs::create_dir(&other).unwrap();
        assert_eq!(door(&other), None);
        // Any other socket is a door to its service.
        let agent = other.join("agent.sock");
        let _l2 = UnixListener::bind(&agent).unwrap();
        assert!(door(&agent).unwrap().contains("is a unix socket"));
    }

    #[test]
    fn kernel_file_systems_and_what_holds_them_are_doors() {
        let info = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                    23 1 8:1 / / rw shared:1 - ext4 /dev/root rw\n\
                    24 1 0:5 / /my\\040dev rw shared:2 master:3 - devtmpfs udev rw\n\
                    25 1 0:6 / /odd\\134name rw - sysfs sysfs rw\n";
        assert_eq!(
            kernel_mounts(info),
            [
                ("/proc".to_string(), "proc".to_string()),
                ("/my dev".to_string(), "devtmpfs".to_string()),
                ("/odd\\name".to_string(), "sysfs".to_string()),
            ]
        );
        assert_eq!(unescape_octal("a\\777b\\04"), "a\\777b\\04");

        let doors = EngineSockets::find(None);
        for (path, says) in [
            ("/proc", "/proc is on /proc, the host's proc file system"),
            ("/sys/kernel", "is on /sys, the host's sysfs file system"),
            ("/dev/shm", "is on /dev, the host's devtmpfs file system"),
            ("/proc/self/root", "holds"),
        ] {
            let e = doors.door(path).unwrap_or_default();
            assert!(e.contains(says), "{path}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("p");
        std::os::unix::fs::symlink("/proc", &link).unwrap();
        let e = doors.door(link.to_str().unwrap()).unwrap_or_default();
        assert!(e.contains("(/proc) is on /proc"), "{e}");
        assert_eq!(doors.door(dir.path().to_str().unwrap()), None);
    }
}

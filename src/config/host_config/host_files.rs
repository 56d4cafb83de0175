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

/// The engine sockets on this host, and every directory above them, by device and inode: a
/// mount of any of these (under any name: a symlink, another bind of `/run`) hands the job the
/// engine.
#[derive(Debug, Clone, Default)]
pub(crate) struct EngineSockets {
    /// (device, inode, the socket it leads to, whether it is the socket itself).
    doors: Vec<(u64, u64, PathBuf, bool)>,
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
        EngineSockets { doors }
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
            None => None,
        }
    }
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
}

//! A tiny ustar writer for the import tests (no tar crate on our dependency list): a busybox root
//! filesystem, streamed from the binary on disk rather than held in memory.

use std::fs::File;
use std::io::{Cursor, Read};

fn header(path: &str, mode: u32, size: u64, kind: u8) -> [u8; 512] {
    link_header(path, mode, size, kind, "")
}

fn link_header(path: &str, mode: u32, size: u64, kind: u8, link: &str) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..path.len()].copy_from_slice(path.as_bytes());
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
        let s = format!("{v:0width$o}\0", width = len - 1);
        h[at..at + len].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, u64::from(mode));
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, size);
    octal(&mut h, 136, 12, 1_700_000_000);
    h[148..156].copy_from_slice(b"        ");
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

/// A root filesystem with `/bin/busybox` (the host's static one), a world-writable `/tmp` and
/// `/marker` holding `marker` (so each test's layer is its own, not shared with another test's),
/// as a reader that streams the binary from disk.
pub fn busybox_rootfs(marker: &str) -> impl Read {
    rootfs(marker, &[])
}

/// [`busybox_rootfs`] plus `/bin/<applet>` links to busybox, so the runner's containers can start
/// (`sleep`) and run jobs in it.
pub fn runnable_rootfs(marker: &str) -> impl Read {
    rootfs(marker, &["sh", "sleep", "true", "cat", "echo"])
}

fn rootfs(marker: &str, applets: &[&str]) -> impl Read {
    let file = File::open("/bin/busybox").expect("/bin/busybox (busybox-static) on the host");
    let size = file.metadata().unwrap().len();
    let mut head = Vec::new();
    head.extend_from_slice(&header("bin/", 0o755, 0, b'5'));
    head.extend_from_slice(&header("tmp/", 0o1777, 0, b'5'));
    head.extend_from_slice(&header("marker", 0o644, marker.len() as u64, b'0'));
    head.extend_from_slice(marker.as_bytes());
    head.resize(head.len() + (512 - marker.len() % 512) % 512, 0);
    for applet in applets {
        head.extend_from_slice(&link_header(
            &format!("bin/{applet}"),
            0o777,
            0,
            b'2',
            "busybox",
        ));
    }
    head.extend_from_slice(&header("bin/busybox", 0o755, size, b'0'));
    let pad = (512 - (size % 512) as usize) % 512;
    let tail = vec![0u8; pad + 1024];
    Cursor::new(head).chain(file).chain(Cursor::new(tail))
}

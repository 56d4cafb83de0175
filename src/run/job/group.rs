//! A group id of its own for each job in a persistent container: the mark by which a cancel, a
//! deadline and the job's end find exactly the job's processes.
//!
//! Why a group id: the kernel keeps it on every process the job starts, across `fork`, `setsid`,
//! `env -i`, a double fork and a detached child, and a process without `CAP_SETGID` cannot drop
//! it (`setresgid` may only pick among its current real, effective and saved ids, all three this
//! one; `setgroups` needs the capability; no-new-privileges, which the runner enforces, ignores
//! set-group-id files). An environment marker, a session or a process group can each be shed by
//! the job itself, and a cgroup per job needs write access to the cgroup tree, which a container
//! without privileges lacks (cgroup v1 is mounted read-only inside). A per-job subreaper would need
//! a program of ours in every image and could still be killed by the job (it runs as the same
//! user), after which its orphans go to PID 1 unmarked.
//!
//! The cost: files the job creates get this group (the runner adds the configured group as a
//! supplementary one, so access through it is kept).
//!
//! The ids come from 65000-65533, a range Debian reserves and never allocates, so no file or
//! process of an image or a host has them, and inside the 65,536 ids a rootless engine or a
//! user-namespace remap maps. Two jobs running at once in one container must never share an id:
//! each claims its id for its container with an abstract unix socket named after both, which the
//! kernel releases when this process dies, so a crash leaks nothing and two processes on one host
//! never hand out the same id.

use std::io;

use crate::{Error, Result};

/// The first group id handed to jobs.
const FIRST: u32 = 65000;
/// The number of ids in the range (65000-65533; 65534 is `nogroup`).
const COUNT: u32 = 534;

/// A group id claimed for one job in one container; the claim ends when this is dropped.
#[derive(Debug)]
pub(crate) struct JobGroup {
    gid: u32,
    _claim: Claim,
}

impl JobGroup {
    /// Claims a group id no other running job of this container holds, other than `avoid` (the
    /// container user's own group, which every process not started by a job has).
    pub(crate) fn claim(container_id: &str, avoid: Option<u32>) -> Result<JobGroup> {
        // A random starting point: two hosts (or network namespaces) that do not see each other's
        // claims still rarely meet, and a claim is found in one try while few jobs run.
        let start = random_u32() % COUNT;
        for i in 0..COUNT {
            let gid = FIRST + (start + i) % COUNT;
            if Some(gid) == avoid {
                continue;
            }
            match Claim::try_new(container_id, gid) {
                Ok(Some(claim)) => return Ok(JobGroup { gid, _claim: claim }),
                Ok(None) => continue,
                Err(e) => return Err(Error::io("claim a group id for the job", e)),
            }
        }
        Err(Error::io(
            "claim a group id for the job",
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("all {COUNT} job group ids of this container are in use by running jobs"),
            ),
        ))
    }

    /// The group id.
    pub(crate) fn gid(&self) -> u32 {
        self.gid
    }
}

fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish() as u32
}

/// An abstract unix socket bound to a name made of the container and the id: binding fails while
/// any process on this host (this one included) holds it.
#[cfg(target_os = "linux")]
#[derive(Debug)]
struct Claim(#[allow(dead_code)] std::os::unix::net::UnixListener);

#[cfg(target_os = "linux")]
impl Claim {
    fn try_new(container_id: &str, gid: u32) -> io::Result<Option<Claim>> {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::{SocketAddr, UnixListener};
        let name = format!("herdctl-container/job-group/{container_id}/{gid}");
        let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
        match UnixListener::bind_addr(&addr) {
            Ok(listener) => Ok(Some(Claim(listener))),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Elsewhere (no abstract sockets): a claim within this process only.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
struct Claim(String);

#[cfg(not(target_os = "linux"))]
static CLAIMED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

#[cfg(not(target_os = "linux"))]
impl Claim {
    fn try_new(container_id: &str, gid: u32) -> io::Result<Option<Claim>> {
        let name = format!("{container_id}/{gid}");
        let mut claimed = CLAIMED.lock().unwrap_or_else(|p| p.into_inner());
        if claimed.contains(&name) {
            return Ok(None);
        }
        claimed.push(name.clone());
        Ok(Some(Claim(name)))
    }
}

#[cfg(not(target_os = "linux"))]
impl Drop for Claim {
    fn drop(&mut self) {
        let mut claimed = CLAIMED.lock().unwrap_or_else(|p| p.into_inner());
        claimed.retain(|n| n != &self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_running_jobs_of_one_container_never_share_an_id() {
        let container = format!("group-test-{}", std::process::id());
        let held: Vec<JobGroup> = (0..COUNT - 1)
            .map(|_| JobGroup::claim(&container, Some(FIRST)).unwrap())
            .collect();
        let mut ids: Vec<u32> = held.iter().map(JobGroup::gid).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), (COUNT - 1) as usize);
        assert!(
            !ids.contains(&FIRST),
            "the container user's group is never handed out"
        );
        assert!(ids.iter().all(|g| (FIRST..FIRST + COUNT).contains(g)));
        let e = JobGroup::claim(&container, Some(FIRST)).unwrap_err();
        assert!(e.to_string().contains("in use by running jobs"), "{e}");
        // Another container's ids are its own; a released id is free again.
        assert!(JobGroup::claim(&format!("{container}-other"), None).is_ok());
        let freed = held[7].gid();
        drop(held);
        let again: Vec<JobGroup> = (0..COUNT - 1)
            .map(|_| JobGroup::claim(&container, Some(FIRST)).unwrap())
            .collect();
        assert!(again.iter().any(|g| g.gid() == freed));
    }
}

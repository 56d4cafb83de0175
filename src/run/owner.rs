//! Which process owns an ephemeral container, provable from any other process.
//!
//! An ephemeral container lives as long as its job: the process that started the job stops it
//! afterwards. When that process dies first (SIGKILL, the OOM killer, a crash) nobody would, and
//! the container would run for ever. So every ephemeral container carries the
//! [`crate::labels::OWNER`] label naming a lock file under `<stateDir>/owners/` that its process
//! holds with `flock(2)` for as long as it lives. The kernel drops the lock when the process dies,
//! however it dies: a lock another process can take proves the owner gone, a held one proves it
//! alive, in whatever pid namespace or container it runs, as long as it sees the same state
//! directory. A pid with its start time would prove neither across pid namespaces (a herdctl in a
//! container and one on the host share the engine), so they are only written into the file for
//! people reading it.
//!
//! One lock per process and state directory, shared by all its runners, taken by the first
//! [`crate::Runner::new`] and held until the process exits. Its set of in-flight container names
//! lets this process tell its own leaked containers (a stop that failed) from those a job of it
//! is using.

use std::collections::HashSet;
use std::fs::{self, File, TryLockError};
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{Error, Result};

/// The directory of the lock files, under the state directory.
const OWNERS_DIR: &str = "owners";

/// This process's lock for one state directory.
#[derive(Debug)]
pub(crate) struct Owner {
    /// The lock file's name: the owner label of this process's ephemeral containers.
    id: String,
    path: PathBuf,
    /// Open and locked for the process's life; the lock goes with the last descriptor.
    file: File,
    /// Names of the ephemeral containers a job of this process is creating or using.
    in_flight: Mutex<HashSet<String>>,
    /// A stop after a job failed: a container of ours runs with no job in it.
    leaked: AtomicBool,
}

/// Every owner of this process, one per state directory.
static OWNERS: Mutex<Vec<Arc<Owner>>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data are plain sets and lists: a panic elsewhere cannot leave them half-made.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// This process's owner for `state_dir` (absolute), and whether it was made by this call.
///
/// A new one is made on the first call, and again when the lock file was deleted or replaced
/// under the process (a state directory removed and recreated): containers labelled with an id
/// whose file is gone can never be proven orphaned, so new ones must name a file that exists.
pub(crate) fn current(state_dir: &Path) -> Result<(Arc<Owner>, bool)> {
    let mut owners = lock(&OWNERS);
    if let Some(i) = owners
        .iter()
        .position(|o| o.path.parent().and_then(Path::parent) == Some(state_dir))
    {
        if owners[i].still_in_place() {
            return Ok((owners[i].clone(), false));
        }
        owners.remove(i);
    }
    let owner = Arc::new(Owner::create(state_dir)?);
    owners.push(owner.clone());
    Ok((owner, true))
}

impl Owner {
    fn create(state_dir: &Path) -> Result<Owner> {
        let dir = state_dir.join(OWNERS_DIR);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let pid = std::process::id();
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(pid);
        h.write_u64(crate::labels::now_ms());
        let id = format!("{pid}-{:016x}", h.finish());
        let path = dir.join(&id);
        // Written and locked under a dot name, then renamed: the file never appears unlocked,
        // so a reaper cannot take a live owner for a dead one. Sweeps skip dot names.
        let tmp = dir.join(format!(".{id}.tmp"));
        let ctx = |what: &str, p: &Path| format!("{what} owner lock {}", p.display());
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(ctx("create", &tmp), e))?;
        file.lock().map_err(|e| Error::io(ctx("lock", &tmp), e))?;
        let about = serde_json::json!({
            "pid": pid,
            "start_ticks": start_ticks(),
            "created_ms": crate::labels::now_ms(),
        });
        file.write_all(format!("{about}\n").as_bytes())
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = fs::remove_file(&tmp);
                Error::io(ctx("write", &path), e)
            })?;
        Ok(Owner {
            id,
            path,
            file,
            in_flight: Mutex::new(HashSet::new()),
            leaked: AtomicBool::new(false),
        })
    }

    /// The owner label's value.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Whether the lock file at the path is still the one this process holds.
    fn still_in_place(&self) -> bool {
        match (fs::metadata(&self.path), self.file.metadata()) {
            (Ok(there), Ok(held)) => there.dev() == held.dev() && there.ino() == held.ino(),
            _ => false,
        }
    }

    /// Marks `name` as a container a job of this process is creating or using, until the
    /// returned guard is dropped. Taken before the create, so no reap of this process ever
    /// sees the container unaccounted for.
    pub(crate) fn track(self: &Arc<Owner>, name: &str) -> InFlight {
        lock(&self.in_flight).insert(name.to_string());
        InFlight {
            owner: self.clone(),
            name: name.to_string(),
        }
    }

    pub(crate) fn is_in_flight(&self, name: &str) -> bool {
        lock(&self.in_flight).contains(name)
    }

    /// Records that a container of this process may run with no job in it.
    pub(crate) fn set_leaked(&self) {
        self.leaked.store(true, Ordering::Relaxed);
    }

    /// Whether a leak was recorded since the last call.
    pub(crate) fn take_leaked(&self) -> bool {
        self.leaked.swap(false, Ordering::Relaxed)
    }
}

/// A container name in its owner's in-flight set, removed on drop.
#[derive(Debug)]
pub(crate) struct InFlight {
    owner: Arc<Owner>,
    name: String,
}

impl InFlight {
    pub(crate) fn owner(&self) -> &Arc<Owner> {
        &self.owner
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.owner.in_flight).remove(&self.name);
    }
}

/// What the lock file of an owner says about it.
#[derive(Debug)]
pub(crate) enum Liveness {
    /// Its lock is held: a process lives that owns it.
    Alive,
    /// Its lock was free and is now held by the caller: the owner is gone. Dropping this lets
    /// go; [`Orphaned::forget`] also removes the file.
    Dead(Orphaned),
    /// No such lock file here (another state directory's owner, or a tampered label), or it
    /// cannot be read: nothing is proven, so nothing may be done.
    Unknown,
}

/// The lock of a dead owner, held by the caller.
#[derive(Debug)]
pub(crate) struct Orphaned {
    path: PathBuf,
    _file: File,
}

impl Orphaned {
    /// Removes the lock file (while still holding it, so no one else takes it meanwhile).
    pub(crate) fn forget(self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Whether the owner named `id` lives, judged by its lock under `state_dir`.
pub(crate) fn liveness(state_dir: &Path, id: &str) -> Liveness {
    if !valid_id(id) {
        return Liveness::Unknown;
    }
    let path = state_dir.join(OWNERS_DIR).join(id);
    let Ok(file) = File::open(&path) else {
        return Liveness::Unknown;
    };
    match file.try_lock() {
        Ok(()) => Liveness::Dead(Orphaned { path, _file: file }),
        Err(TryLockError::WouldBlock) => Liveness::Alive,
        Err(TryLockError::Error(_)) => Liveness::Unknown,
    }
}

/// Whether an owner with this id ever had its lock in this state directory (alive or not): the
/// warm pool containers of an owner that is not here belong to another state directory, whose
/// claims this process cannot see.
pub(crate) fn known(state_dir: &Path, id: &str) -> bool {
    valid_id(id) && state_dir.join(OWNERS_DIR).join(id).exists()
}

/// Removes the lock files of dead owners, except those in `keep` (owners with a container that
/// could not be stopped: their file is the only proof left that they are gone).
pub(crate) fn sweep(state_dir: &Path, keep: &HashSet<String>) {
    let Ok(entries) = fs::read_dir(state_dir.join(OWNERS_DIR)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if keep.contains(name) {
            continue;
        }
        if let Liveness::Dead(orphaned) = liveness(state_dir, name) {
            orphaned.forget();
        }
    }
}

/// An owner id as this module makes them: `<pid>-<16 hex digits>`. Anything else (a label
/// someone wrote, `../x`) names no file of ours.
fn valid_id(id: &str) -> bool {
    match id.split_once('-') {
        Some((pid, hex)) => {
            !pid.is_empty()
                && pid.len() <= 10
                && pid.bytes().all(|b| b.is_ascii_digit())
                && hex.len() == 16
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }
        None => false,
    }
}

/// This process's start time in clock ticks after boot (`/proc/self/stat`, field 22), for
/// people reading a lock file; 0 where there is no `/proc`.
fn start_ticks() -> u64 {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // The command name (field 2) may hold spaces and parentheses: count from its last `)`.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_before_they_become_paths() {
        assert!(valid_id("1234-0123456789abcdef"));
        for bad in [
            "",
            "1234",
            "-0123456789abcdef",
            "1234-0123456789ABCDEF",
            "../../etc-0123456789abcdef",
            "1234-0123456789abcdef/..",
            "1234-0123456789abcde",
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_held_lock_is_alive_a_released_one_dead_and_a_missing_one_unknown() {
        let state = tempfile::tempdir().unwrap();
        let owner = Owner::create(state.path()).unwrap();
        assert!(valid_id(owner.id()), "{}", owner.id());
        assert!(matches!(
            liveness(state.path(), owner.id()),
            Liveness::Alive
        ));
        let id = owner.id().to_string();
        drop(owner);
        match liveness(state.path(), &id) {
            Liveness::Dead(orphaned) => orphaned.forget(),
            other => panic!("{other:?}"),
        }
        assert!(matches!(liveness(state.path(), &id), Liveness::Unknown));
        assert!(matches!(
            liveness(state.path(), "1-0000000000000000"),
            Liveness::Unknown
        ));
    }

    #[test]
    fn one_owner_per_state_directory_replaced_when_its_file_goes() {
        let state = tempfile::tempdir().unwrap();
        let (a, made) = current(state.path()).unwrap();
        assert!(made);
        let (b, made) = current(state.path()).unwrap();
        assert!(!made);
        assert_eq!(a.id(), b.id());
        fs::remove_dir_all(state.path().join(OWNERS_DIR)).unwrap();
        let (c, made) = current(state.path()).unwrap();
        assert!(made);
        assert_ne!(c.id(), a.id());
        assert!(matches!(liveness(state.path(), c.id()), Liveness::Alive));
    }

    #[test]
    fn sweep_removes_only_dead_owners_files() {
        let state = tempfile::tempdir().unwrap();
        let live = Owner::create(state.path()).unwrap();
        let dead = Owner::create(state.path()).unwrap();
        let kept = Owner::create(state.path()).unwrap();
        let (dead_id, kept_id) = (dead.id().to_string(), kept.id().to_string());
        drop((dead, kept));
        sweep(state.path(), &HashSet::from([kept_id.clone()]));
        let dir = state.path().join(OWNERS_DIR);
        assert!(dir.join(live.id()).exists());
        assert!(!dir.join(&dead_id).exists());
        assert!(dir.join(&kept_id).exists());
    }

    #[test]
    fn the_start_time_is_read_from_proc() {
        assert!(start_ticks() > 0);
    }
}

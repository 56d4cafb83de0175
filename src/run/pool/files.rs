//! The pool's claim files under `<stateDir>/pool/claims/`: who holds a pool container right now.
//!
//! Which process owns an idle pool container is the owner lock of [`crate::run::owner`] (its id is
//! the [`crate::labels::POOL`] label). Who holds one is a claim: `claims/<container name>`,
//! created exclusively (a hard link, which fails when the name exists, of a file already locked
//! with `flock(2)` and written), so of two processes that race for one container exactly one
//! gets it, and locked while held, so a free lock proves the holder gone however it died. Its
//! content says why it is held: `warm` (being created and checked), `job` (a job runs in it) or
//! `retire` (being removed). A `job` claim outlives its job as a tombstone, so the warmer never
//! hands the container out again; it goes with the container.
//!
//! Why not the engine's rename as the claim: it writes the container's config to disk (measured
//! 7-35 ms on the project's machines) and holds the container's lock meanwhile, which the job's
//! own exec then waits for; a claim here costs a few system calls. Every process that can see a
//! pool container under a config hash shares this state directory: the hash covers the session
//! directory's path under it.

use crate::{Error, Result};
use std::fs::{self, File, TryLockError};
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The pool's directory under the state directory.
pub(crate) const POOL_DIR: &str = "pool";
const CLAIMS: &str = "claims";
/// A claim file's name is the container's name, unless that is longer than this (file names
/// stop at 255 bytes; a container name has none): then a hash of it.
const LONGEST_NAME: usize = 200;

/// Why a claim is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// The container is being created and checked; nobody may take it yet.
    Warm,
    /// A job runs (or ran) in it.
    Job,
    /// It is being removed.
    Retire,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Warm => "warm",
            Purpose::Job => "job",
            Purpose::Retire => "retire",
        }
    }

    fn parse(text: &str) -> Option<Purpose> {
        let v: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
        match v["purpose"].as_str()? {
            "warm" => Some(Purpose::Warm),
            "job" => Some(Purpose::Job),
            "retire" => Some(Purpose::Retire),
            _ => None,
        }
    }
}

fn make_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("create {}", dir.display()), e))
}

/// A random 64-bit value in hex, for names no other process picks.
fn random_hex() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(crate::labels::now_ms());
    format!("{:016x}", h.finish())
}

/// Writes `content` to a new file under `dir` with a dot name, locked: it is published (by rename
/// or hard link) only once locked and written, so no reader ever finds it free by mistake.
fn locked_temp(dir: &Path, content: &str) -> Result<(PathBuf, File)> {
    let tmp = dir.join(format!(".{}.tmp", random_hex()));
    let ctx = |what: &str| format!("{what} {}", tmp.display());
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| Error::io(ctx("create"), e))?;
    let written = file
        .lock()
        .and_then(|()| file.write_all(content.as_bytes()));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(ctx("write"), e));
    }
    Ok((tmp, file))
}

/// What a claim file says about its holder.
#[derive(Debug)]
enum Liveness {
    /// Its lock is held: the holder lives.
    Alive,
    /// Its lock was free and the caller now holds it: the holder is gone (or let go). Dropping
    /// this lets go again.
    Free(Held),
    /// There is no such file.
    Unknown,
}

/// A lock the caller took from a holder that is gone.
#[derive(Debug)]
pub(crate) struct Held {
    path: PathBuf,
    file: File,
}

impl Held {
    /// Why the claim was taken (claim files only); `None` when the file says nothing readable
    /// (its taker died between creating and writing it, which a claim's taker never does, so
    /// only a tampered file).
    pub(crate) fn purpose(&mut self) -> Option<Purpose> {
        let mut text = String::new();
        self.file.read_to_string(&mut text).ok()?;
        Purpose::parse(&text)
    }

    /// Removes the file while still holding its lock, so nobody takes it meanwhile.
    pub(crate) fn forget(self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn liveness_of(path: PathBuf) -> Liveness {
    let Ok(file) = File::open(&path) else {
        return Liveness::Unknown;
    };
    match file.try_lock() {
        Ok(()) => Liveness::Free(Held { path, file }),
        Err(TryLockError::WouldBlock) => Liveness::Alive,
        Err(TryLockError::Error(_)) => Liveness::Unknown,
    }
}

/// The claim file's name for a container.
fn claim_file(state_dir: &Path, container: &str) -> PathBuf {
    let valid = !container.is_empty()
        && container.len() <= LONGEST_NAME
        && !container.starts_with('.')
        && container
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    let name = if valid {
        container.to_string()
    } else {
        format!(
            "h-{}",
            crate::hash::hash_value(&serde_json::Value::String(container.into()))
        )
    };
    state_dir.join(POOL_DIR).join(CLAIMS).join(name)
}

/// A claim on one pool container, held (locked) until dropped.
#[derive(Debug)]
pub(crate) struct Claim {
    path: PathBuf,
    _file: File,
}

impl Claim {
    /// Claims the container named `container` for `purpose`; `None` when someone else holds (or
    /// held) it. Atomic across processes: the claim file appears already locked, by a hard link
    /// that fails when the name exists.
    pub(crate) fn take(
        state_dir: &Path,
        container: &str,
        purpose: Purpose,
        owner: &str,
    ) -> Result<Option<Claim>> {
        let path = claim_file(state_dir, container);
        let dir = path.parent().unwrap_or(state_dir);
        let content = serde_json::json!({
            "purpose": purpose.as_str(),
            "owner": owner,
            "container": container,
        });
        let (tmp, file) = match locked_temp(dir, &format!("{content}\n")) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                make_dir(dir)?;
                locked_temp(dir, &format!("{content}\n"))?
            }
            other => other?,
        };
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(Some(Claim { path, _file: file })),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(Error::io(format!("claim {}", path.display()), e)),
        }
    }

    /// Lets go and removes the file: the container is free for the next claim (a warmed
    /// container now ready), or gone (removed).
    pub(crate) fn release(self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Who holds a pool container, by its claim file.
#[derive(Debug)]
pub(crate) enum ClaimState {
    /// No claim: an idle pool container (or one of another state directory).
    None,
    /// Held by a live process.
    Held,
    /// The file is there but its holder let go or died; the caller now holds it.
    Free(Held),
}

/// The claim state of the container named `container`.
pub(crate) fn claim_state(state_dir: &Path, container: &str) -> ClaimState {
    let path = claim_file(state_dir, container);
    match liveness_of(path.clone()) {
        Liveness::Unknown => ClaimState::None,
        Liveness::Free(held) => ClaimState::Free(held),
        Liveness::Alive => ClaimState::Held,
    }
}

/// Why the container is claimed and since when (unix milliseconds), without touching its lock:
/// `None` when there is no claim file, a `None` purpose when it cannot be read.
pub(crate) fn claim_purpose(state_dir: &Path, container: &str) -> Option<(Option<Purpose>, u64)> {
    let mut file = match File::open(claim_file(state_dir, container)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(_) => return Some((None, 0)),
    };
    let since = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64);
    let mut text = String::new();
    let purpose = file
        .read_to_string(&mut text)
        .ok()
        .and_then(|_| Purpose::parse(&text));
    Some((purpose, since))
}

/// Whether any claim file exists for the container (held or not): cheaper than
/// [`claim_state`] where only "is it free to take" matters.
pub(crate) fn is_claimed(state_dir: &Path, container: &str) -> bool {
    claim_file(state_dir, container).exists()
}

/// Removes a free claim file of a container that is gone (a tombstone).
pub(crate) fn forget_claim(state_dir: &Path, container: &str) {
    if let ClaimState::Free(held) = claim_state(state_dir, container) {
        held.forget();
    }
}

/// Removes the free claim files whose container is not in `existing` (its name), and temp files
/// a crash left.
pub(crate) fn sweep_claims(state_dir: &Path, existing: &std::collections::HashSet<PathBuf>) {
    let dir = state_dir.join(POOL_DIR).join(CLAIMS);
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if existing.contains(&path) {
            continue;
        }
        if let Liveness::Free(held) = liveness_of(path) {
            held.forget();
        }
    }
}

/// The claim file paths of these container names, for [`sweep_claims`].
pub(crate) fn claim_paths<'a>(
    state_dir: &Path,
    names: impl IntoIterator<Item = &'a str>,
) -> std::collections::HashSet<PathBuf> {
    names
        .into_iter()
        .map(|n| claim_file(state_dir, n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_taken_once_and_says_why() {
        let state = tempfile::tempdir().unwrap();
        let me = "1-0123456789abcdef";
        let first = Claim::take(state.path(), "herdctl-a-1-x", Purpose::Job, me).unwrap();
        assert!(first.is_some());
        assert!(Claim::take(state.path(), "herdctl-a-1-x", Purpose::Job, me)
            .unwrap()
            .is_none());
        assert!(is_claimed(state.path(), "herdctl-a-1-x"));
        // Held by this process (a lock of another open file description): alive.
        assert!(matches!(
            claim_state(state.path(), "herdctl-a-1-x"),
            ClaimState::Held
        ));
        let (purpose, since) = claim_purpose(state.path(), "herdctl-a-1-x").unwrap();
        assert_eq!(purpose, Some(Purpose::Job));
        assert!(since.abs_diff(crate::labels::now_ms()) < 60_000, "{since}");
        // Let go without releasing: a tombstone, free, still not claimable.
        drop(first);
        // A process another test spawns between our open and this drop holds the open file
        // (and its lock) from its fork until its exec closes it: wait that out.
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let state_now = loop {
            match claim_state(state.path(), "herdctl-a-1-x") {
                ClaimState::Held if std::time::Instant::now() < give_up => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                other => break other,
            }
        };
        match state_now {
            ClaimState::Free(mut held) => assert_eq!(held.purpose(), Some(Purpose::Job)),
            other => panic!("{other:?}"),
        }
        assert!(
            Claim::take(state.path(), "herdctl-a-1-x", Purpose::Warm, me)
                .unwrap()
                .is_none()
        );
        forget_claim(state.path(), "herdctl-a-1-x");
        assert!(matches!(
            claim_state(state.path(), "herdctl-a-1-x"),
            ClaimState::None
        ));
        // Released: free to take again; no temp files left behind.
        let warm = Claim::take(state.path(), "herdctl-a-1-x", Purpose::Warm, me)
            .unwrap()
            .unwrap();
        warm.release();
        assert!(Claim::take(state.path(), "herdctl-a-1-x", Purpose::Job, me)
            .unwrap()
            .is_some());
        let left: Vec<_> = fs::read_dir(state.path().join(POOL_DIR).join(CLAIMS))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["herdctl-a-1-x"]);
    }

    /// Processes racing for the same containers' claims: each is taken exactly once. Four
    /// processes (this test binary, running [`claim_race_child`]) wait at a starting line, then
    /// claim the same 400 names in the same order, so they collide on most of them.
    #[test]
    fn processes_racing_for_one_claim_get_it_once() {
        const RACERS: usize = 4;
        const NAMES: usize = 400;
        let state = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let go = state.path().join("go");
        let children: Vec<_> = (0..RACERS)
            .map(|i| {
                std::process::Command::new(&exe)
                    .args(["run::pool::files::tests::claim_race_child", "--exact"])
                    .args(["--nocapture", "--test-threads", "1"])
                    .env("HERDCTL_CLAIM_RACE", state.path())
                    .env("HERDCTL_CLAIM_RACE_NAMES", NAMES.to_string())
                    .env("HERDCTL_CLAIM_RACE_GO", &go)
                    .env("HERDCTL_CLAIM_RACE_ME", i.to_string())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let ready = |i| state.path().join(format!("ready-{i}")).exists();
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !(0..RACERS).all(ready) {
            assert!(
                std::time::Instant::now() < give_up,
                "the racers never got ready"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        fs::write(&go, "").unwrap();
        let mut won = vec![0; NAMES];
        let mut racers_that_won = 0;
        for (i, mut child) in children.into_iter().enumerate() {
            assert!(child.wait().unwrap().success());
            let line = fs::read_to_string(state.path().join(format!("won-{i}"))).unwrap();
            let mine: Vec<usize> = line
                .split_whitespace()
                .map(|n| n.parse().unwrap())
                .collect();
            racers_that_won += usize::from(!mine.is_empty());
            for k in mine {
                won[k] += 1;
            }
        }
        let wrong: Vec<_> = won.iter().enumerate().filter(|(_, n)| **n != 1).collect();
        assert!(
            wrong.is_empty(),
            "names not claimed exactly once: {wrong:?}"
        );
        // Not a race if one process took everything before the others started.
        assert!(racers_that_won > 1, "only one racer ever won");
    }

    /// One racer of [`processes_racing_for_one_claim_get_it_once`]; a no-op run on its own.
    #[test]
    fn claim_race_child() {
        let Some(dir) = std::env::var_os("HERDCTL_CLAIM_RACE") else {
            return;
        };
        let dir = PathBuf::from(dir);
        let names: usize = std::env::var("HERDCTL_CLAIM_RACE_NAMES")
            .unwrap()
            .parse()
            .unwrap();
        let go = PathBuf::from(std::env::var_os("HERDCTL_CLAIM_RACE_GO").unwrap());
        let i = std::env::var("HERDCTL_CLAIM_RACE_ME").unwrap();
        let me = format!("{}-0123456789abcdef", std::process::id());
        fs::write(dir.join(format!("ready-{i}")), "").unwrap();
        while !go.exists() {
            std::hint::spin_loop();
        }
        let mut claims = Vec::new();
        let mut won = Vec::new();
        for k in 0..names {
            if let Some(c) =
                Claim::take(&dir, &format!("herdctl-race-{k}"), Purpose::Job, &me).unwrap()
            {
                claims.push(c);
                won.push(k.to_string());
            }
        }
        fs::write(dir.join(format!("won-{i}")), won.join(" ")).unwrap();
    }

    #[test]
    fn odd_and_long_names_become_hashes() {
        let state = Path::new("/s");
        assert_eq!(
            claim_file(state, "herdctl-a-1-x"),
            Path::new("/s/pool/claims/herdctl-a-1-x")
        );
        for odd in [".hidden", "../x", &"a".repeat(300)] {
            let f = claim_file(state, odd);
            let name = f.file_name().unwrap().to_str().unwrap();
            assert!(name.starts_with("h-") && name.len() == 18, "{name}");
        }
    }

    #[test]
    fn sweeps_remove_only_free_files_of_what_is_gone() {
        let state = tempfile::tempdir().unwrap();
        let me = "1-0123456789abcdef";
        let held = Claim::take(state.path(), "held", Purpose::Job, me)
            .unwrap()
            .unwrap();
        drop(Claim::take(state.path(), "gone", Purpose::Job, me).unwrap());
        drop(Claim::take(state.path(), "kept", Purpose::Job, me).unwrap());
        sweep_claims(state.path(), &claim_paths(state.path(), ["kept"]));
        assert!(is_claimed(state.path(), "held"));
        assert!(!is_claimed(state.path(), "gone"));
        assert!(is_claimed(state.path(), "kept"));
        drop(held);
    }
}

//! The labels and names this project puts on containers: the only way it recognises its own.
//!
//! Selection is always by exact label filter, never by name: a name filter for `herdctl-foo-` also
//! matches agent `foo-bar`'s containers. Names only keep herdctl's `herdctl-<agent>-` prefix so that
//! people reading `docker ps` know what they see.

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// `1` on every container this project creates.
pub const MANAGED: &str = "dev.herdctl.managed";
/// The agent's qualified name, exact.
pub const AGENT: &str = "dev.herdctl.agent";
/// `ephemeral` or `persistent`.
pub const MODE: &str = "dev.herdctl.mode";
/// The hash of everything that shapes the container; a persistent container is reused only by a
/// job whose config hashes the same.
pub const CONFIG_HASH: &str = "dev.herdctl.config-hash";
/// Creation time in unix milliseconds; retention orders by it.
pub const CREATED: &str = "dev.herdctl.created";
/// `dev:inode` of each bind mount's host source at create time, comma-separated in mount order:
/// a persistent container whose sources were since deleted and recreated is replaced, not reused
/// (its mounts still point at the deleted directories).
pub const MOUNT_IDS: &str = "dev.herdctl.mount-ids";
/// On an ephemeral container: the lock file, under `<stateDir>/owners/`, of the process whose job
/// it runs. A container whose owner's lock is free is stopped by the next runner (see `gc`).
pub const OWNER: &str = "dev.herdctl.owner";

/// On a warm pool container (see `pool`), instead of [`OWNER`]: the owner id (the same lock under
/// `<stateDir>/owners/`) of the process that warmed it, which proves its idle containers kept.
/// The label stays when a job (of any process) takes the container; whose job runs in it is told
/// by the pool's claim files, so the owner reaper of ephemeral containers leaves it alone.
pub const POOL: &str = "dev.herdctl.pool";
/// On a warm pool container checked with the runner's opt-in for settings that loosen the
/// container (`allow_unsafe_host_config` of the runner, which the config hash does not cover):
/// `1`. Another process takes it only with the same opt-in.
pub const POOL_LOOSE: &str = "dev.herdctl.pool-loose";

/// Whether a container is fresh per job or reused across jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// A fresh container per job, stopped (not removed) after it.
    Ephemeral,
    /// One container per agent and config, reused across jobs, runners and processes.
    Persistent,
}

impl Mode {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Ephemeral => "ephemeral",
            Mode::Persistent => "persistent",
        }
    }
}

/// The labels of a new container: the user's labels, then ours (which the config already forbids
/// users to set).
pub(crate) fn container_labels(
    agent: &str,
    mode: Mode,
    config_hash: &str,
    created_ms: u64,
    user_labels: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = user_labels.clone();
    labels.insert(MANAGED.into(), "1".into());
    labels.insert(AGENT.into(), agent.into());
    labels.insert(MODE.into(), mode.as_str().into());
    labels.insert(CONFIG_HASH.into(), config_hash.into());
    labels.insert(CREATED.into(), created_ms.to_string());
    labels
}

/// The name of an ephemeral container: `herdctl-<agent>-<ms>-<8 hex>`.
///
/// The suffix is a per-process counter through a bijection keyed by a per-process random seed,
/// so two jobs started in the same millisecond never collide in one process (the first 2^32
/// names are all different), and two processes collide only if their seeds do (pids alone would
/// collide between two processes in different pid namespaces).
pub(crate) fn ephemeral_name(sanitized_agent: &str, created_ms: u64) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: OnceLock<u32> = OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let mut h = RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish() as u32
    });
    // Multiplying by an odd number and adding are bijections on u32.
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) as u32;
    let suffix = n.wrapping_mul(0x9E37_79B9).wrapping_add(seed);
    format!("herdctl-{sanitized_agent}-{created_ms}-{suffix:08x}")
}

/// The name of an agent's persistent container for one config: `herdctl-<agent>-persistent-<hash>`.
///
/// Deterministic on purpose: two processes that race to create it get a 409 for the loser, which
/// then uses the winner's container. That is how concurrent jobs of one agent end with exactly one.
pub(crate) fn persistent_name(sanitized_agent: &str, config_hash: &str) -> String {
    let short = &config_hash[..config_hash.len().min(12)];
    format!("herdctl-{sanitized_agent}-persistent-{short}")
}

/// Milliseconds since the unix epoch (0 if the clock is before 1970, which only a broken clock is).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ephemeral_names_do_not_collide_in_one_millisecond() {
        let names: HashSet<String> = (0..100_000).map(|_| ephemeral_name("a", 42)).collect();
        assert_eq!(names.len(), 100_000);
        assert!(names.iter().all(|n| n.starts_with("herdctl-a-42-")));
    }

    #[test]
    fn our_labels_win_over_user_labels() {
        let mut user = BTreeMap::new();
        user.insert("team".to_string(), "x".to_string());
        let l = container_labels("fleet.a", Mode::Persistent, "abc", 7, &user);
        assert_eq!(l[AGENT], "fleet.a");
        assert_eq!(l[MODE], "persistent");
        assert_eq!(l[CREATED], "7");
        assert_eq!(l[MANAGED], "1");
        assert_eq!(l["team"], "x");
    }

    #[test]
    fn persistent_names_are_deterministic() {
        assert_eq!(
            persistent_name("a", "0123456789abcdef"),
            "herdctl-a-persistent-0123456789ab"
        );
    }
}

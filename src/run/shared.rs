//! What every job and lease of a runner shares: the engine handle and options, and which
//! containers this process's jobs are using.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use crate::engine::Engine;
use crate::run::options::RunnerOptions;

/// What every job and lease of a runner shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub engine: Engine,
    pub options: RunnerOptions,
    /// The warm pool's size per ephemeral agent: the option or its environment variable, 0
    /// with [`PullPolicy::Always`].
    pub warm_pool: usize,
    /// Agents whose warm pools this runner used, for [`Runner::close`].
    pub pools_used: Mutex<HashSet<String>>,
}

/// Containers this process's jobs are using (in any runner: herdctl makes one per job), with a
/// count of jobs per container. Ids, which no two engines share in practice.
static IN_USE: LazyLock<Mutex<HashMap<String, usize>>> = LazyLock::new(Mutex::default);

/// Persistent containers this process has checked from inside (any runner), each with the lock
/// that the first of several jobs arriving at once holds while it checks, so the others wait
/// for its answer instead of each making the check's exec.
pub(crate) static CHECKED_INSIDE: LazyLock<Mutex<HashMap<String, Arc<Mutex<bool>>>>> =
    LazyLock::new(Mutex::default);

impl Shared {
    pub(crate) fn new(engine: Engine, options: RunnerOptions, warm_pool: usize) -> Shared {
        Shared {
            engine,
            options,
            warm_pool,
            pools_used: Mutex::new(HashSet::new()),
        }
    }

    pub(crate) fn hold(&self, id: &str) {
        *self.lock().entry(id.to_string()).or_default() += 1;
    }

    /// Lets go of one hold.
    pub(crate) fn release(&self, id: &str) {
        let mut held = self.lock();
        if let Some(n) = held.get_mut(id) {
            *n -= 1;
            if *n == 0 {
                held.remove(id);
            }
        }
    }

    pub(crate) fn is_held(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// Notes that this runner used the warm pool of `agent`.
    pub(crate) fn used_pool(&self, agent: &str) {
        let mut used = self.pools_used.lock().unwrap_or_else(|p| p.into_inner());
        if !used.contains(agent) {
            used.insert(agent.to_string());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'static, HashMap<String, usize>> {
        // The map holds plain counts: a panic elsewhere cannot leave it inconsistent.
        IN_USE.lock().unwrap_or_else(|p| p.into_inner())
    }
}

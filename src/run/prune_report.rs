//! What a removal of containers did (a prune, a gc, a warm pool's close or reap): below both
//! retention and the pool, which report in it.

/// What a prune, a gc or a pool's clean-up did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    /// Ids of the containers removed.
    pub removed: Vec<String>,
    /// Ids of running ephemeral containers stopped because no live process owned them (`gc`
    /// only; a prune stops nothing).
    pub stopped: Vec<String>,
    /// Containers that were chosen but could not be removed or stopped (started meanwhile,
    /// engine errors).
    pub warnings: Vec<String>,
}

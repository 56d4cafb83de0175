//! Doing the plan: acquiring a container (fresh, reused or from a warm pool), running the job's
//! exec in it, and reporting. Everything here talks to the engine or keeps state on the host
//! (owner locks, pool claims, job records); what to ask for was decided below, in [`crate::plan`].

pub(crate) mod inside;
pub(crate) mod isolation;
pub(crate) mod job;
pub(crate) mod lifecycle;
pub(crate) mod options;
pub(crate) mod owner;
pub(crate) mod pool;
pub(crate) mod prune_report;
pub mod retention;
pub(crate) mod runner;
pub(crate) mod shared;
pub(crate) mod spec;
pub(crate) mod start;

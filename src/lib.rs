//! Run Claude Code agent jobs in Docker containers, for herdctl.
//!
//! This crate is the core of herdctl-container: a **blocking** Docker Engine API client over the
//! unix socket, and on top of it container lifecycle (ephemeral or persistent), retention, credentials,
//! path translation, security defaults and job execution with streaming output.
//!
//! Why blocking: every caller we serve (a CLI, napi worker threads, Rust tools that may run inside
//! their own async runtime) can afford a thread per job, and a blocking client has no runtime to
//! start, share or deadlock. Every call returns when it is done or when its timeout passes.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod engine;
mod error;

pub use error::{Error, Result};

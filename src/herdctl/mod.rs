//! What herdctl asks for, in herdctl's terms: an agent's invocation (`claude -p` or an Agent SDK
//! `query()`), its injected MCP servers bridged into the container, one execute call as a job of
//! SDK messages, and a live multi-turn session. The top layer: it uses the runner ([`crate::run`])
//! and nothing below it knows herdctl's agent shapes.

pub mod agent;
pub mod invocation;
pub mod mcp;
pub mod session;

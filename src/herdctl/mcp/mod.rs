//! Injected MCP servers: tools that live in the calling process (herdctl's file sender, for one),
//! made callable by the agent inside the container.
//!
//! herdctl's own bridge serves them over HTTP on `0.0.0.0` and has the container dial a host name
//! on a shared docker network: every container on that network (and anything else that reaches the
//! host's port) can call the tools, and an agent with `network: none` cannot reach them at all.
//! Here each server of a job gets a unix socket in a per-agent directory that only that agent's
//! containers mount (read-only, at [`CONTAINER_MCP_DIR`]), and a secret. Inside the container the
//! agent starts the server as an ordinary stdio MCP server: a one-line `node` program
//! ([`STDIO_SHIM`]) that sends the secret, then pipes its stdin and stdout to the socket. The
//! secret travels only in the agent's MCP config (a private file or stdin, never argv), so
//! neither another agent that can see the state directory through its workspace, nor a host user
//! reading `ps`, nor a job of the same agent in another container can call the tools (jobs
//! sharing one persistent container share its user, and so each other's processes). They work
//! with any network mode, and no port is opened.
//!
//! The secret is the protection that holds. The socket directory's modes keep other host users
//! out, but not processes of this process's uid, and when the containers run as that uid (a
//! non-root herdctl with the default user) a container that sees the state directory through its
//! workspace can reach every agent's sockets. So a connection gets one try, on its first line,
//! within a deadline fixed at accept, against a comparison whose time tells nothing; and what
//! reaches a socket without the secret can neither hold the agent's places nor keep it out.
//! (A host process of the containers' uid can read the secret from the agent's processes, as it
//! can anything else of theirs: on the host, the boundary is the uid.)
//!
//! The protocol side is small: MCP's stdio transport is JSON-RPC 2.0, one message a line. The
//! bridge answers `initialize`, `ping` and `tools/list` itself from the servers' descriptions and
//! hands each `tools/call` to a [`ToolHandler`] on its own thread (so a slow tool never holds up
//! another call or a ping), with container paths in the arguments translated to the host's.

mod bridge;
mod protocol;
mod reader;
mod scan;

pub(crate) use bridge::Bridge;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::{Error, Result};

pub use crate::paths::CONTAINER_MCP_DIR;

/// The in-container stdio server: `node -e STDIO_SHIM <socket>` with the socket's secret in
/// [`SECRET_ENV`] sends the secret as its first line, then pipes stdin to the socket and the socket
/// to stdout, and exits when the bridge closes. Node because herdctl's images have it (Claude Code
/// and the Agent SDK run on it); nothing of ours needs to be in the image.
pub const STDIO_SHIM: &str = r#"const s=require("net").connect(process.argv[1]);s.write((process.env.HERDCTL_MCP_SECRET||"")+"\n");process.stdin.pipe(s);s.pipe(process.stdout);s.on("close",()=>process.exit(0));s.on("error",e=>{process.stderr.write("herdctl-container MCP bridge: "+e.message+"\n");process.exit(1)})"#;

/// The environment variable of the shim that carries its socket's secret.
pub const SECRET_ENV: &str = "HERDCTL_MCP_SECRET";

/// One MCP server in herdctl's agent format (an agent's `mcp_servers` entry; the bridge gives
/// each injected server one too).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct McpServer {
    /// An HTTP server's address.
    pub url: Option<String>,
    /// A process server's command.
    pub command: Option<String>,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment (may hold secrets: it travels on stdin, never in argv).
    pub env: BTreeMap<String, String>,
}

/// One injected server, as described by herdctl's `InjectedMcpServerDef` without its handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedServer {
    /// The server's name: the agent sees its tools as `mcp__<name>__<tool>`.
    pub name: String,
    /// Reported in `initialize`. Default: `0.1.0`, as herdctl's bridge does.
    pub version: String,
    /// The tools it offers.
    pub tools: Vec<Tool>,
}

/// One tool of an injected server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// The tool's name within its server.
    pub name: String,
    /// What the model reads to decide when to call it.
    pub description: String,
    /// The JSON Schema of its arguments. Default: an object with any properties.
    pub input_schema: Value,
}

impl InjectedServer {
    /// Reads one entry of herdctl's `injectedMcpServers` (`{name?, version?, tools: [{name,
    /// description?, inputSchema?}]}`; the handlers stay in the caller's process). `key` is the
    /// entry's key, which names the server.
    pub fn from_json(key: &str, def: &Value) -> Result<InjectedServer> {
        let field = format!("injectedMcpServers.{key}");
        if !valid_name(key) {
            return Err(Error::invalid(
                field,
                "is not a server name; expected letters, digits, '_' or '-' (the agent calls its tools mcp__<name>__<tool>)",
            ));
        }
        let Some(def) = def.as_object() else {
            return Err(Error::invalid(field, "expected an object with \"tools\""));
        };
        let version = match def.get("version") {
            None | Some(Value::Null) => "0.1.0".to_string(),
            Some(Value::String(v)) => v.clone(),
            Some(_) => {
                return Err(Error::invalid(
                    format!("{field}.version"),
                    "expected a string",
                ))
            }
        };
        let Some(Value::Array(items)) = def.get("tools") else {
            return Err(Error::invalid(
                format!("{field}.tools"),
                "missing or not an array; expected the server's tools",
            ));
        };
        let mut tools: Vec<Tool> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let tool = Tool::from_json(&format!("{field}.tools[{i}]"), item, &tools)?;
            tools.push(tool);
        }
        Ok(InjectedServer {
            name: key.to_string(),
            version,
            tools,
        })
    }
}

impl Tool {
    /// Reads one tool of a server (`at` is its field, for errors); a name already in `earlier`
    /// is refused: the agent could call only one of the two.
    fn from_json(at: &str, item: &Value, earlier: &[Tool]) -> Result<Tool> {
        let name = match item.get("name") {
            Some(Value::String(n)) if valid_name(n) => n.clone(),
            _ => {
                return Err(Error::invalid(
                    format!("{at}.name"),
                    "missing or not a tool name; expected letters, digits, '_' or '-'",
                ))
            }
        };
        if earlier.iter().any(|t| t.name == name) {
            return Err(Error::invalid(
                format!("{at}.name"),
                format!("{name:?} is listed twice; tool names must be unique"),
            ));
        }
        let description = match item.get("description") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(d)) => d.clone(),
            Some(_) => {
                return Err(Error::invalid(
                    format!("{at}.description"),
                    "expected a string",
                ))
            }
        };
        let input_schema = match item.get("inputSchema") {
            None | Some(Value::Null) => json!({"type": "object"}),
            Some(schema @ Value::Object(_)) => schema.clone(),
            Some(_) => {
                return Err(Error::invalid(
                    format!("{at}.inputSchema"),
                    "expected a JSON Schema object",
                ))
            }
        };
        Ok(Tool {
            name,
            description,
            input_schema,
        })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One call of a tool, with container paths in its arguments already rewritten to the host's.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The injected server's name.
    pub server: String,
    /// The tool's name.
    pub tool: String,
    /// The arguments the agent passed.
    pub arguments: Value,
}

/// Runs the tools of injected servers. Called on a thread of its own per call; may block.
///
/// The answer is MCP's `CallToolResult` (`{"content": [{"type": "text", "text": ...}],
/// "isError"?: bool}`); an `Err` reaches the agent as a result with `isError: true` and that
/// text, so the model can see what went wrong and carry on.
///
/// ```
/// use herdctl_container::mcp::{ToolCall, ToolHandler};
/// let handler = |call: &ToolCall| -> Result<serde_json::Value, String> {
///     Ok(serde_json::json!({"content": [{"type": "text", "text": format!("ran {}", call.tool)}]}))
/// };
/// let call = ToolCall { server: "s".into(), tool: "t".into(), arguments: serde_json::json!({}) };
/// assert!(handler.call(&call).is_ok());
/// ```
pub trait ToolHandler: Send + Sync {
    /// Runs one call.
    fn call(&self, call: &ToolCall) -> std::result::Result<Value, String>;
}

impl<F> ToolHandler for F
where
    F: Fn(&ToolCall) -> std::result::Result<Value, String> + Send + Sync,
{
    fn call(&self, call: &ToolCall) -> std::result::Result<Value, String> {
        self(call)
    }
}

impl std::fmt::Debug for dyn ToolHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ToolHandler")
    }
}

#[cfg(test)]
mod tests;

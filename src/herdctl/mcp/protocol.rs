//! The MCP side of the bridge: JSON-RPC 2.0 requests in, what to answer out. Pure (no sockets,
//! no threads), so every rule is tested on its own.

use serde_json::{json, Map, Value};

use super::{InjectedServer, ToolCall};

/// The MCP protocol versions the bridge speaks, newest first. Only tools are served, and their
/// messages are the same in all three.
const PROTOCOL_VERSIONS: [&str; 3] = ["2025-06-18", "2025-03-26", "2024-11-05"];

/// What the bridge does with one JSON-RPC message. Pure, so the protocol is tested without
/// sockets.
#[derive(Debug, PartialEq)]
pub(super) enum Step {
    /// Send this response.
    Reply(Value),
    /// A notification (or a response to us): nothing to send.
    Nothing,
    /// Run this tool and answer request `id` with its result.
    Call { id: Value, call: ToolCall },
}

pub(super) fn rpc_error(id: Value, code: i64, message: impl Into<String>) -> Step {
    Step::Reply(
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}}),
    )
}

pub(super) fn rpc_result(id: Value, result: Value) -> Step {
    Step::Reply(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// What to do with one line from the agent: reads the JSON-RPC envelope (a parse error, a
/// non-object, a request without a method are answered as JSON-RPC says), then [`answer`]s a
/// request; a notification or a response gets nothing.
pub(super) fn step(server: &InjectedServer, line: &[u8]) -> Step {
    let message: Value = match serde_json::from_slice(line) {
        Ok(m) => m,
        Err(e) => return rpc_error(Value::Null, -32700, format!("parse error: {e}")),
    };
    let Some(request) = message.as_object() else {
        return rpc_error(Value::Null, -32600, "expected one JSON-RPC request object");
    };
    let id = request.get("id").cloned();
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        // A response is never answered (we send no requests, so none is expected); anything
        // else with an id is an invalid request, and its sender waits for that answer.
        return match id {
            Some(id) if !request.contains_key("result") && !request.contains_key("error") => {
                rpc_error(id, -32600, "invalid request: expected a string \"method\"")
            }
            _ => Step::Nothing,
        };
    };
    // A notification: notifications/initialized, notifications/cancelled (a call already
    // handed to its handler runs to its end; its answer is then ignored by the client).
    let Some(id) = id else {
        return Step::Nothing;
    };
    let params = request.get("params").and_then(Value::as_object);
    answer(server, id, method, params)
}

/// Answers request `id` for `method`: the handshake, ping and the tool list here; a tool call is
/// handed to its handler; any other method is not found (only tools are served).
fn answer(
    server: &InjectedServer,
    id: Value,
    method: &str,
    params: Option<&Map<String, Value>>,
) -> Step {
    match method {
        "initialize" => initialize(server, id, params),
        "ping" => rpc_result(id, json!({})),
        "tools/list" => {
            let tools: Vec<Value> = server
                .tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "inputSchema": t.input_schema}))
                .collect();
            rpc_result(id, json!({ "tools": tools }))
        }
        "tools/call" => tool_call(server, id, params),
        other => rpc_error(id, -32601, format!("method not found: {other}")),
    }
}

/// The handshake: the client's protocol version if the bridge speaks it, else the newest it does
/// (the client then decides whether it can go on).
fn initialize(server: &InjectedServer, id: Value, params: Option<&Map<String, Value>>) -> Step {
    let asked = params
        .and_then(|p| p.get("protocolVersion"))
        .and_then(Value::as_str);
    let version = PROTOCOL_VERSIONS
        .into_iter()
        .find(|v| Some(*v) == asked)
        .unwrap_or(PROTOCOL_VERSIONS[0]);
    rpc_result(
        id,
        json!({
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": false}},
            "serverInfo": {"name": server.name, "version": server.version},
        }),
    )
}

/// `tools/call`: a call of one of the server's tools becomes a [`Step::Call`] (no arguments are
/// an empty object); an unknown tool is an invalid-params error, never a call.
fn tool_call(server: &InjectedServer, id: Value, params: Option<&Map<String, Value>>) -> Step {
    let name = params.and_then(|p| p.get("name")).and_then(Value::as_str);
    let Some(tool) = name.filter(|n| server.tools.iter().any(|t| t.name == *n)) else {
        return rpc_error(
            id,
            -32602,
            format!(
                "unknown tool {:?} of server {}",
                name.unwrap_or(""),
                server.name
            ),
        );
    };
    let arguments = params
        .and_then(|p| p.get("arguments"))
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    Step::Call {
        id,
        call: ToolCall {
            server: server.name.clone(),
            tool: tool.to_string(),
            arguments,
        },
    }
}

/// The result a tool's answer becomes: a `CallToolResult` object as it is; any other value as
/// its JSON text; an error as text with `isError: true`.
pub(super) fn call_result(answer: std::result::Result<Value, String>) -> Value {
    match answer {
        Ok(result @ Value::Object(_)) => result,
        Ok(Value::String(text)) => json!({"content": [{"type": "text", "text": text}]}),
        Ok(other) => json!({"content": [{"type": "text", "text": other.to_string()}]}),
        Err(message) => json!({"content": [{"type": "text", "text": message}], "isError": true}),
    }
}

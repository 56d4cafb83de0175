//! What runs inside the container for one herdctl job: the argv and the stdin of the exec.
//!
//! herdctl has two runtimes. The CLI runtime runs `claude -p` with flags derived from the agent; the
//! SDK runtime calls the Agent SDK's `query()`. In a container both become one exec whose stdin
//! carries everything that is large or private (the prompt; for the SDK, the whole options object),
//! so nothing depends on a shell, no argument nears the kernel's 128 KiB limit, and no secret sits
//! on a command line where `ps` on the host would show it.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::herdctl::mcp::InjectedServer;
pub use crate::herdctl::mcp::McpServer;
use crate::{Error, Result};

/// The in-container program of the SDK strategy: reads `{prompt, sdkOptions}` on stdin, runs the
/// globally installed Agent SDK's `query()`, prints each message as a JSON line. Passed to
/// `node --input-type=module -e`, so the image needs node and the SDK, not herdctl's wrapper file.
pub const SDK_RUNNER: &str = include_str!("assets/sdk-runner.mjs");

/// The fields of herdctl's resolved agent that shape an invocation (snake_case, as herdctl's
/// `ResolvedAgent` has them). Unknown fields are ignored: herdctl's agent carries many more.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AgentSpec {
    /// The agent's name.
    pub name: String,
    /// The agent's fleet-qualified name; the container label and the session directory use it.
    #[serde(rename = "qualifiedName")]
    pub qualified_name: Option<String>,
    /// The model, passed as `--model`.
    pub model: Option<String>,
    /// `--permission-mode`; herdctl defaults to `acceptEdits`.
    pub permission_mode: Option<String>,
    /// Replaces Claude Code's system prompt.
    pub system_prompt: Option<String>,
    /// Tools allowed without asking.
    pub allowed_tools: Vec<String>,
    /// Tools refused.
    pub denied_tools: Vec<String>,
    /// The set of built-in tools (`--tools`).
    pub tools: Option<Vec<String>>,
    /// Which settings files Claude Code loads.
    pub setting_sources: Option<Vec<String>>,
    /// MCP servers in herdctl's agent format (`url`, or `command` + `args` + `env`). Their config
    /// reaches claude through a private file, never argv.
    pub mcp_servers: BTreeMap<String, McpServer>,
    /// Turn limit of the SDK runtime.
    pub max_turns: Option<u32>,
    /// herdctl's session block; only its `max_turns` is read.
    pub session: Option<SessionSpec>,
    /// The agent's working directory on the host: a path, or `{root}`.
    pub working_directory: Option<Value>,
    /// herdctl's agent `docker` block, as given; only its `runtime` is read (herdctl's resolver
    /// drops it from the docker config). Kept untyped: the resolved docker config is the one
    /// that is checked.
    pub docker: Value,
}

impl AgentSpec {
    /// Reads herdctl's resolved agent object, once per job: the fields an invocation reads,
    /// and the name ([`AgentSpec::key`]) its containers and session directory go by, which must
    /// be there. Errors name the agent (`agent`, `agent.name`): it is the fleet's config.
    pub fn from_json(agent: &Value) -> Result<AgentSpec> {
        let spec = AgentSpec::deserialize(agent).map_err(|e| {
            Error::invalid("agent", format!("{e}; expected herdctl's agent object"))
        })?;
        if spec.key().is_empty() {
            return Err(Error::invalid(
                "agent.name",
                "missing; expected the agent's name (or qualifiedName) as a string",
            ));
        }
        Ok(spec)
    }

    /// The agent's qualified name, else its name: what names its containers and its session
    /// directory. Empty only for an agent not read by [`AgentSpec::from_json`].
    pub fn key(&self) -> &str {
        self.qualified_name
            .as_deref()
            .filter(|q| !q.is_empty())
            .unwrap_or(&self.name)
    }

    /// The `runtime` of the agent's `docker` block, when it has one.
    pub fn docker_runtime(&self) -> Option<&Value> {
        self.docker.get("runtime")
    }
}

/// herdctl's agent `session` block, as far as invocations read it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SessionSpec {
    /// Fallback turn limit when the agent sets none.
    pub max_turns: Option<u32>,
}

/// The per-call part of herdctl's `RuntimeExecuteOptions` (its `agent` is
/// [`crate::herdctl::agent::AgentRequest::agent`], its `abortController` is the job's
/// [`crate::Canceller`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecuteOptions {
    /// The prompt, any size. It travels on the job's stdin.
    pub prompt: String,
    /// A session id to resume. Default: none.
    pub resume: Option<String>,
    /// Fork the resumed session instead of continuing it. Default: false.
    pub fork: bool,
    /// Text appended to the agent's system prompt for this call. Default: none.
    pub system_prompt_append: Option<String>,
    /// Ask for partial (streaming) assistant messages. Default: false.
    pub include_partial_messages: bool,
    /// MCP servers whose tools run in this process
    /// ([`crate::herdctl::agent::AgentRequest::tool_handler`] runs them); the agent reaches them
    /// through [`crate::herdctl::mcp`]'s bridge. Default: none.
    pub injected_mcp_servers: Vec<InjectedServer>,
}

impl ExecuteOptions {
    /// Options with this prompt and every default.
    pub fn new(prompt: impl Into<String>) -> ExecuteOptions {
        ExecuteOptions {
            prompt: prompt.into(),
            ..ExecuteOptions::default()
        }
    }

    /// Reads herdctl's camelCase `RuntimeExecuteOptions` (`prompt`, `resume`, `fork`,
    /// `systemPromptAppend`, `includePartialMessages`; other fields are ignored). `null` and
    /// absent fields take the default; an empty `resume` means none. Errors are
    /// [`Error::InvalidArgument`]s naming the option: these are the call's arguments.
    ///
    /// `injectedMcpServers` maps server names to herdctl's `InjectedMcpServerDef` without its
    /// handlers (`JSON.stringify` drops functions): `{version?, tools: [{name, description?,
    /// inputSchema?}]}`.
    pub fn from_json(options: &Value) -> Result<ExecuteOptions> {
        let Value::Object(o) = options else {
            return Err(Error::argument(
                "execute options",
                "expected an object with at least \"prompt\"",
            ));
        };
        let injected_mcp_servers = match o.get("injectedMcpServers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(name, def)| {
                    InjectedServer::from_json(name, def).map_err(Error::into_argument)
                })
                .collect::<Result<_>>()?,
            Some(_) => {
                return Err(Error::argument(
                    "injectedMcpServers",
                    "expected an object of MCP servers by name",
                ))
            }
        };
        let prompt = match o.get("prompt") {
            Some(Value::String(s)) => s.clone(),
            _ => {
                return Err(Error::argument(
                    "prompt",
                    "missing or not a string; expected the prompt text",
                ))
            }
        };
        Ok(ExecuteOptions {
            prompt,
            resume: opt_string(o, "resume")?.filter(|s| !s.is_empty()),
            fork: opt_bool(o, "fork")?,
            system_prompt_append: opt_string(o, "systemPromptAppend")?,
            include_partial_messages: opt_bool(o, "includePartialMessages")?,
            injected_mcp_servers,
        })
    }
}

fn opt_string(o: &Map<String, Value>, field: &str) -> Result<Option<String>> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::argument(field, "expected a string")),
    }
}

fn opt_bool(o: &Map<String, Value>, field: &str) -> Result<bool> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(Error::argument(field, "expected true or false")),
    }
}

/// Which of herdctl's runtimes a job wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `claude -p --output-format stream-json --verbose`.
    Cli,
    /// The Agent SDK's `query()`, through [`SDK_RUNNER`].
    Sdk,
}

impl Strategy {
    /// Parses `cli` or `sdk` (herdctl's `runtime` values).
    pub fn parse(s: &str) -> Result<Strategy> {
        match s {
            "cli" => Ok(Strategy::Cli),
            "sdk" => Ok(Strategy::Sdk),
            other => Err(Error::argument(
                "runtime",
                format!("{other:?} is not a supported runtime; expected \"cli\" or \"sdk\""),
            )),
        }
    }
}

/// The exec of one job: argv (no shell involved) and the bytes to write on stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Everything large or private.
    pub stdin: Vec<u8>,
}

const DEFAULT_PERMISSION_MODE: &str = "acceptEdits";

/// Builds the exec for one job of `agent` with the given strategy.
///
/// ```
/// use herdctl_container::invocation::{build, AgentSpec, ExecuteOptions, Strategy};
/// let agent = AgentSpec { model: Some("sonnet".into()), ..Default::default() };
/// let job = ExecuteOptions { prompt: "hi".into(), ..Default::default() };
/// let inv = build(Strategy::Cli, &agent, &job);
/// assert_eq!(inv.argv[..2], ["claude", "-p"]);
/// assert_eq!(inv.stdin, b"hi");
/// ```
pub fn build(strategy: Strategy, agent: &AgentSpec, job: &ExecuteOptions) -> Invocation {
    match strategy {
        Strategy::Cli => cli(agent, job, Shape::OneShot),
        Strategy::Sdk => sdk(agent, job, Shape::OneShot),
    }
}

/// Builds the exec of a live session of `agent` (see [`crate::herdctl::session`]): the runtime reads
/// Claude Code's stream-json input (user turns and control requests, one JSON object a line) on
/// stdin for as long as the session lives, and prints messages and control responses. The
/// prompt is not part of it: the session sends every turn, the first included, as a message.
///
/// - CLI: `claude -p --input-format stream-json --output-format stream-json --verbose ...`, the
///   protocol the Agent SDK itself speaks to Claude Code; stdin starts with the MCP config when
///   there is one, as for [`build`].
/// - SDK: [`SDK_RUNNER`] with the argument `session`; stdin starts with one line
///   `{"sdkOptions": {...}}`, then the same stream-json input, which the runner serves through
///   the Agent SDK's `query()` with streaming input.
///
/// ```
/// use herdctl_container::invocation::{session, AgentSpec, ExecuteOptions, Strategy};
/// let inv = session(Strategy::Cli, &AgentSpec::default(), &ExecuteOptions::default());
/// assert_eq!(inv.argv[..4], ["claude", "-p", "--input-format", "stream-json"]);
/// assert!(inv.stdin.is_empty());
/// ```
pub fn session(strategy: Strategy, agent: &AgentSpec, job: &ExecuteOptions) -> Invocation {
    match strategy {
        Strategy::Cli => cli(agent, job, Shape::Session),
        Strategy::Sdk => sdk(agent, job, Shape::Session),
    }
}

/// One prompt in, messages out; or a live session's stream of turns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    OneShot,
    Session,
}

fn cli(agent: &AgentSpec, job: &ExecuteOptions, shape: Shape) -> Invocation {
    let argv = cli_argv(agent, job, shape);
    // A session's turns, the first included, are messages the session writes.
    let prompt = match shape {
        Shape::OneShot => job.prompt.as_bytes(),
        Shape::Session => b"",
    };
    if agent.mcp_servers.is_empty() {
        return Invocation {
            argv,
            stdin: prompt.to_vec(),
        };
    }
    // MCP server env often holds tokens, and argv is visible to `ps` on the host. So the config
    // travels on stdin ahead of the prompt; a shell copies exactly its length into a private file
    // and hands claude the path (`dd bs=1` because `head -c` may read past the count on a pipe).
    let config = json!({ "mcpServers": mcp_servers(agent) }).to_string();
    let mut wrapped: Vec<String> = vec![
        "sh".into(),
        "-c".into(),
        MCP_CONFIG_SHIM.into(),
        "sh".into(),
        config.len().to_string(),
    ];
    wrapped.extend(argv);
    let mut stdin = config.into_bytes();
    stdin.extend_from_slice(prompt);
    Invocation {
        argv: wrapped,
        stdin,
    }
}

/// `claude`'s arguments: herdctl's CLI runtime's flags, from the agent and the options.
fn cli_argv(agent: &AgentSpec, job: &ExecuteOptions, shape: Shape) -> Vec<String> {
    let mut argv: Vec<String> = vec!["claude".into(), "-p".into()];
    if shape == Shape::Session {
        argv.extend(["--input-format".into(), "stream-json".into()]);
    }
    argv.extend(["--output-format", "stream-json", "--verbose"].map(String::from));
    let mut flag = |name: &str, value: String| {
        argv.push(name.to_string());
        argv.push(value);
    };
    flag(
        "--permission-mode",
        agent
            .permission_mode
            .clone()
            .unwrap_or_else(|| DEFAULT_PERMISSION_MODE.into()),
    );
    if let Some(model) = &agent.model {
        flag("--model", model.clone());
    }
    if let Some(system_prompt) = &agent.system_prompt {
        flag("--system-prompt", system_prompt.clone());
    }
    if let Some(append) = &job.system_prompt_append {
        flag("--append-system-prompt", append.clone());
    }
    // Comma-separated: a space-separated list would swallow the arguments after it.
    if !agent.allowed_tools.is_empty() {
        flag("--allowedTools", agent.allowed_tools.join(","));
    }
    if !agent.denied_tools.is_empty() {
        flag("--disallowedTools", agent.denied_tools.join(","));
    }
    if let Some(tools) = &agent.tools {
        flag("--tools", tools.join(","));
    }
    if let Some(sources) = &agent.setting_sources {
        flag("--setting-sources", sources.join(","));
    }
    if let Some(resume) = &job.resume {
        flag("--resume", resume.clone());
    }
    if job.fork {
        argv.push("--fork-session".into());
    }
    if job.include_partial_messages {
        argv.push("--include-partial-messages".into());
    }
    argv
}

/// `sh -c` program: `$1` bytes of stdin are the MCP config; the rest of argv is claude's.
const MCP_CONFIG_SHIM: &str = r#"umask 077; f=$(mktemp) || exit 125; dd bs=1 count="$1" of="$f" 2>/dev/null; shift; "$@" --mcp-config "$f"; rc=$?; rm -f "$f"; exit $rc"#;

fn sdk(agent: &AgentSpec, job: &ExecuteOptions, shape: Shape) -> Invocation {
    let options = sdk_options(agent, job);
    let mut argv: Vec<String> = ["node", "--input-type=module", "-e", SDK_RUNNER]
        .map(String::from)
        .to_vec();
    let stdin = match shape {
        Shape::OneShot => json!({ "prompt": job.prompt, "sdkOptions": options }).to_string(),
        Shape::Session => {
            argv.push("session".into());
            // One line (JSON text holds no raw newline); the stream-json input follows it.
            format!("{}\n", json!({ "sdkOptions": options }))
        }
    };
    Invocation {
        argv,
        stdin: stdin.into_bytes(),
    }
}

/// The Agent SDK's `query()` options: herdctl's SDK runtime's, from the agent and the options.
fn sdk_options(agent: &AgentSpec, job: &ExecuteOptions) -> Map<String, Value> {
    let mut options = Map::new();
    options.insert(
        "permissionMode".into(),
        agent
            .permission_mode
            .as_deref()
            .unwrap_or(DEFAULT_PERMISSION_MODE)
            .into(),
    );
    if !agent.allowed_tools.is_empty() {
        options.insert("allowedTools".into(), json!(agent.allowed_tools));
    }
    if !agent.denied_tools.is_empty() {
        options.insert("disallowedTools".into(), json!(agent.denied_tools));
    }
    if let Some(tools) = &agent.tools {
        options.insert("tools".into(), json!(tools));
    }
    options.insert("systemPrompt".into(), sdk_system_prompt(agent, job));
    // herdctl's rule: explicit sources win; an agent with a working directory loads the project's
    // settings; a standalone one loads none.
    let sources = match (&agent.setting_sources, &agent.working_directory) {
        (Some(s), _) => json!(s),
        (None, Some(_)) => json!(["project"]),
        (None, None) => json!([]),
    };
    options.insert("settingSources".into(), sources);
    options.insert("mcpServers".into(), Value::Object(mcp_servers(agent)));
    if let Some(turns) = agent
        .max_turns
        .or(agent.session.as_ref().and_then(|s| s.max_turns))
    {
        options.insert("maxTurns".into(), json!(turns));
    }
    if let Some(resume) = &job.resume {
        options.insert("resume".into(), json!(resume));
    }
    if job.fork {
        options.insert("forkSession".into(), json!(true));
    }
    if let Some(model) = &agent.model {
        options.insert("model".into(), json!(model));
    }
    if job.include_partial_messages {
        options.insert("includePartialMessages".into(), json!(true));
    }
    // The workspace is always mounted here, whatever the host path.
    options.insert("cwd".into(), json!(crate::paths::CONTAINER_WORKSPACE));
    options
}

/// The SDK's `systemPrompt`: the agent's own with the call's text appended, else Claude Code's
/// preset with it.
fn sdk_system_prompt(agent: &AgentSpec, job: &ExecuteOptions) -> Value {
    match (&agent.system_prompt, &job.system_prompt_append) {
        (Some(custom), Some(append)) => json!(format!("{custom}\n\n{append}")),
        (Some(custom), None) => json!(custom),
        (None, Some(append)) => {
            json!({"type": "preset", "preset": "claude_code", "append": append})
        }
        (None, None) => json!({"type": "preset", "preset": "claude_code"}),
    }
}

fn mcp_servers(agent: &AgentSpec) -> Map<String, Value> {
    agent
        .mcp_servers
        .iter()
        .map(|(name, s)| {
            let mut m = Map::new();
            if let Some(url) = &s.url {
                m.insert("type".into(), json!("http"));
                m.insert("url".into(), json!(url));
            }
            if let Some(command) = &s.command {
                m.insert("command".into(), json!(command));
            }
            if !s.args.is_empty() {
                m.insert("args".into(), json!(s.args));
            }
            if !s.env.is_empty() {
                m.insert("env".into(), json!(s.env));
            }
            (name.clone(), Value::Object(m))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(json: Value) -> AgentSpec {
        serde_json::from_value(json).expect("test agents are valid")
    }

    #[test]
    fn cli_flags_follow_herdctl() {
        let a = agent(json!({
            "name": "a", "model": "opus", "system_prompt": "be brief",
            "allowed_tools": ["Read", "Bash(git *)"], "denied_tools": ["Write"],
            "tools": ["Read"], "setting_sources": ["project", "local"],
            "some_field_herdctl_has": 1
        }));
        let job = ExecuteOptions {
            prompt: "do $1234 `x` \"y\"".into(),
            resume: Some("s1".into()),
            fork: true,
            system_prompt_append: Some("more".into()),
            include_partial_messages: true,
            ..Default::default()
        };
        let inv = build(Strategy::Cli, &a, &job);
        assert_eq!(
            inv.argv,
            [
                "claude",
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-mode",
                "acceptEdits",
                "--model",
                "opus",
                "--system-prompt",
                "be brief",
                "--append-system-prompt",
                "more",
                "--allowedTools",
                "Read,Bash(git *)",
                "--disallowedTools",
                "Write",
                "--tools",
                "Read",
                "--setting-sources",
                "project,local",
                "--resume",
                "s1",
                "--fork-session",
                "--include-partial-messages"
            ]
        );
        assert_eq!(inv.stdin, job.prompt.as_bytes());
    }

    #[test]
    fn mcp_config_never_rides_on_argv() {
        let a = agent(json!({
            "name": "a",
            "mcp_servers": {"gh": {"command": "gh-mcp", "env": {"GITHUB_TOKEN": "ghp_secret"}}}
        }));
        let job = ExecuteOptions {
            prompt: "hi".into(),
            ..Default::default()
        };
        let inv = build(Strategy::Cli, &a, &job);
        assert!(inv.argv.iter().all(|a| !a.contains("ghp_secret")));
        assert_eq!(inv.argv[..2], ["sh", "-c"]);
        let len: usize = inv.argv[4].parse().unwrap();
        let config: Value = serde_json::from_slice(&inv.stdin[..len]).unwrap();
        assert_eq!(
            config["mcpServers"]["gh"]["env"]["GITHUB_TOKEN"],
            "ghp_secret"
        );
        assert_eq!(&inv.stdin[len..], b"hi");
        assert_eq!(inv.argv[5], "claude");
    }

    #[test]
    fn sdk_options_travel_on_stdin() {
        let a = agent(json!({
            "name": "a", "working_directory": {"root": "/host/repo"},
            "session": {"max_turns": 7},
            "mcp_servers": {"web": {"url": "http://127.0.0.1:1/mcp"}}
        }));
        let job = ExecuteOptions {
            prompt: "p".into(),
            system_prompt_append: Some("extra".into()),
            include_partial_messages: true,
            ..Default::default()
        };
        let inv = build(Strategy::Sdk, &a, &job);
        assert_eq!(inv.argv[..3], ["node", "--input-type=module", "-e"]);
        let payload: Value = serde_json::from_slice(&inv.stdin).unwrap();
        assert_eq!(payload["prompt"], "p");
        let o = &payload["sdkOptions"];
        assert_eq!(o["cwd"], "/workspace");
        assert_eq!(o["settingSources"], json!(["project"]));
        assert_eq!(o["maxTurns"], 7);
        assert_eq!(o["permissionMode"], "acceptEdits");
        assert_eq!(o["includePartialMessages"], true);
        assert_eq!(
            o["systemPrompt"],
            json!({"type": "preset", "preset": "claude_code", "append": "extra"})
        );
        assert_eq!(
            o["mcpServers"]["web"],
            json!({"type": "http", "url": "http://127.0.0.1:1/mcp"})
        );
    }

    #[test]
    fn a_session_reads_stream_json_and_sends_no_prompt() {
        let a = agent(json!({
            "name": "a", "model": "opus",
            "mcp_servers": {"gh": {"command": "gh-mcp", "env": {"GITHUB_TOKEN": "ghp_secret"}}}
        }));
        let job = ExecuteOptions {
            prompt: "first turn".into(),
            resume: Some("s1".into()),
            fork: true,
            ..Default::default()
        };
        let inv = session(Strategy::Cli, &a, &job);
        assert!(inv.argv.iter().all(|a| !a.contains("ghp_secret")));
        assert_eq!(
            inv.argv[5..11],
            [
                "claude",
                "-p",
                "--input-format",
                "stream-json",
                "--output-format",
                "stream-json"
            ]
        );
        assert!(inv
            .argv
            .ends_with(&["--resume".into(), "s1".into(), "--fork-session".into()]));
        // Only the MCP config: the turns follow as messages.
        let len: usize = inv.argv[4].parse().unwrap();
        assert_eq!(inv.stdin.len(), len);

        let inv = session(Strategy::Sdk, &a, &job);
        assert_eq!(inv.argv.last().unwrap(), "session");
        assert_eq!(inv.stdin.last(), Some(&b'\n'));
        assert_eq!(inv.stdin.iter().filter(|b| **b == b'\n').count(), 1);
        let payload: Value = serde_json::from_slice(&inv.stdin).unwrap();
        assert_eq!(payload.get("prompt"), None);
        assert_eq!(payload["sdkOptions"]["resume"], "s1");
        assert_eq!(payload["sdkOptions"]["forkSession"], true);
        assert_eq!(
            payload["sdkOptions"]["mcpServers"]["gh"]["env"]["GITHUB_TOKEN"],
            "ghp_secret"
        );
    }

    #[test]
    fn unknown_runtime_names_the_field() {
        let e = Strategy::parse("docker").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid runtime: \"docker\" is not a supported runtime; expected \"cli\" or \"sdk\""
        );
    }
}

//! The baselines that live outside this process: command-line programs (the `docker` CLI, our own
//! `herdctl-container` binary) and the Node driver (dockerode, and later the ContainerRunner).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Runs a program with `stdin`, and times its first stdout byte and its exit (from just before
/// the spawn). Fails unless it exits 0 and prints `expect`.
pub fn timed_process(
    cmd: &mut Command,
    stdin: &[u8],
    expect: &[u8],
) -> Result<(Duration, Duration), String> {
    let t0 = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    {
        // A small prompt: it fits the pipe, so writing it before reading cannot deadlock.
        let mut input = child.stdin.take().expect("stdin was piped");
        input
            .write_all(stdin)
            .map_err(|e| format!("write stdin of {cmd:?}: {e}"))?;
    }
    let mut out = child.stdout.take().expect("stdout was piped");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut first = None;
    loop {
        let n = out
            .read(&mut buf)
            .map_err(|e| format!("read stdout of {cmd:?}: {e}"))?;
        if n == 0 {
            break;
        }
        first.get_or_insert_with(|| t0.elapsed());
        got.extend_from_slice(&buf[..n]);
    }
    let status = child.wait().map_err(|e| format!("wait {cmd:?}: {e}"))?;
    let exit = t0.elapsed();
    if !status.success() || got != expect {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        return Err(format!(
            "{cmd:?}: {status}, stdout {:?}, stderr {err}",
            String::from_utf8_lossy(&got)
        ));
    }
    Ok((first.unwrap_or(exit), exit))
}

/// The Node driver (`bench/node/driver.js`): one JSON command per line in, one result out.
pub struct Node {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
    ops: Vec<String>,
}

impl Node {
    /// Starts the driver; fails when its dependencies are not installed.
    pub fn start(bench_dir: &Path) -> Result<Node, String> {
        let script = bench_dir.join("node/driver.js");
        let mut child = Command::new("node")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start node {}: {e}", script.display()))?;
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().expect("stdout was piped"));
        let mut node = Node {
            child,
            stdin,
            out,
            ops: Vec::new(),
        };
        let ready = node.read()?;
        node.ops = ready["ops"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Ok(node)
    }

    pub fn has(&self, op: &str) -> bool {
        self.ops.iter().any(|o| o == op)
    }

    /// Sends one command and waits for its result; `ok: false` is an error.
    pub fn call(&mut self, cmd: Value) -> Result<Value, String> {
        let stdin = self.stdin.as_mut().ok_or("the node driver is closed")?;
        writeln!(stdin, "{cmd}").map_err(|e| format!("write to the node driver: {e}"))?;
        stdin
            .flush()
            .map_err(|e| format!("write to the node driver: {e}"))?;
        self.read()
    }

    fn read(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        let n = self
            .out
            .read_line(&mut line)
            .map_err(|e| format!("read from the node driver: {e}"))?;
        if n == 0 {
            return Err("the node driver exited".into());
        }
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| format!("the node driver said {line:?}: {e}"))?;
        if v["ok"] != Value::Bool(true) {
            return Err(format!("node: {}", v["error"].as_str().unwrap_or(&line)));
        }
        Ok(v)
    }

    /// A number from a result, in its unit.
    pub fn num(v: &Value, key: &str) -> Result<f64, String> {
        v[key]
            .as_f64()
            .ok_or_else(|| format!("the node driver's answer has no {key}: {v}"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Closing stdin ends the driver once its last op is done.
        self.stdin.take();
        let _ = self.child.wait();
    }
}

/// The first line of a command's output, or why not (for the machine description).
pub fn version_of(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| format!("{program}: not found"))
}

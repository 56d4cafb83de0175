//! Running a command in a running container: create, start hijacked, stream stdin in and
//! stdout/stderr out concurrently, then read the exit code.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use super::call::Req;
use super::errors::{wire_error, Meaning};
use super::frames::{FrameDecoder, Stream};
use super::hijack::{self, EXEC_404};
use super::http::WireError;
use super::transport::{Conn, Host};
use super::{check_id, Engine};
use crate::{Error, Result, TimeoutPhase};

/// The kernel refuses one argument or environment string of 128 KiB or more (MAX_ARG_STRLEN).
const ARG_LIMIT: usize = 128 * 1024;
/// Output is read from the socket in pieces of up to this size, into one reused buffer.
const OUTPUT_BUFFER: usize = 64 * 1024;

/// What to run: always without a TTY, with stdout and stderr attached (kept apart).
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ExecSpec {
    /// The command and its arguments (no shell unless you run one). Never put a secret or a large
    /// prompt here: send it on stdin.
    pub cmd: Vec<String>,
    /// `NAME=value` entries for this exec only (not in the container's config, though visible in
    /// exec inspect while the exec exists).
    pub env: Vec<String>,
    /// `uid`, `uid:gid` or a user name; `None` for the container's user.
    pub user: Option<String>,
    /// The working directory; `None` for the container's.
    pub working_dir: Option<String>,
    /// Whether the process gets a stdin to read from (else it reads EOF at once).
    pub attach_stdin: bool,
}

impl std::fmt::Debug for ExecSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Env values may be credentials: show the names only.
        let names: Vec<&str> = self
            .env
            .iter()
            .map(|e| e.split('=').next().unwrap_or(""))
            .collect();
        f.debug_struct("ExecSpec")
            .field("cmd", &self.cmd)
            .field("env_names", &names)
            .field("user", &self.user)
            .field("working_dir", &self.working_dir)
            .field("attach_stdin", &self.attach_stdin)
            .finish()
    }
}

impl ExecSpec {
    /// Runs `cmd`, without stdin, as the container's user in its working directory.
    pub fn new<S: Into<String>>(cmd: impl IntoIterator<Item = S>) -> ExecSpec {
        ExecSpec {
            cmd: cmd.into_iter().map(Into::into).collect(),
            ..ExecSpec::default()
        }
    }

    /// With stdin attached.
    pub fn stdin(mut self, attach: bool) -> ExecSpec {
        self.attach_stdin = attach;
        self
    }

    /// With one more `NAME=value` environment entry.
    pub fn env(mut self, entry: impl Into<String>) -> ExecSpec {
        self.env.push(entry.into());
        self
    }

    /// As this user.
    pub fn user(mut self, user: impl Into<String>) -> ExecSpec {
        self.user = Some(user.into());
        self
    }

    /// In this directory.
    pub fn working_dir(mut self, dir: impl Into<String>) -> ExecSpec {
        self.working_dir = Some(dir.into());
        self
    }

    /// Whether the engine can run it: a program, and no argument or variable the kernel refuses.
    pub(crate) fn check(&self) -> Result<()> {
        if self.cmd.is_empty() {
            return Err(Error::invalid(
                "exec.cmd",
                "empty; expected the program and its arguments",
            ));
        }
        let lists = [("exec.cmd", &self.cmd), ("exec.env", &self.env)];
        for (field, list) in lists {
            for (i, s) in list.iter().enumerate() {
                // The value is not shown: it may be a secret.
                if s.len() >= ARG_LIMIT {
                    return Err(Error::invalid(
                        format!("{field}[{i}]"),
                        format!("{} bytes; the kernel limits one argument or variable to 128 KiB: send large data on stdin", s.len()),
                    ));
                }
                if s.contains('\0') {
                    return Err(Error::invalid(
                        format!("{field}[{i}]"),
                        "contains a NUL byte",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What `GET /exec/{id}/json` says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecInspect {
    /// Whether the process still runs.
    pub running: bool,
    /// Its exit code; `None` while not known (the engine's `null`), never a made-up 0.
    pub exit_code: Option<i64>,
    /// Its pid on the host (0 when it is not running).
    pub pid: i64,
}

/// The whole result of [`Engine::exec_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecResult {
    /// Everything the process wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
    /// Its exit code (126/127: the command could not be run).
    pub exit_code: i64,
}

/// A started exec's connection; [`ExecStream::split`] it to write stdin and read output from two
/// threads at once (one thread doing both deadlocks once the process writes more output than the
/// socket buffers while we still write its input).
#[derive(Debug)]
pub struct ExecStream {
    conn: Conn,
    leftover: Vec<u8>,
    /// The exec's id, and the call as errors name it (`exec {id}`).
    id: String,
    call: String,
    host: Host,
    aborted: Arc<AtomicBool>,
}

impl ExecStream {
    /// Splits into the stdin writer and the output reader.
    pub fn split(self) -> Result<(ExecInput, ExecOutput)> {
        let write_half = self.conn.try_clone().map_err(|e| self.io_error(e))?;
        let mut buf = vec![0u8; OUTPUT_BUFFER.max(self.leftover.len())].into_boxed_slice();
        buf[..self.leftover.len()].copy_from_slice(&self.leftover);
        let input = ExecInput {
            conn: write_half,
            closed: false,
        };
        let output = ExecOutput {
            conn: self.conn,
            end: self.leftover.len(),
            buf,
            pos: 0,
            decoder: FrameDecoder::new(),
            eof: false,
            idle: None,
            id: self.id,
            call: self.call,
            host: self.host,
            aborted: self.aborted,
        };
        Ok((input, output))
    }

    /// A handle that ends the stream from another thread.
    pub fn abort_handle(&self) -> Result<ExecAbort> {
        let conn = self.conn.try_clone().map_err(|e| self.io_error(e))?;
        Ok(ExecAbort {
            conn: Arc::new(conn),
            aborted: self.aborted.clone(),
        })
    }

    fn io_error(&self, e: io::Error) -> Error {
        wire_error(&self.call, &self.host, WireError::Io(e), None)
    }
}

/// The process's stdin. Dropping it (or [`ExecInput::close`]) half-closes the connection: the
/// process reads EOF and its output keeps flowing.
///
/// A write fails with `BrokenPipe` once the process stopped reading and exited; its output is
/// still there to read. (On a unix socket that error comes with SIGPIPE, which Rust programs and
/// Node ignore by default; a C host embedding this crate must ignore it too.)
#[derive(Debug)]
pub struct ExecInput {
    conn: Conn,
    closed: bool,
}

impl Write for ExecInput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.conn.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.conn.flush()
    }
}

impl ExecInput {
    /// Sends EOF to the process (`shutdown(Write)`), keeping the output open.
    pub fn close(mut self) -> Result<()> {
        self.closed = true;
        match self.conn.shutdown(Shutdown::Write) {
            // The engine closed first: the process is gone, and EOF is moot.
            Err(e) if e.kind() != io::ErrorKind::NotConnected => {
                Err(Error::io("exec stdin: send EOF", e))
            }
            _ => Ok(()),
        }
    }
}

impl Drop for ExecInput {
    fn drop(&mut self) {
        if !self.closed {
            // Best effort: the same as close(); a failure means the connection is gone already.
            let _ = self.conn.shutdown(Shutdown::Write);
        }
    }
}

/// The process's output, as chunks of stdout and stderr in the order they were written.
/// Dropping it closes the connection.
#[derive(Debug)]
pub struct ExecOutput {
    conn: Conn,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    decoder: FrameDecoder,
    eof: bool,
    idle: Option<Duration>,
    /// The exec's id, and the call as errors name it (`exec {id}`).
    id: String,
    call: String,
    host: Host,
    aborted: Arc<AtomicBool>,
}

impl ExecOutput {
    /// The next chunk of output, blocking until one arrives; `None` once the process closed its
    /// output (it has exited, or closed both streams). The slice lives until the next call.
    pub fn next_chunk(&mut self) -> Result<Option<(Stream, &[u8])>> {
        loop {
            if self.pos < self.end {
                let base = self.pos;
                let step = self
                    .decoder
                    .decode(&self.buf[base..self.end])
                    .map_err(|e| Error::Protocol {
                        call: self.call.clone(),
                        detail: e.to_string(),
                    })?;
                self.pos += step.consumed;
                if let Some((stream, r)) = step.payload {
                    return Ok(Some((stream, &self.buf[base + r.start..base + r.end])));
                }
                continue;
            }
            if self.eof {
                return Ok(None);
            }
            let n = loop {
                match self.conn.read(&mut self.buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(self.read_error(e)),
                }
            };
            self.pos = 0;
            self.end = n;
            if n == 0 {
                self.eof = true;
                if self.aborted.load(Ordering::SeqCst) {
                    return Err(Error::Cancelled(format!("{}: reading output", self.call)));
                }
                if !self.decoder.at_boundary() {
                    return Err(Error::Protocol {
                        call: self.call.clone(),
                        detail: "the stream ended inside a frame".to_string(),
                    });
                }
                return Ok(None);
            }
        }
    }

    fn read_error(&self, e: io::Error) -> Error {
        if self.aborted.load(Ordering::SeqCst) {
            return Error::Cancelled(format!("{}: reading output", self.call));
        }
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            return Error::Timeout {
                phase: TimeoutPhase::ExecOutput {
                    exec: self.id.clone(),
                },
                after: self.idle.unwrap_or_default(),
            };
        }
        wire_error(&self.call, &self.host, WireError::Io(e), None)
    }

    /// Fails [`ExecOutput::next_chunk`] with [`Error::Timeout`] when no byte arrives for this
    /// long. Default: `None`, wait forever (an agent may think for minutes in silence).
    pub fn set_idle_timeout(&mut self, idle: Option<Duration>) -> Result<()> {
        let idle = idle.filter(|d| !d.is_zero());
        self.conn
            .set_read_timeout(idle)
            .map_err(|e| Error::io(format!("{}: set idle timeout", self.call), e))?;
        self.idle = idle;
        Ok(())
    }

    /// A handle that ends the stream from another thread.
    pub fn abort_handle(&self) -> Result<ExecAbort> {
        let conn = self
            .conn
            .try_clone()
            .map_err(|e| wire_error(&self.call, &self.host, WireError::Io(e), None))?;
        Ok(ExecAbort {
            conn: Arc::new(conn),
            aborted: self.aborted.clone(),
        })
    }

    /// Reads the rest of the output: (stdout, stderr).
    pub fn read_to_end(&mut self) -> Result<(Vec<u8>, Vec<u8>)> {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while let Some((stream, bytes)) = self.next_chunk()? {
            match stream {
                Stream::Stdout => out.extend_from_slice(bytes),
                Stream::Stderr => err.extend_from_slice(bytes),
            }
        }
        Ok((out, err))
    }
}

impl Drop for ExecOutput {
    fn drop(&mut self) {
        // Close for every clone (input, abort handles): nobody reads any more. Best effort.
        let _ = self.conn.shutdown(Shutdown::Both);
    }
}

/// Ends an exec's stream from any thread: a reader blocked in [`ExecOutput::next_chunk`] returns
/// [`Error::Cancelled`] promptly. The process itself keeps running (no API kills an exec): kill it
/// from inside the container, or kill the container.
#[derive(Debug, Clone)]
pub struct ExecAbort {
    conn: Arc<Conn>,
    aborted: Arc<AtomicBool>,
}

impl ExecAbort {
    /// Shuts the connection down both ways.
    pub fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
        // Best effort: an error means the connection is closed already, which is the goal.
        let _ = self.conn.shutdown(Shutdown::Both);
    }
}

const CONTAINER_404: &[(u16, Meaning)] = &[(404, Meaning::NotFound("container", ""))];

impl Engine {
    /// Creates an exec of `spec` in running container `container`; returns its id.
    pub fn exec_create(&self, container: &str, spec: &ExecSpec) -> Result<String> {
        check_id("container", container)?;
        spec.check()?;
        let mut body = json!({
            "AttachStdin": spec.attach_stdin,
            "AttachStdout": true,
            "AttachStderr": true,
            "Tty": false,
            "Cmd": spec.cmd,
            "Env": spec.env,
        });
        if let Some(user) = &spec.user {
            body["User"] = json!(user);
        }
        if let Some(dir) = &spec.working_dir {
            body["WorkingDir"] = json!(dir);
        }
        let response =
            self.send(Req::new("POST", format!("/containers/{container}/exec")).json(&body)?)?;
        match response.status() {
            201 | 200 => Ok(response.json::<super::call::Created>()?.id),
            _ => Err(response.error(container, CONTAINER_404)),
        }
    }

    /// Starts exec `id` attached and returns its stream. Read the stream to its end before
    /// asking for the exit code.
    pub fn exec_start(&self, id: &str) -> Result<ExecStream> {
        check_id("exec", id)?;
        let (conn, leftover) = hijack::start(self, id)?;
        Ok(ExecStream {
            conn,
            leftover,
            id: id.to_string(),
            call: format!("exec {id}"),
            host: self.inner.opts.host.clone(),
            aborted: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Whether exec `id` runs, and its exit code once known.
    pub fn exec_inspect(&self, id: &str) -> Result<ExecInspect> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Wire {
            #[serde(default)]
            running: bool,
            #[serde(default)]
            exit_code: Option<i64>,
            #[serde(default)]
            pid: Option<i64>,
        }
        check_id("exec", id)?;
        let response = self.send(Req::new("GET", format!("/exec/{id}/json")))?;
        if response.status() != 200 {
            return Err(response.error(id, EXEC_404));
        }
        let w: Wire = response.json()?;
        // A running exec has no exit code, whatever the engine put there.
        let exit_code = if w.running { None } else { w.exit_code };
        Ok(ExecInspect {
            running: w.running,
            exit_code,
            pid: w.pid.unwrap_or(0),
        })
    }

    /// The exit code of exec `id`, polling briefly until the engine knows it (it may lag the end
    /// of the output stream by a moment). Fails with [`Error::Timeout`] after `timeout`.
    pub fn exec_exit_code(&self, id: &str, timeout: Duration) -> Result<i64> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(code) = self.exec_inspect(id)?.exit_code {
                return Ok(code);
            }
            if start.elapsed() >= timeout {
                return Err(Error::Timeout {
                    phase: TimeoutPhase::ExecExitCode {
                        exec: id.to_string(),
                    },
                    after: timeout,
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Runs `spec` in `container` to its end: writes `stdin` (attached when not empty) from a
    /// second thread while reading the output, then reads the exit code.
    pub fn exec_run(&self, container: &str, spec: &ExecSpec, stdin: &[u8]) -> Result<ExecResult> {
        let mut spec = spec.clone();
        spec.attach_stdin |= !stdin.is_empty();
        let id = self.exec_create(container, &spec)?;
        let (mut input, mut output) = self.exec_start(&id)?.split()?;
        let abort = output.abort_handle()?;
        let (stdout, stderr) = std::thread::scope(|scope| {
            let writer = scope.spawn(move || {
                let written = input.write_all(stdin);
                let closed = input.close();
                match written {
                    // The process exited without reading all of it: its output says why.
                    Err(e)
                        if e.kind() == io::ErrorKind::BrokenPipe
                            || e.kind() == io::ErrorKind::ConnectionReset =>
                    {
                        closed
                    }
                    Err(e) => Err(Error::io("exec stdin: write", e)),
                    Ok(()) => closed,
                }
            });
            let read = output.read_to_end();
            if read.is_err() {
                // Unblock a writer stuck on a process that no longer reads.
                abort.abort();
            }
            // A panic in the writer thread is a bug in std's write path, not something to hide.
            let wrote = writer
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            let out = read?;
            wrote?;
            Ok::<_, Error>(out)
        })?;
        let exit_code = self.exec_exit_code(&id, self.inner.opts.call_timeout)?;
        Ok(ExecResult {
            stdout,
            stderr,
            exit_code,
        })
    }
}

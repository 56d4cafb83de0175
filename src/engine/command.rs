//! A connection carried by a process's stdin and stdout, as docker's `commandconn` does: `ssh
//! host docker system dial-stdio` for an `ssh://` engine, and `herdctl-container dial-stdio` for
//! a TLS engine from a build without TLS of its own (the Node addon). One process per connection;
//! connections are pooled like any other.
//!
//! The process's stdin and stdout are one end of a unix socket pair rather than two pipes, so
//! the other end behaves like any engine socket: read timeouts, a half-close (the end of an
//! exec's stdin) that the process passes on, and a shutdown that wakes a blocked reader at once.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::redact::is_secret_name;

/// How much of the process's stderr is kept for an error message: its last lines say why it
/// failed.
const STDERR_KEPT: usize = 2048;

/// The last bytes of a process's stderr, shared with the thread that drains it.
type StderrTail = Arc<Mutex<Vec<u8>>>;

/// One process and what it said on stderr. Killed and reaped when the last clone of its
/// connection is dropped.
struct Process {
    child: Mutex<Child>,
    stderr: StderrTail,
    /// Set when the stderr pipe reached its end: what the process said before it exited may
    /// still be in the pipe when its exit is seen.
    stderr_done: Arc<AtomicBool>,
    /// Whether any byte came back: after that, an end of the stream is the engine's, not the
    /// process's.
    answered: AtomicBool,
    /// The program's name (`ssh`), the engine it reaches, and what to try when it fails.
    program: String,
    target: String,
    hint: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        // Best effort: an error means it has exited already; wait() reaps it either way.
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Process {
    /// Why the process ended without the engine answering: its exit status and its last stderr
    /// lines.
    /// `None` when it is still running, or exited 0, within a short wait.
    fn failure(&self) -> Option<io::Error> {
        let deadline = Instant::now() + Duration::from_secs(2);
        let status = loop {
            let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {}
                _ => return None,
            }
            drop(child);
            std::thread::sleep(Duration::from_millis(10));
        };
        if status.success() {
            return None;
        }
        // Its last words, read to the pipe's end (a process it left behind may hold the pipe
        // open: then what arrived within a short wait).
        let deadline = Instant::now() + Duration::from_secs(1);
        while !self.stderr_done.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let said = {
            let stderr = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
            String::from_utf8_lossy(&stderr).trim().replace('\n', "; ")
        };
        let said = if said.is_empty() {
            "nothing on stderr".to_string()
        } else {
            said
        };
        Some(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!(
                "{} to {} exited with {status}: {said}{}",
                self.program,
                self.target,
                if self.hint.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", self.hint)
                }
            ),
        ))
    }
}

/// A connection through a process: our end of the socket pair, and the process.
pub(crate) struct CommandStream {
    sock: UnixStream,
    process: Arc<Process>,
}

impl fmt::Debug for CommandStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandStream")
            .field("program", &self.process.program)
            .field("target", &self.process.target)
            .finish()
    }
}

impl CommandStream {
    /// Starts `program` with `args`, which reaches the engine at `target` (for errors). It
    /// returns at once: the process connects while the first request waits in the socket, and a
    /// failure shows on the first read, with its stderr and `hint`. `missing` is the error when
    /// the program cannot be found.
    pub fn spawn<A: AsRef<std::ffi::OsStr>>(
        program: impl AsRef<Path>,
        args: &[A],
        target: &str,
        hint: &str,
        missing: &str,
    ) -> io::Result<CommandStream> {
        let program = program.as_ref();
        let name = program.file_name().map_or_else(
            || program.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let (ours, theirs) = UnixStream::pair()?;
        let mut child = command(program, args, theirs)?.spawn().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(io::ErrorKind::NotFound, missing.to_string())
            } else {
                io::Error::new(e.kind(), format!("start {}: {e}", program.display()))
            }
        })?;
        let (stderr, stderr_done) = drain_stderr(&mut child)?;
        Ok(CommandStream {
            sock: ours,
            process: Arc::new(Process {
                child: Mutex::new(child),
                stderr,
                stderr_done,
                answered: AtomicBool::new(false),
                program: name,
                target: target.to_string(),
                hint: hint.to_string(),
            }),
        })
    }
    pub fn try_clone(&self) -> io::Result<CommandStream> {
        Ok(CommandStream {
            sock: self.sock.try_clone()?,
            process: self.process.clone(),
        })
    }

    /// Our end of the socket pair (for timeouts, shutdown and the idle probe).
    pub fn socket(&self) -> &UnixStream {
        &self.sock
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.sock.shutdown(how)
    }
}

/// The command for `program`, its stdin and stdout on `theirs` (the process's end of the socket
/// pair), its stderr piped to be kept for errors.
fn command<A: AsRef<std::ffi::OsStr>>(
    program: &Path,
    args: &[A],
    theirs: UnixStream,
) -> io::Result<Command> {
    let stdin = OwnedFd::from(theirs.try_clone()?);
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(OwnedFd::from(theirs)))
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C at the terminal is for the user's program, which
        // then closes its connections, not for the process in the middle of a request.
        .process_group(0);
    // The credentials of jobs are for containers, not for the process (ssh's ProxyCommand or
    // SendEnv *): whatever looks secret stays behind; ssh's own variables (SSH_AUTH_SOCK) go
    // along.
    for (name, _) in std::env::vars_os() {
        if let Some(name) = name.to_str() {
            if is_secret_name(name) && !name.starts_with("SSH_") {
                cmd.env_remove(name);
            }
        }
    }
    Ok(cmd)
}

/// Starts a thread that drains the child's stderr (it would block on a full pipe) and keeps its
/// last [`STDERR_KEPT`] bytes; the thread ends with the process. Returns the kept bytes and the
/// flag set at the pipe's end. When the thread cannot start, the child is killed and reaped.
fn drain_stderr(child: &mut Child) -> io::Result<(StderrTail, Arc<AtomicBool>)> {
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let stderr_done = Arc::new(AtomicBool::new(child.stderr.is_none()));
    let Some(mut pipe) = child.stderr.take() else {
        return Ok((stderr, stderr_done));
    };
    let kept = stderr.clone();
    let done = stderr_done.clone();
    let drain = std::thread::Builder::new()
        .name("herdctl-dial-stderr".into())
        .spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                kept.extend_from_slice(&buf[..n]);
                let excess = kept.len().saturating_sub(STDERR_KEPT);
                kept.drain(..excess);
            }
            done.store(true, Ordering::Release);
        });
    if let Err(e) = drain {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    Ok((stderr, stderr_done))
}

/// Whether an error is the socket pair's end going away: the process exited (closing its end with
/// our request unread shows as a reset).
fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

impl Read for CommandStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let answered = self.process.answered.load(Ordering::Relaxed);
        match self.sock.read(buf) {
            Ok(0) if !buf.is_empty() && !answered => match self.process.failure() {
                Some(e) => Err(e),
                None => Ok(0),
            },
            Ok(n) => {
                if n > 0 && !answered {
                    self.process.answered.store(true, Ordering::Relaxed);
                }
                Ok(n)
            }
            Err(e) if gone(&e) && !answered => Err(self.process.failure().unwrap_or(e)),
            Err(e) => Err(e),
        }
    }
}

impl Write for CommandStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.sock.write(buf) {
            Err(e) if gone(&e) && !self.process.answered.load(Ordering::Relaxed) => {
                Err(self.process.failure().unwrap_or(e))
            }
            other => other,
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

//! Reading a bridge connection with bounded memory: the secret line within a deadline fixed at
//! accept, then one message a line, each charged to the bridge's [`Budget`] as it is buffered.
//!
//! A message is refused as soon as it passes a limit (too many bytes, too many JSON values, or
//! more than the budget has left); the rest of its line is then read and dropped, never kept,
//! while the [`Scan`] looks for its `id`, so the agent gets its error and the connection stays
//! usable.

use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::scan::Scan;

/// What one JSON value of a message costs once parsed, in bytes: serde_json's `Value` is 32,
/// and the array or map holding it up to as much again. `[0,0,...]` is 2 bytes a value on the
/// wire and 32 to 64 in memory: the budget counts the latter.
pub(super) const VALUE_COST: usize = 64;

/// The read buffer of a connection.
const READ_BUFFER: usize = 16 << 10;

/// The longest first line a connection may send: its secret is 32 hex digits.
const MAX_SECRET_LINE: usize = 128;

/// The bytes a bridge may hold for messages: read but not yet answered, across all its sockets
/// and connections (one job's).
#[derive(Debug)]
pub(super) struct Budget {
    used: AtomicUsize,
    limit: usize,
    /// The most ever held, for tests.
    #[cfg(test)]
    pub(super) peak: AtomicUsize,
}

impl Budget {
    pub(super) fn new(limit: usize) -> Budget {
        Budget {
            used: AtomicUsize::new(0),
            limit,
            #[cfg(test)]
            peak: AtomicUsize::new(0),
        }
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(super) fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    fn take(&self, n: usize) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            });
        #[cfg(test)]
        if let Ok(before) = taken {
            self.peak.fetch_max(before + n, Ordering::SeqCst);
        }
        taken.is_ok()
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::SeqCst);
    }
}

/// The share of the budget one message holds until it has been answered; given back on drop.
#[derive(Debug)]
pub(super) struct Reservation {
    budget: Arc<Budget>,
    amount: usize,
}

impl Reservation {
    fn new(budget: &Arc<Budget>) -> Reservation {
        Reservation {
            budget: budget.clone(),
            amount: 0,
        }
    }

    /// Holds `amount` from now on; false, holding what it held, when the budget has not that
    /// much left.
    fn resize(&mut self, amount: usize) -> bool {
        if amount > self.amount {
            if !self.budget.take(amount - self.amount) {
                return false;
            }
        } else {
            self.budget.give(self.amount - amount);
        }
        self.amount = amount;
        true
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give(self.amount);
    }
}

/// What a message may be.
#[derive(Debug, Clone, Copy)]
pub(super) struct MessageLimits {
    /// Bytes of one line, its newline not counted.
    pub(super) max_bytes: usize,
    /// JSON values in one message, object keys included.
    pub(super) max_values: u64,
}

/// The next line of a connection.
#[derive(Debug)]
pub(super) enum Line {
    /// A whole message, with the budget it holds.
    Message(Vec<u8>, Reservation),
    /// A message refused unbuffered: answer `id` with this JSON-RPC error.
    Refused {
        id: Value,
        code: i64,
        message: String,
    },
    /// The connection ended (or failed).
    End,
}

/// Why a message was refused.
enum Refusal {
    Bytes,
    Values,
    Budget,
}

impl Refusal {
    /// The JSON-RPC error code and message a refused message is answered with: what limit it
    /// passed, and what the sender can do instead (a smaller message, or wait for answers).
    fn answer(self, limits: MessageLimits, budget: &Budget) -> (i64, String) {
        match self {
            Refusal::Bytes => (
                -32600,
                format!(
                    "message too large: more than {} bytes, the most herdctl-container's tool bridge takes in one message; pass large data in a file in the workspace instead",
                    limits.max_bytes
                ),
            ),
            Refusal::Values => (
                -32600,
                format!(
                    "message too large: more than {} JSON values, the most herdctl-container's tool bridge takes in one message; pass large data in a file in the workspace instead",
                    limits.max_values
                ),
            ),
            Refusal::Budget => (
                -32000,
                format!(
                    "the tool bridge already holds {} bytes of messages not yet answered, its limit; try again when a call has answered",
                    budget.limit
                ),
            ),
        }
    }
}

/// One connection's reading end.
pub(super) struct LineReader {
    stream: UnixStream,
    buf: Box<[u8]>,
    /// Bytes read and not yet consumed: `buf[start..end]`.
    start: usize,
    end: usize,
}

impl LineReader {
    pub(super) fn new(stream: UnixStream) -> LineReader {
        LineReader {
            stream,
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// The stream, to write answers on.
    pub(super) fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// The first line compared with `secret`, without waiting: `None` while it has not all
    /// arrived. The agent's shim sends it as it connects, so it is usually there by the time
    /// the connection is accepted.
    pub(super) fn secret_now(&mut self, secret: &str) -> Option<bool> {
        if self.stream.set_nonblocking(true).is_err() {
            return None;
        }
        let answer = loop {
            if let Some(answer) = self.secret_line(secret) {
                break Some(answer);
            }
            match self.fill() {
                Ok(0) => break Some(false),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break None,
                Err(_) => break Some(false),
            }
        };
        // Should this fail, the blocking reads that follow fail too, which closes the
        // connection: nothing is served on a socket in the wrong mode.
        let _ = self.stream.set_nonblocking(false);
        answer
    }

    /// The first line compared with `secret`, waiting until `deadline` at most: a deadline
    /// fixed when the connection was accepted, which a byte now and then does not push back.
    pub(super) fn secret_by(&mut self, secret: &str, deadline: Instant) -> bool {
        loop {
            if let Some(answer) = self.secret_line(secret) {
                return answer && self.stream.set_read_timeout(None).is_ok();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                return false;
            }
            match self.fill() {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// The secret line's verdict once it is complete (or too long to be the secret).
    fn secret_line(&mut self, secret: &str) -> Option<bool> {
        let read = &self.buf[self.start..self.end];
        match memchr::memchr(b'\n', read) {
            Some(at) if at < MAX_SECRET_LINE => {
                let answer = same_secret(&read[..at], secret.as_bytes());
                self.start += at + 1;
                Some(answer)
            }
            Some(_) => Some(false),
            None if read.len() >= MAX_SECRET_LINE => Some(false),
            None => None,
        }
    }

    /// The next message. Memory: at most `limits.max_bytes` of it is ever buffered, and no
    /// more than `budget` has left; a message past either is read to its end unkept and
    /// answered with an error.
    pub(super) fn next_message(&mut self, limits: MessageLimits, budget: &Arc<Budget>) -> Line {
        let mut line = Vec::new();
        let mut held = Reservation::new(budget);
        let mut scan = Scan::default();
        let mut refused = None;
        loop {
            if self.start == self.end {
                match self.fill() {
                    Ok(0) => return Line::End,
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => return Line::End,
                }
            }
            let read = &self.buf[self.start..self.end];
            let newline = memchr::memchr(b'\n', read);
            let part = &read[..newline.unwrap_or(read.len())];
            scan.feed(part);
            if refused.is_none() {
                refused = append(&mut line, &mut held, part, scan.values(), limits).err();
                if refused.is_some() {
                    line = Vec::new();
                    held.resize(0);
                }
            }
            self.start += part.len() + usize::from(newline.is_some());
            if newline.is_none() {
                continue;
            }
            let Some(refusal) = refused else {
                return Line::Message(line, held);
            };
            let (code, message) = refusal.answer(limits, budget);
            return Line::Refused {
                id: scan.id(),
                code,
                message,
            };
        }
    }

    /// Reads what the socket has into the free end of the buffer.
    fn fill(&mut self) -> std::io::Result<usize> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let n = self.stream.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }
}

/// Adds `part` to `line`, growing the line's hold on the budget to what the line will cost:
/// its buffer's capacity and its values once parsed.
fn append(
    line: &mut Vec<u8>,
    held: &mut Reservation,
    part: &[u8],
    values: u64,
    limits: MessageLimits,
) -> Result<(), Refusal> {
    let len = line.len() + part.len();
    if len > limits.max_bytes {
        return Err(Refusal::Bytes);
    }
    if values > limits.max_values {
        return Err(Refusal::Values);
    }
    // `values` is at most `max_values` here, so the costs cannot overflow for any sane limit.
    let values_cost = VALUE_COST.saturating_mul(values as usize);
    let capacity = if len <= line.capacity() {
        if !held.resize(line.capacity().saturating_add(values_cost)) {
            return Err(Refusal::Budget);
        }
        line.capacity()
    } else {
        // Doubling keeps the copies few; when the budget cannot hold that, exactly what is
        // needed will do.
        let doubled = len.max(line.capacity() * 2).min(limits.max_bytes);
        if held.resize(doubled.saturating_add(values_cost)) {
            doubled
        } else if held.resize(len.saturating_add(values_cost)) {
            len
        } else {
            return Err(Refusal::Budget);
        }
    };
    line.reserve_exact(capacity - line.len());
    line.extend_from_slice(part);
    Ok(())
}

/// Whether `given` is `secret`, in time that depends on the secret's length only: a wrong
/// guess takes as long whichever of its bytes are right, so timing tells nothing about them.
fn same_secret(given: &[u8], secret: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != secret.len());
    for (i, s) in secret.iter().enumerate() {
        diff |= given.get(i).copied().unwrap_or(0) ^ s;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn the_secret_must_match_whole() {
        assert!(same_secret(b"abc", b"abc"));
        for wrong in [&b""[..], b"ab", b"abd", b"abcd", b"Abc", b"\0bc"] {
            assert!(!same_secret(wrong, b"abc"), "{wrong:?}");
        }
    }
}

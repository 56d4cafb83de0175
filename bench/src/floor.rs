//! The engine floor: the same API calls a job makes, from a client with nothing else in it.
//!
//! A `UnixStream`, requests written by hand, and just enough parsing to find the status, the body's
//! length and an id. No pool, no error types, no validation, no JSON library on the timed path: what
//! a perfect library would cost. It is a baseline, not a library: anything unexpected is an
//! `io::Error` with the raw answer in it, and the benchmark stops.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// Calls made by every floor client of this process (the concurrency figures count them).
pub static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The API version prefix; Debian's engine speaks 1.41, and so does every engine we support.
const V: &str = "/v1.41";

/// A raw client: one keep-alive connection for ordinary calls, a fresh one per exec hijack.
pub struct Floor {
    socket: PathBuf,
    conn: Option<UnixStream>,
    buf: Vec<u8>,
}

/// An answer: the status and the whole body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    /// The string value of `"key":"..."` in a JSON body (ids, which hold no escapes).
    pub fn str_field(&self, key: &str) -> io::Result<String> {
        let pat = format!("\"{key}\":\"");
        let start = find(&self.body, pat.as_bytes())
            .ok_or_else(|| bad(format!("no {key} in {}", self.text())))?
            + pat.len();
        let len = find(&self.body[start..], b"\"").ok_or_else(|| bad("unterminated string"))?;
        Ok(String::from_utf8_lossy(&self.body[start..start + len]).into_owned())
    }

    /// The integer value of `"key":N`, `None` for `null`.
    pub fn int_field(&self, key: &str) -> io::Result<Option<i64>> {
        let pat = format!("\"{key}\":");
        let start = find(&self.body, pat.as_bytes())
            .ok_or_else(|| bad(format!("no {key} in {}", self.text())))?
            + pat.len();
        let rest = &self.body[start..];
        if rest.starts_with(b"null") {
            return Ok(None);
        }
        let end = rest
            .iter()
            .position(|b| !(b.is_ascii_digit() || *b == b'-'))
            .unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end])
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| bad(format!("{key} is not a number")))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into_owned()
    }

    /// Fails unless the status is one of `ok`.
    pub fn expect(self, call: &str, ok: &[u16]) -> io::Result<Answer> {
        if ok.contains(&self.status) {
            Ok(self)
        } else {
            Err(bad(format!("{call}: {} {}", self.status, self.text())))
        }
    }
}

/// A started exec: the raw socket and what was read past the answer's head.
pub struct Hijacked {
    pub stream: UnixStream,
    pub leftover: Vec<u8>,
}

impl Floor {
    pub fn new(socket: impl Into<PathBuf>) -> Floor {
        Floor {
            socket: socket.into(),
            conn: None,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    /// One call on the keep-alive connection (opened on first use, reopened if the engine closed
    /// it). `path` is without the version prefix.
    pub fn call(&mut self, method: &str, path: &str, body: Option<&str>) -> io::Result<Answer> {
        CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut req = format!("{method} {V}{path} HTTP/1.1\r\nHost: docker\r\n");
        if let Some(b) = body {
            req.push_str("Content-Type: application/json\r\n");
            req.push_str(&format!("Content-Length: {}\r\n\r\n{b}", b.len()));
        } else {
            req.push_str("\r\n");
        }
        if self.conn.is_none() {
            self.buf.clear();
            self.conn = Some(UnixStream::connect(&self.socket)?);
        }
        let conn = self.conn.as_mut().expect("opened just above");
        conn.write_all(req.as_bytes())?;
        let answer = read_answer(conn, &mut self.buf);
        if answer.is_err() {
            self.conn = None;
        }
        answer
    }

    /// `POST /exec/{id}/start` with the upgrade headers on a new connection; returns once the
    /// head (`101` or `200`) is read.
    pub fn exec_start(&self, exec_id: &str) -> io::Result<Hijacked> {
        CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = r#"{"Detach":false,"Tty":false}"#;
        let req = format!(
            "POST {V}/exec/{exec_id}/start HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n\
             Upgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut stream = UnixStream::connect(&self.socket)?;
        stream.write_all(req.as_bytes())?;
        let mut buf = Vec::with_capacity(4096);
        let head_end = read_head(&mut stream, &mut buf)?;
        let status = status_of(&buf)?;
        if status != 101 && status != 200 {
            return Err(bad(format!(
                "exec start: {}",
                String::from_utf8_lossy(&buf)
            )));
        }
        Ok(Hijacked {
            stream,
            leftover: buf[head_end..].to_vec(),
        })
    }
}

impl Hijacked {
    /// Writes stdin and half-closes it. (The floor's stdin is one small prompt: it fits the
    /// socket buffer, so one thread can write it before reading.)
    pub fn send_stdin(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream.write_all(data)?;
        self.stream.shutdown(Shutdown::Write)
    }

    /// Reads the multiplexed output to its end; `on_stdout` sees each stdout payload.
    pub fn demux(mut self, mut on_stdout: impl FnMut(&[u8])) -> io::Result<()> {
        let mut buf = self.leftover;
        let mut chunk = vec![0u8; 64 * 1024];
        let mut pos = 0;
        loop {
            // Whole frames first.
            while buf.len() - pos >= 8 {
                let len =
                    u32::from_be_bytes([buf[pos + 4], buf[pos + 5], buf[pos + 6], buf[pos + 7]])
                        as usize;
                if buf.len() - pos - 8 < len {
                    break;
                }
                if buf[pos] == 1 {
                    on_stdout(&buf[pos + 8..pos + 8 + len]);
                }
                pos += 8 + len;
            }
            buf.drain(..pos);
            pos = 0;
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return if buf.is_empty() {
                    Ok(())
                } else {
                    Err(bad("the stream ended inside a frame"))
                };
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads the raw stream to its end without looking at it; returns the bytes read and the
    /// instant the first one arrived.
    pub fn drain(mut self) -> io::Result<(u64, Option<std::time::Instant>)> {
        let mut total = self.leftover.len() as u64;
        let mut first = (total > 0).then(std::time::Instant::now);
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Ok((total, first));
            }
            first.get_or_insert_with(std::time::Instant::now);
            total += n as u64;
        }
    }
}

/// Reads until the end of the head; returns where the body starts in `buf`.
fn read_head(conn: &mut UnixStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            return Ok(i + 4);
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(bad(
                "the engine closed the connection before the head ended",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn status_of(head: &[u8]) -> io::Result<u16> {
    // "HTTP/1.1 200 OK"
    head.get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))
}

/// Reads one whole answer: head, then a `Content-Length` or chunked body (or none). `buf` holds
/// bytes read from the connection but not yet used, from one answer to the next.
fn read_answer(conn: &mut UnixStream, buf: &mut Vec<u8>) -> io::Result<Answer> {
    let body_start = read_head(conn, buf)?;
    let status = status_of(buf)?;
    let head = String::from_utf8_lossy(&buf[..body_start]).to_ascii_lowercase();
    let (body, end) = if status == 204 || status == 304 {
        (Vec::new(), body_start)
    } else if let Some(len) = header(&head, "content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        read_at_least(conn, buf, body_start + len)?;
        (buf[body_start..body_start + len].to_vec(), body_start + len)
    } else if header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(conn, buf, body_start)?
    } else {
        return Err(bad("an answer with neither a length nor chunks"));
    };
    buf.drain(..end);
    Ok(Answer { status, body })
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == name).then(|| v.trim())
    })
}

fn read_at_least(conn: &mut UnixStream, buf: &mut Vec<u8>, n: usize) -> io::Result<()> {
    let mut chunk = [0u8; 16 * 1024];
    while buf.len() < n {
        let got = conn.read(&mut chunk)?;
        if got == 0 {
            return Err(bad("the engine closed the connection inside a body"));
        }
        buf.extend_from_slice(&chunk[..got]);
    }
    Ok(())
}

/// Decodes a chunked body starting at `raw[pos..]`; returns it and where it ends in `raw`.
fn dechunk(
    conn: &mut UnixStream,
    raw: &mut Vec<u8>,
    mut pos: usize,
) -> io::Result<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(&raw[pos..], b"\r\n") {
                break pos + i;
            }
            let want = raw.len() + 1;
            read_at_least(conn, raw, want)?;
        };
        let size_text = std::str::from_utf8(&raw[pos..line_end]).map_err(|_| bad("chunk size"))?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad("chunk size"))?;
        let data = line_end + 2;
        read_at_least(conn, raw, data + size + 2)?;
        if size == 0 {
            return Ok((body, data + 2));
        }
        body.extend_from_slice(&raw[data..data + size]);
        pos = data + size + 2;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Percent-encodes a query value (a list call's filters).
pub fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The path of a list call for containers with all these labels (`key=value`), stopped included.
pub fn list_path(labels: &[&str]) -> String {
    let quoted: Vec<String> = labels.iter().map(|l| q(l)).collect();
    let filters = format!("{{\"label\":[{}]}}", quoted.join(","));
    format!("/containers/json?all=true&filters={}", pct(&filters))
}

/// Quotes a string for a hand-written JSON body.
pub fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_by_hand() {
        let a = Answer {
            status: 200,
            body: br#"{"Id":"abc123","Running":false,"ExitCode":137,"Pid":0}"#.to_vec(),
        };
        assert_eq!(a.str_field("Id").unwrap(), "abc123");
        assert_eq!(a.int_field("ExitCode").unwrap(), Some(137));
        let a = Answer {
            status: 200,
            body: br#"{"ExitCode":null}"#.to_vec(),
        };
        assert_eq!(a.int_field("ExitCode").unwrap(), None);
        assert!(a.str_field("Id").is_err());
    }

    #[test]
    fn quoting_escapes_what_json_needs() {
        assert_eq!(q(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(q("x\ny\u{1}"), "\"x\\ny\\u0001\"");
    }

    /// The engine answers small bodies with a length and larger ones in chunks; both, and a
    /// bodiless 204, must come back whole from one keep-alive connection.
    #[test]
    fn answers_are_read_whole_in_every_framing() {
        let (mut engine, mut client) = UnixStream::pair().unwrap();
        let answers = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{\"a\":1}\
                       HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                       4\r\n[{\"I\r\n8;x=y\r\nd\":\"z\"}]\r\n0\r\n\r\n\
                       HTTP/1.1 204 No Content\r\n\r\n";
        // Written in pieces, so reads stop mid-head, mid-size-line and mid-chunk.
        let writer = std::thread::spawn(move || {
            for piece in answers.as_bytes().chunks(5) {
                engine.write_all(piece).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        let mut buf = Vec::new();
        let a = read_answer(&mut client, &mut buf).unwrap();
        assert_eq!((a.status, &a.body[..]), (200, &br#"{"a":1}"#[..]));
        let b = read_answer(&mut client, &mut buf).unwrap();
        assert_eq!(b.str_field("Id").unwrap(), "z");
        assert_eq!(b.body, br#"[{"Id":"z"}]"#);
        let c = read_answer(&mut client, &mut buf).unwrap();
        assert_eq!((c.status, c.body.len()), (204, 0));
        writer.join().unwrap();
    }

    #[test]
    fn headers_are_matched_by_name() {
        let head =
            "http/1.1 200 ok\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n";
        assert_eq!(header(head, "content-length"), Some("12"));
        assert_eq!(header(head, "transfer-encoding"), None);
    }
}

//! HTTP/1.1 response framing over any byte source: the response head (through `httparse`) and
//! bodies delimited by `Content-Length`, by chunked transfer-encoding or by the connection's close.
//!
//! No I/O of its own: [`Wire`] reads from whatever `Read` it wraps, so the same code runs on a
//! socket with deadlines and, in the tests below, on hand-made byte streams split at every byte.

use std::io::{self, Read};

/// A response head larger than this is refused: the engine's heads are a few hundred bytes.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// httparse needs a fixed header array; the engine sends about ten headers.
const MAX_HEADERS: usize = 64;
/// A chunk-size or trailer line longer than this is not HTTP.
const MAX_LINE: usize = 4096;

/// What went wrong below the API: the caller adds which call it was.
#[derive(Debug)]
pub(crate) enum WireError {
    /// The byte source failed (including a read timeout).
    Io(io::Error),
    /// The byte source ended where more was expected; `any_bytes` says whether this response had
    /// begun at all (an idle connection the engine closed has not).
    Closed {
        /// Whether any byte of this response had arrived.
        any_bytes: bool,
    },
    /// Bytes that are not HTTP/1.1.
    Malformed(String),
}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> WireError {
        WireError::Io(e)
    }
}

/// A parsed response head.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    /// The status code.
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection may carry another request after this response's body.
    pub fn keep_alive(&self) -> bool {
        let close = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
        self.minor_version == 1 && !close
    }
}

/// How the body of a response ends, and how far reading has got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Framing {
    /// This many bytes are still to come.
    Length(u64),
    /// Chunked transfer-encoding, at this point of a chunk.
    Chunked(Chunk),
    /// The body runs until the engine closes the connection.
    Close,
    /// The body has been read to its end.
    Done,
}

/// The position inside a chunked body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// This many bytes of chunk data are still to come.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty line.
    Trailers,
}

impl Framing {
    /// The framing of the body that follows `head`. `bodiless` is true for answers to `HEAD`.
    pub fn of(head: &Head, bodiless: bool) -> Result<Framing, WireError> {
        if bodiless || head.status < 200 || head.status == 204 || head.status == 304 {
            return Ok(Framing::Done);
        }
        let chunked = head
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .rfind(|t| !t.is_empty())
            .map(|last| last.eq_ignore_ascii_case("chunked"));
        match chunked {
            Some(true) => return Ok(Framing::Chunked(Chunk::Size)),
            // Another coding last: the body runs to the close (RFC 9112, 6.3).
            Some(false) => return Ok(Framing::Close),
            None => {}
        }
        let mut length = None;
        for (_, v) in head
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            let v = v.trim();
            let n: u64 = parse_digits(v)
                .ok_or_else(|| WireError::Malformed(format!("bad content-length {v:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(WireError::Malformed(
                    "conflicting content-length headers".into(),
                ));
            }
            length = Some(n);
        }
        Ok(match length {
            Some(0) => Framing::Done,
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        })
    }
}

fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, WireError> {
    let bad = || {
        WireError::Malformed(format!(
            "bad chunk size line {:?}",
            String::from_utf8_lossy(line)
        ))
    };
    // Extensions after ';' carry nothing we use.
    let size = line.split(|&b| b == b';').next().unwrap_or(line);
    let size = size.trim_ascii();
    if size.is_empty() || size.len() > 16 {
        return Err(bad());
    }
    let mut n: u64 = 0;
    for &b in size {
        let d = (b as char).to_digit(16).ok_or_else(bad)?;
        n = n * 16 + u64::from(d);
    }
    Ok(n)
}

/// A buffered reader of HTTP/1.1 responses over a byte source.
pub(crate) struct Wire<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Whether any byte has arrived since this reader was made.
    received: bool,
}

impl<R: Read> Wire<R> {
    /// A reader with a buffer of `capacity` bytes (it grows only for an oversized head).
    pub fn new(inner: R, capacity: usize) -> Wire<R> {
        Wire {
            inner,
            buf: vec![0; capacity.max(1024)],
            pos: 0,
            end: 0,
            received: false,
        }
    }

    /// The byte source, for writing requests and setting deadlines.
    pub fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Whether any byte has arrived on this reader (a failure before that may be a stale
    /// keep-alive connection, worth one more try on a fresh one).
    pub fn received_any(&self) -> bool {
        self.received
    }

    /// Whether bytes past the last response are buffered (then the connection is not reusable).
    pub fn has_buffered(&self) -> bool {
        self.pos < self.end
    }

    /// The byte source and the bytes already read from it but not consumed.
    pub fn into_parts(self) -> (R, Vec<u8>) {
        (self.inner, self.buf[self.pos..self.end].to_vec())
    }

    /// Reads more bytes, keeping unconsumed ones; grows the buffer up to `limit`. 0 means EOF.
    fn fill(&mut self, limit: usize) -> Result<usize, WireError> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            } else if self.buf.len() < limit {
                let len = (self.buf.len() * 2).min(limit);
                self.buf.resize(len, 0);
            } else {
                return Err(WireError::Malformed(format!(
                    "more than {limit} bytes without a line end"
                )));
            }
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    self.received |= n > 0;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(WireError::Io(e)),
            }
        }
    }

    /// Reads a response head, skipping interim `100 Continue` heads.
    pub fn read_head(&mut self) -> Result<Head, WireError> {
        let mut any_bytes = self.has_buffered();
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buf[self.pos..self.end]) {
                Ok(httparse::Status::Complete(len)) => {
                    let head = Head {
                        // httparse fills code and version in a complete parse.
                        status: response.code.unwrap_or(0),
                        minor_version: response.version.unwrap_or(1),
                        headers: response
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_string(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                    };
                    self.pos += len;
                    if head.status == 100 || head.status == 102 || head.status == 103 {
                        continue;
                    }
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(WireError::Malformed(format!("bad response head: {e}"))),
            }
            if self.end - self.pos >= MAX_HEAD {
                return Err(WireError::Malformed(format!(
                    "response head larger than {MAX_HEAD} bytes"
                )));
            }
            if self.fill(MAX_HEAD)? == 0 {
                return Err(WireError::Closed { any_bytes });
            }
            any_bytes = true;
        }
    }

    /// Reads one line (without CR LF), up to [`MAX_LINE`] bytes.
    fn read_line(&mut self) -> Result<Vec<u8>, WireError> {
        let mut searched = 0;
        loop {
            let avail = &self.buf[self.pos + searched..self.end];
            if let Some(i) = avail.iter().position(|&b| b == b'\n') {
                let line_end = self.pos + searched + i;
                let mut line = &self.buf[self.pos..line_end];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                let line = line.to_vec();
                self.pos = line_end + 1;
                return Ok(line);
            }
            searched = self.end - self.pos;
            if searched > MAX_LINE {
                return Err(WireError::Malformed(format!(
                    "line longer than {MAX_LINE} bytes in a chunked body"
                )));
            }
            // fill may move unconsumed bytes to the front; `searched` is relative to pos, so it
            // stays right.
            if self.fill(MAX_HEAD)? == 0 {
                return Err(WireError::Closed { any_bytes: true });
            }
        }
    }

    /// Copies up to `limit` body bytes into `out`, from the buffer or straight from the source.
    /// Returns 0 only at EOF.
    fn read_raw(&mut self, out: &mut [u8], limit: u64) -> Result<usize, WireError> {
        let want = out.len().min(usize::try_from(limit).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        if self.pos == self.end {
            if want >= self.buf.len() {
                // Large reads bypass the buffer: one copy less for streamed bodies.
                loop {
                    match self.inner.read(&mut out[..want]) {
                        Ok(n) => {
                            self.received |= n > 0;
                            return Ok(n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(WireError::Io(e)),
                    }
                }
            }
            if self.fill(self.buf.len())? == 0 {
                return Ok(0);
            }
        }
        let n = want.min(self.end - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }

    /// Reads up to `*left` bytes of a part of known length (a body, a chunk) and counts them off:
    /// the connection closing before the part's end is an error, not the end of the body.
    fn read_counted(&mut self, out: &mut [u8], left: &mut u64) -> Result<usize, WireError> {
        let n = self.read_raw(out, *left)?;
        if n == 0 && !out.is_empty() {
            return Err(WireError::Closed { any_bytes: true });
        }
        *left -= n as u64;
        Ok(n)
    }

    /// Reads body bytes into `out`, advancing `framing`. Returns 0 once the body has ended (then
    /// `framing` is [`Framing::Done`]).
    pub fn read_body(&mut self, framing: &mut Framing, out: &mut [u8]) -> Result<usize, WireError> {
        loop {
            match framing {
                Framing::Done => return Ok(0),
                Framing::Length(left) => {
                    let n = self.read_counted(out, left)?;
                    if *left == 0 {
                        *framing = Framing::Done;
                    }
                    return Ok(n);
                }
                Framing::Close => {
                    let n = self.read_raw(out, u64::MAX)?;
                    if n == 0 && !out.is_empty() {
                        *framing = Framing::Done;
                    }
                    return Ok(n);
                }
                Framing::Chunked(chunk) => match chunk {
                    Chunk::Size => {
                        let size = parse_chunk_size(&self.read_line()?)?;
                        *chunk = if size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data(size)
                        };
                    }
                    Chunk::Data(left) => {
                        let n = self.read_counted(out, left)?;
                        if *left == 0 {
                            *chunk = Chunk::DataEnd;
                        }
                        return Ok(n);
                    }
                    Chunk::DataEnd => {
                        let line = self.read_line()?;
                        if !line.is_empty() {
                            return Err(WireError::Malformed(
                                "chunk data longer than its size".into(),
                            ));
                        }
                        *chunk = Chunk::Size;
                    }
                    Chunk::Trailers => {
                        if self.read_line()?.is_empty() {
                            *framing = Framing::Done;
                        }
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte source that hands out its data in pieces of the given sizes, cycled.
    struct Pieces {
        data: Vec<u8>,
        sizes: Vec<usize>,
        at: usize,
        i: usize,
    }

    impl Read for Pieces {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let size = self.sizes[self.i % self.sizes.len()].max(1);
            self.i += 1;
            let n = size.min(out.len()).min(self.data.len() - self.at);
            out[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn wire(data: &[u8], sizes: &[usize]) -> Wire<Pieces> {
        Wire::new(
            Pieces {
                data: data.to_vec(),
                sizes: sizes.to_vec(),
                at: 0,
                i: 0,
            },
            1024,
        )
    }

    /// Reads one response: head and whole body, with a small output buffer to exercise splits.
    fn response(w: &mut Wire<Pieces>) -> Result<(Head, Vec<u8>), WireError> {
        let head = w.read_head()?;
        let mut framing = Framing::of(&head, false)?;
        let mut body = Vec::new();
        let mut out = [0u8; 7];
        loop {
            let n = w.read_body(&mut framing, &mut out)?;
            if n == 0 {
                assert_eq!(framing, Framing::Done);
                return Ok((head, body));
            }
            body.extend_from_slice(&out[..n]);
        }
    }

    const CHUNKED: &[u8] =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n\
        5\r\n{\"a\":\r\n3;ext=1;q=\"x\"\r\n12}\r\nA\r\n0123456789\r\n0\r\nX-Trailer: yes\r\n\r\n";

    #[test]
    fn content_length_body_and_keep_alive() {
        let data = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nApi-Version: 1.41\r\n\r\nhello worldHTTP/1.1 204 No Content\r\n\r\n";
        let mut w = wire(data, &[4096]);
        let (head, body) = response(&mut w).unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.header("api-version"), Some("1.41"));
        assert!(head.keep_alive());
        assert_eq!(body, b"hello world");
        // The next response on the same connection starts right after the body.
        let (head, body) = response(&mut w).unwrap();
        assert_eq!(head.status, 204);
        assert!(body.is_empty());
        assert!(!w.has_buffered());
    }

    #[test]
    fn chunked_split_at_every_byte() {
        for split in 1..CHUNKED.len() {
            let mut w = wire(CHUNKED, &[split, CHUNKED.len()]);
            let (_, body) = response(&mut w).unwrap_or_else(|e| panic!("split {split}: {e:?}"));
            assert_eq!(body, b"{\"a\":12}0123456789", "split at {split}");
            assert!(!w.has_buffered());
        }
        let mut w = wire(CHUNKED, &[1]);
        assert_eq!(response(&mut w).unwrap().1, b"{\"a\":12}0123456789");
    }

    #[test]
    fn chunk_extensions_trailers_and_bare_lf() {
        let data =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4 ; name=v\nabcd\n0\n\n";
        let (_, body) = response(&mut wire(data, &[3])).unwrap();
        assert_eq!(body, b"abcd");
    }

    #[test]
    fn close_delimited_body_runs_to_eof() {
        let data = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it\nuntil close";
        let mut w = wire(data, &[5]);
        let (head, body) = response(&mut w).unwrap();
        assert_eq!(body, b"all of it\nuntil close");
        assert_eq!(Framing::of(&head, false).unwrap(), Framing::Close);
        let close = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(!response(&mut wire(close, &[64])).unwrap().0.keep_alive());
        let close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert!(!response(&mut wire(close, &[64])).unwrap().0.keep_alive());
    }

    #[test]
    fn bodiless_statuses_ignore_length() {
        let data = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n";
        assert!(response(&mut wire(data, &[64])).unwrap().1.is_empty());
    }

    #[test]
    fn continue_heads_are_skipped() {
        let data =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}";
        let (head, body) = response(&mut wire(data, &[3])).unwrap();
        assert_eq!((head.status, body.as_slice()), (201, &b"{}"[..]));
    }

    #[test]
    fn eof_before_any_byte_is_told_apart() {
        match wire(b"", &[1]).read_head() {
            Err(WireError::Closed { any_bytes: false }) => {}
            other => panic!("{other:?}"),
        }
        match wire(b"HTTP/1.1 200", &[4]).read_head() {
            Err(WireError::Closed { any_bytes: true }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_bodies_are_errors() {
        for data in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"[..],
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort"[..],
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nshort\r\n"[..],
        ] {
            match response(&mut wire(data, &[3])) {
                Err(WireError::Closed { any_bytes: true }) => {}
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let cases: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"\x00\x01\x02\x03garbage\r\n\r\n",
        ];
        for data in cases {
            match response(&mut wire(data, &[2])) {
                Err(WireError::Malformed(m)) => assert!(!m.is_empty()),
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(data)),
            }
        }
    }

    #[test]
    fn oversized_head_and_line_are_refused() {
        let mut data = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        data.extend(vec![b'a'; MAX_HEAD + 10]);
        assert!(matches!(
            response(&mut wire(&data, &[9000])),
            Err(WireError::Malformed(_))
        ));
        let mut data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
        data.extend(vec![b'a'; MAX_LINE * 3]);
        assert!(matches!(
            response(&mut wire(&data, &[700])),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn leftover_bytes_after_head_are_kept() {
        let data = b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n\x01\x00\x00\x00\x00\x00\x00\x02hi";
        let mut w = wire(data, &[4096]);
        assert_eq!(w.read_head().unwrap().status, 101);
        let (_, rest) = w.into_parts();
        assert_eq!(rest, b"\x01\x00\x00\x00\x00\x00\x00\x02hi");
    }
}

//! Turning a job's output chunks into whole lines, and keeping the end of its stderr.
//!
//! The engine delivers stdout in frames of a few KiB: a JSONL message routinely spans several, and a
//! UTF-8 character can be split between two. [`Lines`] reassembles them, bounded by a maximum line
//! size so that a job printing without newlines ends with an error instead of eating memory.

/// Reassembles lines from chunks. Lines are handed out as borrowed slices without their `\n` (and
/// without a `\r` before it), so the hot path copies each byte once, into the buffer.
#[derive(Debug)]
pub(crate) struct Lines {
    buf: Vec<u8>,
    /// Start of the first byte not yet handed out.
    start: usize,
    /// Bytes in `buf[start..scanned]` are known to hold no newline.
    scanned: usize,
    max_line: usize,
}

use std::ops::Range;

use crate::redact::Redactor;

/// A line grew past the limit without a newline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineTooLong;

impl Lines {
    pub(crate) fn new(max_line: usize) -> Lines {
        Lines {
            buf: Vec::with_capacity(64 * 1024),
            start: 0,
            scanned: 0,
            max_line,
        }
    }

    /// Appends a chunk. Call [`Lines::next_line`] until it returns `None` before the next push.
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        if self.start > 0 {
            // Everything before `start` was handed out: drop it before growing the buffer.
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// Where the next whole line is, if one is buffered; read it with [`Lines::get`]. (A range,
    /// not a slice, so a caller can loop over pushes and return the line without fighting the
    /// borrow checker.)
    pub(crate) fn next_range(&mut self) -> Result<Option<Range<usize>>, LineTooLong> {
        match memchr::memchr(b'\n', &self.buf[self.scanned..]) {
            Some(i) => {
                let end = self.scanned + i;
                let line_start = self.start;
                self.start = end + 1;
                self.scanned = self.start;
                if end - line_start > self.max_line {
                    return Err(LineTooLong);
                }
                Ok(Some(line_start..end))
            }
            None => {
                self.scanned = self.buf.len();
                if self.scanned - self.start > self.max_line {
                    return Err(LineTooLong);
                }
                Ok(None)
            }
        }
    }

    /// The line at a range from [`Lines::next_range`], without a final `\r`.
    pub(crate) fn get(&self, range: Range<usize>) -> &[u8] {
        trim_cr(&self.buf[range])
    }

    pub(crate) fn max_line(&self) -> usize {
        self.max_line
    }

    /// At the end of the stream: the last line if it had no final newline.
    pub(crate) fn finish(&mut self) -> Option<&[u8]> {
        if self.start >= self.buf.len() {
            return None;
        }
        let line_start = self.start;
        self.start = self.buf.len();
        self.scanned = self.start;
        Some(trim_cr(&self.buf[line_start..]))
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The last `cap` bytes of a stream (a job's stderr), for failure reports, redacted before they
/// are cut: it buffers `margin` bytes more than it shows (the longest secret's length), so that a
/// secret straddling the cut is still seen whole by [`Tail::text`] and no part of it survives.
#[derive(Debug)]
pub(crate) struct Tail {
    buf: Vec<u8>,
    cap: usize,
    margin: usize,
}

impl Tail {
    pub(crate) fn new(cap: usize, margin: usize) -> Tail {
        Tail {
            buf: Vec::new(),
            cap,
            margin,
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        let bound = self.cap + self.margin;
        if chunk.len() >= bound {
            self.buf.clear();
            self.buf.extend_from_slice(&chunk[chunk.len() - bound..]);
            return;
        }
        // The buffer may hold up to twice the bound, so the front is dropped once per bound
        // rather than on every chunk: stdout's tail sits on the output path, where moving the
        // whole tail for each small frame would cost more than the copy itself.
        if self.buf.len() + chunk.len() > 2 * bound {
            let keep = bound - chunk.len();
            self.buf.drain(..self.buf.len() - keep);
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The last `cap` bytes as text, every secret of `redactor` replaced first (give it the
    /// redactor whose [`Redactor::longest`] was the margin); a character cut at the front by the
    /// bound is replaced, not an error.
    pub(crate) fn text(&self, redactor: &Redactor) -> String {
        let from = self.buf.len().saturating_sub(self.cap + self.margin);
        String::from_utf8_lossy(&redactor.redact_tail(&self.buf[from..], self.cap)).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::REDACTED;

    fn collect(lines: &mut Lines) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(r) = lines.next_range().unwrap() {
            out.push(String::from_utf8(lines.get(r).to_vec()).unwrap());
        }
        out
    }

    #[test]
    fn reassembles_lines_split_at_every_byte() {
        let text = "{\"a\":\"é€😀\"}\r\n{\"b\":2}\n\nlast";
        for split in 0..=text.len() {
            let mut lines = Lines::new(1024);
            let mut got = Vec::new();
            lines.push(&text.as_bytes()[..split]);
            got.extend(collect(&mut lines));
            lines.push(&text.as_bytes()[split..]);
            got.extend(collect(&mut lines));
            got.push(String::from_utf8(lines.finish().unwrap().to_vec()).unwrap());
            assert_eq!(
                got,
                ["{\"a\":\"é€😀\"}", "{\"b\":2}", "", "last"],
                "split at {split}"
            );
        }
    }

    #[test]
    fn finish_is_empty_after_a_final_newline() {
        let mut lines = Lines::new(16);
        lines.push(b"a\n");
        assert_eq!(collect(&mut lines), ["a"]);
        assert_eq!(lines.finish(), None);
    }

    #[test]
    fn a_line_past_the_limit_is_an_error_even_before_its_newline() {
        let mut lines = Lines::new(4);
        lines.push(b"12345");
        assert_eq!(lines.next_range(), Err(LineTooLong));
        let mut lines = Lines::new(4);
        lines.push(b"1234\n12345\n");
        assert_eq!(lines.next_range().unwrap(), Some(0..4));
        assert_eq!(lines.next_range(), Err(LineTooLong));
    }

    #[test]
    fn memory_stays_bounded_by_the_unread_part() {
        let mut lines = Lines::new(1024);
        for _ in 0..10_000 {
            lines.push(&[b'x'; 100]);
            lines.push(b"\n");
            assert!(lines.next_range().unwrap().is_some());
        }
        assert!(
            lines.buf.capacity() <= 128 * 1024,
            "{}",
            lines.buf.capacity()
        );
    }

    #[test]
    fn tail_keeps_the_last_bytes() {
        let none = Redactor::default();
        let mut t = Tail::new(5, none.longest());
        t.push(b"abc");
        t.push(b"defg");
        assert_eq!(t.text(&none), "cdefg");
        t.push(b"0123456789");
        assert_eq!(t.text(&none), "56789");
        for chunk in [&b"ab"[..], b"cd", b"ef", b"gh", b"ij", b"k"] {
            t.push(chunk);
        }
        assert_eq!(t.text(&none), "ghijk");
        assert!(t.buf.len() <= 10, "bounded by twice the tail");
    }

    /// A secret across the tail's cut, at every offset and with the stream split into chunks of
    /// every size from 1 byte to larger than the tail: no part of it survives. (Cut first, as
    /// before, the secret's end survived at the front of the tail.)
    #[test]
    fn a_secret_across_the_cut_leaves_no_fragment() {
        let secret = "sk-ant-api03-0123456789";
        let redactor = Redactor::new([secret]);
        let cap = 32;
        for offset in 0..=secret.len() {
            // The cut (the stream's end minus `cap`) falls `offset` bytes into the secret.
            let stream = format!(
                "{}{secret}{}",
                "x".repeat(100),
                "x".repeat(cap + offset - secret.len())
            );
            for chunk in [1, 3, 7, cap, cap + secret.len() + 1, stream.len()] {
                let mut t = Tail::new(cap, redactor.longest());
                for piece in stream.as_bytes().chunks(chunk) {
                    t.push(piece);
                }
                let text = t.text(&redactor);
                assert!(
                    text.replace(REDACTED, "").bytes().all(|b| b == b'x'),
                    "offset {offset}, chunk {chunk}: {text}"
                );
                if offset < secret.len() {
                    assert!(text.starts_with(REDACTED), "offset {offset}: {text}");
                }
            }
        }
    }
}

//! The multiplexed stream of a container without a TTY, decoded without I/O.
//!
//! The engine wraps every write of the process in a frame: an 8-byte header
//! `[stream, 0, 0, 0, len as u32 big-endian]` and `len` bytes of payload (stream 1 = stdout,
//! 2 = stderr). Frames are small, so a JSONL line routinely spans several, and reads from the socket
//! split headers and payloads anywhere. [`FrameDecoder`] is fed whatever bytes arrived and answers
//! with ranges into them, so the caller's buffer is reused and nothing is copied.

use std::fmt;
use std::ops::Range;

/// Which output of the process a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
}

/// What one [`FrameDecoder::decode`] step found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decoded {
    /// How many bytes of the input were used; the caller drops them before the next step.
    pub consumed: usize,
    /// A piece of payload (a whole frame or part of one), as a range of the input.
    pub payload: Option<(Stream, Range<usize>)>,
}

/// Bytes that are not a multiplexed stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// A header named a stream other than stdin (0), stdout (1), stderr (2) or the engine's own
    /// error stream (3): the stream is not multiplexed, or it is corrupt.
    UnknownStream(u8),
    /// The engine reported an error in its own stream (id 3), with its text.
    Engine(String),
    /// The stream ended inside a frame.
    Truncated,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::UnknownStream(id) => write!(
                f,
                "frame header names stream {id}, expected 1 (stdout) or 2 (stderr); the stream is not multiplexed or is corrupt"
            ),
            FrameError::Engine(text) => write!(f, "the engine reported in-stream: {text}"),
            FrameError::Truncated => write!(f, "the stream ended inside a frame"),
        }
    }
}

/// The engine's error stream (id 3) is kept whole up to this size to report it. A longer one is
/// not shown at all rather than cut: a cut one could end inside a secret it quotes, and only the
/// runner, later, knows the secrets to redact.
const ENGINE_ERROR_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Out(Stream),
    EngineError,
}

/// A streaming decoder of multiplexed frames; it keeps at most a partial header between calls.
#[derive(Debug, Default)]
pub(crate) struct FrameDecoder {
    header: [u8; 8],
    header_len: usize,
    /// Payload bytes still to come in the current frame, and where they go.
    remaining: usize,
    target: Option<Target>,
    engine_error: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// True when the stream may end here: not inside a header or a payload.
    pub fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.remaining == 0
    }

    /// Decodes from `input` until a piece of payload is found or the input is used up.
    ///
    /// Zero-length frames are skipped. Call again with `&input[consumed..]` until `consumed` is 0
    /// or the input is empty.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, FrameError> {
        let mut at = 0;
        loop {
            if self.remaining > 0 {
                if let Some(decoded) = self.payload(input, &mut at)? {
                    return Ok(decoded);
                }
                continue;
            }
            if !self.gather_header(input, &mut at) {
                return Ok(Decoded {
                    consumed: at,
                    payload: None,
                });
            }
            self.start_frame()?;
        }
    }

    /// Inside a frame, from `input[*at..]`: a piece of stdout or stderr to hand out, or the end
    /// of the input (`Some` either way); or bytes of the engine's error stream, kept (`None`, and
    /// `at` moved past them) until its frame ends with the error.
    fn payload(&mut self, input: &[u8], at: &mut usize) -> Result<Option<Decoded>, FrameError> {
        let take = self.remaining.min(input.len() - *at);
        if take == 0 {
            return Ok(Some(Decoded {
                consumed: *at,
                payload: None,
            }));
        }
        self.remaining -= take;
        let range = *at..*at + take;
        if let Some(Target::Out(stream)) = self.target {
            return Ok(Some(Decoded {
                consumed: range.end,
                payload: Some((stream, range)),
            }));
        }
        let room = ENGINE_ERROR_LIMIT.saturating_sub(self.engine_error.len());
        let keep = room.min(take);
        self.engine_error.extend_from_slice(&input[*at..*at + keep]);
        *at += take;
        if self.remaining == 0 {
            return Err(self.engine_error());
        }
        Ok(None)
    }

    /// Gathers header bytes from `input[*at..]`, possibly across calls; true once the header is
    /// whole.
    fn gather_header(&mut self, input: &[u8], at: &mut usize) -> bool {
        let want = 8 - self.header_len;
        let have = want.min(input.len() - *at);
        self.header[self.header_len..self.header_len + have]
            .copy_from_slice(&input[*at..*at + have]);
        self.header_len += have;
        *at += have;
        self.header_len == 8
    }

    /// Starts the frame the whole header announces: its stream and its length. An empty frame
    /// of the engine's error stream is an error without words.
    fn start_frame(&mut self) -> Result<(), FrameError> {
        self.header_len = 0;
        // Bytes 1..4 are padding; the engine's own reader (stdcopy) ignores them, so do we.
        let len = u32::from_be_bytes([
            self.header[4],
            self.header[5],
            self.header[6],
            self.header[7],
        ]);
        let target = match self.header[0] {
            // stdcopy writes stdin frames (0) to stdout; follow it.
            0 | 1 => Target::Out(Stream::Stdout),
            2 => Target::Out(Stream::Stderr),
            3 => Target::EngineError,
            other => return Err(FrameError::UnknownStream(other)),
        };
        self.target = Some(target);
        // A u32 always fits in usize on the 32- and 64-bit targets we build for.
        self.remaining = len as usize;
        if self.remaining == 0 && target == Target::EngineError {
            return Err(self.engine_error());
        }
        Ok(())
    }

    fn engine_error(&mut self) -> FrameError {
        let text = if self.engine_error.len() >= ENGINE_ERROR_LIMIT {
            format!("an error message of {ENGINE_ERROR_LIMIT} bytes or more (not shown)")
        } else {
            String::from_utf8_lossy(&self.engine_error)
                .trim()
                .to_string()
        };
        self.engine_error.clear();
        FrameError::Engine(text)
    }
}

/// Decodes a whole multiplexed body (such as a logs answer), joining neighbouring pieces of the
/// same stream.
pub(crate) fn decode_all(body: &[u8]) -> Result<Vec<(Stream, Vec<u8>)>, FrameError> {
    let mut out: Vec<(Stream, Vec<u8>)> = Vec::new();
    let mut decoder = FrameDecoder::new();
    let mut at = 0;
    while at < body.len() {
        let step = decoder.decode(&body[at..])?;
        if let Some((stream, range)) = step.payload {
            let piece = &body[at + range.start..at + range.end];
            match out.last_mut() {
                Some((last, bytes)) if *last == stream => bytes.extend_from_slice(piece),
                _ => out.push((stream, piece.to_vec())),
            }
        }
        at += step.consumed;
    }
    if !decoder.at_boundary() {
        return Err(FrameError::Truncated);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Feeds `input` in pieces of the given sizes (cycled) and gathers (stream, bytes) per stream
    /// change.
    type Chunks = Vec<(Stream, Vec<u8>)>;

    fn feed(input: &[u8], sizes: &[usize]) -> Result<(Chunks, bool), FrameError> {
        let mut decoder = FrameDecoder::new();
        let mut out: Vec<(Stream, Vec<u8>)> = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < input.len() {
            let end = (at + sizes[i % sizes.len()].max(1)).min(input.len());
            i += 1;
            let mut piece = &input[at..end];
            while !piece.is_empty() {
                let step = decoder.decode(piece)?;
                if let Some((stream, r)) = step.payload {
                    match out.last_mut() {
                        Some((s, b)) if *s == stream => b.extend_from_slice(&piece[r]),
                        _ => out.push((stream, piece[r].to_vec())),
                    }
                }
                piece = &piece[step.consumed..];
            }
            at = end;
        }
        Ok((out, decoder.at_boundary()))
    }

    #[test]
    fn one_frame_whole() {
        let (out, done) = feed(&frame(1, b"hello\n"), &[1000]).unwrap();
        assert_eq!(out, vec![(Stream::Stdout, b"hello\n".to_vec())]);
        assert!(done);
    }

    #[test]
    fn header_split_at_every_byte_gives_the_same_streams() {
        let mut input = frame(1, b"{\"type\":\"sys");
        input.extend(frame(2, b"warning\n"));
        input.extend(frame(1, b"tem\"}\n"));
        input.extend(frame(1, b""));
        input.extend(frame(2, b"x"));
        let want = vec![
            (Stream::Stdout, b"{\"type\":\"sys".to_vec()),
            (Stream::Stderr, b"warning\n".to_vec()),
            (Stream::Stdout, b"tem\"}\n".to_vec()),
            (Stream::Stderr, b"x".to_vec()),
        ];
        for split in 1..input.len() {
            // Two pieces split at `split`, then byte by byte, then uneven pieces.
            let (two, done) = feed(&input, &[split, input.len()]).unwrap();
            assert_eq!(two, want, "split at {split}");
            assert!(done);
        }
        assert_eq!(feed(&input, &[1]).unwrap().0, want);
        assert_eq!(feed(&input, &[3, 7, 2, 9]).unwrap().0, want);
    }

    #[test]
    fn zero_length_frames_yield_nothing() {
        let mut input = frame(1, b"");
        input.extend(frame(2, b""));
        let (out, done) = feed(&input, &[5]).unwrap();
        assert!(out.is_empty());
        assert!(done);
    }

    #[test]
    fn partial_frame_is_not_at_boundary() {
        let input = frame(1, b"abcdef");
        let (out, done) = feed(&input[..10], &[4]).unwrap();
        assert_eq!(out, vec![(Stream::Stdout, b"ab".to_vec())]);
        assert!(!done, "two payload bytes still missing");
        let (_, done) = feed(&input[..5], &[2]).unwrap();
        assert!(!done, "inside a header");
    }

    #[test]
    fn unknown_stream_id_is_an_error_not_a_panic() {
        let err = feed(&frame(7, b"zz"), &[1]).unwrap_err();
        assert_eq!(err, FrameError::UnknownStream(7));
        // A TTY stream decoded as multiplexed: 'h' is 104.
        let err = feed(b"hello world, not framed", &[64]).unwrap_err();
        assert_eq!(err, FrameError::UnknownStream(b'h'));
        assert!(err.to_string().contains("stream 104"));
    }

    #[test]
    fn stdin_frames_count_as_stdout() {
        let (out, _) = feed(&frame(0, b"echo"), &[64]).unwrap();
        assert_eq!(out, vec![(Stream::Stdout, b"echo".to_vec())]);
    }

    #[test]
    fn engine_error_stream_becomes_an_error_with_its_text() {
        let mut input = frame(1, b"partial output");
        input.extend(frame(3, b"exec failed: no such file\n"));
        let err = feed(&input, &[5]).unwrap_err();
        assert_eq!(err, FrameError::Engine("exec failed: no such file".into()));
        assert_eq!(
            feed(&frame(3, b""), &[1]).unwrap_err(),
            FrameError::Engine(String::new())
        );
        // Too long to show whole: not shown at all, rather than cut where a secret may be.
        let long = frame(3, &vec![b'k'; ENGINE_ERROR_LIMIT + 10]);
        let FrameError::Engine(text) = feed(&long, &[4096]).unwrap_err() else {
            panic!("not an engine error")
        };
        assert!(text.contains("not shown") && !text.contains('k'), "{text}");
    }

    #[test]
    fn huge_length_does_not_allocate() {
        // A header announcing 4 GiB with 3 bytes behind it: the decoder hands out what is there.
        let mut input = vec![1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        input.extend_from_slice(b"abc");
        let (out, done) = feed(&input, &[100]).unwrap();
        assert_eq!(out, vec![(Stream::Stdout, b"abc".to_vec())]);
        assert!(!done);
    }

    #[test]
    fn decode_all_joins_neighbours() {
        let mut input = frame(1, b"a");
        input.extend(frame(1, b"b"));
        input.extend(frame(2, b"c"));
        assert_eq!(
            decode_all(&input).unwrap(),
            vec![
                (Stream::Stdout, b"ab".to_vec()),
                (Stream::Stderr, b"c".to_vec())
            ]
        );
        assert_eq!(
            decode_all(&input[..input.len() - 1]).unwrap_err(),
            FrameError::Truncated
        );
    }
}

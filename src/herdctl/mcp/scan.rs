//! What the bridge needs to know about a JSON-RPC message before, or instead of, parsing it: how
//! many JSON values it holds (what it will cost once parsed) and its top-level `id` (whom to
//! answer when it is refused unread). Pure and streaming: fed the bytes of one line in pieces as
//! they arrive, it keeps a few dozen bytes whatever the line's length, so a message too large to
//! buffer can still be answered.
//!
//! Not a validator: malformed JSON gives some count and maybe no id, never a panic; the parser
//! that runs on an accepted message has the last word.

use serde_json::Value;

/// The longest `id` kept, as raw JSON. Clients number their requests; a longer id is answered
/// as `null`.
const MAX_ID: usize = 64;

/// Depths tracked exactly (whether an object or an array is open); serde_json refuses anything
/// deeper than 128 anyway.
const TRACKED_DEPTH: u32 = 128;

/// The scan of one message so far.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// Values begun so far, object keys included (each becomes a node of the parsed tree).
    values: u64,
    /// Containers open.
    depth: u32,
    /// Bit `d` set: the container at depth `d + 1` is an object.
    objects: u128,
    in_string: bool,
    escaped: bool,
    in_literal: bool,
    /// In an object, where a key is due (after `{` or `,`).
    key_due: bool,
    /// The string being read is a key of the top-level object.
    top_key: bool,
    /// The top-level key just read, up to 3 bytes (only `id` matters).
    key: [u8; 3],
    key_len: usize,
    /// The last top-level key read was `id`: its value is the next value begun at depth 1.
    id_next: bool,
    /// The raw bytes of the `id` value being read, when `capturing`.
    capture: Vec<u8>,
    capturing: bool,
    /// The last complete top-level `id` (a later one replaces it, as in the parsed object).
    id: Option<Value>,
}

impl Scan {
    /// JSON values begun so far (object keys count: they are stored as strings too).
    pub(super) fn values(&self) -> u64 {
        self.values
    }

    /// The top-level `id` if one was read and is a string or a number, else `null` (JSON-RPC's
    /// answer when the id cannot be known).
    pub(super) fn id(&self) -> Value {
        self.id.clone().unwrap_or(Value::Null)
    }

    /// Reads the next piece of the message (no newline: the caller splits lines).
    pub(super) fn feed(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            if self.in_string {
                i = self.string(bytes, i);
                continue;
            }
            let b = bytes[i];
            if self.in_literal {
                if !ends_literal(b) {
                    self.keep(b);
                    i += 1;
                    continue;
                }
                self.in_literal = false;
                self.value_done();
            }
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => {}
                b'"' => self.string_start(),
                b'{' | b'[' => self.open(b == b'{'),
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    self.key_due = false;
                }
                b',' => self.key_due = self.in_object(),
                b':' => self.key_due = false,
                _ => {
                    self.value_start();
                    self.in_literal = true;
                    self.keep(b);
                }
            }
            i += 1;
        }
    }

    /// A string begins (at its opening quote): an object's key, or a value (which may be the
    /// `id` being captured, quote included).
    fn string_start(&mut self) {
        self.in_string = true;
        if self.key_due && self.in_object() {
            self.values += 1;
            self.top_key = self.depth == 1;
            self.key_len = 0;
        } else {
            self.value_start();
            self.keep(b'"');
        }
    }

    /// An object (`object`) or an array opens: one more value and one level deeper, remembering
    /// which of the two it is so that `,` knows whether a key is due.
    fn open(&mut self, object: bool) {
        self.value_start();
        // A container is no id: answered as null.
        if self.capturing {
            self.capturing = false;
            self.id = None;
        }
        if self.depth < TRACKED_DEPTH {
            let bit = 1u128 << self.depth;
            if object {
                self.objects |= bit;
            } else {
                self.objects &= !bit;
            }
        }
        self.depth = self.depth.saturating_add(1);
        self.key_due = object;
    }

    /// Reads string bytes from `i`; returns where to go on.
    fn string(&mut self, bytes: &[u8], mut i: usize) -> usize {
        if self.escaped {
            self.escaped = false;
            self.keep(bytes[i]);
            return i + 1;
        }
        if !self.capturing && !self.top_key {
            // The long run of a large argument: skip to the next quote or backslash.
            match memchr::memchr2(b'"', b'\\', &bytes[i..]) {
                Some(at) => i += at,
                None => return bytes.len(),
            }
        }
        let b = bytes[i];
        match b {
            b'\\' => self.escaped = true,
            b'"' => {
                self.in_string = false;
                if self.top_key {
                    self.top_key = false;
                    self.id_next = self.key_len == 2 && self.key[..2] == *b"id";
                    return i + 1;
                }
                self.keep(b);
                self.value_done();
                return i + 1;
            }
            _ => {}
        }
        if self.top_key {
            if self.key_len < self.key.len() {
                self.key[self.key_len] = b;
            }
            self.key_len += 1;
        } else {
            self.keep(b);
        }
        i + 1
    }

    fn in_object(&self) -> bool {
        match self.depth {
            0 => false,
            d if d > TRACKED_DEPTH => false,
            d => self.objects & (1u128 << (d - 1)) != 0,
        }
    }

    /// A value (not a key) begins here.
    fn value_start(&mut self) {
        self.values += 1;
        self.key_due = false;
        if self.depth == 1 && self.id_next {
            self.id_next = false;
            self.capturing = true;
            self.capture.clear();
        }
    }

    /// Keeps `b` as part of the id being read, unless it is too long to be one.
    fn keep(&mut self, b: u8) {
        if !self.capturing {
            return;
        }
        if self.capture.len() == MAX_ID {
            self.capturing = false;
            self.id = None;
            return;
        }
        self.capture.push(b);
    }

    /// A string or literal value ended.
    fn value_done(&mut self) {
        if !self.capturing {
            return;
        }
        self.capturing = false;
        self.id = serde_json::from_slice::<Value>(&self.capture)
            .ok()
            .filter(|v| v.is_string() || v.is_number());
    }
}

/// Whether `b` ends a number or `true`/`false`/`null`.
fn ends_literal(b: u8) -> bool {
    matches!(
        b,
        b',' | b']' | b'}' | b':' | b'"' | b'[' | b'{' | b' ' | b'\t' | b'\r' | b'\n'
    )
}

#[cfg(test)]
mod tests;

//! Removing known secret values from text before it leaves the library.
//!
//! Every piece of text that can carry a secret (an error message with the engine's words, a
//! stderr tail, a log line, a job's output when asked) passes through a [`Redactor`] built from the
//! job's credentials and the env values whose names look secret.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Values shorter than this are not treated as secrets: replacing every `1` or `on` in a job's
/// output would garble it while protecting nothing worth the name.
pub const MIN_SECRET_LEN: usize = 4;

/// True when an env variable's name says its value is secret: it contains `TOKEN`, `KEY`,
/// `SECRET`, `PASSWORD`, `PASSWD` or `CREDENTIAL`, in any case.
///
/// ```
/// use herdctl_container::is_secret_name;
/// assert!(is_secret_name("GITHUB_TOKEN") && is_secret_name("anthropic_api_key"));
/// assert!(!is_secret_name("HOME"));
/// ```
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"]
        .iter()
        .any(|w| upper.contains(w))
}

/// Replaces every occurrence of every known secret in a text with [`REDACTED`].
///
/// Cheap to clone (the secrets are shared behind an `Arc`) and `Send + Sync`, so one redactor can
/// serve every thread of a job. Overlapping and adjacent occurrences become one `[REDACTED]`, so
/// no fragment of a secret survives next to the marker. `Debug` shows only how many secrets it
/// holds.
///
/// A secret is also found as a JSON string carries it (`"` and `\` escaped, control characters
/// as `\n` or `\u0001`; Go's encoder also writes `<`, `>` and `&` as `\u003c`, `\u003e` and
/// `\u0026`; some encoders write every non-ASCII character as `\uXXXX`), and quoted twice: an
/// engine or proxy that quotes a request body in its error quotes the body's JSON text, in
/// which a password with a `"` or a `&` is not written as it is.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Distinct secrets and their JSON-escaped forms, longest first, each at least
    /// [`MIN_SECRET_LEN`] bytes.
    secrets: Arc<[Box<[u8]>]>,
    /// The distinct secrets as given (without their escaped forms).
    given: Arc<[Box<str>]>,
}

impl Redactor {
    /// A redactor for `secrets`. Empty and short values ([`MIN_SECRET_LEN`]) are skipped.
    pub fn new<I, S>(secrets: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut given: Vec<Box<str>> = secrets
            .into_iter()
            .filter(|s| s.as_ref().len() >= MIN_SECRET_LEN)
            .map(|s| s.as_ref().into())
            .collect();
        given.sort_unstable();
        given.dedup();
        let mut list: Vec<Box<[u8]>> = given
            .iter()
            .flat_map(|s| escaped_forms(s))
            .map(|s| s.into_bytes().into_boxed_slice())
            .collect();
        list.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        list.dedup();
        Redactor {
            secrets: list.into(),
            given: given.into(),
        }
    }

    /// This redactor's secrets plus `more`.
    pub fn with_secrets<I, S>(&self, more: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mine = self.given.iter().map(|s| s.to_string());
        let more: Vec<String> = more.into_iter().map(|s| s.as_ref().to_owned()).collect();
        Redactor::new(mine.chain(more))
    }

    /// This redactor's secrets plus the values of those `env` entries whose names look secret
    /// ([`is_secret_name`]).
    pub fn with_env<'a, I>(&self, env: I) -> Redactor
    where
        I: IntoIterator<Item = (&'a String, &'a String)>,
    {
        self.with_secrets(
            env.into_iter()
                .filter(|(k, _)| is_secret_name(k))
                .map(|(_, v)| v.as_str()),
        )
    }

    /// How many distinct secrets it holds (not counting their escaped forms).
    pub fn len(&self) -> usize {
        self.given.len()
    }

    /// True when it holds no secret (and so changes nothing).
    pub fn is_empty(&self) -> bool {
        self.given.is_empty()
    }

    /// The length in bytes of the longest secret or escaped form of one (0 when there is none):
    /// how much text before a cut must be kept so that a secret straddling the cut is still
    /// found whole.
    pub fn longest(&self) -> usize {
        // Sorted longest first in `new`.
        self.secrets.first().map_or(0, |s| s.len())
    }

    /// The end of `text`, redacted first and cut second: the last `keep` bytes of `text`, where
    /// every secret that overlaps them is replaced whole (one straddling the cut becomes a marker
    /// at the front), so no part of a secret survives the cut.
    ///
    /// `text` may itself be the end of a longer stream (a bounded buffer of a job's stderr): a
    /// secret that began before it leaves a fragment at its front, which the cut drops as long
    /// as `text` holds at least `keep + longest() - 1` bytes, or is the whole stream.
    pub fn redact_tail<'t>(&self, text: &'t [u8], keep: usize) -> Cow<'t, [u8]> {
        let from = text.len().saturating_sub(keep);
        let ranges: Vec<(usize, usize)> = self
            .ranges(text)
            .into_iter()
            .filter(|&(_, end)| end > from)
            .collect();
        if ranges.is_empty() {
            return Cow::Borrowed(&text[from..]);
        }
        let mut out = Vec::with_capacity(keep + REDACTED.len());
        let mut at = from;
        for (start, end) in ranges {
            if start > at {
                out.extend_from_slice(&text[at..start]);
            }
            out.extend_from_slice(REDACTED.as_bytes());
            at = end;
        }
        out.extend_from_slice(&text[at..]);
        Cow::Owned(out)
    }

    /// `text` with every secret replaced; borrowed unchanged when none occurs.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match self.redact_bytes(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            // Cannot fail: secrets are whole UTF-8 strings, so every replaced range of valid UTF-8
            // text starts and ends on character boundaries, and the marker is ASCII.
            Cow::Owned(v) => Cow::Owned(
                String::from_utf8(v)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into()),
            ),
        }
    }

    /// Like [`Redactor::redact`], for bytes that may not be UTF-8 (a raw stderr tail).
    pub fn redact_bytes<'t>(&self, text: &'t [u8]) -> Cow<'t, [u8]> {
        let ranges = self.ranges(text);
        if ranges.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = Vec::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in ranges {
            out.extend_from_slice(&text[at..start]);
            out.extend_from_slice(REDACTED.as_bytes());
            at = end;
        }
        out.extend_from_slice(&text[at..]);
        Cow::Owned(out)
    }

    /// Every occurrence of every secret as merged, sorted, non-overlapping byte ranges.
    fn ranges(&self, text: &[u8]) -> Vec<(usize, usize)> {
        let mut hits: Vec<(usize, usize)> = Vec::new();
        for secret in self.secrets.iter() {
            let n = secret.len();
            if n > text.len() {
                continue;
            }
            let first = secret[0];
            let mut i = 0;
            while i + n <= text.len() {
                match text[i..=text.len() - n].iter().position(|&b| b == first) {
                    Some(off) => i += off,
                    None => break,
                }
                if text[i..i + n] == secret[..] {
                    hits.push((i, i + n));
                }
                i += 1;
            }
        }
        hits.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(hits.len());
        for (s, e) in hits {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.given.len())
            .finish()
    }
}

/// `secret` and the forms a JSON string carries it in (see [`Redactor`]): as serde_json and
/// most encoders write it, with Go's `<`, `>`, `&`, U+2028 and U+2029 escapes, with every
/// non-ASCII character escaped, and each of those quoted once more (a body quoted in a message
/// that is itself quoted).
fn escaped_forms(secret: &str) -> Vec<String> {
    fn json(s: &str) -> String {
        let quoted = serde_json::to_string(s).unwrap_or_default();
        quoted[1..quoted.len().saturating_sub(1).max(1)].to_string()
    }
    fn go(s: &str) -> String {
        s.replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029")
    }
    fn ascii(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        out
    }
    let once = json(secret);
    let mut forms = vec![
        secret.to_string(),
        go(&once),
        ascii(&once),
        ascii(&go(&once)),
    ];
    let twice: Vec<String> = forms[1..].iter().map(|f| json(f)).collect();
    forms.push(once.clone());
    forms.push(json(&once));
    forms.extend(twice);
    forms.sort_unstable();
    forms.dedup();
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(secrets: &[&str], text: &str) -> String {
        Redactor::new(secrets).redact(text).into_owned()
    }

    #[test]
    fn replaces_every_occurrence() {
        assert_eq!(
            r(&["s3cr3t"], "a s3cr3t b s3cr3t"),
            "a [REDACTED] b [REDACTED]"
        );
        assert_eq!(r(&["s3cr3t"], "s3cr3t"), "[REDACTED]");
        assert_eq!(r(&["s3cr3t"], "s3cr3t at start"), "[REDACTED] at start");
        assert_eq!(r(&["s3cr3t"], "at end s3cr3t"), "at end [REDACTED]");
        assert_eq!(r(&["s3cr3t"], "s3cr3ts3cr3t"), "[REDACTED]");
    }

    #[test]
    fn overlapping_secrets_leave_no_fragment() {
        // "abcdef" and "defghi" overlap in "abcdefghi": all of it goes.
        assert_eq!(r(&["abcdef", "defghi"], "x abcdefghi y"), "x [REDACTED] y");
        // One secret inside another.
        assert_eq!(
            r(&["tokenvalue", "kenv"], "[tokenvalue] [kenv]"),
            "[[REDACTED]] [[REDACTED]]"
        );
        // Self-overlap: "aaaa" in "aaaaaa".
        assert_eq!(r(&["aaaa"], "baaaaaab"), "b[REDACTED]b");
    }

    #[test]
    fn no_secret_is_unchanged_and_borrowed() {
        let red = Redactor::new(["s3cr3t"]);
        assert!(matches!(
            red.redact("nothing here"),
            Cow::Borrowed("nothing here")
        ));
        assert!(matches!(
            Redactor::default().redact("x"),
            Cow::Borrowed("x")
        ));
        assert_eq!(r(&["s3cr3t"], ""), "");
        assert_eq!(r(&["s3cr3t"], "s3cr3"), "s3cr3");
    }

    #[test]
    fn short_and_empty_values_are_not_secrets() {
        let red = Redactor::new(["", "1", "abc"]);
        assert!(red.is_empty());
        assert_eq!(red.redact("1 abc"), "1 abc");
    }

    #[test]
    fn multibyte_text_stays_valid() {
        assert_eq!(r(&["пароль-1"], "ключ: пароль-1!"), "ключ: [REDACTED]!");
        let bytes = Redactor::new(["s3cr3t"])
            .redact_bytes(b"\xff s3cr3t \xfe")
            .into_owned();
        assert_eq!(bytes, b"\xff [REDACTED] \xfe");
    }

    #[test]
    fn env_values_with_secret_names() {
        let env: std::collections::BTreeMap<String, String> = [
            ("GITHUB_TOKEN", "ghp_abcdef"),
            ("DB_PASSWORD", "hunter22"),
            ("HOME", "/home/claude"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let red = Redactor::new(["sk-ant-1234"]).with_env(&env);
        assert_eq!(red.len(), 3);
        assert_eq!(
            red.redact("ghp_abcdef hunter22 /home/claude sk-ant-1234"),
            "[REDACTED] [REDACTED] /home/claude [REDACTED]"
        );
        assert!(is_secret_name("aws_secret_access_key"));
        assert!(is_secret_name("MY_CREDENTIALS"));
        assert!(!is_secret_name("PATH"));
    }

    /// A secret straddling the cut, at every offset, leaves no fragment: the tail is redacted
    /// before it is cut. The filler shares no byte with the secret, so any secret byte left
    /// outside a marker is a fragment.
    #[test]
    fn a_tail_is_redacted_before_it_is_cut_at_every_offset() {
        let secret = "sk-ant-0123456789abcdef";
        let red = Redactor::new([secret]);
        assert_eq!(red.longest(), secret.len());
        let keep = 64;
        for offset in 0..=secret.len() {
            // The cut falls `offset` bytes into the secret. The buffer holds only the stream's
            // last `keep + longest - 1` bytes, as a bounded tail does: for the largest offsets
            // it begins inside the secret, whose fragment the cut must drop.
            let stream = format!(
                "{}{secret}{}",
                "x".repeat(keep + red.longest()),
                "x".repeat(keep - secret.len() + offset)
            );
            let bytes = stream.as_bytes();
            let buffer = &bytes[bytes.len().saturating_sub(keep + red.longest() - 1)..];
            let out = String::from_utf8(red.redact_tail(buffer, keep).into_owned()).unwrap();
            let left = out.replace(REDACTED, "");
            assert!(left.bytes().all(|b| b == b'x'), "offset {offset}: {out}");
            assert!(out.len() <= keep + REDACTED.len(), "offset {offset}: {out}");
            if offset < secret.len() {
                assert!(out.contains(REDACTED), "offset {offset}: {out}");
            }
        }
        // No secret: the plain last bytes, borrowed.
        assert!(matches!(
            red.redact_tail(b"abcdef", 3),
            Cow::Borrowed(b"def")
        ));
        assert_eq!(Redactor::default().longest(), 0);
    }

    /// A secret with characters JSON escapes, as an engine's error quotes a request body (the
    /// body's JSON text, once or twice over, from serde, Go or an ASCII-only encoder).
    #[test]
    fn a_secret_is_found_as_json_quotes_it() {
        let secret = "p\"w\\d<&>\u{e9}\u{1F511}\t";
        let red = Redactor::new([secret]);
        let body = serde_json::json!({"Env": [format!("DB_PASSWORD={secret}")]}).to_string();
        let quoted = serde_json::json!({"message": format!("bad body: {body}")}).to_string();
        // What Go writes for the same body, and what Python's json.dumps writes.
        let go_body = body
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026");
        let ascii_body = go_body
            .replace('\u{e9}', "\\u00e9")
            .replace('\u{1F511}', "\\ud83d\\udd11");
        for text in [&body, &quoted, &go_body, &ascii_body] {
            let out = red.redact(text);
            assert!(out.contains(REDACTED), "{text} -> {out}");
            assert!(!out.contains("p\\\"w"), "{text} -> {out}");
            assert!(!out.contains("\\u003c\\u0026"), "{text} -> {out}");
        }
        // Escaping adds no look-alike of a plain secret, and with_secrets does not escape twice.
        assert_eq!(red.len(), 1);
        let again = red.with_secrets(["another"]);
        assert_eq!(again.len(), 2);
        assert_eq!(again.longest(), red.longest());
    }

    #[test]
    fn debug_does_not_show_secrets() {
        let red = Redactor::new(["s3cr3t-value"]);
        let d = format!("{red:?}");
        assert_eq!(d, "Redactor { secrets: 1 }");
    }

    #[test]
    fn usable_from_many_threads() {
        let red = Redactor::new(["s3cr3t"]);
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let red = red.clone();
                std::thread::spawn(move || red.redact(&format!("{i} s3cr3t")).into_owned())
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), format!("{i} [REDACTED]"));
        }
    }

    /// Property: over generated texts and secrets, no secret survives, and text without secrets
    /// comes back unchanged.
    #[test]
    fn no_secret_survives_generated_texts() {
        let mut x: u64 = 7;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..3_000 {
            let alpha = b"abc";
            let gen = |n: usize, next: &mut dyn FnMut() -> u64| -> String {
                (0..n)
                    .map(|_| alpha[(next() % 3) as usize] as char)
                    .collect()
            };
            let s1 = gen(4 + (next() % 3) as usize, &mut next);
            let s2 = gen(4 + (next() % 3) as usize, &mut next);
            let text = gen((next() % 40) as usize, &mut next);
            let red = Redactor::new([&s1, &s2]);
            let out = red.redact(&text).into_owned();
            // Remove the markers, then check no secret remains in any piece between them.
            for piece in out.split(REDACTED) {
                assert!(
                    !piece.contains(&s1) && !piece.contains(&s2),
                    "{text} -> {out}"
                );
            }
            if !text.contains(&s1) && !text.contains(&s2) {
                assert_eq!(out, text);
            }
        }
    }
}

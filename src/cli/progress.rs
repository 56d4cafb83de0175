//! Pull progress on stderr: on a terminal, one line per layer, updated in place (as `docker
//! pull` shows it); elsewhere (a log file, CI), one plain line each time a layer's status changes,
//! not one per progress tick.

use std::collections::HashMap;
use std::io::Write;

use herdctl_container::engine::PullProgress;

/// Renders pull progress to a writer.
pub struct PullView<W: Write> {
    out: W,
    terminal: bool,
    /// The widest line a terminal shows without wrapping (a wrapped line breaks the count of
    /// lines to move up).
    width: usize,
    /// Terminal: each layer's line number. Plain: each layer's last status.
    layers: HashMap<String, (usize, String)>,
    /// Lines printed so far.
    printed: usize,
}

impl<W: Write> PullView<W> {
    /// A view on `out`; `terminal` picks in-place updates. `COLUMNS` (else 80) bounds a line.
    pub fn new(out: W, terminal: bool) -> PullView<W> {
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .filter(|&w: &usize| w >= 20)
            .unwrap_or(80);
        PullView {
            out,
            terminal,
            width,
            layers: HashMap::new(),
            printed: 0,
        }
    }

    /// Shows one progress event.
    pub fn show(&mut self, p: &PullProgress) {
        let text = match &p.id {
            Some(id) => format!("{id}: {}", p.status),
            None => p.status.clone(),
        };
        // A closed or full stderr must not fail the pull.
        let _ = if self.terminal {
            self.show_in_place(p, text)
        } else {
            self.show_plain(p, text)
        };
    }

    fn show_in_place(&mut self, p: &PullProgress, text: String) -> std::io::Result<()> {
        let mut line = match &p.progress {
            Some(bar) if !bar.is_empty() => format!("{text} {bar}"),
            _ => text,
        };
        cut(&mut line, self.width.saturating_sub(1));
        let known =
            p.id.as_ref()
                .and_then(|id| self.layers.get(id))
                .map(|l| l.0);
        match known {
            Some(at) => {
                let up = self.printed - at;
                write!(self.out, "\x1b[{up}A\r\x1b[2K{line}\x1b[{up}B\r")?;
            }
            None => {
                writeln!(self.out, "{line}")?;
                if let Some(id) = &p.id {
                    self.layers
                        .insert(id.clone(), (self.printed, String::new()));
                }
                self.printed += 1;
            }
        }
        self.out.flush()
    }

    fn show_plain(&mut self, p: &PullProgress, text: String) -> std::io::Result<()> {
        if let Some(id) = &p.id {
            let last = self.layers.entry(id.clone()).or_default();
            if last.1 == p.status {
                return Ok(());
            }
            last.1 = p.status.clone();
        }
        writeln!(self.out, "pull: {text}")
    }

    /// The writer, for tests.
    #[cfg(test)]
    fn into_inner(self) -> W {
        self.out
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: Option<&str>, status: &str, bar: Option<&str>) -> PullProgress {
        let mut p = PullProgress::default();
        p.status = status.into();
        p.id = id.map(Into::into);
        p.progress = bar.map(Into::into);
        p
    }

    fn events() -> Vec<PullProgress> {
        vec![
            event(Some("latest"), "Pulling from herdctl/runtime", None),
            event(Some("aaa"), "Pulling fs layer", None),
            event(Some("bbb"), "Pulling fs layer", None),
            event(Some("aaa"), "Downloading", Some("[=>   ] 1MB/8MB")),
            event(Some("aaa"), "Downloading", Some("[===> ] 5MB/8MB")),
            event(Some("bbb"), "Pull complete", None),
            event(None, "Digest: sha256:abc", None),
        ]
    }

    #[test]
    fn a_terminal_gets_one_updating_line_per_layer() {
        let mut view = PullView::new(Vec::new(), true);
        for e in events() {
            view.show(&e);
        }
        let out = String::from_utf8(view.into_inner()).unwrap();
        assert_eq!(
            out,
            "latest: Pulling from herdctl/runtime\n\
             aaa: Pulling fs layer\n\
             bbb: Pulling fs layer\n\
             \x1b[2A\r\x1b[2Kaaa: Downloading [=>   ] 1MB/8MB\x1b[2B\r\
             \x1b[2A\r\x1b[2Kaaa: Downloading [===> ] 5MB/8MB\x1b[2B\r\
             \x1b[1A\r\x1b[2Kbbb: Pull complete\x1b[1B\r\
             Digest: sha256:abc\n"
        );
    }

    #[test]
    fn elsewhere_a_plain_line_per_status_change() {
        let mut view = PullView::new(Vec::new(), false);
        for e in events() {
            view.show(&e);
        }
        let out = String::from_utf8(view.into_inner()).unwrap();
        assert_eq!(
            out,
            "pull: latest: Pulling from herdctl/runtime\n\
             pull: aaa: Pulling fs layer\n\
             pull: bbb: Pulling fs layer\n\
             pull: aaa: Downloading\n\
             pull: bbb: Pull complete\n\
             pull: Digest: sha256:abc\n"
        );
        assert!(!out.contains('\x1b'));
    }

    #[test]
    fn lines_are_cut_to_the_terminal() {
        let mut s = "é".repeat(50);
        cut(&mut s, 79);
        assert_eq!(s.len(), 78);
    }
}

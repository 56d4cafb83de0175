//! The one table: a row per figure and method, with its median, its p10-p90 spread, its ratio
//! against the baseline measured in the same run, and the target where it has one.

use crate::stats::Samples;

/// How a ratio reads: for times lower is better, for rates higher is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// A ratio against a baseline. When both were measured once per round (paired runs, same engine
/// state), the value is the median of the per-round ratios and the spread their p10-p90: the
/// machine's drift then cancels out of each ratio. Otherwise it is the ratio of the medians.
#[derive(Debug, Clone)]
pub struct Ratio {
    pub against: String,
    pub value: f64,
    pub spread: Option<(f64, f64)>,
}

impl Ratio {
    pub fn of(samples: &Samples, against: &str, base: &Samples) -> Ratio {
        if samples.len() == base.len() && samples.len() >= 3 {
            let paired = samples.paired_ratio(base);
            return Ratio {
                against: against.to_string(),
                value: paired.median(),
                spread: Some((paired.p10(), paired.p90())),
            };
        }
        Ratio {
            against: against.to_string(),
            value: samples.median() / base.median(),
            spread: None,
        }
    }
}

/// A target from the issue, and whether this run met it.
#[derive(Debug, Clone)]
pub struct Target {
    pub text: String,
    pub holds: bool,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub figure: String,
    pub method: String,
    pub unit: &'static str,
    pub samples: Samples,
    pub ratio: Option<Ratio>,
    pub target: Option<Target>,
}

impl Row {
    pub fn new(figure: &str, method: &str, unit: &'static str, samples: &Samples) -> Row {
        Row {
            figure: figure.to_string(),
            method: method.to_string(),
            unit,
            samples: samples.clone(),
            ratio: None,
            target: None,
        }
    }

    pub fn vs(mut self, against: &str, base: &Samples) -> Row {
        self.ratio = Some(Ratio::of(&self.samples, against, base));
        self
    }

    pub fn target(mut self, text: impl Into<String>, holds: bool) -> Row {
        self.target = Some(Target {
            text: text.into(),
            holds,
        });
        self
    }

    /// A target on this row's ratio: at most `limit` (times) or at least `limit` (rates).
    pub fn ratio_target(self, better: Better, limit: f64) -> Row {
        let r = self.ratio.as_ref().expect("a ratio target needs a ratio");
        let (text, holds) = match better {
            Better::Lower => (format!("≤ {limit}× {}", r.against), r.value <= limit),
            Better::Higher => (format!("≥ {limit}× {}", r.against), r.value >= limit),
        };
        self.target(text, holds)
    }
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The table as Markdown (it reads as plain text in a terminal too).
pub fn render(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| figure | method | n | median | p10–p90 | ratio: median of paired runs (p10–p90) | target | holds |\n");
    out.push_str("| --- | --- | ---: | ---: | ---: | --- | --- | --- |\n");
    let mut last_figure = "";
    for r in rows {
        let figure = if r.figure == last_figure {
            ""
        } else {
            &r.figure
        };
        last_figure = &r.figure;
        let ratio = match &r.ratio {
            None => String::new(),
            Some(x) => {
                let spread = x
                    .spread
                    .map(|(lo, hi)| format!(" ({}–{})", num(lo), num(hi)))
                    .unwrap_or_default();
                format!("{}× {}{spread}", num(x.value), x.against)
            }
        };
        let (target, holds) = match &r.target {
            None => (String::new(), String::new()),
            Some(t) => (
                t.text.clone(),
                if t.holds { "yes" } else { "**no**" }.to_string(),
            ),
        };
        out.push_str(&format!(
            "| {figure} | {} | {} | {} {} | {}–{} | {ratio} | {target} | {holds} |\n",
            r.method,
            r.samples.len(),
            num(r.samples.median()),
            r.unit,
            num(r.samples.p10()),
            num(r.samples.p90()),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[f64]) -> Samples {
        let mut x = Samples::new();
        for v in v {
            x.push(*v);
        }
        x
    }

    #[test]
    fn ratios_and_targets_render() {
        let floor = s(&[10.0, 10.0, 10.0]);
        let ours = s(&[11.0, 11.0, 12.0]);
        let rows = vec![
            Row::new("warm job", "floor", "ms", &floor),
            Row::new("warm job", "ours", "ms", &ours)
                .vs("floor", &floor)
                .ratio_target(Better::Lower, 1.15),
        ];
        let table = render(&rows);
        assert!(
            table.contains("| ours | 3 | 11.0 ms | 11.0–12.0 | 1.10× floor (1.10–1.20) | ≤ 1.15× floor | yes |"),
            "{table}"
        );
        assert!(
            table.contains("|  | ours |"),
            "the figure is not repeated: {table}"
        );
    }

    #[test]
    fn a_missed_target_is_marked() {
        let r = Row::new("x", "rate", "MB/s", &s(&[70.0]))
            .vs("raw", &s(&[100.0]))
            .ratio_target(Better::Higher, 0.8);
        assert!(!r.target.as_ref().unwrap().holds);
        assert!(render(&[r]).contains("**no**"));
    }
}

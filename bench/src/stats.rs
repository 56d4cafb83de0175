//! Samples and their summary: the median and the p10-p90 spread.
//!
//! Why these: the machines are shared and noisy, so a mean is pulled around by a few slow runs; the
//! median and the middle 80% say what a typical run costs and how much runs vary. Percentiles are
//! nearest-rank on the sorted samples (no interpolation: with 10-30 samples, an interpolated p90
//! would be a value nobody measured).

use std::time::Duration;

/// Measurements of one figure, in its unit (milliseconds, MB/s, MB).
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<f64>,
}

impl Samples {
    pub fn new() -> Samples {
        Samples::default()
    }

    pub fn push(&mut self, v: f64) {
        self.values.push(v);
    }

    pub fn push_ms(&mut self, d: Duration) {
        self.push(d.as_secs_f64() * 1000.0);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// The value at quantile `p` (0..=1), nearest rank.
    pub fn quantile(&self, p: f64) -> f64 {
        if self.values.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = (p * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    pub fn median(&self) -> f64 {
        if self.values.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        }
    }

    pub fn p10(&self) -> f64 {
        self.quantile(0.10)
    }

    pub fn p90(&self) -> f64 {
        self.quantile(0.90)
    }

    /// Element-wise `self[i] / other[i]`: the ratios of paired runs (same round, same engine
    /// state), whose spread is tighter and more honest than one of two independent spreads.
    pub fn paired_ratio(&self, other: &Samples) -> Samples {
        Samples {
            values: self
                .values
                .iter()
                .zip(&other.values)
                .map(|(a, b)| a / b)
                .collect(),
        }
    }
}

/// The order in which `n` methods run in round `round`: a permutation that changes every round.
///
/// Not a rotation: rotating keeps the cyclic order, so each method would always run right after
/// the same other one and inherit its leftovers (an engine still cleaning up an exec, a process
/// still exiting). A shuffle spreads those over all methods. Deterministic (xorshift seeded by the
/// round), so two runs use the same orders.
pub fn order(round: usize, n: usize) -> Vec<usize> {
    let mut state = (round as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        v.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    v
}

/// A least-squares line `y = a + b x` through points: how a cost grows with a count.
pub fn fit_line(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let sx: f64 = points.iter().map(|p| p.0).sum();
    let sy: f64 = points.iter().map(|p| p.1).sum();
    let sxx: f64 = points.iter().map(|p| p.0 * p.0).sum();
    let sxy: f64 = points.iter().map(|p| p.0 * p.1).sum();
    let denom = n * sxx - sx * sx;
    if denom == 0.0 {
        return (sy / n, 0.0);
    }
    let b = (n * sxy - sx * sy) / denom;
    ((sy - b * sx) / n, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(v: &[f64]) -> Samples {
        let mut s = Samples::new();
        for x in v {
            s.push(*x);
        }
        s
    }

    #[test]
    fn median_and_nearest_rank_percentiles() {
        let s = of(&[5.0, 1.0, 4.0, 2.0, 3.0]);
        assert_eq!(s.median(), 3.0);
        assert_eq!(s.p10(), 1.0);
        assert_eq!(s.p90(), 5.0);
        let s = of(&(1..=10).map(f64::from).collect::<Vec<_>>());
        assert_eq!(s.median(), 5.5);
        assert_eq!(s.p10(), 1.0);
        assert_eq!(s.p90(), 9.0);
        assert!(of(&[]).median().is_nan());
    }

    #[test]
    fn paired_ratios_pair_by_position() {
        let r = of(&[2.0, 9.0]).paired_ratio(&of(&[1.0, 3.0]));
        assert_eq!(r.median(), 2.5);
    }

    #[test]
    fn orders_are_permutations_that_vary() {
        let orders: Vec<Vec<usize>> = (0..20).map(|r| order(r, 6)).collect();
        for o in &orders {
            let mut sorted = o.clone();
            sorted.sort();
            assert_eq!(sorted, (0..6).collect::<Vec<_>>());
        }
        // Every method follows some other method than always the same one.
        for m in 0..6 {
            let before: std::collections::BTreeSet<usize> = orders
                .iter()
                .filter_map(|o| {
                    o.iter()
                        .position(|x| *x == m)
                        .filter(|p| *p > 0)
                        .map(|p| o[p - 1])
                })
                .collect();
            assert!(before.len() >= 3, "method {m} follows only {before:?}");
        }
        assert_eq!(order(3, 6), order(3, 6));
    }

    #[test]
    fn a_line_through_exact_points() {
        let (a, b) = fit_line(&[(0.0, 5.0), (1.0, 7.0), (2.0, 9.0), (4.0, 13.0)]);
        assert!((a - 5.0).abs() < 1e-9 && (b - 2.0).abs() < 1e-9, "{a} {b}");
        assert_eq!(fit_line(&[(1.0, 3.0), (1.0, 5.0)]), (4.0, 0.0));
    }
}

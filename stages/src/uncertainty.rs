//! How tables write a number with its uncertainty, the same way in the terminal, Markdown and
//! HTML: `0.562 [0.412, 0.690]`, a difference as `+0.052 [+0.010, +0.094] *` (the mark: the
//! interval excludes 0), and a row without an interval as `– (no mitotic figures)`.

use midog_eval::{Interval, PairedDifference};

use crate::artifact::scores::GroupScore;

/// `[lo, hi]` with three decimals.
pub fn interval(i: Interval) -> String {
    format!("[{:.3}, {:.3}]", i.lo, i.hi)
}

/// A row's interval of `metric`, or why it has none.
pub fn interval_cell(g: &GroupScore, metric: &str) -> String {
    match (g.interval(metric), &g.no_interval) {
        (Some(i), _) => interval(i),
        (None, Some(why)) => format!("– ({why})"),
        (None, None) => "–".into(),
    }
}

/// A metric's value with its interval: `0.562 [0.412, 0.690]`.
pub fn value_with_interval(value: f64, i: Option<Interval>) -> String {
    match i {
        Some(i) => format!("{value:.3} {}", interval(i)),
        None => format!("{value:.3}"),
    }
}

/// The mark of a difference the data supports.
pub const SUPPORTED: &str = "*";

/// `+0.052 [+0.010, +0.094] *`: a paired difference, marked when its interval excludes 0.
pub fn difference(d: &PairedDifference) -> String {
    format!(
        "{:+.3} [{:+.3}, {:+.3}]{}",
        d.difference,
        d.interval.lo,
        d.interval.hi,
        if d.supported() { format!(" {SUPPORTED}") } else { String::new() }
    )
}

/// How a table's intervals were computed, for its caption.
pub fn bootstrap_caption(plan: Option<&midog_eval::Bootstrap>) -> String {
    match plan {
        Some(b) => format!(
            "{:.0} % case-level percentile bootstrap intervals (the row's images resampled with replacement, {} resamples, seed {})",
            b.level * 100.0,
            b.resamples,
            b.seed
        ),
        None => "no intervals (scored before intervals existed)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_carry_sign_and_mark() {
        let d = PairedDifference { difference: 0.05, interval: Interval { lo: 0.01, hi: 0.09 } };
        assert_eq!(difference(&d), "+0.050 [+0.010, +0.090] *");
        let d = PairedDifference { difference: -0.02, interval: Interval { lo: -0.07, hi: 0.03 } };
        assert_eq!(difference(&d), "-0.020 [-0.070, +0.030]");
        assert_eq!(value_with_interval(0.5624, Some(Interval { lo: 0.41, hi: 0.7 })), "0.562 [0.410, 0.700]");
    }
}

//! Axis extents from data: padded so nothing sits on the frame, never empty, never NaN.

/// `[lo, hi]` covering `values` (non-finite ones ignored) with 5 % padding on each side; a single
/// value gets ±0.5 around it and no value gives `[0, 1]`.
pub(crate) fn linear_extent(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    match min_max(values.into_iter().filter(|v| v.is_finite())) {
        None => (0.0, 1.0),
        Some((lo, hi)) if lo == hi => (lo - 0.5, hi + 0.5),
        Some((lo, hi)) => {
            let pad = (hi - lo) * 0.05;
            (lo - pad, hi + pad)
        }
    }
}

/// Like [`linear_extent`] for a log axis: only positive values count, padding is multiplicative,
/// and a single value spans a factor of 10 around it; no value gives `[0.1, 1]`.
pub(crate) fn log_extent(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    match min_max(values.into_iter().filter(|v| v.is_finite() && *v > 0.0)) {
        None => (0.1, 1.0),
        Some((lo, hi)) if lo == hi => (lo / 10f64.sqrt(), hi * 10f64.sqrt()),
        Some((lo, hi)) => {
            let pad = (hi / lo).powf(0.05);
            (lo / pad, hi * pad)
        }
    }
}

/// `[lo, hi]` for bars: always includes 0 (bars grow from it), 10 % headroom above the tallest
/// bar for value labels; no value gives `[0, 1]`.
pub(crate) fn bar_extent(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let Some((lo, hi)) = min_max(values.into_iter().filter(|v| v.is_finite())) else {
        return (0.0, 1.0);
    };
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    if lo == hi { (0.0, 1.0) } else { (lo - (hi - lo) * 0.02 * f64::from(lo < 0.0), hi + (hi - lo) * 0.1) }
}

fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents() {
        assert_eq!(linear_extent([]), (0.0, 1.0));
        assert_eq!(linear_extent([2.0, f64::NAN]), (1.5, 2.5));
        let (lo, hi) = linear_extent([0.0, 10.0]);
        assert!((lo + 0.5).abs() < 1e-12 && (hi - 10.5).abs() < 1e-12);
        let (lo, hi) = log_extent([-1.0, 0.0, 1e-4, 1.0]);
        assert!(lo < 1e-4 && lo > 0.0 && hi > 1.0);
        let (lo, hi) = bar_extent([0.5, 0.7]);
        assert!(lo == 0.0 && (hi - 0.77).abs() < 1e-12);
        assert_eq!(bar_extent([]), (0.0, 1.0));
        let (lo, hi) = bar_extent([-1.0, 1.0]);
        assert!(lo < -1.0 && hi > 1.0);
    }
}

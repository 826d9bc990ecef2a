//! Counts and the scores derived from them, MIDOG style: TP, FP and FN are summed over all images
//! first and F1 = 2·TP / (2·TP + FP + FN) is computed once from the sums. Averaging per-image F1
//! would weigh an image with one mitosis like one with fifty.
//!
//! Degenerate cases follow the official script, whose formulas carry an ε of 1e-6: precision and
//! recall are 0 when their denominator is 0; F1 is 1 when there is nothing to find and nothing was
//! found (2·TP + FP + FN = 0), because `(2·TP + ε) / (2·TP + FP + FN + ε)` is then 1. Otherwise the
//! values here are the exact fractions, without the ε.

use std::collections::BTreeMap;
use std::iter::Sum;
use std::ops::{Add, AddAssign};

use serde::{Deserialize, Serialize};

/// True positives, false positives and false negatives (misses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Counts {
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
}

impl Counts {
    pub const fn new(tp: u64, fp: u64, fn_: u64) -> Counts {
        Counts { tp, fp, fn_ }
    }

    /// TP / (TP + FP); 0 without detections.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp, 0.0)
    }

    /// TP / (TP + FN); 0 without ground truth.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_, 0.0)
    }

    /// 2·TP / (2·TP + FP + FN); 1 when all three are 0.
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_, 1.0)
    }

    /// Compares F1 exactly (cross-multiplied integers), so two different fractions that happen to
    /// round to the same `f64` are still ordered correctly.
    pub fn cmp_f1(&self, other: &Counts) -> std::cmp::Ordering {
        let (an, ad) = f1_fraction(self);
        let (bn, bd) = f1_fraction(other);
        (an * bd).cmp(&(bn * ad))
    }

    /// The number of ground-truth points these counts were made from.
    pub fn ground_truth(&self) -> u64 {
        self.tp + self.fn_
    }

    /// The number of detections that took part.
    pub fn detections(&self) -> u64 {
        self.tp + self.fp
    }
}

fn ratio(num: u64, den: u64, if_empty: f64) -> f64 {
    if den == 0 { if_empty } else { num as f64 / den as f64 }
}

fn f1_fraction(c: &Counts) -> (u128, u128) {
    let den = 2 * c.tp + c.fp + c.fn_;
    if den == 0 { (1, 1) } else { ((2 * c.tp) as u128, den as u128) }
}

impl Add for Counts {
    type Output = Counts;
    fn add(self, o: Counts) -> Counts {
        Counts { tp: self.tp + o.tp, fp: self.fp + o.fp, fn_: self.fn_ + o.fn_ }
    }
}

impl AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        *self = *self + o;
    }
}

impl Sum for Counts {
    fn sum<I: Iterator<Item = Counts>>(iter: I) -> Counts {
        iter.fold(Counts::default(), Add::add)
    }
}

/// One image's counts with what it is reported under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageResult {
    /// The image's file name, e.g. `007.tiff`.
    pub image: String,
    /// Short scanner name (`XR`, `S360`, `CS2`, `GT450`), or `unknown`.
    pub scanner: String,
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
}

impl ImageResult {
    pub fn new(image: impl Into<String>, scanner: impl Into<String>, counts: Counts) -> ImageResult {
        ImageResult { image: image.into(), scanner: scanner.into(), tp: counts.tp, fp: counts.fp, fn_: counts.fn_ }
    }

    pub fn counts(&self) -> Counts {
        Counts { tp: self.tp, fp: self.fp, fn_: self.fn_ }
    }
}

/// The MIDOG aggregate: counts summed over images (take `.f1()` of the result).
pub fn summed(results: &[ImageResult]) -> Counts {
    results.iter().map(ImageResult::counts).sum()
}

/// Summed counts per scanner, sorted by scanner name, with the number of images of each.
pub fn by_scanner(results: &[ImageResult]) -> BTreeMap<String, (usize, Counts)> {
    let mut out: BTreeMap<String, (usize, Counts)> = BTreeMap::new();
    for r in results {
        let e = out.entry(r.scanner.clone()).or_default();
        e.0 += 1;
        e.1 += r.counts();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f1_is_summed_over_images_not_averaged() {
        let results = [
            ImageResult::new("001.tiff", "XR", Counts::new(1, 0, 0)),
            ImageResult::new("051.tiff", "S360", Counts::new(10, 10, 10)),
        ];
        let total = summed(&results);
        assert_eq!(total, Counts::new(11, 10, 10));
        assert_eq!(total.f1(), 22.0 / 42.0);
        let mean = (results[0].counts().f1() + results[1].counts().f1()) / 2.0;
        assert!((mean - 0.75).abs() < 1e-12 && (total.f1() - mean).abs() > 0.2);
        assert_eq!(total.precision(), 11.0 / 21.0);
        assert_eq!(total.recall(), 11.0 / 21.0);
        let per = by_scanner(&results);
        assert_eq!(per["XR"], (1, Counts::new(1, 0, 0)));
        assert_eq!(per["S360"].1.f1(), 0.5);
    }

    #[test]
    fn degenerate_cases_follow_the_official_script() {
        let none = Counts::default();
        assert_eq!((none.precision(), none.recall(), none.f1()), (0.0, 0.0, 1.0));
        let only_fp = Counts::new(0, 3, 0);
        assert_eq!((only_fp.precision(), only_fp.recall(), only_fp.f1()), (0.0, 0.0, 0.0));
        let only_fn = Counts::new(0, 0, 4);
        assert_eq!(only_fn.f1(), 0.0);
    }

    #[test]
    fn exact_f1_comparison() {
        assert_eq!(Counts::new(1, 1, 1).cmp_f1(&Counts::new(2, 2, 2)), std::cmp::Ordering::Equal);
        assert_eq!(Counts::new(2, 1, 0).cmp_f1(&Counts::new(2, 1, 1)), std::cmp::Ordering::Greater);
        assert_eq!(Counts::default().cmp_f1(&Counts::new(5, 0, 0)), std::cmp::Ordering::Equal);
    }

    #[test]
    fn json_uses_fn_not_fn_underscore() {
        let r = ImageResult::new("007.tiff", "XR", Counts::new(3, 2, 1));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["fn"], 1);
        assert_eq!(serde_json::from_value::<ImageResult>(v).unwrap(), r);
    }
}

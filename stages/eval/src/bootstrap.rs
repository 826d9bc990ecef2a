//! How sure a score is: case-level percentile bootstrap intervals of F1, precision and recall,
//! and paired bootstrap intervals of F1 differences, as the MIDOG challenge reports them.
//!
//! The unit of resampling is the image (the "case"): a resample draws as many images as the row
//! has, with replacement, sums their TP, FP and FN as the challenge does, and computes the metric
//! from the sums. The interval is the percentile interval of the resampled metric (numpy's
//! default "linear" percentile), e.g. the 2.5th and 97.5th percentiles for 95 %.
//!
//! A *paired* comparison draws the same images for both sides in every resample, so the spread
//! of the difference reflects how the two models differ on the same cases, not how hard the cases
//! are. Comparing a model with itself therefore gives a difference of exactly 0 in every resample.
//!
//! Replicates (the same recipe trained with several seeds) add a second level: a resample also
//! draws the replicates with replacement and takes the mean F1 over them, so the interval holds
//! the seed-to-seed spread as well as the test-set sampling. Two sides with as many replicates
//! draw the same replicate indices (replicate *r* of both used seed *r*), which keeps a
//! self-comparison exactly 0.
//!
//! Every resample has its own ChaCha8 stream (key: the seed and the row's stream id, stream: the
//! resample index), so results do not depend on the number of threads or on the order rows are
//! computed in, and a row's interval does not change when other rows are added.
//!
//! A resample that holds no mitotic figure at all is drawn again: recall is undefined there and
//! the metric's convention for it (F1 = 1 when nothing was to be found and nothing was found)
//! would stretch a sparse row's interval to [0, 1] for no reason in the data. The intervals are
//! thus those of the bootstrap distribution given at least one figure. Precision keeps its
//! convention (0 without detections), as in the point estimate. A row with fewer than 2 images or
//! without a single mitotic figure gets no interval ([`NoInterval`]) instead of a misleading one.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::metrics::Counts;

/// The number of resamples the score stage uses unless told otherwise.
pub const DEFAULT_RESAMPLES: usize = 2000;
/// The default confidence level.
pub const DEFAULT_LEVEL: f64 = 0.95;

/// A resampling plan: how many resamples, which confidence level, which seed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bootstrap {
    pub resamples: usize,
    /// Confidence level in (0, 1), e.g. 0.95.
    pub level: f64,
    pub seed: u64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap { resamples: DEFAULT_RESAMPLES, level: DEFAULT_LEVEL, seed: 0 }
    }
}

/// A closed interval `[lo, hi]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    pub fn width(&self) -> f64 {
        self.hi - self.lo
    }

    /// Whether 0 lies outside the interval: a difference the data supports.
    pub fn excludes_zero(&self) -> bool {
        self.lo > 0.0 || self.hi < 0.0
    }

    pub fn contains(&self, v: f64) -> bool {
        self.lo <= v && v <= self.hi
    }
}

/// Intervals of the three metrics of one row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricIntervals {
    pub f1: Interval,
    pub precision: Interval,
    pub recall: Interval,
}

/// The F1 difference `a − b` on the same images, with its paired interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedDifference {
    /// Mean F1 of side a minus that of side b, on the original images.
    pub difference: f64,
    pub interval: Interval,
}

impl PairedDifference {
    /// Whether the data supports a difference (the interval excludes 0).
    pub fn supported(&self) -> bool {
        self.interval.excludes_zero()
    }
}

/// Why a row gets no interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum NoInterval {
    #[error("only {n} image{s}", n = .0, s = if *.0 == 1 { "" } else { "s" })]
    TooFewImages(usize),
    #[error("no mitotic figures")]
    NoGroundTruth,
    #[error("no replicates")]
    NoReplicates,
    #[error("scored on different images ({a} against {b})")]
    DifferentImages { a: usize, b: usize },
}

/// Why a resampling plan is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BootstrapError {
    #[error("resamples must be at least {min}, got {got}")]
    TooFewResamples { min: usize, got: usize },
    #[error("level must be strictly between 0 and 1 (e.g. 0.95), got {0}")]
    Level(f64),
}

/// Fewest resamples accepted: below that the 2.5th percentile rests on a handful of values.
pub const MIN_RESAMPLES: usize = 1000;

/// The per-replicate, per-image counts of one side of a comparison: `side[r][i]` is image `i` of
/// replicate `r`; every replicate lists the same images in the same order.
pub type Side<'a> = &'a [Vec<Counts>];

impl Bootstrap {
    pub fn new(resamples: usize, level: f64, seed: u64) -> Result<Bootstrap, BootstrapError> {
        let b = Bootstrap { resamples, level, seed };
        b.check()?;
        Ok(b)
    }

    pub fn check(&self) -> Result<(), BootstrapError> {
        if self.resamples < MIN_RESAMPLES {
            return Err(BootstrapError::TooFewResamples { min: MIN_RESAMPLES, got: self.resamples });
        }
        if !(self.level > 0.0 && self.level < 1.0) {
            return Err(BootstrapError::Level(self.level));
        }
        Ok(())
    }

    /// A stable stream id for a row label such as `test/CS2` (FNV-1a, the same on every machine
    /// and Rust version), so each row draws its own resamples.
    pub fn stream(label: &str) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in label.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }

    /// The lower and upper percentiles as fractions, e.g. 0.025 and 0.975 for 95 %.
    pub fn quantiles(&self) -> (f64, f64) {
        let tail = (1.0 - self.level) / 2.0;
        (tail, 1.0 - tail)
    }

    fn rng(&self, stream: u64, resample: usize) -> ChaCha8Rng {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&self.seed.to_le_bytes());
        key[8..16].copy_from_slice(&stream.to_le_bytes());
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream(resample as u64);
        rng
    }

    /// The images (indices into `images`) that resample `resample` of stream `stream` draws.
    pub fn image_indices(&self, images: &[Counts], stream: u64, resample: usize) -> Vec<usize> {
        draw_images(&mut self.rng(stream, resample), images)
    }

    /// Percentile intervals of F1, precision and recall for a row of per-image counts.
    pub fn intervals(&self, images: &[Counts], stream: u64) -> Result<MetricIntervals, NoInterval> {
        check_row(images)?;
        let sums: Vec<Counts> = (0..self.resamples)
            .into_par_iter()
            .map(|r| self.image_indices(images, stream, r).into_iter().map(|i| images[i]).sum())
            .collect();
        let interval = |metric: fn(&Counts) -> f64| self.percentile_interval(sums.iter().map(metric).collect());
        Ok(MetricIntervals {
            f1: interval(Counts::f1),
            precision: interval(Counts::precision),
            recall: interval(Counts::recall),
        })
    }

    /// The interval of the mean F1 over replicates: images and replicates both resampled. With
    /// one replicate this is the F1 interval of [`Bootstrap::intervals`].
    pub fn mean_f1_interval(&self, side: Side<'_>, stream: u64) -> Result<Interval, NoInterval> {
        check_side(side)?;
        let values: Vec<f64> = (0..self.resamples)
            .into_par_iter()
            .map(|r| {
                let mut rng = self.rng(stream, r);
                let images = draw_images(&mut rng, &side[0]);
                let reps = replicate_draw(&mut rng, side.len());
                mean_f1(side, &images, &reps)
            })
            .collect();
        Ok(self.percentile_interval(values))
    }

    /// The paired bootstrap of the F1 difference `a − b` (each side's mean over its replicates):
    /// every resample draws the same images for both sides, and the same replicate indices when
    /// both have as many replicates.
    pub fn paired_f1_difference(&self, a: Side<'_>, b: Side<'_>, stream: u64) -> Result<PairedDifference, NoInterval> {
        check_side(a)?;
        check_side(b)?;
        let n = a[0].len();
        if b[0].len() != n {
            return Err(NoInterval::DifferentImages { a: n, b: b[0].len() });
        }
        // The same images carry the same figures, whatever the detector.
        if a[0].iter().zip(&b[0]).any(|(x, y)| x.ground_truth() != y.ground_truth()) {
            return Err(NoInterval::DifferentImages { a: n, b: n });
        }
        let all: Vec<usize> = (0..n).collect();
        let everyone = |s: Side<'_>| (0..s.len()).collect::<Vec<_>>();
        let difference = mean_f1(a, &all, &everyone(a)) - mean_f1(b, &all, &everyone(b));
        let same_replicates = a.len() == b.len();
        let values: Vec<f64> = (0..self.resamples)
            .into_par_iter()
            .map(|r| {
                let mut rng = self.rng(stream, r);
                let images = draw_images(&mut rng, &a[0]);
                let reps_a = replicate_draw(&mut rng, a.len());
                let reps_b = if same_replicates { reps_a.clone() } else { replicate_draw(&mut rng, b.len()) };
                mean_f1(a, &images, &reps_a) - mean_f1(b, &images, &reps_b)
            })
            .collect();
        Ok(PairedDifference { difference, interval: self.percentile_interval(values) })
    }

    fn percentile_interval(&self, mut values: Vec<f64>) -> Interval {
        values.sort_by(f64::total_cmp);
        let (lo, hi) = self.quantiles();
        Interval { lo: percentile(&values, lo), hi: percentile(&values, hi) }
    }
}

/// `n` images drawn with replacement, again until at least one holds a mitotic figure (the
/// caller has checked that one does; a pathological row stops after many tries with the last
/// draw).
fn draw_images(rng: &mut ChaCha8Rng, images: &[Counts]) -> Vec<usize> {
    let n = images.len();
    let mut draw: Vec<usize> = Vec::with_capacity(n);
    for _ in 0..10_000 {
        draw.clear();
        draw.extend((0..n).map(|_| rng.random_range(0..n)));
        if draw.iter().any(|&i| images[i].ground_truth() > 0) {
            break;
        }
    }
    draw
}

/// The replicates a resample uses: all of them once when there is one, else drawn with
/// replacement.
fn replicate_draw(rng: &mut ChaCha8Rng, replicates: usize) -> Vec<usize> {
    if replicates == 1 { vec![0] } else { (0..replicates).map(|_| rng.random_range(0..replicates)).collect() }
}

fn mean_f1(side: Side<'_>, images: &[usize], replicates: &[usize]) -> f64 {
    let total: f64 = replicates.iter().map(|&r| images.iter().map(|&i| side[r][i]).sum::<Counts>().f1()).sum();
    total / replicates.len() as f64
}

fn check_row(images: &[Counts]) -> Result<(), NoInterval> {
    if images.len() < 2 {
        return Err(NoInterval::TooFewImages(images.len()));
    }
    if images.iter().all(|c| c.ground_truth() == 0) {
        return Err(NoInterval::NoGroundTruth);
    }
    Ok(())
}

fn check_side(side: Side<'_>) -> Result<(), NoInterval> {
    let Some(first) = side.first() else { return Err(NoInterval::NoReplicates) };
    if let Some(other) = side.iter().find(|r| r.len() != first.len()) {
        return Err(NoInterval::DifferentImages { a: first.len(), b: other.len() });
    }
    check_row(first)
}

/// The `q` quantile (0 ≤ q ≤ 1) of sorted values, as numpy's default ("linear") method computes it.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let h = (n - 1) as f64 * q.clamp(0.0, 1.0);
            let below = (h.floor() as usize).min(n - 1);
            let above = (below + 1).min(n - 1);
            let t = h - below as f64;
            let (a, b) = (sorted[below], sorted[above]);
            // numpy's _lerp: interpolate from the nearer end, so t = 1 gives b exactly.
            if t >= 0.5 { b - (b - a) * (1.0 - t) } else { a + (b - a) * t }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(tp: u64, fp: u64, fn_: u64) -> Counts {
        Counts::new(tp, fp, fn_)
    }

    fn plan() -> Bootstrap {
        Bootstrap::default()
    }

    /// Exact bootstrap quantile: every one of the n^n equally likely ordered resamples enumerated
    /// (those without a mitotic figure left out, as the bootstrap redraws them).
    fn exact_quantile(images: &[Counts], metric: fn(&Counts) -> f64, q: f64) -> (f64, f64) {
        let n = images.len();
        let mut values: Vec<f64> = (0..n.pow(n as u32))
            .filter_map(|mut code| {
                let mut sum = Counts::default();
                for _ in 0..n {
                    sum += images[code % n];
                    code /= n;
                }
                (sum.ground_truth() > 0).then(|| metric(&sum))
            })
            .collect();
        let total = values.len();
        values.sort_by(f64::total_cmp);
        // The q quantile of the exact distribution, and how far q sits from the nearest jump of
        // the cumulative distribution (a Monte-Carlo estimate is only pinned down away from jumps).
        let k = ((q * total as f64).ceil() as usize).clamp(1, total) - 1;
        let value = values[k];
        let below = values.iter().filter(|v| **v < value).count() as f64 / total as f64;
        let upto = values.iter().filter(|v| **v <= value).count() as f64 / total as f64;
        (value, (q - below).min(upto - q))
    }

    #[test]
    fn intervals_match_exact_enumeration_of_every_resample() {
        // Five images: 5^5 = 3125 equally likely resamples, enumerated exactly; two images without
        // figures, so some resamples are redrawn.
        let images = [c(2, 0, 1), c(2, 0, 1), c(2, 2, 3), c(0, 3, 0), c(0, 2, 0)];
        let b = Bootstrap { resamples: 40_000, level: 0.9, seed: 7 };
        let got = b.intervals(&images, 1).unwrap();
        let (qlo, qhi) = b.quantiles();
        for (name, metric, interval) in [
            ("f1", Counts::f1 as fn(&Counts) -> f64, got.f1),
            ("precision", Counts::precision, got.precision),
            ("recall", Counts::recall, got.recall),
        ] {
            for (q, estimate) in [(qlo, interval.lo), (qhi, interval.hi)] {
                let (exact, margin) = exact_quantile(&images, metric, q);
                // 40 000 resamples pin a quantile down to about ±0.0015 in probability; the test
                // data keeps every quantile further than that from a jump of the distribution.
                assert!(margin > 0.004, "{name} q={q}: test data too close to a jump ({margin})");
                assert_eq!(estimate, exact, "{name} at q = {q}");
            }
        }
    }

    #[test]
    fn a_resample_without_figures_is_drawn_again() {
        // All 12 figures in one image, none in the other: half of the plain resamples would hold
        // no figure (F1 = 1 by convention, recall undefined); the interval stays at the data's 0.
        let images = [c(0, 0, 12), c(0, 0, 0)];
        let i = plan().intervals(&images, 3).unwrap();
        assert_eq!((i.f1, i.recall), (Interval { lo: 0.0, hi: 0.0 }, Interval { lo: 0.0, hi: 0.0 }));
        for r in 0..100 {
            let draw = plan().image_indices(&images, 3, r);
            assert!(draw.contains(&0), "resample {r} drew no figure: {draw:?}");
        }
    }

    #[test]
    fn identical_across_thread_counts_and_row_order() {
        let images: Vec<Counts> = (0..200).map(|i| c(i % 7, (i * 3) % 5, (i * 5) % 4)).collect();
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
                let b = plan();
                (b.intervals(&images, Bootstrap::stream("test/all")).unwrap(), b.intervals(&images[..50], 9).unwrap())
            })
        };
        let one = run(1);
        assert_eq!(one, run(4));
        assert_eq!(one, run(3));
        // A row does not depend on what else was computed.
        assert_eq!(plan().intervals(&images[..50], 9).unwrap(), one.1);
        // Another seed gives another (but similar) interval.
        let other = Bootstrap { seed: 1, ..plan() }.intervals(&images, Bootstrap::stream("test/all")).unwrap();
        assert_ne!(other, one.0);
        assert!((other.f1.lo - one.0.f1.lo).abs() < 0.02);
    }

    #[test]
    fn interval_holds_the_estimate_and_narrows_with_more_images() {
        let few: Vec<Counts> = (0..10).map(|i| c(2 + i % 3, 1 + i % 2, i % 3)).collect();
        let many: Vec<Counts> = (0..160).map(|i| few[i % 10]).collect();
        let f1 = |v: &[Counts]| v.iter().copied().sum::<Counts>().f1();
        let a = plan().intervals(&few, 3).unwrap();
        let b = plan().intervals(&many, 3).unwrap();
        assert!(a.f1.contains(f1(&few)) && b.f1.contains(f1(&many)));
        assert!(b.f1.width() < a.f1.width() / 2.5, "{a:?} {b:?}");
    }

    #[test]
    fn rows_without_a_meaningful_interval_say_why() {
        assert_eq!(plan().intervals(&[c(3, 1, 1)], 0), Err(NoInterval::TooFewImages(1)));
        assert_eq!(plan().intervals(&[], 0), Err(NoInterval::TooFewImages(0)));
        assert_eq!(plan().intervals(&[c(0, 4, 0), c(0, 0, 0)], 0), Err(NoInterval::NoGroundTruth));
        assert_eq!(plan().mean_f1_interval(&[], 0), Err(NoInterval::NoReplicates));
        let a = vec![vec![c(1, 0, 0), c(1, 1, 0)]];
        let b = vec![vec![c(1, 0, 0), c(1, 1, 0), c(0, 0, 1)]];
        assert_eq!(plan().paired_f1_difference(&a, &b, 0), Err(NoInterval::DifferentImages { a: 2, b: 3 }));
    }

    #[test]
    fn a_model_compared_with_itself_differs_by_exactly_zero() {
        let side: Vec<Vec<Counts>> = vec![(0..30).map(|i| c(i % 4, i % 3, i % 2)).collect()];
        let d = plan().paired_f1_difference(&side, &side, 5).unwrap();
        assert_eq!(d.difference, 0.0);
        assert_eq!(d.interval, Interval { lo: 0.0, hi: 0.0 });
        assert!(!d.supported());
        // Also with replicates: both sides draw the same ones.
        let reps: Vec<Vec<Counts>> =
            (0..3).map(|r| (0..30).map(|i| c((i + r) % 4, i % 3, (i * r) % 2)).collect()).collect();
        let d = plan().paired_f1_difference(&reps, &reps, 5).unwrap();
        assert_eq!(d.interval, Interval { lo: 0.0, hi: 0.0 });
    }

    #[test]
    fn a_clearly_better_model_is_supported_and_the_pairing_matters() {
        // b misses one figure more than a in every fourth image: a small, consistent difference
        // that unpaired intervals (which overlap) would not resolve.
        let a: Vec<Counts> = (0..60).map(|i| c(2 + i % 6, i % 4, (i * 7) % 3)).collect();
        let b: Vec<Counts> =
            a.iter().enumerate().map(|(i, x)| if i % 4 == 0 { c(x.tp - 1, x.fp, x.fn_ + 1) } else { *x }).collect();
        let d = plan().paired_f1_difference(std::slice::from_ref(&a), std::slice::from_ref(&b), 2).unwrap();
        assert!(d.difference > 0.0 && d.supported(), "{d:?}");
        let (ia, ib) = (plan().intervals(&a, 2).unwrap().f1, plan().intervals(&b, 2).unwrap().f1);
        assert!(ia.lo < ib.hi, "the unpaired intervals overlap: {ia:?} {ib:?}");
        // Swapping the sides mirrors the interval.
        let e = plan().paired_f1_difference(&[b], &[a], 2).unwrap();
        assert_eq!(e.difference, -d.difference);
        assert!((e.interval.lo + d.interval.hi).abs() < 1e-12 && (e.interval.hi + d.interval.lo).abs() < 1e-12);
    }

    #[test]
    fn one_replicate_is_the_plain_interval_and_replicates_widen_it() {
        let images: Vec<Counts> = (0..40).map(|i| c(2 + i % 3, i % 2, i % 3)).collect();
        let plain = plan().intervals(&images, 4).unwrap().f1;
        assert_eq!(plan().mean_f1_interval(std::slice::from_ref(&images), 4).unwrap(), plain);
        // Three seeds that disagree: the two-level interval holds that spread too.
        let worse: Vec<Counts> = images.iter().map(|x| c(x.tp.saturating_sub(1), x.fp + 1, x.fn_ + 1)).collect();
        let reps = vec![images.clone(), worse, images.clone()];
        let pooled = plan().mean_f1_interval(&reps, 4).unwrap();
        assert!(pooled.width() > plain.width(), "{pooled:?} vs {plain:?}");
    }

    #[test]
    fn percentile_is_numpys_linear_method() {
        let v = [1.0, 2.0, 4.0, 8.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 1.0), 8.0);
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert_eq!(percentile(&v, 0.25), 1.75);
        assert_eq!(percentile(&[5.0], 0.3), 5.0);
        assert!(percentile(&[], 0.3).is_nan());
    }

    #[test]
    fn bad_plans_are_rejected() {
        assert!(Bootstrap::new(2000, 0.95, 0).is_ok());
        assert_eq!(Bootstrap::new(10, 0.95, 0), Err(BootstrapError::TooFewResamples { min: 1000, got: 10 }));
        assert!(Bootstrap::new(2000, 1.0, 0).is_err());
        assert!(Bootstrap::new(2000, f64::NAN, 0).is_err());
    }
}

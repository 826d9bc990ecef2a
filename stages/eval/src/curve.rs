//! Scores at every threshold at once: the F1-vs-threshold curve, the best threshold on a set of
//! images, the precision–recall curve and average precision.
//!
//! A threshold only matters where it crosses a detection score, so the curve has one point per
//! distinct score ("level"): level k keeps every detection whose score is at least the k-th highest
//! distinct score, plus a first point that keeps nothing. At every level, each image is matched
//! with the official greedy rule (`matching`) from scratch, exactly as scoring that threshold alone
//! would; nothing is carried over from a single score-ordered assignment as VOC/COCO do.
//!
//! Cost: the detections of all images are sorted once by score. A detection that lies within the
//! radius of no ground-truth point can only ever be a false positive, so adding it is a counter
//! increment. The others belong to a connected group of points that share candidates; only that
//! group is rematched, and groups are a handful of points in practice. The whole sweep is
//! O(n log n + Σ group work) instead of O(levels × n).
//!
//! Adding a detection changes the greedy TP count by 0 or +1 (an earlier point switching to the
//! new detection frees one detection for the next point, and so on down the file order; nobody who
//! had a match loses it). Recall therefore never decreases along the curve.
//!
//! Scores must be finite; a detection with a NaN score passes no threshold and is left out.

use serde::{Deserialize, Serialize};

use crate::detection::{Detection, Point};
use crate::matching::Candidates;
use crate::metrics::Counts;

/// One image as the sweep needs it: points, all detections (before any threshold) and the hit
/// radius, all in one unit (pixels with `PointMatcher::radius_px`, or millimetres).
#[derive(Debug, Clone, Copy)]
pub struct SweepImage<'a> {
    pub ground_truth: &'a [Point],
    pub detections: &'a [Detection],
    pub radius: f64,
}

/// The summed scores over all images at one level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// A threshold that keeps exactly this level's detections under the strict rule `score > t`:
    /// the midpoint between the lowest kept and the highest dropped score (robust when the
    /// threshold chosen on validation is applied to a test set); when nothing is dropped, the
    /// largest value below the lowest score; when nothing is kept, the highest score (1.0 when
    /// there are no detections at all).
    pub threshold: f64,
    /// The lowest score kept at this level; `None` at the level that keeps nothing.
    pub lowest_kept_score: Option<f64>,
    #[serde(flatten)]
    pub counts: Counts,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

impl CurvePoint {
    fn new(threshold: f64, lowest_kept_score: Option<f64>, counts: Counts) -> CurvePoint {
        CurvePoint {
            threshold,
            lowest_kept_score,
            counts,
            precision: counts.precision(),
            recall: counts.recall(),
            f1: counts.f1(),
        }
    }
}

/// The curve, ordered from the level that keeps nothing to the level that keeps everything
/// (thresholds descending, recall non-decreasing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdCurve {
    pub points: Vec<CurvePoint>,
}

impl ThresholdCurve {
    pub fn compute(images: &[SweepImage<'_>]) -> ThresholdCurve {
        let mut states: Vec<ImageState> = images.iter().map(ImageState::new).collect();
        let mut order: Vec<(usize, usize)> = images
            .iter()
            .enumerate()
            .flat_map(|(i, img)| (0..img.detections.len()).map(move |d| (i, d)))
            .filter(|&(i, d)| !images[i].detections[d].score.is_nan())
            .collect();
        let score = |&(i, d): &(usize, usize)| images[i].detections[d].score;
        order.sort_unstable_by(|a, b| score(b).total_cmp(&score(a)).then(a.cmp(b)));

        let total_gt: u64 = images.iter().map(|img| img.ground_truth.len() as u64).sum();
        let (mut kept, mut tp) = (0u64, 0u64);
        let nothing_kept = order.first().map_or(1.0, score);
        let mut points = vec![CurvePoint::new(nothing_kept, None, Counts::new(0, 0, total_gt))];
        let mut dirty: Vec<(usize, usize)> = Vec::new();
        let groups: Vec<&[(usize, usize)]> = order.chunk_by(|a, b| score(a).total_cmp(&score(b)).is_eq()).collect();
        for (k, group) in groups.iter().enumerate() {
            for &(i, d) in *group {
                let st = &mut states[i];
                st.active[d] = true;
                kept += 1;
                if let Some(c) = st.component_of_detection[d]
                    && !st.components[c].dirty
                {
                    st.components[c].dirty = true;
                    dirty.push((i, c));
                }
            }
            for (i, c) in dirty.drain(..) {
                let new_tp = states[i].rematch(c);
                tp = tp - states[i].components[c].tp + new_tp;
                states[i].components[c].tp = new_tp;
            }
            let lowest = score(&group[0]);
            let threshold = match groups.get(k + 1) {
                Some(next) => between(lowest, score(&next[0])),
                None => lowest.next_down(),
            };
            points.push(CurvePoint::new(threshold, Some(lowest), Counts::new(tp, kept - tp, total_gt - tp)));
        }
        ThresholdCurve { points }
    }

    /// The number of ground-truth points over all images.
    pub fn ground_truth(&self) -> u64 {
        self.points[0].counts.ground_truth()
    }

    /// The level with the highest summed F1 (compared exactly). Among equal F1 the first, i.e. the
    /// highest threshold, wins: the same score with fewer detections. The first level (nothing
    /// kept) takes part, so on a set without any mitosis the best is to keep nothing (F1 1).
    pub fn best(&self) -> &CurvePoint {
        let mut best = &self.points[0];
        for p in &self.points[1..] {
            if p.counts.cmp_f1(&best.counts).is_gt() {
                best = p;
            }
        }
        best
    }

    /// Average precision: the area under the precision–recall curve with all-point interpolation
    /// (PASCAL VOC 2010 and later): precision at each level is replaced by the highest precision at
    /// that or any higher recall (the monotone envelope), and AP = Σ (Rₖ − Rₖ₋₁) · P_envₖ over the
    /// levels, starting from recall 0. Unlike COCO there is no 101-point sampling and, unlike
    /// VOC/COCO, each level's TP comes from the official greedy matching at that threshold.
    /// `None` without ground truth, where recall is undefined.
    pub fn average_precision(&self) -> Option<f64> {
        if self.ground_truth() == 0 {
            return None;
        }
        let levels = &self.points[1..];
        let mut envelope = vec![0.0; levels.len()];
        let mut best = 0.0f64;
        for (k, p) in levels.iter().enumerate().rev() {
            best = best.max(p.precision);
            envelope[k] = best;
        }
        let mut previous_recall = self.points[0].recall;
        let mut ap = 0.0;
        for (p, env) in levels.iter().zip(envelope) {
            debug_assert!(p.recall >= previous_recall, "recall decreased along the curve");
            ap += (p.recall - previous_recall).max(0.0) * env;
            previous_recall = p.recall;
        }
        Some(ap)
    }

    /// `(recall, precision)` for every level that keeps at least one detection, for plotting.
    pub fn precision_recall(&self) -> Vec<(f64, f64)> {
        self.points[1..].iter().map(|p| (p.recall, p.precision)).collect()
    }

    /// `(threshold, F1)` for every level, thresholds descending, for plotting.
    pub fn f1_by_threshold(&self) -> Vec<(f64, f64)> {
        self.points.iter().map(|p| (p.threshold, p.f1)).collect()
    }
}

/// A value `t` with `lower ≤ t < upper`, so that `score > t` keeps `upper` and drops `lower`:
/// the midpoint, or `lower` itself when the two are adjacent floats and the midpoint rounds up.
fn between(upper: f64, lower: f64) -> f64 {
    let mid = upper / 2.0 + lower / 2.0;
    if mid < upper && mid >= lower { mid } else { lower }
}

/// A set of ground-truth points that share candidate detections (directly or through others);
/// different groups never compete for a detection, so each can be rematched alone.
struct Component {
    /// Its points in file order, the order the greedy rule visits them.
    points: Vec<usize>,
    tp: u64,
    dirty: bool,
}

struct ImageState {
    candidates: Candidates,
    components: Vec<Component>,
    component_of_detection: Vec<Option<usize>>,
    active: Vec<bool>,
    claimed: Vec<bool>,
}

impl ImageState {
    fn new(img: &SweepImage<'_>) -> ImageState {
        let candidates = Candidates::new(img.ground_truth, img.detections, img.radius);
        let n_gt = img.ground_truth.len();
        let mut parent: Vec<usize> = (0..n_gt).collect();
        let mut first_point_of_detection: Vec<Option<usize>> = vec![None; img.detections.len()];
        for (g, list) in candidates.lists.iter().enumerate() {
            for &d in list {
                match first_point_of_detection[d] {
                    Some(other) => union(&mut parent, other, g),
                    None => first_point_of_detection[d] = Some(g),
                }
            }
        }
        let mut component_of_root: Vec<Option<usize>> = vec![None; n_gt];
        let mut component_of_point: Vec<usize> = vec![0; n_gt];
        let mut components: Vec<Component> = Vec::new();
        for (g, component) in component_of_point.iter_mut().enumerate() {
            let root = find(&mut parent, g);
            let c = *component_of_root[root].get_or_insert_with(|| {
                components.push(Component { points: Vec::new(), tp: 0, dirty: false });
                components.len() - 1
            });
            components[c].points.push(g);
            *component = c;
        }
        let component_of_detection =
            first_point_of_detection.iter().map(|g| g.map(|g| component_of_point[g])).collect();
        ImageState {
            candidates,
            components,
            component_of_detection,
            active: vec![false; img.detections.len()],
            claimed: vec![false; img.detections.len()],
        }
    }

    /// Reruns the greedy rule over one component with the currently active detections.
    fn rematch(&mut self, c: usize) -> u64 {
        let comp = &mut self.components[c];
        comp.dirty = false;
        let mut taken = Vec::new();
        let tp =
            self.candidates.assign(comp.points.iter().copied(), &self.active, &mut self.claimed, |_, d| taken.push(d));
        for d in taken {
            self.claimed[d] = false;
        }
        tp
    }
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        parent[ra.max(rb)] = ra.min(rb);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::greedy_match;
    use crate::threshold::ScoreThreshold;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    struct OwnedImage {
        gt: Vec<Point>,
        dets: Vec<Detection>,
        radius: f64,
    }

    fn random_images(rng: &mut StdRng, n: usize) -> Vec<OwnedImage> {
        (0..n)
            .map(|_| {
                let radius = if rng.random_bool(0.5) { 30.0 } else { 7.5 / 0.23 };
                let gt: Vec<Point> = (0..rng.random_range(0..15))
                    .map(|_| Point::new(rng.random_range(0.0..800.0), rng.random_range(0.0..600.0)))
                    .collect();
                let mut dets = Vec::new();
                for p in &gt {
                    for _ in 0..rng.random_range(0..4) {
                        let (dx, dy) = (rng.random_range(-1.5..1.5) * radius, rng.random_range(-1.5..1.5) * radius);
                        dets.push(Detection::new(
                            p.x + dx,
                            p.y + dy,
                            (rng.random_range(0.0..1.0f64) * 25.0).round() / 25.0,
                        ));
                    }
                }
                for _ in 0..rng.random_range(0..20) {
                    let score = (rng.random_range(0.0..1.0f64) * 25.0).round() / 25.0;
                    dets.push(Detection::new(rng.random_range(0.0..800.0), rng.random_range(0.0..600.0), score));
                }
                OwnedImage { gt, dets, radius }
            })
            .collect()
    }

    fn sweep(images: &[OwnedImage]) -> ThresholdCurve {
        let views: Vec<SweepImage<'_>> =
            images.iter().map(|i| SweepImage { ground_truth: &i.gt, detections: &i.dets, radius: i.radius }).collect();
        ThresholdCurve::compute(&views)
    }

    fn brute_force_counts(images: &[OwnedImage], threshold: f64) -> Counts {
        images.iter().map(|i| greedy_match(&i.gt, &i.dets, i.radius, ScoreThreshold::Above(threshold)).counts()).sum()
    }

    #[test]
    fn every_level_equals_matching_that_threshold_alone() {
        let mut rng = StdRng::seed_from_u64(11);
        for round in 0..20 {
            let images = random_images(&mut rng, 12);
            let curve = sweep(&images);
            for p in &curve.points {
                assert_eq!(p.counts, brute_force_counts(&images, p.threshold), "round {round}, t = {}", p.threshold);
            }
            // The best threshold is the best of a brute-force scan over every distinct score and
            // over thresholds between them.
            let mut scores: Vec<f64> = images.iter().flat_map(|i| i.dets.iter().map(|d| d.score)).collect();
            scores.sort_by(f64::total_cmp);
            scores.dedup();
            let brute_best = scores
                .iter()
                .flat_map(|&s| [s, s - 1e-6])
                .map(|t| brute_force_counts(&images, t).f1())
                .chain(std::iter::once(brute_force_counts(&images, 2.0).f1()))
                .fold(f64::MIN, f64::max);
            assert_eq!(curve.best().f1, brute_best, "round {round}");
            let recalls: Vec<f64> = curve.points.iter().map(|p| p.recall).collect();
            assert!(recalls.windows(2).all(|w| w[0] <= w[1]), "recall must not decrease: {recalls:?}");
        }
    }

    #[test]
    fn average_precision_of_a_known_case() {
        // Two mitoses; detections: a hit (0.9), a far false positive (0.8), a hit (0.7).
        let img = OwnedImage {
            gt: vec![Point::new(0.0, 0.0), Point::new(500.0, 0.0)],
            dets: vec![Detection::new(1.0, 0.0, 0.9), Detection::new(250.0, 0.0, 0.8), Detection::new(501.0, 0.0, 0.7)],
            radius: 30.0,
        };
        let curve = sweep(std::slice::from_ref(&img));
        let pr = curve.precision_recall();
        assert_eq!(pr, vec![(0.5, 1.0), (0.5, 0.5), (1.0, 2.0 / 3.0)]);
        // 0.5 · 1 + 0 · (2/3) + 0.5 · (2/3)
        assert!((curve.average_precision().unwrap() - (0.5 + 1.0 / 3.0)).abs() < 1e-12);
        let best = curve.best();
        assert_eq!(best.counts, Counts::new(2, 1, 0));
        assert_eq!(best.lowest_kept_score, Some(0.7));
        assert!(best.threshold < 0.7 && best.threshold.next_up() >= 0.7);
        assert!((curve.points[1].threshold - 0.85).abs() < 1e-12);
        assert!((curve.points[2].threshold - 0.75).abs() < 1e-12);
        assert_eq!(curve.f1_by_threshold()[0], (0.9, 0.0));
    }

    #[test]
    fn equal_f1_prefers_the_higher_threshold_and_empty_sets_are_defined() {
        // 0.9 hit, 0.8 far FP, 0.7 far FP, 0.6 hit: F1 at {0.9} is 2/3, at all four 4/6 = 2/3.
        let img = OwnedImage {
            gt: vec![Point::new(0.0, 0.0), Point::new(500.0, 0.0)],
            dets: vec![
                Detection::new(1.0, 0.0, 0.9),
                Detection::new(250.0, 0.0, 0.8),
                Detection::new(250.0, 300.0, 0.7),
                Detection::new(501.0, 0.0, 0.6),
            ],
            radius: 30.0,
        };
        let curve = sweep(std::slice::from_ref(&img));
        assert_eq!(curve.best().lowest_kept_score, Some(0.9));

        let no_gt = OwnedImage { gt: vec![], dets: vec![Detection::new(1.0, 1.0, 0.5)], radius: 30.0 };
        let curve = sweep(std::slice::from_ref(&no_gt));
        assert_eq!(curve.average_precision(), None);
        assert_eq!(curve.best().lowest_kept_score, None);
        assert_eq!(curve.best().f1, 1.0);

        let no_dets = OwnedImage { gt: vec![Point::new(1.0, 1.0)], dets: vec![], radius: 30.0 };
        let curve = sweep(std::slice::from_ref(&no_dets));
        assert_eq!(curve.points.len(), 1);
        assert_eq!(curve.average_precision(), Some(0.0));
        assert_eq!(curve.best().counts, Counts::new(0, 0, 1));
    }

    #[test]
    fn threshold_between_adjacent_floats_still_separates_them() {
        let upper = 0.5f64;
        let lower = upper.next_down();
        let t = between(upper, lower);
        assert!(upper > t && lower <= t);
    }
}

//! The official MIDOG point matching: which detection is a true positive of which mitosis.
//!
//! Semantics, as `evalutils.scorers.score_detection` (used by the MIDOG 2021 evaluation) runs it:
//!
//! * A detection can hit a ground-truth point when its centre lies within the radius, distance
//!   equal to the radius included (`BallTree.query_radius` keeps `d ≤ r`). MIDOG's radius is
//!   7.5 µm, converted with each image's own resolution: 7.5 / 0.23 ≈ 32.6 px on the Hamamatsu
//!   scanners, exactly 30 px on the Aperio CS2 at 0.25 µm/px.
//! * Ground-truth points are visited in file order (the order of the ground-truth list or of
//!   MIDOG.json's annotations). Each takes its nearest detection that no earlier point has claimed;
//!   a point with none left inside the radius is a false negative.
//! * Every detection left unclaimed is a false positive, so a second detection of the same cell
//!   costs precision. One detection never serves two points.
//! * Ties in distance, which the official code leaves to its sort, are broken here by higher score,
//!   then lower detection index, so results never depend on chance.
//! * Distances are compared squared with a relative slack of 1e-9 on the radius, so a detection
//!   placed exactly on the circle still counts after a millimetre ↔ pixel round trip; any physical
//!   distance beyond the radius by more than a nanometre-scale fraction does not.
//!
//! The matching works in whatever unit the points and the radius share: pixels with a radius from
//! [`PointMatcher::radius_px`], or the official files' millimetres with [`PointMatcher::radius_mm`].

use serde::{Deserialize, Serialize};

use crate::detection::{Detection, Point};
use crate::grid::PointGrid;
use crate::metrics::Counts;
use crate::threshold::ScoreThreshold;

/// MIDOG 2021's hit radius in micrometres.
pub const MIDOG_RADIUS_UM: f64 = 7.5;

/// Relative widening of the radius that absorbs floating-point rounding of points placed exactly
/// on it (see the module documentation).
pub const RADIUS_SLACK: f64 = 1e-9;

/// The matching rule with its physical radius; converts it for each image's resolution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PointMatcher {
    pub radius_um: f64,
}

impl Default for PointMatcher {
    fn default() -> PointMatcher {
        PointMatcher::MIDOG
    }
}

impl PointMatcher {
    /// The official 7.5 µm rule.
    pub const MIDOG: PointMatcher = PointMatcher { radius_um: MIDOG_RADIUS_UM };

    /// The radius in pixels of an image scanned at `um_per_px` (which must be positive and finite;
    /// the file readers check that before calling).
    pub fn radius_px(&self, um_per_px: f64) -> f64 {
        self.radius_um / um_per_px
    }

    /// The radius in millimetres, the unit of the official output and ground-truth files.
    pub fn radius_mm(&self) -> f64 {
        self.radius_um / 1000.0
    }

    /// Matches one image given in pixels at resolution `um_per_px`.
    pub fn match_pixels(
        &self,
        gt: &[Point],
        dets: &[Detection],
        um_per_px: f64,
        threshold: ScoreThreshold,
    ) -> ImageMatch {
        greedy_match(gt, dets, self.radius_px(um_per_px), threshold)
    }
}

/// What became of one detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DetectionOutcome {
    /// Claimed by the ground-truth point with this index.
    TruePositive { ground_truth: usize },
    /// Took part but no point claimed it (far from every mitosis, or a duplicate).
    FalsePositive,
    /// Its score did not pass the threshold; it counts neither way.
    BelowThreshold,
}

/// The matching of one image, per point and per detection (what a gallery of hits, misses and
/// false alarms draws).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageMatch {
    /// For each ground-truth point, the index of the detection it claimed; `None` is a miss.
    pub ground_truth: Vec<Option<usize>>,
    /// For each detection, in input order, its outcome.
    pub detections: Vec<DetectionOutcome>,
}

impl ImageMatch {
    pub fn counts(&self) -> Counts {
        let tp = self.ground_truth.iter().filter(|m| m.is_some()).count() as u64;
        let fp = self.detections.iter().filter(|o| **o == DetectionOutcome::FalsePositive).count() as u64;
        Counts { tp, fp, fn_: self.ground_truth.len() as u64 - tp }
    }
}

/// Matches ground truth against detections with `radius` in the points' own unit, keeping only
/// detections that pass `threshold`.
pub fn greedy_match(gt: &[Point], dets: &[Detection], radius: f64, threshold: ScoreThreshold) -> ImageMatch {
    let candidates = Candidates::new(gt, dets, radius);
    let active: Vec<bool> = dets.iter().map(|d| threshold.keeps(d.score)).collect();
    let mut claimed = vec![false; dets.len()];
    let mut ground_truth = vec![None; gt.len()];
    candidates.assign(0..gt.len(), &active, &mut claimed, |g, d| ground_truth[g] = Some(d));
    let mut detections: Vec<DetectionOutcome> = active
        .iter()
        .map(|&a| if a { DetectionOutcome::FalsePositive } else { DetectionOutcome::BelowThreshold })
        .collect();
    for (g, claimed_det) in ground_truth.iter().enumerate() {
        if let Some(d) = *claimed_det {
            detections[d] = DetectionOutcome::TruePositive { ground_truth: g };
        }
    }
    ImageMatch { ground_truth, detections }
}

/// For each ground-truth point, the detections within the radius, in the order it would take
/// them: nearest first, then higher score, then lower index. Built once per image with a grid, so
/// the threshold sweep can rematch at every threshold without searching space again.
pub(crate) struct Candidates {
    pub(crate) lists: Vec<Vec<usize>>,
}

impl Candidates {
    pub(crate) fn new(gt: &[Point], dets: &[Detection], radius: f64) -> Candidates {
        let r = radius * (1.0 + RADIUS_SLACK);
        let grid = PointGrid::new(dets.iter().map(|d| (d.x, d.y)), r);
        let lists = gt
            .iter()
            .map(|p| {
                let mut near: Vec<(f64, usize)> = Vec::new();
                grid.for_each_within(p.x, p.y, r, |d, d2| near.push((d2, d)));
                near.sort_unstable_by(|a, b| {
                    a.0.total_cmp(&b.0).then(dets[b.1].score.total_cmp(&dets[a.1].score)).then(a.1.cmp(&b.1))
                });
                near.into_iter().map(|(_, d)| d).collect()
            })
            .collect();
        Candidates { lists }
    }

    /// The greedy rule over the points `gts` in the given order: each takes its first candidate
    /// that is `active` and not yet `claimed`, marks it claimed and reports `(point, detection)`.
    /// Returns the number of true positives.
    pub(crate) fn assign(
        &self,
        gts: impl IntoIterator<Item = usize>,
        active: &[bool],
        claimed: &mut [bool],
        mut on_match: impl FnMut(usize, usize),
    ) -> u64 {
        let mut tp = 0;
        for g in gts {
            if let Some(&d) = self.lists[g].iter().find(|&&d| active[d] && !claimed[d]) {
                claimed[d] = true;
                on_match(g, d);
                tp += 1;
            }
        }
        tp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(x: f64, y: f64) -> Point {
        Point::new(x, y)
    }

    fn d(x: f64, y: f64, s: f64) -> Detection {
        Detection::new(x, y, s)
    }

    fn counts(gt: &[Point], dets: &[Detection], r: f64) -> (u64, u64, u64) {
        let c = greedy_match(gt, dets, r, ScoreThreshold::KeepAll).counts();
        (c.tp, c.fp, c.fn_)
    }

    #[test]
    fn distance_equal_to_the_radius_counts_and_just_beyond_does_not() {
        // 0.25 µm/px: 7.5 µm is exactly 30 px.
        let r = PointMatcher::MIDOG.radius_px(0.25);
        assert_eq!(r, 30.0);
        assert_eq!(counts(&[p(100.0, 100.0)], &[d(130.0, 100.0, 0.9)], r), (1, 0, 0));
        assert_eq!(counts(&[p(100.0, 100.0)], &[d(118.0, 124.0, 0.9)], r), (1, 0, 0)); // 3-4-5 triangle
        assert_eq!(counts(&[p(100.0, 100.0)], &[d(130.001, 100.0, 0.9)], r), (0, 1, 1));
        // On the circle in millimetres after conversion: 7.5 µm = 0.0075 mm exactly apart.
        let (g, det) = (p(1.2345, 0.5), d(1.2345 + 0.0075, 0.5, 0.9));
        assert_eq!(counts(&[g], &[det], PointMatcher::MIDOG.radius_mm()), (1, 0, 0));
    }

    #[test]
    fn a_duplicate_detection_is_a_false_positive() {
        let gt = [p(0.0, 0.0)];
        assert_eq!(counts(&gt, &[d(1.0, 0.0, 0.9), d(2.0, 0.0, 0.8)], 30.0), (1, 1, 0));
        let m = greedy_match(&gt, &[d(2.0, 0.0, 0.9), d(1.0, 0.0, 0.8)], 30.0, ScoreThreshold::KeepAll);
        // The nearest one is claimed, not the best-scoring one.
        assert_eq!(m.ground_truth, vec![Some(1)]);
        assert_eq!(
            m.detections,
            vec![DetectionOutcome::FalsePositive, DetectionOutcome::TruePositive { ground_truth: 0 }]
        );
    }

    #[test]
    fn one_detection_between_two_points_serves_only_the_first() {
        let gt = [p(0.0, 0.0), p(40.0, 0.0)];
        // Within 30 px of both; the first point in file order claims it.
        let m = greedy_match(&gt, &[d(20.0, 0.0, 0.9)], 30.0, ScoreThreshold::KeepAll);
        assert_eq!(m.ground_truth, vec![Some(0), None]);
        assert_eq!(m.counts(), Counts { tp: 1, fp: 0, fn_: 1 });
        // Reversing the file order reverses who gets it.
        let m = greedy_match(&[gt[1], gt[0]], &[d(20.0, 0.0, 0.9)], 30.0, ScoreThreshold::KeepAll);
        assert_eq!(m.ground_truth, vec![Some(0), None]);
        // Greedy, not optimal: the first point takes its nearest detection, which the second
        // point needed; an optimal assignment would have found two hits.
        let dets = [d(10.0, 0.0, 0.9), d(-25.0, 0.0, 0.9)];
        assert_eq!(counts(&[p(0.0, 0.0), p(35.0, 0.0)], &dets, 30.0), (1, 1, 1));
    }

    #[test]
    fn empty_sides() {
        assert_eq!(counts(&[], &[d(1.0, 1.0, 0.5), d(9.0, 9.0, 0.5)], 30.0), (0, 2, 0));
        assert_eq!(counts(&[p(1.0, 1.0), p(500.0, 1.0)], &[], 30.0), (0, 0, 2));
        assert_eq!(counts(&[], &[], 30.0), (0, 0, 0));
    }

    #[test]
    fn each_image_uses_its_own_resolution() {
        // 31 px apart: inside 7.5 µm at 0.23 µm/px (32.6 px), outside at 0.25 µm/px (30 px).
        let (gt, det) = ([p(1000.0, 1000.0)], [d(1031.0, 1000.0, 0.9)]);
        let m = PointMatcher::MIDOG;
        assert_eq!(m.match_pixels(&gt, &det, 0.23, ScoreThreshold::KeepAll).counts(), Counts { tp: 1, fp: 0, fn_: 0 });
        assert_eq!(m.match_pixels(&gt, &det, 0.25, ScoreThreshold::KeepAll).counts(), Counts { tp: 0, fp: 1, fn_: 1 });
    }

    #[test]
    fn threshold_removes_detections_from_both_sides_of_the_count() {
        let gt = [p(0.0, 0.0)];
        let dets = [d(5.0, 0.0, 0.64), d(200.0, 0.0, 0.64), d(8.0, 0.0, 0.9)];
        let m = greedy_match(&gt, &dets, 30.0, ScoreThreshold::Above(0.64));
        assert_eq!(m.counts(), Counts { tp: 1, fp: 0, fn_: 0 });
        assert_eq!(m.detections[0], DetectionOutcome::BelowThreshold);
        assert_eq!(m.detections[2], DetectionOutcome::TruePositive { ground_truth: 0 });
        // Without a threshold the nearer detection wins and the other two are false positives.
        assert_eq!(counts(&gt, &dets, 30.0), (1, 2, 0));
    }

    #[test]
    fn equal_distances_prefer_the_higher_score_then_the_lower_index() {
        let gt = [p(0.0, 0.0)];
        let m = greedy_match(&gt, &[d(-10.0, 0.0, 0.5), d(10.0, 0.0, 0.7)], 30.0, ScoreThreshold::KeepAll);
        assert_eq!(m.ground_truth, vec![Some(1)]);
        let m = greedy_match(&gt, &[d(0.0, 10.0, 0.5), d(0.0, -10.0, 0.5)], 30.0, ScoreThreshold::KeepAll);
        assert_eq!(m.ground_truth, vec![Some(0)]);
    }
}

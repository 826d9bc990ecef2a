//! Merging the detections of several models of the same image (an ensemble).
//!
//! Points of different members that lie within a radius of each other are one cluster, and the
//! cluster's score is the mean of the members' scores, a member without a point in it counting
//! 0: a figure found by two of three models with 0.9 and 0.6 scores (0.9 + 0.6 + 0) / 3 = 0.5.
//! A vote threshold therefore falls out of the score threshold chosen on validation.
//!
//! Clusters form greedily by rank, like centre-distance NMS: the best remaining point founds a
//! cluster, and every other member contributes its nearest remaining point within the radius of
//! the founder (ties to the better rank). A cluster holds at most one point per member, so
//! an ensemble of one model returns its detections unchanged. The cluster sits at the mean of its
//! points. The result does not depend on the order of the points inside a member.

use std::cmp::Ordering;

use crate::detection::Detection;
use crate::grid::PointGrid;

/// One merged detection and how many members found it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Merged {
    pub detection: Detection,
    pub votes: usize,
}

/// Merges the detections of `members` (one slice per model, all of the same image) whose
/// points lie within `radius_px`; returned by descending score.
pub fn merge(members: &[&[Detection]], radius_px: f64) -> Vec<Merged> {
    let m = members.len();
    if m == 0 {
        return Vec::new();
    }
    // Every point with its member, in rank order: score descending, then y, x, member, index.
    let mut points: Vec<(usize, usize, Detection)> =
        members.iter().enumerate().flat_map(|(k, d)| d.iter().enumerate().map(move |(i, p)| (k, i, *p))).collect();
    let rank = |a: &(usize, usize, Detection), b: &(usize, usize, Detection)| -> Ordering {
        b.2.score
            .total_cmp(&a.2.score)
            .then(a.2.y.total_cmp(&b.2.y))
            .then(a.2.x.total_cmp(&b.2.x))
            .then(a.0.cmp(&b.0))
            .then(a.1.cmp(&b.1))
    };
    points.sort_by(rank);
    let grid = PointGrid::new(points.iter().map(|(_, _, p)| (p.x, p.y)), radius_px);
    let mut taken = vec![false; points.len()];
    let mut out = Vec::new();
    for founder in 0..points.len() {
        if taken[founder] {
            continue;
        }
        taken[founder] = true;
        let (fm, _, f) = points[founder];
        // The nearest free point of each other member, ties broken by rank (lower index).
        let mut best: Vec<Option<(f64, usize)>> = vec![None; m];
        grid.for_each_within(f.x, f.y, radius_px, |j, d2| {
            let k = points[j].0;
            if taken[j] || k == fm {
                return;
            }
            if best[k].is_none_or(|(bd, bj)| d2 < bd || (d2 == bd && j < bj)) {
                best[k] = Some((d2, j));
            }
        });
        let mut chosen = vec![founder];
        for (_, j) in best.into_iter().flatten() {
            taken[j] = true;
            chosen.push(j);
        }
        let n = chosen.len() as f64;
        let (x, y) = if chosen.len() == 1 {
            (f.x, f.y)
        } else {
            (
                chosen.iter().map(|&j| points[j].2.x).sum::<f64>() / n,
                chosen.iter().map(|&j| points[j].2.y).sum::<f64>() / n,
            )
        };
        let score = if m == 1 { f.score } else { chosen.iter().map(|&j| points[j].2.score).sum::<f64>() / m as f64 };
        out.push(Merged { detection: Detection { x, y, score }, votes: chosen.len() });
    }
    out.sort_by(|a, b| {
        b.detection
            .score
            .total_cmp(&a.detection.score)
            .then(a.detection.y.total_cmp(&b.detection.y))
            .then(a.detection.x.total_cmp(&b.detection.x))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(x: f64, y: f64, score: f64) -> Detection {
        Detection { x, y, score }
    }

    #[test]
    fn an_ensemble_of_one_is_that_member() {
        // Two points closer than the radius stay apart: they come from one model.
        let one = [d(10.0, 10.0, 0.9), d(20.0, 12.0, 0.3), d(300.0, 40.0, 0.55)];
        let merged: Vec<Detection> = merge(&[&one], 25.0).into_iter().map(|m| m.detection).collect();
        assert_eq!(merged, [one[0], one[2], one[1]], "the member's points, by score");
    }

    #[test]
    fn the_score_is_the_mean_with_absent_members_counting_zero() {
        let a = [d(100.0, 100.0, 0.9), d(500.0, 500.0, 0.8)];
        let b = [d(104.0, 97.0, 0.6)];
        let c = [d(900.0, 900.0, 0.3)];
        let merged = merge(&[&a, &b, &c], 25.0);
        assert_eq!(merged.len(), 3);
        let first = merged[0];
        assert_eq!(first.votes, 2);
        assert!((first.detection.score - 0.5).abs() < 1e-12, "{first:?}");
        assert_eq!((first.detection.x, first.detection.y), (102.0, 98.5));
        assert!((merged[1].detection.score - 0.8 / 3.0).abs() < 1e-12);
        assert!((merged[2].detection.score - 0.1).abs() < 1e-12);
    }

    #[test]
    fn each_member_gives_its_nearest_point_once() {
        let a = [d(0.0, 0.0, 0.9)];
        // b has two candidates in range: the nearer joins, the other founds its own cluster.
        let b = [d(20.0, 0.0, 0.8), d(5.0, 0.0, 0.4)];
        let merged = merge(&[&a, &b], 25.0);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].votes, 2);
        assert!((merged[0].detection.score - 0.65).abs() < 1e-12);
        assert_eq!(merged[0].detection.x, 2.5);
        assert_eq!(merged[1].votes, 1);
        assert!((merged[1].detection.score - 0.4).abs() < 1e-12);
    }

    #[test]
    fn the_order_of_points_inside_a_member_does_not_matter() {
        let a = [d(0.0, 0.0, 0.9), d(40.0, 0.0, 0.7), d(80.0, 3.0, 0.2)];
        let b = [d(30.0, 1.0, 0.5), d(3.0, 2.0, 0.5)];
        let forward = merge(&[&a, &b], 25.0);
        let ra: Vec<Detection> = a.iter().rev().copied().collect();
        let rb: Vec<Detection> = b.iter().rev().copied().collect();
        assert_eq!(merge(&[&ra, &rb], 25.0), forward);
        assert!(merge(&[], 25.0).is_empty());
    }
}

//! Non-maximum suppression, the two passes of the MIDOG reference recipe: IoU NMS inside each
//! inference tile (the head's duplicate boxes of one cell), then centre-distance NMS over the whole
//! image (the same cell seen by two overlapping tiles, whose boxes may barely overlap).
//!
//! Both are greedy by rank: the best remaining detection is kept and suppresses its neighbours.
//! The rank is (score descending, then `y`, then `x` ascending, then input index), with scores
//! compared by [`f64::total_cmp`]. Equal scores are common (scores quantised by bf16 or by a file
//! format), and the tie-break makes the result independent of the order tiles finished in.
//! Both functions return the kept indices in rank order.

use std::cmp::Ordering;

use crate::detection::{BoxDetection, Detection};
use crate::grid::PointGrid;

/// Rank order of two detections given their (score, y, x, index).
fn rank(a: (f64, f64, f64, usize), b: (f64, f64, f64, usize)) -> Ordering {
    b.0.total_cmp(&a.0).then(a.1.total_cmp(&b.1)).then(a.2.total_cmp(&b.2)).then(a.3.cmp(&b.3))
}

fn box_key(boxes: &[BoxDetection], i: usize) -> (f64, f64, f64, usize) {
    let c = boxes[i].centre();
    (c.score, c.y, c.x, i)
}

fn centre_key(dets: &[Detection], i: usize) -> (f64, f64, f64, usize) {
    (dets[i].score, dets[i].y, dets[i].x, i)
}

/// Per-tile IoU NMS: within each `tile`, a box is dropped when its IoU with an already kept box of
/// the same tile exceeds `iou_threshold` (torchvision's `nms` and the MIDOG reference `nms_patch`
/// keep IoU ≤ threshold). Boxes of different tiles never suppress each other. The tie-break uses
/// the box centre. Cost: one sort plus, per tile, (boxes × kept boxes) IoUs.
pub fn iou_nms(boxes: &[BoxDetection], iou_threshold: f64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_unstable_by(|&a, &b| {
        boxes[a].tile.cmp(&boxes[b].tile).then_with(|| rank(box_key(boxes, a), box_key(boxes, b)))
    });
    let mut kept = Vec::new();
    for tile in order.chunk_by(|&a, &b| boxes[a].tile == boxes[b].tile) {
        let first_of_tile = kept.len();
        for &i in tile {
            if !kept[first_of_tile..].iter().any(|&k: &usize| boxes[k].iou(&boxes[i]) > iou_threshold) {
                kept.push(i);
            }
        }
    }
    kept.sort_unstable_by(|&a, &b| rank(box_key(boxes, a), box_key(boxes, b)));
    kept
}

/// Image-level centre-distance NMS: a kept detection suppresses every lower-ranked detection whose
/// centre lies within `radius_px` (distance equal to the radius included).
///
/// O(n log n): after the sort, a uniform grid with cells of side `radius_px` limits each kept
/// detection's search to the 3 × 3 cells around it. Kept detections are more than `radius_px`
/// apart, so at most four lie in one cell and each detection is looked at by a bounded number of
/// kept ones. A radius that is not positive suppresses only exact duplicates (0) or nothing.
pub fn centre_nms(dets: &[Detection], radius_px: f64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..dets.len()).collect();
    order.sort_unstable_by(|&a, &b| rank(centre_key(dets, a), centre_key(dets, b)));
    let grid = PointGrid::new(dets.iter().map(|d| (d.x, d.y)), radius_px);
    let mut suppressed = vec![false; dets.len()];
    let mut kept = Vec::new();
    for i in order {
        if suppressed[i] {
            continue;
        }
        kept.push(i);
        suppressed[i] = true;
        grid.for_each_within(dets[i].x, dets[i].y, radius_px, |j, _| suppressed[j] = true);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// The O(n²) definition both functions must agree with.
    fn brute_centre_nms(dets: &[Detection], r: f64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..dets.len()).collect();
        order.sort_by(|&a, &b| rank(centre_key(dets, a), centre_key(dets, b)));
        let mut kept: Vec<usize> = Vec::new();
        for i in order {
            if kept.iter().all(|&k| dets[k].point().distance_squared(dets[i].point()) > r * r) {
                kept.push(i);
            }
        }
        kept
    }

    fn brute_iou_nms(boxes: &[BoxDetection], thr: f64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..boxes.len()).collect();
        order.sort_by(|&a, &b| rank(box_key(boxes, a), box_key(boxes, b)));
        let mut kept: Vec<usize> = Vec::new();
        for i in order {
            if kept.iter().all(|&k| boxes[k].tile != boxes[i].tile || boxes[k].iou(&boxes[i]) <= thr) {
                kept.push(i);
            }
        }
        kept
    }

    /// Random detections with clusters, quantised scores (many ties) and exact duplicates.
    fn random_dets(rng: &mut StdRng, n: usize) -> Vec<Detection> {
        let mut dets = Vec::with_capacity(n);
        while dets.len() < n {
            let (cx, cy) = (rng.random_range(0.0..3000.0), rng.random_range(0.0..2000.0));
            for _ in 0..rng.random_range(1..6) {
                let score = (rng.random_range(0.0..1.0f64) * 20.0).round() / 20.0;
                dets.push(Detection::new(
                    cx + rng.random_range(-30.0..30.0),
                    cy + rng.random_range(-30.0..30.0),
                    score,
                ));
            }
            if rng.random_bool(0.05) {
                let last = dets[dets.len() - 1];
                dets.push(last);
            }
        }
        dets
    }

    #[test]
    fn centre_nms_equals_brute_force_on_random_inputs() {
        let mut rng = StdRng::seed_from_u64(2021);
        for (n, r) in [(3000, 25.0), (4000, 7.5), (500, 100.0), (50, 0.0)] {
            let dets = random_dets(&mut rng, n);
            assert_eq!(centre_nms(&dets, r), brute_centre_nms(&dets, r), "n = {n}, r = {r}");
        }
    }

    #[test]
    fn centre_nms_boundary_ties_and_degenerate_radius() {
        // Exactly at the radius is suppressed, just beyond is kept.
        let dets = [Detection::new(0.0, 0.0, 0.9), Detection::new(25.0, 0.0, 0.8), Detection::new(0.0, 25.001, 0.7)];
        assert_eq!(centre_nms(&dets, 25.0), vec![0, 2]);
        // Equal scores: the smaller y wins, then the smaller x, then the lower index.
        let tied = [Detection::new(10.0, 5.0, 0.5), Detection::new(3.0, 5.0, 0.5), Detection::new(0.0, 9.0, 0.5)];
        assert_eq!(centre_nms(&tied, 100.0), vec![1]);
        let dup = [Detection::new(1.0, 1.0, 0.5), Detection::new(1.0, 1.0, 0.5)];
        assert_eq!(centre_nms(&dup, 100.0), vec![0]);
        assert_eq!(centre_nms(&dup, 0.0), vec![0]);
        assert_eq!(centre_nms(&dup, -1.0), vec![0, 1]);
        assert_eq!(centre_nms(&dup, f64::NAN), vec![0, 1]);
        assert!(centre_nms(&[], 25.0).is_empty());
    }

    #[test]
    fn iou_nms_equals_brute_force_and_respects_tiles() {
        let mut rng = StdRng::seed_from_u64(5);
        let boxes: Vec<BoxDetection> = random_dets(&mut rng, 3000)
            .into_iter()
            .map(|d| {
                let (w, h) = (rng.random_range(20.0..60.0), rng.random_range(20.0..60.0));
                let tile = (d.x / 460.0) as u32 + 10 * (d.y / 460.0) as u32 + rng.random_range(0..2);
                BoxDetection {
                    x1: d.x - w / 2.0,
                    y1: d.y - h / 2.0,
                    x2: d.x + w / 2.0,
                    y2: d.y + h / 2.0,
                    score: d.score,
                    tile,
                }
            })
            .collect();
        for thr in [0.4, 0.5, 0.0] {
            assert_eq!(iou_nms(&boxes, thr), brute_iou_nms(&boxes, thr), "thr = {thr}");
        }
        let same = BoxDetection { x1: 0.0, y1: 0.0, x2: 50.0, y2: 50.0, score: 0.9, tile: 0 };
        let other_tile = BoxDetection { tile: 1, score: 0.95, ..same };
        let weaker = BoxDetection { score: 0.3, ..same };
        assert_eq!(iou_nms(&[same, other_tile, weaker], 0.4), vec![1, 0]);
    }
}

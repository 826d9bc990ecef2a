//! Anchor–ground-truth matcher (torchvision `Matcher` with `allow_low_quality_matches`), vectorised
//! over the batch: one IoU tensor `[N, M, A]` in, matches `[N, A]` out, no host synchronisation.

use tch::{Kind, Tensor};

/// Match value of anchors whose best IoU is below the low threshold (background).
pub const BELOW_LOW_THRESHOLD: i64 = -1;
/// Match value of anchors between the thresholds (ignored by the losses).
pub const BETWEEN_THRESHOLDS: i64 = -2;

/// IoU-threshold matcher.
#[derive(Debug, Clone, Copy)]
pub struct Matcher {
    /// IoU ≥ this: foreground.
    pub high: f64,
    /// IoU < this: background; in between: ignored.
    pub low: f64,
    /// For every ground-truth box, the anchors with its highest IoU (ties included) are matched to
    /// their own best ground truth even when below `high`.
    pub allow_low_quality_matches: bool,
}

impl Matcher {
    pub fn new(high: f64, low: f64, allow_low_quality_matches: bool) -> Self {
        Matcher { high, low, allow_low_quality_matches }
    }

    /// `iou [N, M, A]` (ground truths × anchors), `valid [N, M]` bool (false: padding) →
    /// `[N, A]` i64: index of the matched ground truth in `0..M`, [`BELOW_LOW_THRESHOLD`] or
    /// [`BETWEEN_THRESHOLDS`]. Images without valid boxes get all [`BELOW_LOW_THRESHOLD`].
    pub fn matches(&self, iou: &Tensor, valid: &Tensor) -> Tensor {
        let (n, m, a) = iou.size3().unwrap_or_default();
        if m == 0 {
            return Tensor::full([n, a], BELOW_LOW_THRESHOLD, (Kind::Int64, iou.device()));
        }
        let valid3 = valid.unsqueeze(-1);
        // padding can never be the best match (IoU ≥ 0 for real boxes)
        let iou = iou.masked_fill(&valid3.logical_not(), -1.0);
        let (vals, all_matches) = iou.max_dim(1, false);
        let below = vals.lt(self.low);
        let between = vals.ge(self.low).logical_and(&vals.lt(self.high));
        let matches = all_matches.masked_fill(&below, BELOW_LOW_THRESHOLD).masked_fill(&between, BETWEEN_THRESHOLDS);
        if !self.allow_low_quality_matches {
            return matches;
        }
        // anchors that are the best (ties included) for some valid ground truth keep their own best match
        let (highest, _) = iou.max_dim(2, true);
        let best_for_some_gt = iou.eq_tensor(&highest).logical_and(&valid3).any_dim(1, false);
        all_matches.where_self(&best_for_some_gt, &matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boxes::box_iou;

    #[test]
    fn thresholds_low_quality_and_empty_images() {
        // anchors: exact match, IoU 0.43 (between), IoU 0 (below), a small one only overlapping box 1
        let anchors = Tensor::from_slice(&[
            0f32, 0., 10., 10., /**/ 4., 0., 14., 10., /**/ 50., 50., 60., 60., /**/ 20., 20., 30., 30.,
        ])
        .reshape([4, 4]);
        // image 0: box 0 = anchor 0, box 1 overlaps anchor 3 a bit (IoU 0.25); pad row; image 1 empty
        let boxes = Tensor::from_slice(&[
            0f32, 0., 10., 10., /**/ 25., 25., 35., 35., /**/ 0., 0., 0., 0., //
            0., 0., 0., 0., /**/ 0., 0., 0., 0., /**/ 0., 0., 0., 0.,
        ])
        .reshape([2, 3, 4]);
        let valid = Tensor::from_slice(&[true, true, false, false, false, false]).reshape([2, 3]);
        let iou = box_iou(&boxes, &anchors);
        let m = Matcher::new(0.5, 0.4, true).matches(&iou, &valid);
        let v: Vec<i64> = Vec::try_from(m.reshape([-1])).unwrap();
        assert_eq!(v, vec![0, BETWEEN_THRESHOLDS, BELOW_LOW_THRESHOLD, 1, -1, -1, -1, -1]);
        let m = Matcher::new(0.5, 0.4, false).matches(&iou, &valid);
        let v: Vec<i64> = Vec::try_from(m.get(0)).unwrap();
        assert_eq!(v, vec![0, BETWEEN_THRESHOLDS, BELOW_LOW_THRESHOLD, BELOW_LOW_THRESHOLD]);
        // no boxes in the whole batch (M = 0)
        let empty = Tensor::zeros([2, 0, 4], (Kind::Float, tch::Device::Cpu));
        let valid = Tensor::zeros([2, 0], (Kind::Bool, tch::Device::Cpu));
        let m = Matcher::new(0.5, 0.4, true).matches(&box_iou(&empty, &anchors), &valid);
        assert_eq!(m.size(), vec![2, 4]);
        assert_eq!(i64::try_from(m.max()).unwrap(), -1);
    }
}

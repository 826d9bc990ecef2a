//! Inference post-processing (torchvision `RetinaNet.postprocess_detections`), batched on the device:
//! per level keep scores above the threshold and the best `topk_candidates`, decode and clip the boxes,
//! then class-wise NMS and the best `detections_per_img` per image.
//!
//! NMS is exact greedy NMS (identical to `torchvision.ops.batched_nms`) computed on the device as the
//! fixed point of `keep[j] = valid[j] ∧ ¬∃ i < j: keep[i] ∧ IoU(i, j) > t ∧ label[i] = label[j]` over
//! score-sorted candidates. Position `j` is final after `j + 1` iterations; in practice the iteration
//! stops after a few, each one a batched matrix–vector product. `tch` 0.24 has no NMS
//! (`torchvision::nms` is not part of libtorch).

use tch::{Kind, Tensor};

use crate::box_coder::BoxCoder;
use crate::boxes::{box_iou, clip_boxes};
use crate::config::RetinaNetConfig;
use crate::layers::cast;

/// Post-processing thresholds.
#[derive(Debug, Clone, Copy)]
pub struct PostProcessConfig {
    /// Keep scores strictly above this.
    pub score_thresh: f64,
    /// Best candidates per level before NMS.
    pub topk_candidates: i64,
    /// Suppress when IoU > this (same class).
    pub nms_thresh: f64,
    /// Detections kept per image.
    pub detections_per_img: i64,
}

impl PostProcessConfig {
    pub fn from_config(cfg: &RetinaNetConfig) -> Self {
        PostProcessConfig {
            score_thresh: cfg.trunk.score_thresh,
            topk_candidates: cfg.topk_candidates,
            nms_thresh: cfg.nms_thresh,
            detections_per_img: cfg.trunk.detections_per_img,
        }
    }
}

/// Detections of one image, sorted by descending score, on the model's device.
#[derive(Debug)]
pub struct Detections {
    /// `[K, 4]` f32 boxes (x1, y1, x2, y2) clipped to the image.
    pub boxes: Tensor,
    /// `[K]` f32 sigmoid scores.
    pub scores: Tensor,
    /// `[K]` i64 class labels (0-based).
    pub labels: Tensor,
}

/// Most elements of one `[chunk, K, K]` suppression matrix.
const NMS_CHUNK_ELEMENTS: i64 = 1 << 26;

/// Detections per image.
///
/// * `cls_logits [N, A, C]`, `bbox_regression [N, A, 4]`, `anchors [A, 4]`
/// * `num_anchors_per_level`: split of A into levels (from [`crate::head::HeadOutputs`])
/// * `image_sizes`: `(h, w)` per image for clipping
pub fn postprocess(
    cls_logits: &Tensor,
    bbox_regression: &Tensor,
    anchors: &Tensor,
    num_anchors_per_level: &[i64],
    image_sizes: &[(i64, i64)],
    coder: &BoxCoder,
    cfg: &PostProcessConfig,
) -> Vec<Detections> {
    let _guard = tch::no_grad_guard();
    let logits = cast(cls_logits, Kind::Float);
    let regression = cast(bbox_regression, Kind::Float);
    let (n, _, c) = logits.size3().unwrap_or_default();
    let device = logits.device();
    let heights: Vec<f32> = image_sizes.iter().map(|s| s.0 as f32).collect();
    let widths: Vec<f32> = image_sizes.iter().map(|s| s.1 as f32).collect();
    let h = Tensor::from_slice(&heights).to_device(device).view([n, 1]);
    let w = Tensor::from_slice(&widths).to_device(device).view([n, 1]);

    let (mut all_scores, mut all_boxes, mut all_labels) = (vec![], vec![], vec![]);
    let mut start = 0;
    for &len in num_anchors_per_level {
        let scores = logits.narrow(1, start, len).sigmoid().reshape([n, -1]); // [N, A_l·C]
        let scores = scores.masked_fill(&scores.le(cfg.score_thresh), -1.0);
        let k = cfg.topk_candidates.min(len * c);
        let (top, idx) = scores.topk(k, 1, true, true); // [N, k]
        let anchor_idx = idx.floor_divide_scalar(c);
        let labels = idx.remainder(c);
        let reg = regression.narrow(1, start, len).gather(1, &anchor_idx.unsqueeze(-1).expand([n, k, 4], false), false);
        let anc = anchors.narrow(0, start, len).index_select(0, &anchor_idx.reshape([-1])).view([n, k, 4]);
        all_boxes.push(clip_boxes(&coder.decode(&reg, &anc), &h, &w));
        all_scores.push(top);
        all_labels.push(labels);
        start += len;
    }
    let scores = Tensor::cat(&all_scores, 1);
    let boxes = Tensor::cat(&all_boxes, 1);
    let labels = Tensor::cat(&all_labels, 1);

    // stable sort keeps torchvision's level order among equal scores; rejected ones (−1) go last
    let (scores, order) = scores.sort_stable(true, 1, true);
    let valid = scores.gt(cfg.score_thresh);
    let k_eff = i64::try_from(valid.sum_dim_intlist(1, false, Kind::Int64).max()).unwrap_or(0);
    let scores = scores.narrow(1, 0, k_eff);
    let order = order.narrow(1, 0, k_eff);
    let valid = valid.narrow(1, 0, k_eff);
    let boxes = boxes.gather(1, &order.unsqueeze(-1).expand([n, k_eff, 4], false), false);
    let labels = labels.gather(1, &order, false);

    let keep = batched_nms_sorted(&boxes, &labels, &valid, cfg.nms_thresh);
    let rank = keep.cumsum(1, Kind::Int64);
    let keep = keep.logical_and(&rank.le(cfg.detections_per_img));
    let counts: Vec<i64> = Vec::try_from(keep.sum_dim_intlist(1, false, Kind::Int64).to_device(tch::Device::Cpu))
        .unwrap_or_else(|_| vec![0; n as usize]);
    let flat = keep.reshape([-1]).nonzero().squeeze_dim(1); // indices into N·K, image-major
    let pick = |t: &Tensor, last: &[i64]| {
        let shape: Vec<i64> = [-1].iter().chain(last).copied().collect();
        t.reshape(shape.as_slice()).index_select(0, &flat).split_with_sizes(counts.as_slice(), 0)
    };
    let b = pick(&boxes, &[4]);
    let s = pick(&scores, &[]);
    let l = pick(&labels, &[]);
    b.into_iter().zip(s).zip(l).map(|((boxes, scores), labels)| Detections { boxes, scores, labels }).collect()
}

/// Exact greedy class-wise NMS for candidates already sorted by descending score per image.
///
/// `boxes [N, K, 4]`, `labels [N, K]`, `valid [N, K]` bool → keep `[N, K]` bool. Candidate `j` is
/// suppressed by a kept, higher-ranked `i` of the same label with IoU(i, j) > `iou_thresh`.
pub fn batched_nms_sorted(boxes: &Tensor, labels: &Tensor, valid: &Tensor, iou_thresh: f64) -> Tensor {
    let _guard = tch::no_grad_guard();
    let (n, k) = valid.size2().unwrap_or_default();
    if n == 0 || k == 0 {
        return valid.shallow_clone();
    }
    let device = boxes.device();
    let upper = Tensor::ones([k, k], (Kind::Bool, device)).triu(1); // i < j
    let chunk = (NMS_CHUNK_ELEMENTS / (k * k)).clamp(1, n);
    let mut out = Vec::new();
    let mut i0 = 0;
    while i0 < n {
        let len = chunk.min(n - i0);
        let (b, l, v) = (boxes.narrow(0, i0, len), labels.narrow(0, i0, len), valid.narrow(0, i0, len));
        let same = l.unsqueeze(2).eq_tensor(&l.unsqueeze(1));
        let both = v.unsqueeze(2).logical_and(&v.unsqueeze(1));
        let s = box_iou(&b, &b).gt(iou_thresh).logical_and(&same).logical_and(&both).logical_and(&upper);
        let s = s.to_kind(Kind::Float); // [len, K, K]
        let mut keep = v.shallow_clone();
        for _ in 0..=k {
            let suppressed = keep.to_kind(Kind::Float).unsqueeze(1).bmm(&s).squeeze_dim(1).gt(0.0);
            let next = v.logical_and(&suppressed.logical_not());
            let done = next.equal(&keep);
            keep = next;
            if done {
                break;
            }
        }
        out.push(keep);
        i0 += len;
    }
    Tensor::cat(&out, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Plain greedy NMS on the host.
    fn greedy(boxes: &[[f32; 4]], labels: &[i64], thr: f32) -> Vec<bool> {
        let area = |b: &[f32; 4]| (b[2] - b[0]) * (b[3] - b[1]);
        let mut keep = vec![false; boxes.len()];
        let mut suppressed = vec![false; boxes.len()];
        for i in 0..boxes.len() {
            if suppressed[i] {
                continue;
            }
            keep[i] = true;
            for j in i + 1..boxes.len() {
                let (a, b) = (&boxes[i], &boxes[j]);
                let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
                let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
                let inter = w * h;
                if labels[i] == labels[j] && inter / (area(a) + area(b) - inter) > thr {
                    suppressed[j] = true;
                }
            }
        }
        keep
    }

    #[test]
    fn nms_equals_greedy() {
        tch::manual_seed(3);
        let (n, k) = (3, 400);
        let xy = Tensor::rand([n, k, 2], (Kind::Float, Device::Cpu)) * 100.0;
        let wh = Tensor::rand([n, k, 2], (Kind::Float, Device::Cpu)) * 40.0 + 5.0;
        let boxes = Tensor::cat(&[&xy, &(&xy + &wh)], 2);
        let labels = Tensor::randint(2, [n, k], (Kind::Int64, Device::Cpu));
        let valid = Tensor::ones([n, k], (Kind::Bool, Device::Cpu));
        let keep = batched_nms_sorted(&boxes, &labels, &valid, 0.5);
        for i in 0..n {
            let b: Vec<f32> = Vec::try_from(boxes.get(i).reshape([-1])).unwrap();
            let b: Vec<[f32; 4]> = b.chunks(4).map(|c| [c[0], c[1], c[2], c[3]]).collect();
            let l: Vec<i64> = Vec::try_from(labels.get(i)).unwrap();
            let k: Vec<bool> = Vec::try_from(keep.get(i)).unwrap();
            assert_eq!(k, greedy(&b, &l, 0.5), "image {i}");
            assert!(k.iter().filter(|&&x| x).count() < 400);
        }
    }

    #[test]
    fn nothing_above_threshold() {
        let logits = Tensor::full([2, 18, 1], -10.0, (Kind::Float, Device::Cpu));
        let reg = Tensor::zeros([2, 18, 4], (Kind::Float, Device::Cpu));
        let anchors = Tensor::ones([18, 4], (Kind::Float, Device::Cpu));
        let cfg =
            PostProcessConfig { score_thresh: 0.05, topk_candidates: 1000, nms_thresh: 0.5, detections_per_img: 300 };
        let d = postprocess(&logits, &reg, &anchors, &[9, 9], &[(8, 8), (8, 8)], &BoxCoder::default(), &cfg);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].boxes.size(), vec![0, 4]);
        assert_eq!(d[1].scores.size(), vec![0]);
    }
}

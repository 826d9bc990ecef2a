//! CenterNet ("objects as points") targets, losses and decoding, batched on the device.
//!
//! * [`render_targets`]: padded [`Targets`] → per-class Gaussian heatmaps, the centre cells, and
//!   the size/offset regression targets, for the whole batch in one set of tensor ops (no per-image
//!   loop, no host read). A box's centre `(cx, cy) / stride` falls in cell `(⌊cx⌋, ⌊cy⌋)`; its
//!   Gaussian is centred on that cell, so the heatmap is exactly 1 there, and the sub-cell rest
//!   `(cx − ⌊cx⌋, cy − ⌊cy⌋)` is the offset target (CenterNet's layout).
//! * [`centernet_losses`]: the penalty-reduced focal loss over `[N, C, H, W]` and the L1 losses of
//!   size and offset gathered at the centre cells, each divided by the number of objects (≥ 1).
//! * [`decode`]: sigmoid, 3×3 max-pool peaks, top-K over classes and cells, boxes in input pixels.
//!
//! Shapes: N images, M padded boxes per image, C classes, H × W output cells (stride [`STRIDE`]).

use tch::{Device, Kind, Tensor};

use crate::config::CenterNetConfig;
use crate::layers::cast;
use crate::loss::{Losses, Targets};
use crate::postprocess::Detections;

/// Output stride of the CenterNet heads (FPN P3).
pub const STRIDE: i64 = 8;

/// Smallest Gaussian σ in cells (CenterNet's radius-0 Gaussian: (2·0 + 1) / 6).
pub const MIN_SIGMA: f64 = 1.0 / 6.0;

/// Channels of the regression output: box width and height in cells, centre offset x and y.
pub const REGRESSION_CHANNELS: i64 = 4;

/// Target and loss hyper-parameters (from the `centernet_*` config fields).
#[derive(Debug, Clone, Copy)]
pub struct CenterNetLossConfig {
    /// Gaussian σ relative to the box side: σ = `sigma` · side / 6 (cells), at least [`MIN_SIGMA`].
    pub sigma: f64,
    /// Focal exponent α.
    pub alpha: f64,
    /// Negative penalty reduction exponent β.
    pub beta: f64,
    /// Weight of the size L1 loss.
    pub size_weight: f64,
    /// Weight of the offset L1 loss.
    pub offset_weight: f64,
}

impl CenterNetLossConfig {
    pub fn from_config(cfg: &CenterNetConfig) -> Self {
        CenterNetLossConfig {
            sigma: cfg.centernet_sigma,
            alpha: cfg.centernet_focal_alpha,
            beta: cfg.centernet_focal_beta,
            size_weight: cfg.centernet_size_weight,
            offset_weight: cfg.centernet_offset_weight,
        }
    }
}

/// Dense training targets of a batch (all on the targets' device, no gradient).
#[derive(Debug)]
pub struct HeatmapTargets {
    /// `[N, C, H, W]` f32: per class the maximum over its boxes of their Gaussians; 1 at centres.
    pub heatmap: Tensor,
    /// `[N, C, H, W]` bool: the centre cells (the focal loss's positives).
    pub positive: Tensor,
    /// `[N, M]` i64: the centre cell of each box as `iy · W + ix` (0 for padding rows).
    pub index: Tensor,
    /// `[N, M, 4]` f32: width and height in cells, then the centre offset `(dx, dy)` in `[0, 1)`.
    pub regression: Tensor,
    /// `[N, M]` bool: real boxes (false for padding).
    pub valid: Tensor,
    /// `[]` f32: number of real boxes in the batch, at least 1.
    pub num_objects: Tensor,
}

/// Renders the CenterNet targets of a padded batch for an `h × w`-cell output with `stride`.
///
/// * `targets`: boxes `[N, M, 4]` (x1, y1, x2, y2) in input pixels, labels `[N, M]` (labels outside
///   `0..num_classes` are clamped into it), valid `[N, M]`; M may be 0.
/// * σ per box and axis: `max(sigma · side / (6 · stride), MIN_SIGMA)` cells; the Gaussian is
///   `exp(−(x − ix)² / 2σx² − (y − iy)² / 2σy²)` around the centre cell `(ix, iy)`.
pub fn render_targets(targets: &Targets, num_classes: i64, h: i64, w: i64, stride: f64, sigma: f64) -> HeatmapTargets {
    let _guard = tch::no_grad_guard();
    let boxes = cast(&targets.boxes, Kind::Float);
    let device = boxes.device();
    let size = boxes.size();
    let (n, m) = (size[0], size.get(1).copied().unwrap_or(0));
    let valid = targets.valid.to_kind(Kind::Bool);
    let opts = (Kind::Float, device);
    if m == 0 {
        return HeatmapTargets {
            heatmap: Tensor::zeros([n, num_classes, h, w], opts),
            positive: Tensor::zeros([n, num_classes, h, w], (Kind::Bool, device)),
            index: Tensor::zeros([n, 0], (Kind::Int64, device)),
            regression: Tensor::zeros([n, 0, REGRESSION_CHANNELS], opts),
            valid,
            num_objects: Tensor::ones([], opts),
        };
    }
    let coord = |i: i64| boxes.select(2, i); // [N, M]
    let (x1, y1, x2, y2) = (coord(0), coord(1), coord(2), coord(3));
    let cx = (&x1 + &x2) * (0.5 / stride);
    let cy = (&y1 + &y2) * (0.5 / stride);
    let ix = cx.floor().clamp(0.0, (w - 1) as f64);
    let iy = cy.floor().clamp(0.0, (h - 1) as f64);
    let bw = (&x2 - &x1) / stride;
    let bh = (&y2 - &y1) / stride;
    let sx = (&bw * (sigma / 6.0)).clamp_min(MIN_SIGMA);
    let sy = (&bh * (sigma / 6.0)).clamp_min(MIN_SIGMA);

    // Gaussians [N, M, H, W] (separable: [N, M, 1, W] · [N, M, H, 1])
    let xs = Tensor::arange(w, opts).view([1, 1, 1, w]);
    let ys = Tensor::arange(h, opts).view([1, 1, h, 1]);
    let gx = ((&xs - ix.view([n, m, 1, 1])).square() / (sx.square() * 2.0).view([n, m, 1, 1])).neg().exp();
    let gy = ((&ys - iy.view([n, m, 1, 1])).square() / (sy.square() * 2.0).view([n, m, 1, 1])).neg().exp();
    let gauss = gx * gy;
    let labels = targets.labels.clamp(0, num_classes - 1);
    let per_class: Vec<Tensor> = (0..num_classes)
        .map(|c| {
            let sel = valid.logical_and(&labels.eq(c)).view([n, m, 1, 1]);
            gauss.where_scalarother(&sel, 0.0).amax(1, false) // [N, H, W]
        })
        .collect();
    let heatmap = Tensor::stack(&per_class, 1);

    // centre cells: one scatter of the valid flags into [N, C·H·W]
    let index = (&iy * w as f64 + &ix).to_kind(Kind::Int64); // [N, M]
    let class_index = &labels * (h * w) + &index;
    let positive = Tensor::zeros([n, num_classes * h * w], opts)
        .scatter_add(1, &class_index, &valid.to_kind(Kind::Float))
        .gt(0.0)
        .view([n, num_classes, h, w]);

    let regression = Tensor::stack(&[bw, bh, &cx - &ix, &cy - &iy], 2); // [N, M, 4]
    let num_objects = valid.to_kind(Kind::Float).sum(Kind::Float).clamp_min(1.0);
    HeatmapTargets { heatmap, positive, index, regression, valid, num_objects }
}

/// Penalty-reduced pixel-wise focal loss (CenterNet, eq. 1), summed over `[N, C, H, W]` (divide by
/// the number of objects): at centres `−(1 − p)^α log p`, elsewhere `−(1 − Y)^β p^α log(1 − p)`.
/// `logits` f32 `[N, C, H, W]`; `log p` and `log(1 − p)` are computed as log-sigmoids (stable
/// without CenterNet's clamping of p). Returns a 0-dim f32 tensor.
pub fn heatmap_focal_loss(logits: &Tensor, targets: &HeatmapTargets, alpha: f64, beta: f64) -> Tensor {
    let p = logits.sigmoid();
    let one_minus_p: Tensor = 1.0 - &p;
    let one_minus_y: Tensor = 1.0 - &targets.heatmap;
    let pos = logits.log_sigmoid() * one_minus_p.pow_tensor_scalar(alpha);
    let neg = logits.neg().log_sigmoid() * p.pow_tensor_scalar(alpha) * one_minus_y.pow_tensor_scalar(beta);
    pos.where_self(&targets.positive, &neg).sum(Kind::Float).neg()
}

/// The regression output at each box's centre cell: `regression [N, 4, H, W]` → `[N, M, 4]`.
pub fn gather_at_centres(regression: &Tensor, index: &Tensor) -> Tensor {
    let (n, k, h, w) = regression.size4().unwrap_or_default();
    let m = index.size().get(1).copied().unwrap_or(0);
    let idx = index.unsqueeze(1).expand([n, k, m], false);
    regression.reshape([n, k, h * w]).gather(2, &idx, false).permute([0, 2, 1])
}

/// Summed L1 losses of size and offset over the real boxes: `([] size, [] offset)`.
/// `regression [N, 4, H, W]` f32.
pub fn regression_l1(regression: &Tensor, targets: &HeatmapTargets) -> (Tensor, Tensor) {
    let pred = gather_at_centres(regression, &targets.index); // [N, M, 4]
    let l1 = (pred - &targets.regression).abs().where_scalarother(&targets.valid.unsqueeze(-1), 0.0);
    (l1.narrow(2, 0, 2).sum(Kind::Float), l1.narrow(2, 2, 2).sum(Kind::Float))
}

/// CenterNet losses of a batch, on the device without host synchronisation.
///
/// * `heatmap_logits [N, C, H, W]`, `regression [N, 4, H, W]` (any float dtype; computed in f32)
/// * `targets`: padded boxes `[N, M, 4]` in input pixels, labels `[N, M]`, valid `[N, M]`
///
/// `classification` = focal loss / #objects; `box_regression` = (size_weight · size L1 +
/// offset_weight · offset L1) / #objects; #objects over the batch, at least 1.
pub fn centernet_losses(
    heatmap_logits: &Tensor,
    regression: &Tensor,
    targets: &Targets,
    cfg: &CenterNetLossConfig,
) -> Losses {
    let logits = cast(heatmap_logits, Kind::Float);
    let regression = cast(regression, Kind::Float);
    let (_, c, h, w) = logits.size4().unwrap_or_default();
    let t = render_targets(targets, c, h, w, STRIDE as f64, cfg.sigma);
    let classification = heatmap_focal_loss(&logits, &t, cfg.alpha, cfg.beta) / &t.num_objects;
    let (size, offset) = regression_l1(&regression, &t);
    let box_regression = (size * cfg.size_weight + offset * cfg.offset_weight) / &t.num_objects;
    let total = &classification + &box_regression;
    Losses { classification, box_regression, total }
}

/// Decoding thresholds.
#[derive(Debug, Clone, Copy)]
pub struct DecodeConfig {
    /// Keep scores strictly above this.
    pub score_thresh: f64,
    /// Peaks kept per image (top-K over classes and cells).
    pub top_k: i64,
}

impl DecodeConfig {
    pub fn from_config(cfg: &CenterNetConfig) -> Self {
        DecodeConfig { score_thresh: cfg.trunk.score_thresh, top_k: cfg.trunk.detections_per_img }
    }
}

/// Detections per image from the head outputs, sorted by descending score.
///
/// * `heatmap_logits [N, C, H, W]`, `regression [N, 4, H, W]` (any float dtype)
/// * `image_size`: `(h, w)` of the input in pixels, for clipping
///
/// A peak is a cell whose sigmoid score equals the 3×3 maximum around it; the best `top_k` peaks
/// per image over all classes are decoded as centre `((ix + dx) · stride, (iy + dy) · stride)` and
/// size `(w, h) · stride` (each at least 1 px), centre and box clipped to the image (so no box is
/// empty), and kept when their score is above `score_thresh`. One host read (the number of
/// detections per image).
pub fn decode(
    heatmap_logits: &Tensor,
    regression: &Tensor,
    image_size: (i64, i64),
    stride: f64,
    cfg: &DecodeConfig,
) -> Vec<Detections> {
    let _guard = tch::no_grad_guard();
    let heat = cast(heatmap_logits, Kind::Float).sigmoid();
    let regression = cast(regression, Kind::Float);
    let (n, c, h, w) = heat.size4().unwrap_or_default();
    let hmax = heat.max_pool2d([3, 3], [1, 1], [1, 1], [1, 1], false);
    let peaks = heat.where_scalarother(&heat.eq_tensor(&hmax), 0.0).reshape([n, c * h * w]);
    let k = cfg.top_k.min(c * h * w);
    let (scores, idx) = peaks.topk(k, 1, true, true); // [N, K], descending
    let labels = idx.floor_divide_scalar(h * w);
    let cell = idx.remainder(h * w);
    let xs = cell.remainder(w).to_kind(Kind::Float);
    let ys = cell.floor_divide_scalar(w).to_kind(Kind::Float);
    let r = gather_at_centres(&regression, &cell); // [N, K, 4]
    let bw = (r.select(2, 0) * stride).clamp_min(1.0);
    let bh = (r.select(2, 1) * stride).clamp_min(1.0);
    let (img_h, img_w) = (image_size.0 as f64, image_size.1 as f64);
    let cx = ((xs + r.select(2, 2)) * stride).clamp(0.0, img_w);
    let cy = ((ys + r.select(2, 3)) * stride).clamp(0.0, img_h);
    let boxes = Tensor::stack(
        &[
            (&cx - &bw * 0.5).clamp(0.0, img_w),
            (&cy - &bh * 0.5).clamp(0.0, img_h),
            (&cx + &bw * 0.5).clamp(0.0, img_w),
            (&cy + &bh * 0.5).clamp(0.0, img_h),
        ],
        2,
    ); // [N, K, 4]
    // scores are sorted, so the kept ones are a prefix of each row
    let counts: Vec<i64> =
        Vec::try_from(scores.gt(cfg.score_thresh).sum_dim_intlist(1, false, Kind::Int64).to_device(Device::Cpu))
            .unwrap_or_else(|_| vec![0; n as usize]);
    counts
        .iter()
        .enumerate()
        .map(|(i, &keep)| {
            let i = i as i64;
            Detections {
                boxes: boxes.get(i).narrow(0, 0, keep),
                scores: scores.get(i).narrow(0, 0, keep),
                labels: labels.get(i).narrow(0, 0, keep),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(boxes: &[Vec<[f32; 4]>], labels: &[Vec<i64>], classes: i64) -> Targets {
        Targets::from_lists(boxes, labels, classes, Device::Cpu).unwrap()
    }

    fn at(t: &Tensor, idx: &[i64]) -> f64 {
        t.double_value(idx)
    }

    #[test]
    fn gaussian_peak_radius_and_regression_targets() {
        // centre (125, 85) px → (15.625, 10.625) cells → cell (15, 10), offset (0.625, 0.625)
        let t = targets(&[vec![[100., 60., 150., 110.]]], &[vec![0]], 1);
        let r = render_targets(&t, 1, 32, 32, 8.0, 0.54);
        assert_eq!(r.heatmap.size(), vec![1, 1, 32, 32]);
        assert_eq!(at(&r.heatmap, &[0, 0, 10, 15]), 1.0);
        assert_eq!(f64::try_from(r.heatmap.max()).unwrap(), 1.0);
        let pos: Vec<i64> = Vec::try_from(r.positive.reshape([-1]).nonzero().reshape([-1])).unwrap();
        assert_eq!(pos, vec![10 * 32 + 15]);
        // σ = 0.54 · 6.25 / 6 = 0.5625 cells on both axes
        let s = 0.54 * 50.0 / 8.0 / 6.0;
        let g = |d2: f64| (-d2 / (2.0 * s * s)).exp();
        assert!((at(&r.heatmap, &[0, 0, 10, 16]) - g(1.0)).abs() < 1e-6);
        assert!((at(&r.heatmap, &[0, 0, 9, 14]) - g(2.0)).abs() < 1e-6);
        assert!((at(&r.heatmap, &[0, 0, 12, 15]) - g(4.0)).abs() < 1e-6);
        assert!(at(&r.heatmap, &[0, 0, 10, 19]) < 1e-10, "falls off beyond the radius");
        assert_eq!(Vec::<i64>::try_from(r.index.reshape([-1])).unwrap(), vec![10 * 32 + 15]);
        let reg: Vec<f32> = Vec::try_from(r.regression.reshape([-1])).unwrap();
        assert_eq!(reg, vec![6.25, 6.25, 0.625, 0.625]);
        assert_eq!(f64::try_from(&r.num_objects).unwrap(), 1.0);
    }

    #[test]
    fn rendering_is_per_class_with_max_over_boxes_and_padding_ignored() {
        // image 0: two overlapping class-0 boxes and a class-1 box; image 1: no boxes (padding rows)
        let t = targets(
            &[vec![[0., 0., 16., 16.], [8., 0., 24., 16.], [40., 40., 56., 56.]], vec![]],
            &[vec![0, 0, 1], vec![]],
            2,
        );
        let r = render_targets(&t, 2, 8, 8, 8.0, 3.0);
        let hm = &r.heatmap;
        assert_eq!(hm.size(), vec![2, 2, 8, 8]);
        // class 0 peaks at (1, 1) and (2, 1); between them both Gaussians meet, max not sum
        assert_eq!(at(hm, &[0, 0, 1, 1]), 1.0);
        assert_eq!(at(hm, &[0, 0, 1, 2]), 1.0);
        assert!(f64::try_from(hm.max()).unwrap() <= 1.0);
        assert_eq!(at(hm, &[0, 1, 6, 6]), 1.0);
        assert!(at(hm, &[0, 1, 1, 1]) < 1e-3, "class 1 does not see class-0 boxes");
        assert_eq!(i64::try_from(r.positive.get(0).sum(Kind::Int64)).unwrap(), 3);
        assert_eq!(f64::try_from(hm.get(1).abs().sum(Kind::Float)).unwrap(), 0.0);
        assert_eq!(i64::try_from(r.positive.get(1).sum(Kind::Int64)).unwrap(), 0);
        assert_eq!(f64::try_from(&r.num_objects).unwrap(), 3.0);
    }

    #[test]
    fn empty_batch_gives_zero_targets_and_finite_losses() {
        let t = targets(&[vec![], vec![]], &[vec![], vec![]], 1);
        let r = render_targets(&t, 1, 4, 6, 8.0, 0.54);
        assert_eq!(r.heatmap.size(), vec![2, 1, 4, 6]);
        assert_eq!(f64::try_from(r.heatmap.abs().sum(Kind::Float)).unwrap(), 0.0);
        let logits = Tensor::full([2, 1, 4, 6], -2.0, (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let reg = Tensor::zeros([2, 4, 4, 6], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let cfg = CenterNetLossConfig { sigma: 0.54, alpha: 2.0, beta: 4.0, size_weight: 0.1, offset_weight: 1.0 };
        let l = centernet_losses(&logits, &reg, &t, &cfg);
        let total = f64::try_from(&l.total).unwrap();
        assert!(total.is_finite() && total > 0.0, "negatives still count: {total}");
        assert_eq!(f64::try_from(&l.box_regression).unwrap(), 0.0);
        l.total.backward();
        assert!(logits.grad().isfinite().all().int64_value(&[]) == 1);
    }

    #[test]
    fn focal_loss_matches_the_formula() {
        let t = targets(&[vec![[0., 0., 16., 16.]]], &[vec![0]], 1);
        let r = render_targets(&t, 1, 2, 2, 8.0, 0.54);
        let x = [0.3f32, -1.0, 2.0, -0.5];
        let logits = Tensor::from_slice(&x).view([1, 1, 2, 2]);
        let got = f64::try_from(heatmap_focal_loss(&logits, &r, 2.0, 4.0)).unwrap();
        let y: Vec<f32> = Vec::try_from(r.heatmap.reshape([-1])).unwrap();
        let mut want = 0.0;
        for (i, (&xi, &yi)) in x.iter().zip(&y).enumerate() {
            let p = 1.0 / (1.0 + (-(xi as f64)).exp());
            want += if i == 3 {
                // centre (8, 8) px → cell (1, 1)
                -(1.0 - p).powi(2) * p.ln()
            } else {
                -(1.0 - yi as f64).powi(4) * p.powi(2) * (1.0 - p).ln()
            };
        }
        assert_eq!(y[3], 1.0);
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn decode_round_trip_of_perfect_outputs() {
        let boxes =
            vec![vec![[100.5f32, 60.25, 150.5, 110.25], [10., 20., 40., 46.]], vec![], vec![[200., 180., 250., 230.]]];
        let labels = vec![vec![0, 1], vec![], vec![1]];
        let t = targets(&boxes, &labels, 2);
        let (h, w) = (32, 32);
        let r = render_targets(&t, 2, h, w, 8.0, 0.54);
        // perfect outputs: logits of the heatmap, the regression targets written at the centres
        let logits = r.heatmap.clamp(1e-6, 1.0 - 1e-6).logit(None);
        let n = 3;
        let mut reg = Tensor::zeros([n, 4, h * w], (Kind::Float, Device::Cpu));
        let m = r.index.size()[1];
        let idx = r.index.unsqueeze(1).expand([n, 4, m], false);
        let src = r.regression.permute([0, 2, 1]).where_scalarother(&r.valid.unsqueeze(1), 0.0);
        // padding rows write zeros into cell 0, where no box has its centre
        reg = reg.scatter(2, &idx, &src);
        let reg = reg.view([n, 4, h, w]);
        let dets = decode(&logits, &reg, (256, 256), 8.0, &DecodeConfig { score_thresh: 0.5, top_k: 100 });
        assert_eq!(dets.len(), 3);
        for (i, d) in dets.iter().enumerate() {
            assert_eq!(d.boxes.size(), vec![boxes[i].len() as i64, 4], "image {i}");
            let got: Vec<f32> = Vec::try_from(d.boxes.reshape([-1])).unwrap();
            let got_labels: Vec<i64> = Vec::try_from(&d.labels).unwrap();
            let scores: Vec<f32> = Vec::try_from(&d.scores).unwrap();
            assert!(scores.windows(2).all(|s| s[0] >= s[1]));
            assert!(scores.iter().all(|&s| s > 0.99));
            // match each ground-truth box to a detection (order among equal scores is unspecified)
            for (b, l) in boxes[i].iter().zip(&labels[i]) {
                let hit = got
                    .chunks(4)
                    .zip(&got_labels)
                    .any(|(g, gl)| gl == l && g.iter().zip(b).all(|(a, e)| (a - e).abs() < 1e-3));
                assert!(hit, "image {i}: {b:?} not in {got:?}");
            }
        }
    }

    #[test]
    fn decode_keeps_local_maxima_only_and_respects_the_threshold() {
        // a plateau-free blob: only its peak survives the 3×3 max-pool; a weak peak is dropped
        let heat = Tensor::zeros([1, 1, 8, 8], (Kind::Float, Device::Cpu));
        let mut row = heat.get(0).get(0).get(3).narrow(0, 2, 3);
        row.copy_(&Tensor::from_slice(&[0.6f32, 0.9, 0.7]));
        let _ = heat.get(0).get(0).get(6).get(6).fill_(0.3);
        let heat = heat.clamp(1e-6, 1.0 - 1e-6);
        let logits = heat.logit(None);
        let reg = Tensor::ones([1, 4, 8, 8], (Kind::Float, Device::Cpu)) * 0.5;
        let d = decode(&logits, &reg, (64, 64), 8.0, &DecodeConfig { score_thresh: 0.4, top_k: 10 });
        let s: Vec<f32> = Vec::try_from(&d[0].scores).unwrap();
        assert_eq!(s.len(), 1);
        assert!((s[0] - 0.9).abs() < 1e-5);
        let b: Vec<f32> = Vec::try_from(d[0].boxes.reshape([-1])).unwrap();
        // cell (3, 3) + 0.5 → centre 28 px; size 0.5 cell = 4 px
        assert_eq!(b, vec![26.0, 26.0, 30.0, 30.0]);
    }
}

//! RetinaNet losses (torchvision `RetinaNetHead.compute_loss`, `ops/focal_loss.py`, `_box_loss`),
//! batched: the whole batch goes through one set of tensor ops on the device with padded targets;
//! there is no per-image loop and no host synchronisation.

use tch::{Device, Kind, Reduction, Tensor};

use crate::Error;
use crate::box_coder::BoxCoder;
use crate::boxes::giou_loss;
use crate::config::{BoxLossKind, RetinaNetConfig};
use crate::layers::cast;
use crate::matcher::BETWEEN_THRESHOLDS;
use crate::transform::upload;

/// Padded ground truth of a batch.
#[derive(Debug)]
pub struct Targets {
    /// `[N, M, 4]` f32 boxes (x1, y1, x2, y2) in input pixels; padding rows are ignored.
    pub boxes: Tensor,
    /// `[N, M]` i64 class labels in `0..num_classes`.
    pub labels: Tensor,
    /// `[N, M]` bool: true for real boxes, false for padding.
    pub valid: Tensor,
}

impl Targets {
    /// Wraps already padded tensors (shapes as documented on the fields; not checked).
    pub fn new(boxes: Tensor, labels: Tensor, valid: Tensor) -> Targets {
        Targets { boxes, labels, valid }
    }

    /// Pads per-image box lists into batch tensors on `device` (uploaded without stalling the CUDA
    /// stream, see [`upload`]), checking on the host that labels are in
    /// `0..num_classes` and boxes are finite with `x1 < x2`, `y1 < y2` (as torchvision asserts).
    /// Images may have no boxes; M is the largest box count in the batch (0 if all are empty).
    pub fn from_lists(
        boxes: &[Vec<[f32; 4]>],
        labels: &[Vec<i64>],
        num_classes: i64,
        device: Device,
    ) -> Result<Targets, Error> {
        if boxes.len() != labels.len() {
            return Err(Error::Targets(format!("{} box lists but {} label lists", boxes.len(), labels.len())));
        }
        let n = boxes.len();
        let m = boxes.iter().map(Vec::len).max().unwrap_or(0);
        let mut b = vec![0f32; n * m * 4];
        let mut l = vec![0i64; n * m];
        let mut v = vec![false; n * m];
        for (i, (bi, li)) in boxes.iter().zip(labels).enumerate() {
            if bi.len() != li.len() {
                return Err(Error::Targets(format!("image {i}: {} boxes but {} labels", bi.len(), li.len())));
            }
            for (j, (bx, &lb)) in bi.iter().zip(li).enumerate() {
                if !(0..num_classes).contains(&lb) {
                    return Err(Error::Targets(format!("image {i} box {j}: label {lb} not in 0..{num_classes}")));
                }
                if !bx.iter().all(|c| c.is_finite()) || bx[2] <= bx[0] || bx[3] <= bx[1] {
                    return Err(Error::Targets(format!("image {i} box {j}: degenerate box {bx:?}")));
                }
                b[(i * m + j) * 4..(i * m + j) * 4 + 4].copy_from_slice(bx);
                l[i * m + j] = lb;
                v[i * m + j] = true;
            }
        }
        let (n, m) = (n as i64, m as i64);
        Ok(Targets {
            boxes: upload(&Tensor::from_slice(&b).reshape([n, m, 4]), device),
            labels: upload(&Tensor::from_slice(&l).reshape([n, m]), device),
            valid: upload(&Tensor::from_slice(&v).reshape([n, m]), device),
        })
    }

    /// The targets on `device` (non-blocking from the host, see [`upload`]).
    pub fn to_device(&self, device: Device) -> Targets {
        Targets {
            boxes: upload(&self.boxes, device),
            labels: upload(&self.labels, device),
            valid: upload(&self.valid, device),
        }
    }
}

/// Scalar losses (0-dim f32 tensors on the device, differentiable).
#[derive(Debug)]
pub struct Losses {
    /// Focal loss summed per image, divided by max(1, #foreground), averaged over images.
    pub classification: Tensor,
    /// Box loss summed over foreground anchors per image, divided by max(1, #foreground), averaged.
    pub box_regression: Tensor,
    /// `classification + box_regression`.
    pub total: Tensor,
}

/// Loss hyper-parameters.
#[derive(Debug, Clone, Copy)]
pub struct LossConfig {
    pub focal_alpha: f64,
    pub focal_gamma: f64,
    pub box_loss: BoxLossKind,
    pub smooth_l1_beta: f64,
    pub giou_eps: f64,
}

impl LossConfig {
    pub fn from_config(cfg: &RetinaNetConfig) -> Self {
        LossConfig {
            focal_alpha: cfg.focal_alpha,
            focal_gamma: cfg.focal_gamma,
            box_loss: cfg.box_loss,
            smooth_l1_beta: cfg.smooth_l1_beta,
            giou_eps: cfg.giou_eps,
        }
    }
}

/// Element-wise sigmoid focal loss (torchvision `sigmoid_focal_loss`, `reduction="none"`):
/// `logits`, `targets` (0/1 floats) of any equal shape → same shape. `alpha < 0` disables weighting.
pub fn sigmoid_focal_loss(logits: &Tensor, targets: &Tensor, alpha: f64, gamma: f64) -> Tensor {
    let p = logits.sigmoid();
    let ce = logits.binary_cross_entropy_with_logits::<Tensor>(targets, None, None, Reduction::None);
    let p_t: Tensor = &p * targets + (1.0 - &p) * (1.0 - targets);
    let loss = ce * (-p_t + 1.0).pow_tensor_scalar(gamma);
    if alpha >= 0.0 {
        let alpha_t = alpha * targets + (1.0 - alpha) * (1.0 - targets);
        alpha_t * loss
    } else {
        loss
    }
}

/// Classification and box losses of a batch.
///
/// * `cls_logits [N, A, C]`, `bbox_regression [N, A, 4]` (any float dtype; computed in f32)
/// * `anchors [A, 4]`, `matches [N, A]` from [`crate::matcher::Matcher::matches`]
/// * `targets`: boxes `[N, M, 4]`, labels `[N, M]`
pub fn retinanet_losses(
    cls_logits: &Tensor,
    bbox_regression: &Tensor,
    anchors: &Tensor,
    matches: &Tensor,
    targets: &Targets,
    coder: &BoxCoder,
    cfg: &LossConfig,
) -> Losses {
    let logits = cast(cls_logits, Kind::Float);
    let pred = cast(bbox_regression, Kind::Float);
    let anchors = cast(anchors, Kind::Float).unsqueeze(0); // [1, A, 4]
    let (n, a, c) = logits.size3().unwrap_or_default();
    let device = logits.device();
    let m = targets.boxes.size().get(1).copied().unwrap_or(0);

    let fg = matches.ge(0); // [N, A]
    let num_fg = fg.sum_dim_intlist(1, false, Kind::Float).clamp_min(1.0); // [N]
    let idx = matches.clamp_min(0);

    // classification: one-hot of the matched label on foreground anchors, ignored anchors masked out
    let labels = if m > 0 { targets.labels.gather(1, &idx, false) } else { idx.zeros_like() };
    let classes = Tensor::arange(c, (Kind::Int64, device));
    let gt_classes = labels.unsqueeze(-1).eq_tensor(&classes).logical_and(&fg.unsqueeze(-1)).to_kind(Kind::Float);
    let counted = matches.ne(BETWEEN_THRESHOLDS).unsqueeze(-1);
    let focal =
        sigmoid_focal_loss(&logits, &gt_classes, cfg.focal_alpha, cfg.focal_gamma).where_scalarother(&counted, 0.0);
    let classification = (focal.sum_dim_intlist([1, 2].as_slice(), false, Kind::Float) / &num_fg).mean(Kind::Float);

    // boxes: background anchors get their own anchor as target so that nothing is infinite
    let matched = if m > 0 {
        targets.boxes.to_kind(Kind::Float).gather(1, &idx.unsqueeze(-1).expand([n, a, 4], false), false)
    } else {
        anchors.expand([n, a, 4], false)
    };
    let matched = matched.where_self(&fg.unsqueeze(-1), &anchors);
    let per_anchor = match cfg.box_loss {
        BoxLossKind::L1 => (&pred - coder.encode(&matched, &anchors)).abs().sum_dim_intlist(-1, false, Kind::Float),
        BoxLossKind::SmoothL1 => pred
            .smooth_l1_loss(&coder.encode(&matched, &anchors), Reduction::None, cfg.smooth_l1_beta)
            .sum_dim_intlist(-1, false, Kind::Float),
        BoxLossKind::Giou => giou_loss(&coder.decode(&pred, &anchors), &matched, cfg.giou_eps),
    };
    let per_image = per_anchor.where_scalarother(&fg, 0.0).sum_dim_intlist(1, false, Kind::Float) / &num_fg;
    let box_regression = per_image.sum(Kind::Float) / (n.max(1) as f64);
    let total = &classification + &box_regression;
    Losses { classification, box_regression, total }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn focal_loss_matches_formula() {
        let x = Tensor::from_slice(&[-2f32, 0.5, 3.0]);
        let t = Tensor::from_slice(&[0f32, 1.0, 1.0]);
        let l: Vec<f32> = Vec::try_from(sigmoid_focal_loss(&x, &t, 0.25, 2.0)).unwrap();
        for (i, (&xi, &ti)) in [-2f32, 0.5, 3.0].iter().zip(&[0f32, 1.0, 1.0]).enumerate() {
            let p = 1.0 / (1.0 + (-xi).exp());
            let pt = if ti == 1.0 { p } else { 1.0 - p };
            let at = if ti == 1.0 { 0.25 } else { 0.75 };
            let e = -at * (1.0 - pt).powi(2) * pt.ln();
            assert!((l[i] - e).abs() < 1e-6, "{l:?}");
        }
    }

    #[test]
    fn targets_validation() {
        let ok = Targets::from_lists(&[vec![[0., 0., 5., 5.]], vec![]], &[vec![0], vec![]], 1, Device::Cpu).unwrap();
        assert_eq!(ok.boxes.size(), vec![2, 1, 4]);
        assert_eq!(Vec::<bool>::try_from(ok.valid.reshape([-1])).unwrap(), vec![true, false]);
        let e = Targets::from_lists(&[vec![[0., 0., 5., 5.]]], &[vec![1]], 1, Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("label 1"), "{e}");
        let e = Targets::from_lists(&[vec![[5., 0., 5., 5.]]], &[vec![0]], 1, Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("degenerate"), "{e}");
        let empty = Targets::from_lists(&[vec![], vec![]], &[vec![], vec![]], 1, Device::Cpu).unwrap();
        assert_eq!(empty.boxes.size(), vec![2, 0, 4]);
    }
}

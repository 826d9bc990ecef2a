//! Box operations on `(x1, y1, x2, y2)` boxes (torchvision `ops/boxes.py`, `ops/giou_loss.py`), written
//! with broadcasting so that whole batches go through one call.

use tch::Tensor;

/// The four coordinates of `[..., 4]` boxes as `[...]` tensors.
pub fn unbind4(b: &Tensor) -> (Tensor, Tensor, Tensor, Tensor) {
    let mut v = b.unbind(-1).into_iter();
    let mut next = || v.next().unwrap_or_default();
    (next(), next(), next(), next())
}

/// Areas `[...]` of `[..., 4]` boxes.
pub fn box_area(b: &Tensor) -> Tensor {
    let (x1, y1, x2, y2) = unbind4(b);
    (x2 - x1) * (y2 - y1)
}

/// Pairwise IoU with broadcasting over leading dimensions: `[..., M, 4]` × `[..., A, 4]` → `[..., M, A]`.
///
/// Same arithmetic as torchvision's `box_iou` (`inter / (area1 + area2 − inter)`), computed per
/// coordinate so that no `[..., M, A, 2]` temporaries are made. E.g. targets `[N, M, 4]` against
/// anchors `[A, 4]` give `[N, M, A]` in one call.
pub fn box_iou(b1: &Tensor, b2: &Tensor) -> Tensor {
    let area1 = box_area(b1).unsqueeze(-1);
    let area2 = box_area(b2).unsqueeze(-2);
    let (ax1, ay1, ax2, ay2) = unbind4(&b1.unsqueeze(-2));
    let (bx1, by1, bx2, by2) = unbind4(&b2.unsqueeze(-3));
    let w = (ax2.minimum(&bx2) - ax1.maximum(&bx1)).clamp_min(0.0);
    let h = (ay2.minimum(&by2) - ay1.maximum(&by1)).clamp_min(0.0);
    let inter = w * h;
    let union = area1 + area2 - &inter;
    inter / union
}

/// Clips `[..., 4]` boxes to `[0, w] × [0, h]`; `h`, `w` are tensors broadcastable to `[...]`
/// (e.g. `[N, 1]` per-image sizes for `[N, K, 4]` boxes).
pub fn clip_boxes(b: &Tensor, h: &Tensor, w: &Tensor) -> Tensor {
    let (x1, y1, x2, y2) = unbind4(b);
    let cx = |x: Tensor| x.clamp_min(0.0).minimum(w);
    let cy = |y: Tensor| y.clamp_min(0.0).minimum(h);
    Tensor::stack(&[cx(x1), cy(y1), cx(x2), cy(y2)], -1)
}

/// Element-wise generalised-IoU loss `1 − GIoU` of matching `[..., 4]` boxes → `[...]`
/// (torchvision `generalized_box_iou_loss` with `reduction="none"`).
pub fn giou_loss(b1: &Tensor, b2: &Tensor, eps: f64) -> Tensor {
    let (x1, y1, x2, y2) = unbind4(b1);
    let (x1g, y1g, x2g, y2g) = unbind4(b2);
    let xk1 = x1.maximum(&x1g);
    let yk1 = y1.maximum(&y1g);
    let xk2 = x2.minimum(&x2g);
    let yk2 = y2.minimum(&y2g);
    let overlap = yk2.gt_tensor(&yk1).logical_and(&xk2.gt_tensor(&xk1));
    let inter = ((&xk2 - &xk1) * (&yk2 - &yk1)).where_scalarother(&overlap, 0.0);
    let union = (&x2 - &x1) * (&y2 - &y1) + (&x2g - &x1g) * (&y2g - &y1g) - &inter;
    let iou = &inter / (&union + eps);
    let area_c = (x2.maximum(&x2g) - x1.minimum(&x1g)) * (y2.maximum(&y2g) - y1.minimum(&y1g));
    let giou = iou - (&area_c - &union) / (area_c + eps);
    1.0 - giou
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn t(v: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).reshape(shape)
    }

    #[test]
    fn iou_batched() {
        let gt = t(&[0., 0., 10., 10., 5., 5., 15., 15.], &[1, 2, 4]);
        let anchors = t(&[0., 0., 10., 10., 5., 0., 15., 10., 20., 20., 30., 30.], &[3, 4]);
        let iou = box_iou(&gt, &anchors);
        assert_eq!(iou.size(), vec![1, 2, 3]);
        let v: Vec<f32> = Vec::try_from(iou.reshape([-1])).unwrap();
        let e = [1.0, 50.0 / 150.0, 0.0, 25.0 / 175.0, 50.0 / 150.0, 0.0];
        for (a, b) in v.iter().zip(e) {
            assert!((a - b).abs() < 1e-6, "{v:?}");
        }
    }

    #[test]
    fn giou_values() {
        let a = t(&[0., 0., 10., 10., 0., 0., 10., 10.], &[2, 4]);
        let b = t(&[0., 0., 10., 10., 20., 0., 30., 10.], &[2, 4]);
        let l: Vec<f32> = Vec::try_from(giou_loss(&a, &b, 1e-7)).unwrap();
        assert!(l[0].abs() < 1e-6);
        // disjoint: IoU 0, enclosing 300, union 200 → GIoU = −1/3 → loss 4/3
        assert!((l[1] - 4.0 / 3.0).abs() < 1e-5, "{l:?}");
    }

    #[test]
    fn clip() {
        let b = t(&[-5., 3., 200., 90.], &[1, 1, 4]);
        let h = Tensor::from_slice(&[64f32]).reshape([1, 1]);
        let w = Tensor::from_slice(&[128f32]).reshape([1, 1]);
        let c: Vec<f32> = Vec::try_from(clip_boxes(&b, &h, &w).reshape([-1])).unwrap();
        assert_eq!(c, vec![0., 3., 128., 64.]);
        let _ = Tensor::zeros([1], (Kind::Float, Device::Cpu));
    }
}

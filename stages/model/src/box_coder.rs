//! Box coder (torchvision `models/detection/_utils.py` `BoxCoder`), broadcasting over leading
//! dimensions so that a whole batch `[N, A, 4]` is encoded or decoded in one call.

use tch::Tensor;

use crate::boxes::unbind4;

/// Encodes boxes as `(dx, dy, dw, dh)` relative to reference boxes (anchors) and back.
#[derive(Debug, Clone, Copy)]
pub struct BoxCoder {
    /// `(wx, wy, ww, wh)`.
    pub weights: [f64; 4],
    /// Upper clamp of `dw`, `dh` before `exp` when decoding.
    pub bbox_xform_clip: f64,
}

impl Default for BoxCoder {
    fn default() -> Self {
        BoxCoder { weights: [1.0; 4], bbox_xform_clip: (1000.0f64 / 16.0).ln() }
    }
}

impl BoxCoder {
    pub fn new(weights: [f64; 4], bbox_xform_clip: f64) -> Self {
        BoxCoder { weights, bbox_xform_clip }
    }

    /// Targets `[..., 4]` of ground-truth boxes `gt [..., 4]` w.r.t. `anchors [..., 4]` (broadcast).
    pub fn encode(&self, gt: &Tensor, anchors: &Tensor) -> Tensor {
        let [wx, wy, ww, wh] = self.weights;
        let (px1, py1, px2, py2) = unbind4(anchors);
        let (gx1, gy1, gx2, gy2) = unbind4(gt);
        let ex_w = &px2 - &px1;
        let ex_h = &py2 - &py1;
        let ex_cx = px1 + 0.5 * &ex_w;
        let ex_cy = py1 + 0.5 * &ex_h;
        let gt_w = &gx2 - &gx1;
        let gt_h = &gy2 - &gy1;
        let gt_cx = gx1 + 0.5 * &gt_w;
        let gt_cy = gy1 + 0.5 * &gt_h;
        let dx = wx * (gt_cx - ex_cx) / &ex_w;
        let dy = wy * (gt_cy - ex_cy) / &ex_h;
        let dw = ww * (gt_w / ex_w).log();
        let dh = wh * (gt_h / ex_h).log();
        Tensor::stack(&[dx, dy, dw, dh], -1)
    }

    /// Boxes `[..., 4]` from deltas `rel [..., 4]` w.r.t. `anchors [..., 4]` (broadcast); `dw`, `dh`
    /// are clamped at `bbox_xform_clip`.
    pub fn decode(&self, rel: &Tensor, anchors: &Tensor) -> Tensor {
        let [wx, wy, ww, wh] = self.weights;
        let anchors = crate::layers::cast(anchors, rel.kind());
        let (ax1, ay1, ax2, ay2) = unbind4(&anchors);
        let widths = &ax2 - &ax1;
        let heights = &ay2 - &ay1;
        let ctr_x = ax1 + 0.5 * &widths;
        let ctr_y = ay1 + 0.5 * &heights;
        let (dx, dy, dw, dh) = unbind4(rel);
        let dx = dx / wx;
        let dy = dy / wy;
        let dw = (dw / ww).clamp_max(self.bbox_xform_clip);
        let dh = (dh / wh).clamp_max(self.bbox_xform_clip);
        let pred_cx = dx * &widths + ctr_x;
        let pred_cy = dy * &heights + ctr_y;
        let pred_w = dw.exp() * widths;
        let pred_h = dh.exp() * heights;
        let half_w = 0.5 * pred_w;
        let half_h = 0.5 * pred_h;
        Tensor::stack(&[&pred_cx - &half_w, &pred_cy - &half_h, pred_cx + half_w, pred_cy + half_h], -1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_clamp() {
        let c = BoxCoder::default();
        let anchors = Tensor::from_slice(&[0f32, 0., 32., 32., 10., 20., 50., 40.]).reshape([2, 4]);
        let gt = Tensor::from_slice(&[2f32, 3., 30., 40., 12., 18., 60., 45.]).reshape([2, 4]);
        let d = c.encode(&gt, &anchors);
        let back = c.decode(&d, &anchors);
        assert!(back.allclose(&gt, 1e-5, 1e-4, false));
        // dx = (16 - 16) / 32 = 0, dw = log(28/32)
        let v: Vec<f32> = Vec::try_from(d.get(0)).unwrap();
        assert!((v[2] - (28f32 / 32.).ln()).abs() < 1e-6);
        // huge dw is clamped at log(1000/16): width 32 · 62.5 = 2000
        let rel = Tensor::from_slice(&[0f32, 0., 10., 0.]).reshape([1, 4]);
        let b: Vec<f32> = Vec::try_from(c.decode(&rel, &anchors.get(0).unsqueeze(0)).reshape([-1])).unwrap();
        assert!((b[2] - b[0] - 2000.0).abs() < 1e-2, "{b:?}");
    }
}

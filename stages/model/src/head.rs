//! RetinaNet classification and regression heads (torchvision `RetinaNetHead`).
//!
//! Variable names (under `head`): `classification_head.conv.{i}.0.weight` (+ `.bias` for the plain
//! head), `classification_head.conv.{i}.1.{weight,bias}` (GroupNorm), `classification_head.cls_logits.*`,
//! and the same under `regression_head` with `bbox_reg.*` as the output conv.

use tch::{Kind, Tensor, nn};

use crate::config::HeadKind;
use crate::layers::{Conv2d, ConvInit, ConvSpec, GroupNorm};

/// Outputs of the heads over all pyramid levels, anchors ordered level by level, then by location
/// (row-major), then by anchor type (as torchvision and [`crate::anchors::AnchorGenerator`]).
#[derive(Debug)]
pub struct HeadOutputs {
    /// `[N, A, C]` classification logits (no background column).
    pub cls_logits: Tensor,
    /// `[N, A, 4]` box deltas (dx, dy, dw, dh) relative to the anchors.
    pub bbox_regression: Tensor,
    /// Anchors per pyramid level (sums to A).
    pub num_anchors_per_level: Vec<i64>,
}

impl HeadOutputs {
    /// Both outputs in dtype `kind` (e.g. fp32 before the loss of a bf16 forward).
    pub fn to_kind(&self, kind: Kind) -> HeadOutputs {
        HeadOutputs {
            cls_logits: crate::layers::cast(&self.cls_logits, kind),
            bbox_regression: crate::layers::cast(&self.bbox_regression, kind),
            num_anchors_per_level: self.num_anchors_per_level.clone(),
        }
    }
}

/// conv3×3 (+ GroupNorm) + ReLU, named `{i}.0` / `{i}.1`.
#[derive(Debug)]
struct ConvNormAct {
    conv: Conv2d,
    norm: Option<GroupNorm>,
}

/// A conv tower followed by an output conv with `outputs_per_anchor · anchors` channels.
///
/// `forward`: levels `[N, F, h_l, w_l]` → `[N, Σ h_l·w_l·anchors, outputs_per_anchor]`.
#[derive(Debug)]
pub struct HeadBranch {
    tower: Vec<ConvNormAct>,
    out: Conv2d,
    outputs_per_anchor: i64,
}

/// Shape of both heads.
#[derive(Debug, Clone, Copy)]
pub struct HeadSpec {
    pub in_channels: i64,
    pub channels: i64,
    pub num_convs: usize,
    pub kind: HeadKind,
    pub gn_groups: i64,
    pub num_anchors: i64,
    pub num_classes: i64,
    pub prior_probability: f64,
}

impl HeadBranch {
    fn new(vs: &nn::Path, s: &HeadSpec, out_name: &str, outputs_per_anchor: i64, out_bias: f64) -> HeadBranch {
        let mut tower = Vec::with_capacity(s.num_convs);
        let mut c_in = s.in_channels;
        for i in 0..s.num_convs {
            let p = vs / "conv" / i;
            let gn = s.kind == HeadKind::GroupNorm;
            let conv = Conv2d::new(
                &(&p / "0"),
                ConvSpec::new(c_in, s.channels, 3, ConvInit::Normal { std: 0.01, bias: 0.0 }).bias(!gn),
            );
            let norm = gn.then(|| GroupNorm::new(&(&p / "1"), s.gn_groups, s.channels));
            tower.push(ConvNormAct { conv, norm });
            c_in = s.channels;
        }
        let out = Conv2d::new(
            &(vs / out_name),
            ConvSpec::new(c_in, s.num_anchors * outputs_per_anchor, 3, ConvInit::Normal { std: 0.01, bias: out_bias }),
        );
        HeadBranch { tower, out, outputs_per_anchor }
    }

    pub fn forward(&self, levels: &[Tensor]) -> Tensor {
        // cast the shared parameters once for all levels
        let kind = levels[0].kind();
        let params: Vec<_> = self
            .tower
            .iter()
            .map(|b| (b.conv.cast_params(kind), b.norm.as_ref().map(|n| n.cast_params(kind))))
            .collect();
        let out_params = self.out.cast_params(kind);
        let k = self.outputs_per_anchor;
        let per_level: Vec<Tensor> = levels
            .iter()
            .map(|x| {
                let mut y = x.shallow_clone();
                for (block, (cp, np)) in self.tower.iter().zip(&params) {
                    y = block.conv.apply_with(&y, cp);
                    if let (Some(norm), Some(np)) = (&block.norm, np) {
                        y = norm.apply_with(&y, np);
                    }
                    y = y.relu_();
                }
                let y = self.out.apply_with(&y, &out_params);
                let (n, _, h, w) = y.size4().unwrap_or_default();
                // [N, A·K, H, W] → [N, A, K, H, W] → [N, H, W, A, K] → [N, H·W·A, K]
                y.view([n, -1, k, h, w]).permute([0, 3, 4, 1, 2]).reshape([n, -1, k])
            })
            .collect();
        Tensor::cat(&per_level, 1)
    }
}

/// Classification (`classification_head`) and regression (`regression_head`) branches.
#[derive(Debug)]
pub struct RetinaNetHead {
    pub classification: HeadBranch,
    pub regression: HeadBranch,
}

impl RetinaNetHead {
    pub fn new(vs: &nn::Path, s: &HeadSpec) -> RetinaNetHead {
        let prior_bias = -((1.0 - s.prior_probability) / s.prior_probability).ln();
        RetinaNetHead {
            classification: HeadBranch::new(&(vs / "classification_head"), s, "cls_logits", s.num_classes, prior_bias),
            regression: HeadBranch::new(&(vs / "regression_head"), s, "bbox_reg", 4, 0.0),
        }
    }

    /// FPN levels → head outputs (see [`HeadOutputs`]).
    pub fn forward(&self, levels: &[Tensor]) -> HeadOutputs {
        let num_anchors = self.classification.out.weight.size()[0] / self.classification.outputs_per_anchor;
        let num_anchors_per_level = levels
            .iter()
            .map(|x| {
                let s = x.size();
                s[2] * s[3] * num_anchors
            })
            .collect();
        HeadOutputs {
            cls_logits: self.classification.forward(levels),
            bbox_regression: self.regression.forward(levels),
            num_anchors_per_level,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn names_shapes_and_prior() {
        let vs = nn::VarStore::new(Device::Cpu);
        let spec = HeadSpec {
            in_channels: 64,
            channels: 64,
            num_convs: 2,
            kind: HeadKind::GroupNorm,
            gn_groups: 32,
            num_anchors: 9,
            num_classes: 3,
            prior_probability: 0.01,
        };
        let head = RetinaNetHead::new(&vs.root(), &spec);
        let v = vs.variables();
        assert!(v.contains_key("classification_head.conv.1.1.weight"));
        assert!(!v.contains_key("classification_head.conv.0.0.bias"));
        assert_eq!(v["classification_head.cls_logits.weight"].size(), vec![27, 64, 3, 3]);
        assert_eq!(v["regression_head.bbox_reg.bias"].size(), vec![36]);
        let b = f64::try_from(v["classification_head.cls_logits.bias"].get(0)).unwrap();
        assert!((b + 99f64.ln()).abs() < 1e-5);
        let opts = (Kind::Float, Device::Cpu);
        let levels = [Tensor::randn([2, 64, 4, 5], opts), Tensor::randn([2, 64, 2, 3], opts)];
        let out = head.forward(&levels);
        assert_eq!(out.cls_logits.size(), vec![2, (20 + 6) * 9, 3]);
        assert_eq!(out.bbox_regression.size(), vec![2, (20 + 6) * 9, 4]);
        assert_eq!(out.num_anchors_per_level, vec![180, 54]);
    }
}

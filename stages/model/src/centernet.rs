//! A CenterNet-style anchor-free detector ("Objects as Points", Zhou et al. 2019) on the same
//! ResNet + FPN trunk as the RetinaNet.
//!
//! * Trunk: ResNet C3–C5 → FPN P3–P5 (no P6/P7) → one stride-8 map `P3 + up(P4) + up(P5)`
//!   (nearest upsampling), so the single output level still sees the coarser levels' context.
//! * Heads (`head.heatmap`, `head.regression`): `head_convs` × (conv3×3 [+ GroupNorm] + ReLU) with
//!   `head_channels`, then a 1×1 conv: C heatmap logits (bias from `prior_probability`) and
//!   4 regression channels (box width and height in cells, centre offset x and y in cells).
//! * Training: [`crate::heatmap::centernet_losses`] (Gaussian heatmaps rendered for the batch on the
//!   device, penalty-reduced focal loss, L1 at the centres). Inference:
//!   [`crate::heatmap::decode`] (3×3 max-pool peaks, top-K, no NMS).
//!
//! Variable names: `backbone.body.*` and `backbone.fpn.*` as the RetinaNet's (an ImageNet ResNet in
//! `backbone_weights` loads the same way), `head.heatmap.conv.{i}.0.*`, `head.heatmap.conv.{i}.1.*`
//! (GroupNorm), `head.heatmap.out.*`, and the same under `head.regression`.

use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Kind, Tensor, nn};

use crate::Error;
use crate::backbone::ResNet;
use crate::config::{CenterNetConfig, DetectorConfig, HeadKind, TrunkConfig};
use crate::detector::{Detector, input_size};
use crate::fpn::Fpn;
use crate::heatmap::{self, CenterNetLossConfig, DecodeConfig, REGRESSION_CHANNELS, STRIDE};
use crate::layers::{Conv2d, ConvInit, ConvSpec, GroupNorm, cast};
use crate::loss::{Losses, Targets};
use crate::postprocess::Detections;
use crate::precision::{Precision, PrecisionExt};
use crate::transform::normalize_images;
use crate::weights;

/// Raw head outputs at stride 8.
#[derive(Debug)]
pub struct CenterNetOutputs {
    /// `[N, C, H/8, W/8]` heatmap logits.
    pub heatmap: Tensor,
    /// `[N, 4, H/8, W/8]`: box width, height (cells), centre offset x, y (cells).
    pub regression: Tensor,
}

impl CenterNetOutputs {
    /// Both outputs in dtype `kind` (fp32 before the loss of a bf16 forward).
    pub fn to_kind(&self, kind: Kind) -> CenterNetOutputs {
        CenterNetOutputs { heatmap: cast(&self.heatmap, kind), regression: cast(&self.regression, kind) }
    }
}

/// conv3×3 (+ GroupNorm) + ReLU, repeated, then a 1×1 output conv.
///
/// `forward`: `[N, F, h, w]` → `[N, outputs, h, w]` in the input's dtype.
#[derive(Debug)]
struct Tower {
    convs: Vec<(Conv2d, Option<GroupNorm>)>,
    out: Conv2d,
}

impl Tower {
    fn new(vs: &nn::Path, cfg: &CenterNetConfig, outputs: i64, out_bias: f64) -> Tower {
        let gn = cfg.trunk.head == HeadKind::GroupNorm;
        let mut c_in = cfg.trunk.fpn_channels;
        let convs = (0..cfg.trunk.head_convs)
            .map(|i| {
                let p = vs / "conv" / i;
                let spec = ConvSpec::new(c_in, cfg.trunk.head_channels, 3, ConvInit::Normal { std: 0.01, bias: 0.0 });
                c_in = cfg.trunk.head_channels;
                (
                    Conv2d::new(&(&p / "0"), spec.bias(!gn)),
                    gn.then(|| GroupNorm::new(&(&p / "1"), cfg.trunk.head_gn_groups, cfg.trunk.head_channels)),
                )
            })
            .collect();
        let out =
            Conv2d::new(&(vs / "out"), ConvSpec::new(c_in, outputs, 1, ConvInit::Normal { std: 0.01, bias: out_bias }));
        Tower { convs, out }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let mut y = x.shallow_clone();
        for (conv, norm) in &self.convs {
            y = conv.forward(&y);
            if let Some(norm) = norm {
                y = norm.apply_with(&y, &norm.cast_params(y.kind()));
            }
            y = y.relu_();
        }
        self.out.forward(&y)
    }
}

/// The CenterNet-style detector (build it on the root path of a `VarStore`).
#[derive(Debug)]
pub struct CenterNet {
    cfg: CenterNetConfig,
    backbone: ResNet,
    fpn: Fpn,
    heatmap_head: Tower,
    regression_head: Tower,
    loss_cfg: CenterNetLossConfig,
    decode_cfg: DecodeConfig,
}

impl CenterNet {
    /// Creates the variables under `vs`. Does not load `cfg.trunk.backbone_weights` (see [`build`]).
    pub fn new(vs: &nn::Path, cfg: &CenterNetConfig) -> Result<CenterNet, Error> {
        cfg.validate()?;
        let backbone = ResNet::new(
            &(vs / "backbone" / "body"),
            cfg.trunk.backbone,
            cfg.trunk.trainable_backbone_layers,
            cfg.trunk.bn_eps,
            cfg.trunk.backbone_norm,
        );
        let fpn =
            Fpn::new(&(vs / "backbone" / "fpn"), &cfg.trunk.backbone.out_channels(), cfg.trunk.fpn_channels, None);
        let prior_bias = -((1.0 - cfg.trunk.prior_probability) / cfg.trunk.prior_probability).ln();
        let head = vs / "head";
        Ok(CenterNet {
            backbone,
            fpn,
            heatmap_head: Tower::new(&(&head / "heatmap"), cfg, cfg.trunk.num_classes, prior_bias),
            regression_head: Tower::new(&(&head / "regression"), cfg, REGRESSION_CHANNELS, 0.0),
            loss_cfg: CenterNetLossConfig::from_config(cfg),
            decode_cfg: DecodeConfig::from_config(cfg),
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &CenterNetConfig {
        &self.cfg
    }

    /// See [`crate::RetinaNet::set_fold_frozen_bn`].
    pub fn set_fold_frozen_bn(&mut self, fold: bool) {
        self.backbone.fold_bn = fold;
    }

    /// The FPN levels P3, P4, P5: `[N, 3, H, W]` → `[N, fpn_channels, ⌈H/s⌉, ⌈W/s⌉]` for s = 8, 16, 32.
    pub fn levels(&self, images: &Tensor, train: bool) -> Vec<Tensor> {
        self.fpn.forward(&self.backbone.forward_t(images, train))
    }

    /// The fused stride-8 map of the levels: P3 + up(P4) + up(P5).
    pub fn fuse(levels: &[Tensor]) -> Tensor {
        let size = levels[0].size();
        levels[1..]
            .iter()
            .fold(levels[0].shallow_clone(), |acc, p| acc + p.upsample_nearest2d([size[2], size[3]], None, None))
    }

    /// The fused stride-8 map: `[N, 3, H, W]` → `[N, fpn_channels, ⌈H/8⌉, ⌈W/8⌉]` = P3 + up(P4) + up(P5).
    pub fn features(&self, images: &Tensor, train: bool) -> Tensor {
        Self::fuse(&self.levels(images, train))
    }

    /// Head outputs of a fused map.
    fn heads(&self, f: &Tensor) -> CenterNetOutputs {
        CenterNetOutputs { heatmap: self.heatmap_head.forward(f), regression: self.regression_head.forward(f) }
    }

    /// Head outputs for a normalised batch `[N, 3, H, W]` (f32, or bf16 for bf16 compute), in the
    /// input's dtype.
    pub fn forward_t(&self, images: &Tensor, train: bool) -> CenterNetOutputs {
        self.heads(&self.features(images, train))
    }

    /// Training losses of a batch (see [`heatmap::centernet_losses`]), on the device without host
    /// synchronisation. `targets`: boxes `[N, M, 4]` in input pixels, labels `[N, M]`, valid `[N, M]`.
    pub fn loss(&self, out: &CenterNetOutputs, targets: &Targets) -> Losses {
        heatmap::centernet_losses(&out.heatmap, &out.regression, targets, &self.loss_cfg)
    }

    /// Detections per image for an input of `image_size = (h, w)` pixels, sorted by score.
    pub fn decode(&self, out: &CenterNetOutputs, image_size: (i64, i64)) -> Vec<Detections> {
        heatmap::decode(&out.heatmap, &out.regression, image_size, STRIDE as f64, &self.decode_cfg)
    }

    /// `uint8 [N, H, W, 3]` → normalised `f32 [N, 3, H, W]` (see [`normalize_images`]).
    pub fn normalize(&self, images_u8_nhwc: &Tensor, channels_last: bool) -> Tensor {
        normalize_images(images_u8_nhwc, self.cfg.trunk.image_mean, self.cfg.trunk.image_std, channels_last)
    }

    /// Saves all variables of `vs` and this model's config (with `detector = "centernet"`) as a
    /// self-describing checkpoint; [`crate::load_detector`] rebuilds it.
    pub fn save_checkpoint(&self, vs: &nn::VarStore, path: &Path) -> Result<(), Error> {
        weights::save_checkpoint(vs, &DetectorConfig::CenterNet(self.cfg.clone()), path, &HashMap::new())
    }

    fn run(&self, images: &Tensor, precision: Precision, train: bool) -> CenterNetOutputs {
        precision.run(|| self.forward_t(&precision.prepare_input(images), train)).to_kind(Kind::Float)
    }
}

impl Detector for CenterNet {
    fn config(&self) -> DetectorConfig {
        DetectorConfig::CenterNet(self.cfg.clone())
    }

    fn trunk(&self) -> &TrunkConfig {
        &self.cfg.trunk
    }

    fn normalize(&self, images_u8_nhwc: &Tensor, channels_last: bool) -> Tensor {
        CenterNet::normalize(self, images_u8_nhwc, channels_last)
    }

    fn losses(&self, images: &Tensor, targets: &Targets, precision: Precision, train: bool) -> Losses {
        self.loss(&self.run(images, precision, train), targets)
    }

    fn losses_with_features(
        &self,
        images: &Tensor,
        targets: &Targets,
        labelled: i64,
        precision: Precision,
        train: bool,
    ) -> (Losses, Vec<Tensor>) {
        let (out, levels) = precision.run(|| {
            let levels = self.levels(&precision.prepare_input(images), train);
            let head_input: Vec<Tensor> = levels.iter().map(|l| l.narrow(0, 0, labelled)).collect();
            (self.heads(&Self::fuse(&head_input)), levels)
        });
        (self.loss(&out.to_kind(Kind::Float), targets), levels)
    }

    fn detect(&self, images: &Tensor, precision: Precision) -> Vec<Detections> {
        let _guard = tch::no_grad_guard();
        self.decode(&self.run(images, precision, false), input_size(images))
    }

    fn losses_and_detections(
        &self,
        images: &Tensor,
        targets: &Targets,
        precision: Precision,
    ) -> (Losses, Vec<Detections>) {
        let out = self.run(images, precision, false);
        (self.loss(&out, targets), self.decode(&out, input_size(images)))
    }

    fn save_checkpoint(&self, vs: &nn::VarStore, path: &Path) -> Result<(), Error> {
        CenterNet::save_checkpoint(self, vs, path)
    }
}

/// Creates a `VarStore` on `device` and the CenterNet in it, then loads `cfg.trunk.backbone_weights` when
/// set (an ImageNet ResNet; a detector state dict needs `backbone_weights_skip = ["head."]` and, from
/// a P3–P7 RetinaNet, `"backbone.fpn.extra_blocks"`).
pub fn build(cfg: &CenterNetConfig, device: Device) -> Result<(nn::VarStore, CenterNet), Error> {
    let vs = nn::VarStore::new(device);
    let net = CenterNet::new(&vs.root(), cfg)?;
    weights::load_initial_weights(&vs, &cfg.trunk)?;
    Ok((vs, net))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackboneNorm, DetectorKind, RetinaNetConfig};

    fn tiny_trunk() -> TrunkConfig {
        TrunkConfig {
            fpn_channels: 32,
            head_channels: 32,
            head_convs: 1,
            head: HeadKind::GroupNorm,
            head_gn_groups: 8,
            ..Default::default()
        }
    }

    fn tiny() -> CenterNetConfig {
        CenterNetConfig { trunk: tiny_trunk(), ..Default::default() }
    }

    #[test]
    fn names_and_shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = CenterNet::new(
            &vs.root(),
            &CenterNetConfig { trunk: TrunkConfig { num_classes: 2, ..tiny_trunk() }, ..tiny() },
        )
        .unwrap();
        let v = vs.variables();
        for name in [
            "backbone.body.layer4.1.conv2.weight",
            "backbone.fpn.layer_blocks.2.0.weight",
            "head.heatmap.conv.0.0.weight",
            "head.heatmap.conv.0.1.weight",
            "head.heatmap.out.bias",
            "head.regression.out.weight",
        ] {
            assert!(v.contains_key(name), "{name}");
        }
        assert!(!v.keys().any(|k| k.contains("extra_blocks")), "no P6/P7");
        assert_eq!(v["head.heatmap.out.weight"].size(), vec![2, 32, 1, 1]);
        assert_eq!(v["head.regression.out.weight"].size(), vec![4, 32, 1, 1]);
        let b = v["head.heatmap.out.bias"].double_value(&[0]);
        assert!((b + 99f64.ln()).abs() < 1e-5);
        let x = Tensor::randn([2, 3, 72, 64], (Kind::Float, Device::Cpu));
        let out = tch::no_grad(|| net.forward_t(&x, false));
        assert_eq!(out.heatmap.size(), vec![2, 2, 9, 8]);
        assert_eq!(out.regression.size(), vec![2, 4, 9, 8]);
    }

    fn toy_batch() -> (Tensor, Targets) {
        let images = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        let boxes = vec![vec![[8f32, 8., 40., 40.], [30., 20., 60., 50.]], vec![[2., 30., 26., 62.]]];
        let t = Targets::from_lists(&boxes, &[vec![0, 0], vec![0]], 1, Device::Cpu).unwrap();
        (images, t)
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("midog-centernet-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn loss_is_finite_and_decreases() {
        tch::manual_seed(7);
        let (vs, net) = build(&tiny(), Device::Cpu).unwrap();
        let (x, t) = toy_batch();
        let mut opt = nn::OptimizerConfig::build(nn::Adam::default(), &vs, 1e-3).unwrap();
        let mut totals = Vec::new();
        for _ in 0..12 {
            let l = Detector::losses(&net, &x, &t, Precision::Fp32, true);
            for part in [&l.total, &l.classification, &l.box_regression] {
                assert!(part.double_value(&[]).is_finite());
            }
            totals.push(l.total.double_value(&[]));
            opt.backward_step(&l.total);
        }
        let (first, last) = (totals[0], totals[totals.len() - 1]);
        assert!(last < 0.85 * first, "loss did not decrease: {totals:?}");
        assert!(totals[1..].iter().all(|&l| l < first), "{totals:?}");
    }

    #[test]
    fn bf16_losses_are_finite_fp32_and_close() {
        tch::manual_seed(8);
        let (vs, net) = build(&tiny(), Device::Cpu).unwrap();
        let (x, t) = toy_batch();
        let l32 = Detector::losses(&net, &x, &t, Precision::Fp32, false);
        let l16 = Detector::losses(&net, &x, &t, Precision::Bf16, false);
        assert_eq!(l16.total.kind(), Kind::Float);
        let (a, b) = (l32.total.double_value(&[]), l16.total.double_value(&[]));
        assert!(b.is_finite() && (a - b).abs() < 0.05 * a.abs(), "fp32 {a}, bf16 {b}");
        l16.total.backward();
        let g = vs.variables()["head.heatmap.out.weight"].grad();
        assert!(g.defined() && g.kind() == Kind::Float);
        let dets = Detector::detect(&net, &x, Precision::Bf16);
        assert_eq!(dets.len(), 2);
        assert_eq!(dets[0].scores.kind(), Kind::Float);
    }

    #[test]
    fn detections_are_sorted_and_above_the_threshold() {
        tch::manual_seed(9);
        // a high prior makes every peak score about 0.5: plenty of detections from an untrained net
        let trunk = TrunkConfig { prior_probability: 0.5, score_thresh: 0.3, detections_per_img: 7, ..tiny_trunk() };
        let cfg = CenterNetConfig { trunk, ..tiny() };
        let (_, net) = build(&cfg, Device::Cpu).unwrap();
        let (x, _) = toy_batch();
        for d in Detector::detect(&net, &x, Precision::Fp32) {
            let k = d.scores.size()[0];
            assert!(k <= 7 && d.boxes.size() == vec![k, 4] && d.labels.size() == vec![k]);
            let s: Vec<f32> = Vec::try_from(&d.scores).unwrap();
            assert!(s.windows(2).all(|w| w[0] >= w[1]) && s.iter().all(|&v| v > 0.3), "{s:?}");
            let b: Vec<f32> = Vec::try_from(d.boxes.reshape([-1])).unwrap();
            assert!(b.chunks(4).all(|b| b[0] >= 0.0 && b[2] <= 64.0 && b[2] > b[0] && b[3] > b[1]), "{b:?}");
        }
    }

    #[test]
    fn checkpoint_round_trip_through_load_detector() {
        tch::manual_seed(10);
        let trunk = TrunkConfig { num_classes: 2, score_thresh: 0.2, ..tiny_trunk() };
        let cfg = CenterNetConfig { trunk, centernet_sigma: 0.8, ..tiny() };
        let (vs, net) = build(&cfg, Device::Cpu).unwrap();
        let path = tmp("centernet.safetensors");
        Detector::save_checkpoint(&net, &vs, &path).unwrap();
        let (vs2, det) = crate::load_detector(&path, Device::Cpu).unwrap();
        assert_eq!(det.config(), DetectorConfig::CenterNet(cfg.clone()));
        assert_eq!(det.config().kind(), DetectorKind::Centernet);
        assert_eq!(vs2.variables().len(), vs.variables().len());
        let (x, _) = toy_batch();
        let t = Targets::from_lists(&[vec![[8., 8., 40., 40.]], vec![]], &[vec![1], vec![]], 2, Device::Cpu).unwrap();
        let a = tch::no_grad(|| Detector::losses(&net, &x, &t, Precision::Fp32, false));
        let b = tch::no_grad(|| det.losses(&x, &t, Precision::Fp32, false));
        assert!(a.total.equal(&b.total) && a.box_regression.equal(&b.box_regression));

        // a RetinaNet checkpoint still comes back as a RetinaNet
        let trunk = TrunkConfig { fpn_channels: 32, head_channels: 32, head_convs: 1, ..Default::default() };
        let rcfg = DetectorConfig::RetinaNet(RetinaNetConfig { trunk, ..Default::default() });
        let (rvs, rnet) = crate::build_detector(&rcfg, Device::Cpu).unwrap();
        let rpath = tmp("retinanet.safetensors");
        rnet.save_checkpoint(&rvs, &rpath).unwrap();
        let (_, back) = crate::load_detector(&rpath, Device::Cpu).unwrap();
        assert_eq!(back.config().kind(), DetectorKind::Retinanet);
        // and the CenterNet's weights do not fit a RetinaNet: the loader says which tensors differ
        let e = crate::load_checkpoint(&path, Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("not a RetinaNet checkpoint"), "{e}");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn trains_with_batch_norm_from_scratch() {
        tch::manual_seed(4);
        let trunk = TrunkConfig { backbone_norm: BackboneNorm::Batch, trainable_backbone_layers: 5, ..tiny_trunk() };
        let cfg = CenterNetConfig { trunk, ..tiny() };
        let (vs, net) = build(&cfg, Device::Cpu).unwrap();
        let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        let t = Targets::from_lists(&[vec![[8., 8., 40., 40.]], vec![]], &[vec![0], vec![]], 1, Device::Cpu).unwrap();
        let l = Detector::losses(&net, &x, &t, Precision::Fp32, true);
        l.total.backward();
        assert!(vs.variables()["backbone.body.bn1.weight"].grad().defined());
        assert!(vs.variables()["head.regression.out.weight"].grad().defined());
    }
}

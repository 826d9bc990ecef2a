//! The RetinaNet detector: ResNet + FPN + heads, anchors, batched loss and post-processing.
//!
//! ```no_run
//! use midog_model::{RetinaNet, RetinaNetConfig, Targets};
//! use tch::{Device, nn};
//! # fn main() -> Result<(), midog_model::Error> {
//! let cfg = RetinaNetConfig::default();
//! let device = Device::cuda_if_available();
//! let (vs, net) = midog_model::build(&cfg, device)?; // loads cfg.trunk.backbone_weights if set
//! let anchors = net.anchors_for(512, 512, device); // cached per size
//! # let (images_u8, targets): (tch::Tensor, Targets) = todo!();
//! let images = net.normalize(&images_u8, false); // uint8 NHWC → f32 NCHW
//! let out = net.forward_t(&images, true);
//! let losses = net.loss(&out, &anchors, &targets);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Tensor, nn};

use crate::Error;
use crate::anchors::AnchorGenerator;
use crate::backbone::ResNet;
use crate::box_coder::BoxCoder;
use crate::boxes::box_iou;
use crate::config::{DetectorConfig, FpnLevels, RetinaNetConfig};
use crate::fpn::Fpn;
use crate::head::{HeadOutputs, HeadSpec, RetinaNetHead};
use crate::loss::{LossConfig, Losses, Targets, retinanet_losses};
use crate::matcher::Matcher;
use crate::postprocess::{Detections, PostProcessConfig, postprocess};
use crate::transform::normalize_images;
use crate::weights;

/// RetinaNet with torchvision-compatible variable names (build it on the root path of a `VarStore`).
#[derive(Debug)]
pub struct RetinaNet {
    cfg: RetinaNetConfig,
    backbone: ResNet,
    fpn: Fpn,
    head: RetinaNetHead,
    anchor_generator: AnchorGenerator,
    box_coder: BoxCoder,
    matcher: Matcher,
    loss_cfg: LossConfig,
    post_cfg: PostProcessConfig,
}

impl RetinaNet {
    /// Creates the variables under `vs` (`backbone.body.*`, `backbone.fpn.*`, `head.*`) with
    /// torchvision's initialisation. Does not load `cfg.trunk.backbone_weights` (see [`build`]).
    pub fn new(vs: &nn::Path, cfg: &RetinaNetConfig) -> Result<RetinaNet, Error> {
        cfg.validate()?;
        let body = ResNet::new(
            &(vs / "backbone" / "body"),
            cfg.trunk.backbone,
            cfg.trunk.trainable_backbone_layers,
            cfg.trunk.bn_eps,
            cfg.trunk.backbone_norm,
        );
        let p6p7 = match cfg.fpn_levels {
            FpnLevels::P3p7 => Some(cfg.p6_from),
            FpnLevels::P3p5 => None,
        };
        let fpn =
            Fpn::new(&(vs / "backbone" / "fpn"), &cfg.trunk.backbone.out_channels(), cfg.trunk.fpn_channels, p6p7);
        let spec = HeadSpec {
            in_channels: cfg.trunk.fpn_channels,
            channels: cfg.trunk.head_channels,
            num_convs: cfg.trunk.head_convs,
            kind: cfg.trunk.head,
            gn_groups: cfg.trunk.head_gn_groups,
            num_anchors: cfg.anchors_per_location(),
            num_classes: cfg.trunk.num_classes,
            prior_probability: cfg.trunk.prior_probability,
        };
        let head = RetinaNetHead::new(&(vs / "head"), &spec);
        Ok(RetinaNet {
            backbone: body,
            fpn,
            head,
            anchor_generator: AnchorGenerator::from_config(cfg),
            box_coder: BoxCoder::new(cfg.box_coder_weights, cfg.bbox_xform_clip),
            matcher: Matcher::new(cfg.fg_iou_thresh, cfg.bg_iou_thresh, cfg.allow_low_quality_matches),
            loss_cfg: LossConfig::from_config(cfg),
            post_cfg: PostProcessConfig::from_config(cfg),
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &RetinaNetConfig {
        &self.cfg
    }

    /// Fold the frozen batch norms into the backbone convolutions (default: on; ~1e-6 relative
    /// difference, faster). Off: the exact operation sequence of torchvision (bit-identical on CPU).
    pub fn set_fold_frozen_bn(&mut self, fold: bool) {
        self.backbone.fold_bn = fold;
    }

    pub fn box_coder(&self) -> &BoxCoder {
        &self.box_coder
    }

    pub fn anchor_generator(&self) -> &AnchorGenerator {
        &self.anchor_generator
    }

    /// FPN levels: `[N, 3, H, W]` → `[P3, …]`, each `[N, fpn_channels, h_l, w_l]`.
    pub fn features(&self, images: &Tensor, train: bool) -> Vec<Tensor> {
        self.fpn.forward(&self.backbone.forward_t(images, train))
    }

    /// Head outputs for a normalised batch `[N, 3, H, W]` (f32, or bf16 for bf16 compute):
    /// `cls_logits [N, A, C]`, `bbox_regression [N, A, 4]` in the input's dtype.
    pub fn forward_t(&self, images: &Tensor, train: bool) -> HeadOutputs {
        self.head.forward(&self.features(images, train))
    }

    /// Head outputs of FPN levels computed by [`RetinaNet::features`].
    pub fn head_forward(&self, features: &[Tensor]) -> HeadOutputs {
        self.head.forward(features)
    }

    /// Anchors `[A, 4]` (f32) of an `h × w` input on `device`, computed once per size and device.
    pub fn anchors_for(&self, image_h: i64, image_w: i64, device: Device) -> Tensor {
        self.anchor_generator.anchors(image_h, image_w, device)
    }

    /// Matched ground-truth index per anchor `[N, A]` (i64; −1 background, −2 ignored).
    pub fn match_anchors(&self, anchors: &Tensor, targets: &Targets) -> Tensor {
        let _guard = tch::no_grad_guard();
        let iou = box_iou(&targets.boxes.to_kind(anchors.kind()), anchors); // [N, M, A]
        self.matcher.matches(&iou, &targets.valid)
    }

    /// Training losses of a batch, all on the device without host synchronisation.
    pub fn loss(&self, out: &HeadOutputs, anchors: &Tensor, targets: &Targets) -> Losses {
        let matches = self.match_anchors(anchors, targets);
        retinanet_losses(
            &out.cls_logits,
            &out.bbox_regression,
            anchors,
            &matches,
            targets,
            &self.box_coder,
            &self.loss_cfg,
        )
    }

    /// Post-processed detections per image (`image_sizes[i] = (h, w)` for clipping), sorted by score.
    pub fn detect(&self, out: &HeadOutputs, anchors: &Tensor, image_sizes: &[(i64, i64)]) -> Vec<Detections> {
        postprocess(
            &out.cls_logits,
            &out.bbox_regression,
            anchors,
            &out.num_anchors_per_level,
            image_sizes,
            &self.box_coder,
            &self.post_cfg,
        )
    }

    /// `uint8 [N, H, W, 3]` on the device → normalised `f32 [N, 3, H, W]` (ImageNet mean/std from the
    /// config); see [`normalize_images`].
    pub fn normalize(&self, images_u8_nhwc: &Tensor, channels_last: bool) -> Tensor {
        normalize_images(images_u8_nhwc, self.cfg.trunk.image_mean, self.cfg.trunk.image_std, channels_last)
    }

    /// Saves all variables of `vs` and this model's config as a self-describing checkpoint.
    pub fn save_checkpoint(&self, vs: &nn::VarStore, path: &Path) -> Result<(), Error> {
        weights::save_checkpoint(vs, &DetectorConfig::RetinaNet(self.cfg.clone()), path, &HashMap::new())
    }
}

/// Creates a `VarStore` on `device` and the model in it, then loads `cfg.trunk.backbone_weights` (an
/// ImageNet ResNet or a whole RetinaNet state dict; `cfg.trunk.backbone_weights_skip` prefixes excluded)
/// when set.
pub fn build(cfg: &RetinaNetConfig, device: Device) -> Result<(nn::VarStore, RetinaNet), Error> {
    let vs = nn::VarStore::new(device);
    let net = RetinaNet::new(&vs.root(), cfg)?;
    weights::load_initial_weights(&vs, &cfg.trunk)?;
    Ok((vs, net))
}

/// Rebuilds a model from a checkpoint written by [`RetinaNet::save_checkpoint`] (config from its
/// metadata; every variable must be present with the right shape).
pub fn load_checkpoint(path: &Path, device: Device) -> Result<(nn::VarStore, RetinaNet), Error> {
    let (tensors, metadata) = weights::read_safetensors(path)?;
    let DetectorConfig::RetinaNet(cfg) = weights::checkpoint_config(path, &metadata)? else {
        return Err(Error::Checkpoint { path: path.into(), message: "not a RetinaNet checkpoint".into() });
    };
    let vs = nn::VarStore::new(device);
    let net = RetinaNet::new(&vs.root(), &cfg)?;
    weights::load_state_dict(&vs, tensors, path, &[])?;
    Ok((vs, net))
}

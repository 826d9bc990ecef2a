//! Model configuration (kept free of libtorch so the `pipeline` front end can type, key and
//! document the train stage without loading it): one type per detector family ([`RetinaNetConfig`],
//! [`CenterNetConfig`]) on a shared [`TrunkConfig`], chosen by [`DetectorConfig`]'s `detector`
//! tag. Every field has a default (RetinaNet: torchvision's v1 with a ResNet-18 backbone and one
//! class), so an empty table is a valid config.
//!
//! The config is serialised into every checkpoint (safetensors metadata), and the train stage uses
//! it as its `[stages.train]` model params, flattened into its table. serde cannot combine
//! `deny_unknown_fields` with `flatten`: the engine rejects keys no family knows against the JSON
//! schema derived here, and [`DetectorConfig`]'s deserializer rejects the other family's keys.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A model config that cannot work, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Numeric precision of the training step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// fp32 everywhere.
    #[default]
    Fp32,
    /// bf16 compute by explicit casts, fp32 master weights and losses.
    Bf16,
    /// fp16 autocast (CUDA) with dynamic loss scaling.
    Fp16,
}

impl std::str::FromStr for Precision {
    type Err = ConfigError;

    /// `"fp32"`, `"bf16"` or `"fp16"`, as in the experiment files (for command-line flags).
    fn from_str(s: &str) -> Result<Precision, ConfigError> {
        match s {
            "fp32" => Ok(Precision::Fp32),
            "bf16" => Ok(Precision::Bf16),
            "fp16" => Ok(Precision::Fp16),
            other => Err(ConfigError(format!("precision `{other}`: use fp32, bf16 or fp16"))),
        }
    }
}

impl Precision {
    /// The name experiment files use: `fp32`, `bf16`, `fp16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        }
    }
}

/// Detector family built on the ResNet + FPN trunk (the `detector` tag of [`DetectorConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum DetectorKind {
    /// RetinaNet: anchors, focal loss, box regression (torchvision-compatible).
    #[default]
    Retinanet,
    /// CenterNet-style ("objects as points"): no anchors; a class heatmap at stride 8 (FPN P3 with
    /// P4 and P5 added in) trained with the penalty-reduced focal loss, plus box size and
    /// sub-cell centre offset regressed at the object centres.
    Centernet,
}

/// Normalisation inside the ResNet backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackboneNorm {
    /// torchvision's `FrozenBatchNorm2d` (fixed statistics and affine): for pretrained weights.
    #[default]
    Frozen,
    /// Trainable batch norm with batch statistics in training (torchvision's choice when the
    /// backbone has no pretrained weights): needed to train a deep backbone from scratch.
    Batch,
}

/// ResNet variant used as the backbone (torchvision's `resnet18`, `resnet34`, `resnet50`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackboneKind {
    /// BasicBlock [2, 2, 2, 2]; C3–C5 channels 128, 256, 512.
    #[default]
    Resnet18,
    /// BasicBlock [3, 4, 6, 3]; C3–C5 channels 128, 256, 512.
    Resnet34,
    /// Bottleneck [3, 4, 6, 3]; C3–C5 channels 512, 1024, 2048.
    Resnet50,
}

impl BackboneKind {
    /// The name experiment files and torchvision use: `resnet18`, `resnet34`, `resnet50`.
    pub fn name(self) -> &'static str {
        match self {
            BackboneKind::Resnet18 => "resnet18",
            BackboneKind::Resnet34 => "resnet34",
            BackboneKind::Resnet50 => "resnet50",
        }
    }

    /// Channels of C3, C4, C5.
    pub fn out_channels(self) -> [i64; 3] {
        match self {
            BackboneKind::Resnet18 | BackboneKind::Resnet34 => [128, 256, 512],
            BackboneKind::Resnet50 => [512, 1024, 2048],
        }
    }
}

/// Which pyramid levels the FPN produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum FpnLevels {
    /// torchvision's RetinaNet: P3–P5 from C3–C5 plus P6, P7 (strides 8–128).
    #[default]
    P3p7,
    /// P3–P5 only (strides 8–32): lighter, enough for the 50 px MIDOG boxes.
    P3p5,
}

impl FpnLevels {
    /// Number of pyramid levels.
    pub fn count(self) -> usize {
        match self {
            FpnLevels::P3p7 => 5,
            FpnLevels::P3p5 => 3,
        }
    }
}

/// Input of the P6 convolution (only for `fpn_levels = "p3p7"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum P6Source {
    /// torchvision v1 (`LastLevelP6P7(256, 256)`): P6 = conv(P5).
    #[default]
    P5,
    /// torchvision v2 (`LastLevelP6P7(2048, 256)`): P6 = conv(C5).
    C5,
}

/// Conv tower style of the classification and regression heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    /// torchvision v1: conv3×3 (with bias) + ReLU.
    #[default]
    Plain,
    /// torchvision v2: conv3×3 (no bias) + GroupNorm + ReLU.
    GroupNorm,
}

/// Box regression loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum BoxLossKind {
    /// L1 on encoded deltas, summed (torchvision's default).
    #[default]
    L1,
    /// Smooth-L1 (Huber) on encoded deltas with `smooth_l1_beta`, summed.
    SmoothL1,
    /// Generalised IoU loss on decoded boxes, summed (torchvision v2).
    Giou,
}

/// What both detector families build on: the ResNet backbone, the FPN, the conv towers of the
/// heads, the classes, the input normalisation and the inference limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TrunkConfig {
    /// Backbone: "resnet18", "resnet34" or "resnet50".
    pub backbone: BackboneKind,
    /// Initial weights: a safetensors file with a torchvision ImageNet ResNet state dict
    /// (`conv1.weight`, `layer1.0.bn1.running_mean`, …) or a whole RetinaNet state dict
    /// (`backbone.body.…`, `backbone.fpn.…`, `head.…`). None: random initialisation.
    pub backbone_weights: Option<PathBuf>,
    /// Variable-name prefixes of `backbone_weights` to leave at their initialisation, e.g.
    /// `["head.classification_head.cls_logits"]` to start from COCO weights with another class count.
    pub backbone_weights_skip: Vec<String>,
    /// Number of backbone stages trained, counted from the top as torchvision does
    /// (0: none, 3: layer2–layer4 (default), 5: everything including conv1).
    pub trainable_backbone_layers: u8,
    /// Backbone normalisation: "frozen" (pretrained weights) or "batch" (training from scratch).
    pub backbone_norm: BackboneNorm,
    /// Epsilon of the frozen batch norms (torchvision: 1e-5; its COCO RetinaNet v1 weights need 0.0).
    pub bn_eps: f64,
    /// Channels of every FPN level.
    pub fpn_channels: i64,
    /// Head conv tower: "plain" (v1) or "group_norm" (v2).
    pub head: HeadKind,
    /// Channels of the head's conv tower (torchvision: equal to `fpn_channels`).
    pub head_channels: i64,
    /// Number of conv layers in each head tower (torchvision: 4).
    pub head_convs: usize,
    /// GroupNorm groups for `head = "group_norm"` (torchvision: 32).
    pub head_gn_groups: i64,
    /// Prior probability of the classification bias (CenterNet: of the heatmap output):
    /// bias = −log((1 − p) / p).
    pub prior_probability: f64,
    /// Number of object classes, without background (1: mitotic figure). Labels are 0-based.
    pub num_classes: i64,
    /// Inference: keep scores strictly above this.
    pub score_thresh: f64,
    /// Inference: detections kept per image (RetinaNet: after NMS; CenterNet: the top-K heatmap peaks).
    pub detections_per_img: i64,
    /// Per-channel mean of the input normalisation (RGB, on 0–1 values).
    pub image_mean: [f64; 3],
    /// Per-channel standard deviation of the input normalisation.
    pub image_std: [f64; 3],
}

impl Default for TrunkConfig {
    fn default() -> Self {
        TrunkConfig {
            backbone: BackboneKind::Resnet18,
            backbone_weights: None,
            backbone_weights_skip: Vec::new(),
            trainable_backbone_layers: 3,
            backbone_norm: BackboneNorm::Frozen,
            bn_eps: 1e-5,
            fpn_channels: 256,
            head: HeadKind::Plain,
            head_channels: 256,
            head_convs: 4,
            head_gn_groups: 32,
            prior_probability: 0.01,
            num_classes: 1,
            score_thresh: 0.05,
            detections_per_img: 300,
            image_mean: [0.485, 0.456, 0.406],
            image_std: [0.229, 0.224, 0.225],
        }
    }
}

/// RetinaNet hyper-parameters. Defaults follow torchvision's `retinanet_resnet50_fpn` (v1) except
/// for the backbone (ResNet-18) and `num_classes` (1: mitotic figure).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RetinaNetConfig {
    #[serde(flatten)]
    pub trunk: TrunkConfig,
    /// FPN pyramid levels: "p3p7" (torchvision) or "p3p5".
    pub fpn_levels: FpnLevels,
    /// Input of P6 for "p3p7": "p5" (v1) or "c5" (v2).
    pub p6_from: P6Source,
    /// Anchor base size per pyramid level in pixels; None: 32 · 2^(level − 3), i.e. 32, 64, 128, 256, 512.
    pub anchor_sizes: Option<Vec<f64>>,
    /// Anchor scales applied to every base size; each size is truncated to an integer as torchvision's
    /// `int(x * 2 ** (k / 3))` does. Default 2^0, 2^(1/3), 2^(2/3).
    pub anchor_scales: Vec<f64>,
    /// Anchor aspect ratios (height / width).
    pub anchor_aspect_ratios: Vec<f64>,
    /// Box coder weights (wx, wy, ww, wh).
    pub box_coder_weights: [f64; 4],
    /// Clamp of the decoded dw, dh before `exp` (torchvision: log(1000 / 16)).
    pub bbox_xform_clip: f64,
    /// Anchors with IoU ≥ this are foreground.
    pub fg_iou_thresh: f64,
    /// Anchors with IoU < this are background; between the two thresholds they are ignored.
    pub bg_iou_thresh: f64,
    /// Keep, for every ground-truth box, the anchors with its highest IoU as foreground.
    pub allow_low_quality_matches: bool,
    /// Focal loss α.
    pub focal_alpha: f64,
    /// Focal loss γ.
    pub focal_gamma: f64,
    /// Box regression loss: "l1" (torchvision default), "smooth_l1" or "giou".
    pub box_loss: BoxLossKind,
    /// β of the smooth-L1 loss.
    pub smooth_l1_beta: f64,
    /// ε of the GIoU loss.
    pub giou_eps: f64,
    /// Inference: best candidates kept per pyramid level before NMS.
    pub topk_candidates: i64,
    /// Inference: class-wise NMS IoU threshold (a box is dropped when IoU > this).
    pub nms_thresh: f64,
}

impl Default for RetinaNetConfig {
    fn default() -> Self {
        RetinaNetConfig {
            trunk: TrunkConfig::default(),
            fpn_levels: FpnLevels::P3p7,
            p6_from: P6Source::P5,
            anchor_sizes: None,
            anchor_scales: vec![1.0, 2f64.powf(1.0 / 3.0), 2f64.powf(2.0 / 3.0)],
            anchor_aspect_ratios: vec![0.5, 1.0, 2.0],
            box_coder_weights: [1.0; 4],
            bbox_xform_clip: (1000.0f64 / 16.0).ln(),
            fg_iou_thresh: 0.5,
            bg_iou_thresh: 0.4,
            allow_low_quality_matches: true,
            focal_alpha: 0.25,
            focal_gamma: 2.0,
            box_loss: BoxLossKind::L1,
            smooth_l1_beta: 1.0,
            giou_eps: 1e-7,
            topk_candidates: 1000,
            nms_thresh: 0.5,
        }
    }
}

/// CenterNet-style ("objects as points") hyper-parameters: no anchors; a class heatmap at
/// stride 8 (FPN P3 with P4 and P5 added in) trained with the penalty-reduced focal loss, plus
/// box size and sub-cell centre offset regressed at the object centres. It always builds P3–P5
/// and has no anchors, matcher or NMS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct CenterNetConfig {
    #[serde(flatten)]
    pub trunk: TrunkConfig,
    /// Gaussian σ of the heatmap target per box, relative to the box side (TTFNet's α):
    /// σx = α · w / 6, σy = α · h / 6 in stride-8 cells, at least 1/6 cell. 0.54 ≈ CenterNet's
    /// radius for a minimum IoU of 0.7 (σ ≈ 4.5 px for a 50 px MIDOG box).
    pub centernet_sigma: f64,
    /// α of the penalty-reduced focal loss (exponent on (1 − p) at centres, p elsewhere).
    pub centernet_focal_alpha: f64,
    /// β of the penalty-reduced focal loss (negatives weighted by (1 − heatmap)^β).
    pub centernet_focal_beta: f64,
    /// Weight of the L1 loss on the box size (in stride-8 cells) at the centres.
    pub centernet_size_weight: f64,
    /// Weight of the L1 loss on the sub-cell centre offset at the centres.
    pub centernet_offset_weight: f64,
}

impl Default for CenterNetConfig {
    fn default() -> Self {
        CenterNetConfig {
            trunk: TrunkConfig::default(),
            centernet_sigma: 0.54,
            centernet_focal_alpha: 2.0,
            centernet_focal_beta: 4.0,
            centernet_size_weight: 0.1,
            centernet_offset_weight: 1.0,
        }
    }
}

/// A detector: one config type per family, chosen by the `detector` key ("retinanet" when
/// absent). Serialised flat with that tag, so an experiment's table reads as before, and a
/// family's key holds its own fields only: a CenterNet is not re-trained because an anchor
/// default changed, and a key of the other family in a table is an error, not ignored.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "detector", rename_all = "lowercase")]
pub enum DetectorConfig {
    /// RetinaNet: anchors, focal loss, box regression (torchvision-compatible).
    RetinaNet(RetinaNetConfig),
    /// CenterNet-style: class heatmap at stride 8, size and offset regression, no anchors.
    CenterNet(CenterNetConfig),
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig::RetinaNet(RetinaNetConfig::default())
    }
}

impl From<RetinaNetConfig> for DetectorConfig {
    fn from(c: RetinaNetConfig) -> Self {
        DetectorConfig::RetinaNet(c)
    }
}

impl From<CenterNetConfig> for DetectorConfig {
    fn from(c: CenterNetConfig) -> Self {
        DetectorConfig::CenterNet(c)
    }
}

/// The keys of a family's table (the schema's properties: its own and the trunk's).
fn family_keys(kind: DetectorKind) -> &'static [String] {
    use std::sync::OnceLock;
    fn keys<T: JsonSchema>() -> Vec<String> {
        let schema = schemars::schema_for!(T);
        let props = schema.as_value().get("properties").and_then(|p| p.as_object());
        props.map(|p| p.keys().cloned().collect()).unwrap_or_default()
    }
    static RETINANET: OnceLock<Vec<String>> = OnceLock::new();
    static CENTERNET: OnceLock<Vec<String>> = OnceLock::new();
    match kind {
        DetectorKind::Retinanet => RETINANET.get_or_init(keys::<RetinaNetConfig>),
        DetectorKind::Centernet => CENTERNET.get_or_init(keys::<CenterNetConfig>),
    }
}

impl DetectorConfig {
    pub fn kind(&self) -> DetectorKind {
        match self {
            DetectorConfig::RetinaNet(_) => DetectorKind::Retinanet,
            DetectorConfig::CenterNet(_) => DetectorKind::Centernet,
        }
    }

    pub fn trunk(&self) -> &TrunkConfig {
        match self {
            DetectorConfig::RetinaNet(c) => &c.trunk,
            DetectorConfig::CenterNet(c) => &c.trunk,
        }
    }

    pub fn trunk_mut(&mut self) -> &mut TrunkConfig {
        match self {
            DetectorConfig::RetinaNet(c) => &mut c.trunk,
            DetectorConfig::CenterNet(c) => &mut c.trunk,
        }
    }

    /// FPN levels the detector builds: P3–P7 or P3–P5 for a RetinaNet, always P3–P5 for CenterNet.
    pub fn pyramid_levels(&self) -> usize {
        match self {
            DetectorConfig::RetinaNet(c) => c.fpn_levels.count(),
            DetectorConfig::CenterNet(_) => 3,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            DetectorConfig::RetinaNet(c) => c.validate(),
            DetectorConfig::CenterNet(c) => c.validate(),
        }
    }

    /// The config of a checkpoint's metadata (JSON). Checkpoints written before the families had
    /// their own types carry every field of both; the other family's are dropped here.
    pub fn from_checkpoint_json(json: &str) -> Result<DetectorConfig, ConfigError> {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(json).map_err(|e| ConfigError(e.to_string()))?;
        let kind = tag_of(&map).map_err(ConfigError)?;
        let keys = family_keys(kind);
        let map = map.into_iter().filter(|(k, _)| k == "detector" || keys.contains(k)).collect();
        from_map(map).map_err(ConfigError)
    }
}

fn tag_of(map: &serde_json::Map<String, serde_json::Value>) -> Result<DetectorKind, String> {
    match map.get("detector") {
        None => Ok(DetectorKind::Retinanet),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| e.to_string()),
    }
}

/// A flat table (with or without `detector`) as a family's config; any key of another family
/// or of none is an error in serde's "unknown field" form, so callers can point at it.
fn from_map(mut map: serde_json::Map<String, serde_json::Value>) -> Result<DetectorConfig, String> {
    let kind = tag_of(&map)?;
    map.remove("detector");
    let keys = family_keys(kind);
    if let Some(k) = map.keys().find(|k| !keys.contains(k)) {
        let expected: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
        let mut message = format!("unknown field `{k}`, expected one of {}", expected.join(", "));
        let name = |kind: DetectorKind| if kind == DetectorKind::Retinanet { "retinanet" } else { "centernet" };
        let other = if kind == DetectorKind::Retinanet { DetectorKind::Centernet } else { DetectorKind::Retinanet };
        if family_keys(other).contains(k) {
            message.push_str(&format!(
                "\nhelp: `{k}` applies to detector = \"{}\", not to \"{}\"",
                name(other),
                name(kind)
            ));
        }
        return Err(message);
    }
    /// The table as `T`; a value of the wrong type is named by its key (serde's paths stop at a
    /// flattened struct, so the key is found by reading each alone).
    fn typed<T: serde::de::DeserializeOwned>(map: serde_json::Map<String, serde_json::Value>) -> Result<T, String> {
        serde_json::from_value(serde_json::Value::Object(map.clone())).map_err(|e| {
            let alone = |k: &String, v: &serde_json::Value| {
                let one = serde_json::Map::from_iter([(k.clone(), v.clone())]);
                serde_json::from_value::<T>(serde_json::Value::Object(one)).err()
            };
            match map.iter().find_map(|(k, v)| alone(k, v).map(|e| (k, e))) {
                Some((k, e)) => format!("`{k}`: {e}"),
                None => e.to_string(),
            }
        })
    }
    Ok(match kind {
        DetectorKind::Retinanet => DetectorConfig::RetinaNet(typed(map)?),
        DetectorKind::Centernet => DetectorConfig::CenterNet(typed(map)?),
    })
}

impl<'de> Deserialize<'de> for DetectorConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        from_map(map).map_err(serde::de::Error::custom)
    }
}

impl TrunkConfig {
    /// Checks the trunk's ranges and consistency.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |msg: String| Err(ConfigError(msg));
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        let positive = |v: &f64| *v > 0.0 && v.is_finite();
        if self.trainable_backbone_layers > 5 {
            return bad(format!("trainable_backbone_layers must be 0..=5, got {}", self.trainable_backbone_layers));
        }
        if !non_negative(self.bn_eps) {
            return bad(format!("bn_eps must be a finite number ≥ 0, got {}", self.bn_eps));
        }
        if self.fpn_channels < 1 || self.head_channels < 1 {
            return bad(format!(
                "fpn_channels and head_channels must be ≥ 1, got {} and {}",
                self.fpn_channels, self.head_channels
            ));
        }
        if self.head == HeadKind::GroupNorm
            && (self.head_gn_groups < 1 || self.head_channels % self.head_gn_groups != 0)
        {
            return bad(format!(
                "head_channels ({}) must be a multiple of head_gn_groups ({})",
                self.head_channels, self.head_gn_groups
            ));
        }
        if !(self.prior_probability > 0.0 && self.prior_probability < 1.0) {
            return bad(format!("prior_probability must be in (0, 1), got {}", self.prior_probability));
        }
        if self.num_classes < 1 {
            return bad(format!("num_classes must be ≥ 1 (no background column), got {}", self.num_classes));
        }
        if !(0.0..1.0).contains(&self.score_thresh) {
            return bad(format!("score_thresh must be in [0, 1), got {}", self.score_thresh));
        }
        if self.detections_per_img < 1 {
            return bad("detections_per_img must be ≥ 1".into());
        }
        if !self.image_std.iter().all(positive) {
            return bad(format!("image_std must be > 0, got {:?}", self.image_std));
        }
        Ok(())
    }
}

impl RetinaNetConfig {
    /// torchvision's `retinanet_resnet50_fpn_v2` layout on the given backbone: P6 from C5, GroupNorm
    /// head, GIoU box loss.
    pub fn torchvision_v2(backbone: BackboneKind) -> Self {
        RetinaNetConfig {
            trunk: TrunkConfig { backbone, head: HeadKind::GroupNorm, ..Default::default() },
            p6_from: P6Source::C5,
            box_loss: BoxLossKind::Giou,
            ..Default::default()
        }
    }

    /// Anchor base size per level (explicit or the torchvision default).
    pub fn level_anchor_sizes(&self) -> Vec<f64> {
        match &self.anchor_sizes {
            Some(s) => s.clone(),
            None => (0..self.fpn_levels.count()).map(|l| 32.0 * f64::powi(2.0, l as i32)).collect(),
        }
    }

    /// Anchors per feature-map location.
    pub fn anchors_per_location(&self) -> i64 {
        (self.anchor_scales.len() * self.anchor_aspect_ratios.len()) as i64
    }

    /// Checks ranges and consistency; every model constructor calls this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.trunk.validate()?;
        let bad = |msg: String| Err(ConfigError(msg));
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        let sizes = self.level_anchor_sizes();
        if sizes.len() != self.fpn_levels.count() {
            return bad(format!(
                "anchor_sizes has {} entries but fpn_levels = {:?} has {} levels",
                sizes.len(),
                self.fpn_levels,
                self.fpn_levels.count()
            ));
        }
        if self.anchor_scales.is_empty() || self.anchor_aspect_ratios.is_empty() {
            return bad("anchor_scales and anchor_aspect_ratios must not be empty".into());
        }
        let positive = |v: &f64| *v > 0.0 && v.is_finite();
        if !sizes.iter().all(positive) || !self.anchor_scales.iter().all(positive) {
            return bad("anchor sizes and scales must be finite and > 0".into());
        }
        for s in &sizes {
            for k in &self.anchor_scales {
                if (s * k).trunc() < 1.0 {
                    return bad(format!("anchor size {s} × scale {k} truncates to 0 px"));
                }
            }
        }
        if !self.anchor_aspect_ratios.iter().all(positive) {
            return bad("anchor_aspect_ratios must be finite and > 0".into());
        }
        if !self.box_coder_weights.iter().all(positive) {
            return bad(format!("box_coder_weights must be > 0, got {:?}", self.box_coder_weights));
        }
        if !positive(&self.bbox_xform_clip) {
            return bad(format!("bbox_xform_clip must be > 0, got {}", self.bbox_xform_clip));
        }
        if !(0.0..=1.0).contains(&self.bg_iou_thresh)
            || !(0.0..=1.0).contains(&self.fg_iou_thresh)
            || self.bg_iou_thresh > self.fg_iou_thresh
        {
            return bad(format!(
                "need 0 ≤ bg_iou_thresh ≤ fg_iou_thresh ≤ 1, got {} and {}",
                self.bg_iou_thresh, self.fg_iou_thresh
            ));
        }
        if !(0.0..=1.0).contains(&self.focal_alpha) && self.focal_alpha != -1.0 {
            return bad(format!("focal_alpha must be in [0, 1] (or -1: off), got {}", self.focal_alpha));
        }
        if !non_negative(self.focal_gamma) {
            return bad(format!("focal_gamma must be ≥ 0, got {}", self.focal_gamma));
        }
        if !non_negative(self.smooth_l1_beta) || !non_negative(self.giou_eps) {
            return bad("smooth_l1_beta and giou_eps must be ≥ 0".into());
        }
        if self.topk_candidates < 1 {
            return bad("topk_candidates must be ≥ 1".into());
        }
        if !(0.0..=1.0).contains(&self.nms_thresh) {
            return bad(format!("nms_thresh must be in [0, 1], got {}", self.nms_thresh));
        }
        Ok(())
    }
}

impl CenterNetConfig {
    /// Checks ranges; the CenterNet constructor calls this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.trunk.validate()?;
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        if !(self.centernet_sigma > 0.0 && self.centernet_sigma.is_finite()) {
            return Err(ConfigError(format!("centernet_sigma must be finite and > 0, got {}", self.centernet_sigma)));
        }
        for (name, v) in [
            ("centernet_focal_alpha", self.centernet_focal_alpha),
            ("centernet_focal_beta", self.centernet_focal_beta),
            ("centernet_size_weight", self.centernet_size_weight),
            ("centernet_offset_weight", self.centernet_offset_weight),
        ] {
            if !non_negative(v) {
                return Err(ConfigError(format!("{name} must be a finite number ≥ 0, got {v}")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_torchvision_default() {
        let cfg: DetectorConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg, DetectorConfig::default());
        cfg.validate().unwrap();
        let DetectorConfig::RetinaNet(r) = cfg else { panic!("not a RetinaNet") };
        assert_eq!(r.level_anchor_sizes(), vec![32.0, 64.0, 128.0, 256.0, 512.0]);
        assert_eq!(r.anchors_per_location(), 9);
    }

    #[test]
    fn roundtrip_flat_with_the_tag_and_schema() {
        let cfg = DetectorConfig::RetinaNet(RetinaNetConfig::torchvision_v2(BackboneKind::Resnet50));
        let v = serde_json::to_value(&cfg).unwrap();
        assert_eq!(v["detector"], "retinanet");
        assert_eq!(
            (v["head"].as_str(), v["backbone"].as_str(), v["p6_from"].as_str()),
            (Some("group_norm"), Some("resnet50"), Some("c5"))
        );
        assert!(v.get("centernet_sigma").is_none() && v.get("trunk").is_none(), "flat, own fields only: {v}");
        let back: DetectorConfig = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back, cfg);
        // every key is in the schema (the engine checks unknown keys against it), with its doc
        let schema = serde_json::to_value(schemars::schema_for!(RetinaNetConfig)).unwrap();
        let props = schema["properties"].as_object().unwrap();
        for k in v.as_object().unwrap().keys().filter(|k| *k != "detector") {
            assert!(props.contains_key(k), "{k} missing from the schema");
        }
        assert!(props["fpn_channels"]["description"].as_str().unwrap().contains("FPN"));
    }

    #[test]
    fn each_family_keys_only_its_own_fields_and_rejects_the_others() {
        let c: DetectorConfig = serde_json::from_str(r#"{"detector": "centernet", "centernet_sigma": 1.0}"#).unwrap();
        let DetectorConfig::CenterNet(cn) = &c else { panic!("not a CenterNet: {c:?}") };
        assert_eq!((cn.centernet_sigma, cn.centernet_focal_beta), (1.0, 4.0));
        let keys = serde_json::to_value(&c).unwrap();
        assert!(keys.get("anchor_scales").is_none() && keys.get("fpn_levels").is_none(), "{keys}");
        let e = serde_json::from_str::<DetectorConfig>(r#"{"detector": "centernet", "anchor_sizes": [32.0]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("unknown field `anchor_sizes`") && e.contains("`centernet_sigma`"), "{e}");
        assert!(e.ends_with("\nhelp: `anchor_sizes` applies to detector = \"retinanet\", not to \"centernet\""), "{e}");
        let e = serde_json::from_str::<DetectorConfig>(r#"{"centernet_sigma": 1.0}"#).unwrap_err().to_string();
        assert!(e.starts_with("unknown field `centernet_sigma`"), "a RetinaNet has no centernet_sigma: {e}");
        let e = serde_json::from_str::<DetectorConfig>(r#"{"fpn_channels": "many"}"#).unwrap_err().to_string();
        assert!(e.contains("`fpn_channels`"), "{e}");
        let e = serde_json::from_str::<DetectorConfig>(r#"{"detector": "yolo"}"#).unwrap_err().to_string();
        assert!(e.contains("unknown variant `yolo`"), "{e}");
    }

    #[test]
    fn checkpoints_of_the_flat_config_still_load() {
        // Written before the families had their own types: every field of both, `detector` optional.
        let mut old = serde_json::to_value(DetectorConfig::default()).unwrap();
        let obj = old.as_object_mut().unwrap();
        obj.remove("detector");
        obj.insert("centernet_sigma".into(), serde_json::json!(0.54));
        let back = DetectorConfig::from_checkpoint_json(&old.to_string()).unwrap();
        assert_eq!(back, DetectorConfig::default());
        old["detector"] = serde_json::json!("centernet");
        let back = DetectorConfig::from_checkpoint_json(&old.to_string()).unwrap();
        assert_eq!(back, DetectorConfig::CenterNet(CenterNetConfig::default()));
    }

    #[test]
    fn validation_names_the_problem() {
        let cfg = RetinaNetConfig { fpn_levels: FpnLevels::P3p5, ..Default::default() };
        cfg.validate().unwrap(); // default sizes follow the level count
        let cfg = RetinaNetConfig { anchor_sizes: Some(vec![32.0, 64.0]), ..cfg };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("anchor_sizes"), "{e}");
        let trunk = TrunkConfig { head: HeadKind::GroupNorm, head_channels: 100, ..Default::default() };
        assert!(trunk.validate().unwrap_err().to_string().contains("head_gn_groups"));
        let cfg = RetinaNetConfig { bg_iou_thresh: 0.6, ..Default::default() };
        assert!(cfg.validate().is_err());
        let trunk = TrunkConfig { num_classes: 0, ..Default::default() };
        assert!(DetectorConfig::CenterNet(CenterNetConfig { trunk, ..Default::default() }).validate().is_err());
        let cfg = CenterNetConfig { centernet_sigma: 0.0, ..Default::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("centernet_sigma"));
        let cfg = CenterNetConfig { centernet_size_weight: -1.0, ..Default::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("centernet_size_weight"));
        assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert!("fp64".parse::<Precision>().unwrap_err().to_string().contains("fp32, bf16 or fp16"));
    }
}

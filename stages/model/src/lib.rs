//! RetinaNet (ResNet + FPN + focal loss) in tch, numerically matching torchvision 0.26's
//! `RetinaNet`, with the training step's matching and losses batched on the device.
//!
//! Pieces, one concern per module as in torchvision:
//! [`backbone`] (ResNet-18/34/50, frozen BN, C3–C5), [`fpn`] (P3–P5 (+P6/P7)), [`head`]
//! (plain v1 / GroupNorm v2 heads), [`anchors`], [`box_coder`], [`boxes`] (IoU, GIoU, clipping),
//! [`matcher`], [`loss`] (focal, L1, smooth-L1, GIoU), [`postprocess`] (top-k + exact NMS on the
//! device), [`weights`] (torchvision state dicts and checkpoints as safetensors), [`config`],
//! [`precision`] (fp32 / bf16 / fp16 + loss scaling), [`transform`] (input normalisation) and
//! [`mod@bench`] (synthetic targets). The training step itself is the train stage's
//! (`stages/torch/src/train.rs`), which `pipeline bench train` measures.
//!
//! A second, anchor-free family on the same trunk: [`centernet`] (CenterNet-style heatmap at
//! stride 8) with its batched targets, losses and peak decoding in [`heatmap`]. Training, validation
//! and tiled inference use either through the [`Detector`] trait ([`build_detector`],
//! [`load_detector`] dispatch on the config's `detector`).
//!
//! Shapes: N images, A anchors over all levels, C classes (no background column), M padded ground
//! truth boxes per image.

pub mod anchors;
pub mod backbone;
pub mod bench;
pub mod box_coder;
pub mod boxes;
pub mod centernet;
/// The model configuration, re-exported from the libtorch-free `midog-model-config` crate.
pub mod config {
    pub use midog_model_config::*;
}
pub mod detector;
pub mod domain;
mod error;
pub mod fpn;
pub mod head;
pub mod heatmap;
pub mod layers;
pub mod loss;
pub mod matcher;
pub mod postprocess;
pub mod precision;
pub mod retinanet;
pub mod transform;
pub mod weights;

pub use centernet::{CenterNet, CenterNetOutputs};
pub use config::{
    BackboneKind, BoxLossKind, CenterNetConfig, DetectorConfig, DetectorKind, FpnLevels, HeadKind, P6Source,
    RetinaNetConfig, TrunkConfig,
};
pub use detector::{Detector, build_detector, load_detector};
pub use domain::{DomainClassifier, DomainLoss, dann_ramp, gradient_reversal};
pub use error::Error;
pub use head::HeadOutputs;
pub use loss::{Losses, Targets};
pub use postprocess::Detections;
pub use precision::{LossScaler, Precision, PrecisionExt};
pub use retinanet::{RetinaNet, build, load_checkpoint};

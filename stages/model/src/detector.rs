//! The face every detector family shows to training, validation and tiled inference, so the
//! train and tile_infer stages run any of them through the same code.

use std::path::Path;

use tch::{Device, Kind, Tensor, nn};

use crate::config::{DetectorConfig, TrunkConfig};
use crate::error::Error;
use crate::loss::{Losses, Targets};
use crate::postprocess::Detections;
use crate::precision::{Precision, PrecisionExt};
use crate::retinanet::RetinaNet;

pub trait Detector {
    /// The family's config (what a checkpoint of this model records).
    fn config(&self) -> DetectorConfig;

    /// The backbone, FPN, head-tower, class and normalisation settings both families share.
    fn trunk(&self) -> &TrunkConfig;

    /// `uint8 [N, H, W, 3]` on the device → the normalised float input `[N, 3, H, W]`.
    fn normalize(&self, images_u8_nhwc: &Tensor, channels_last: bool) -> Tensor;

    /// Forward pass and the batch's training losses, all on the device (no host sync).
    fn losses(&self, images: &Tensor, targets: &Targets, precision: Precision, train: bool) -> Losses;

    /// Training forward of a batch whose first `labelled` images have `targets` (one entry per
    /// labelled image) while the rest are unlabelled: the detection losses of the labelled images
    /// only, and the FPN levels (P3, P4, …) of every image for a domain classifier. The trunk runs
    /// once over the whole batch; the heads only over the labelled images, so unlabelled images
    /// cannot reach the detection loss (with batch-statistics normalisation they do share the
    /// batch statistics, as in any mixed batch). Features are in the compute dtype.
    fn losses_with_features(
        &self,
        images: &Tensor,
        targets: &Targets,
        labelled: i64,
        precision: Precision,
        train: bool,
    ) -> (Losses, Vec<Tensor>);

    /// Forward pass (evaluation) and detections per image in input pixels, sorted by score.
    fn detect(&self, images: &Tensor, precision: Precision) -> Vec<Detections>;

    /// Validation: losses and detections from one forward pass.
    fn losses_and_detections(
        &self,
        images: &Tensor,
        targets: &Targets,
        precision: Precision,
    ) -> (Losses, Vec<Detections>);

    /// A self-describing checkpoint (the config travels in the metadata).
    fn save_checkpoint(&self, vs: &nn::VarStore, path: &Path) -> Result<(), Error>;

    /// [`Detector::save_checkpoint`] with more metadata entries (e.g. the stain normalisation
    /// inference must repeat).
    fn save_checkpoint_with(
        &self,
        vs: &nn::VarStore,
        path: &Path,
        extra: &std::collections::HashMap<String, String>,
    ) -> Result<(), Error> {
        crate::weights::save_checkpoint(vs, &self.config(), path, extra)
    }
}

/// Height and width of an NCHW batch.
pub(crate) fn input_size(images: &Tensor) -> (i64, i64) {
    let s = images.size();
    (s[2], s[3])
}

impl Detector for RetinaNet {
    fn config(&self) -> DetectorConfig {
        DetectorConfig::RetinaNet(RetinaNet::config(self).clone())
    }

    fn trunk(&self) -> &TrunkConfig {
        &RetinaNet::config(self).trunk
    }

    fn normalize(&self, images_u8_nhwc: &Tensor, channels_last: bool) -> Tensor {
        RetinaNet::normalize(self, images_u8_nhwc, channels_last)
    }

    fn losses(&self, images: &Tensor, targets: &Targets, precision: Precision, train: bool) -> Losses {
        let (h, w) = input_size(images);
        let anchors = self.anchors_for(h, w, images.device());
        let out = precision.run(|| self.forward_t(&precision.prepare_input(images), train));
        self.loss(&out.to_kind(Kind::Float), &anchors, targets)
    }

    fn losses_with_features(
        &self,
        images: &Tensor,
        targets: &Targets,
        labelled: i64,
        precision: Precision,
        train: bool,
    ) -> (Losses, Vec<Tensor>) {
        let (h, w) = input_size(images);
        let anchors = self.anchors_for(h, w, images.device());
        let (out, features) = precision.run(|| {
            let features = self.features(&precision.prepare_input(images), train);
            let head_input: Vec<Tensor> = features.iter().map(|f| f.narrow(0, 0, labelled)).collect();
            (self.head_forward(&head_input), features)
        });
        (self.loss(&out.to_kind(Kind::Float), &anchors, targets), features)
    }

    fn detect(&self, images: &Tensor, precision: Precision) -> Vec<Detections> {
        let (h, w) = input_size(images);
        let anchors = self.anchors_for(h, w, images.device());
        let out = precision.run(|| self.forward_t(&precision.prepare_input(images), false)).to_kind(Kind::Float);
        RetinaNet::detect(self, &out, &anchors, &vec![(h, w); images.size()[0] as usize])
    }

    fn losses_and_detections(
        &self,
        images: &Tensor,
        targets: &Targets,
        precision: Precision,
    ) -> (Losses, Vec<Detections>) {
        let (h, w) = input_size(images);
        let anchors = self.anchors_for(h, w, images.device());
        let out = precision.run(|| self.forward_t(&precision.prepare_input(images), false)).to_kind(Kind::Float);
        let losses = self.loss(&out, &anchors, targets);
        (losses, RetinaNet::detect(self, &out, &anchors, &vec![(h, w); images.size()[0] as usize]))
    }

    fn save_checkpoint(&self, vs: &nn::VarStore, path: &Path) -> Result<(), Error> {
        RetinaNet::save_checkpoint(self, vs, path)
    }
}

/// Builds the detector of `cfg`'s family (initial weights from its `backbone_weights`).
pub fn build_detector(cfg: &DetectorConfig, device: Device) -> Result<(nn::VarStore, Box<dyn Detector>), Error> {
    match cfg {
        DetectorConfig::RetinaNet(c) => {
            let (vs, net) = crate::retinanet::build(c, device)?;
            Ok((vs, Box::new(net)))
        }
        DetectorConfig::CenterNet(c) => {
            let (vs, net) = crate::centernet::build(c, device)?;
            Ok((vs, Box::new(net)))
        }
    }
}

/// Rebuilds any detector from its self-describing checkpoint (the family from the config's
/// `detector`; checkpoints written before that field existed are RetinaNets).
pub fn load_detector(path: &Path, device: Device) -> Result<(nn::VarStore, Box<dyn Detector>), Error> {
    let (tensors, metadata) = crate::weights::read_safetensors(path)?;
    let cfg = crate::weights::checkpoint_config(path, &metadata)?;
    let mut no_weights = cfg.clone();
    no_weights.trunk_mut().backbone_weights = None;
    let (vs, det) = build_detector(&no_weights, device)?;
    crate::weights::load_state_dict(&vs, tensors, path, &[])?;
    Ok((vs, det))
}

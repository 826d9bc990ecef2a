//! The loader's view of the dataset's images (files, mitosis boxes, resolutions) and the
//! conversion of the loader's boxes into device targets: what training, validation and the
//! training benchmark share.

use std::collections::HashMap;

use engine::StageError;
use midog_data::loader::{LoaderImage, PatchSpec};
use midog_model::Targets;
use stages::artifact::SamplePlan;
use stages::artifact::dataset_manifest::LoadedDataset;
use stages::artifact::sample_plan::PlannedPatch;
use tch::Device;

/// The loader's view of a set of images: their files and mitosis boxes, and where each image id is.
pub struct ImageSet {
    pub images: Vec<LoaderImage>,
    pub index: HashMap<u32, usize>,
    pub um_per_px: Vec<f64>,
}

impl ImageSet {
    /// The images `ids` with the mitosis boxes of the sample plan (the only labels training and
    /// validation see; the plan holds held-out labels only for an oracle split).
    pub fn new(
        ids: impl Iterator<Item = u32>,
        dataset: &LoadedDataset,
        plan: &SamplePlan,
    ) -> Result<ImageSet, StageError> {
        let mut set = ImageSet { images: Vec::new(), index: HashMap::new(), um_per_px: Vec::new() };
        for id in ids {
            if set.index.contains_key(&id) {
                continue;
            }
            let img = dataset.image(id)?;
            let planned =
                plan.image(id).ok_or_else(|| StageError::msg(format!("image {id} is not in the sample plan")))?;
            set.index.insert(id, set.images.len());
            set.um_per_px.push(img.um_per_px);
            set.images.push(LoaderImage {
                path: dataset.path_of(img),
                boxes: planned.mitoses.iter().map(|b| [b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32]).collect(),
                stain: None,
            });
        }
        Ok(set)
    }

    pub fn batches(&self, patches: &[PlannedPatch], batch_size: usize) -> Vec<Vec<PatchSpec>> {
        patches
            .chunks(batch_size)
            .map(|c| c.iter().map(|p| PatchSpec { image: self.index[&p.image_id], x: p.x, y: p.y }).collect())
            .collect()
    }
}

/// The targets of the first `labelled` patches of a batch (the rest are unlabelled patches for
/// the domain loss: whatever boxes they carry never become targets).
pub fn labelled_targets(
    boxes: &[Vec<[f32; 4]>],
    labelled: usize,
    num_classes: i64,
    device: Device,
) -> Result<Targets, StageError> {
    targets_of(&boxes[..labelled.min(boxes.len())], num_classes, device)
}

/// Loader boxes → padded targets on the device (slivers clipped at the patch border dropped).
pub fn targets_of(boxes: &[Vec<[f32; 4]>], num_classes: i64, device: Device) -> Result<Targets, StageError> {
    let kept: Vec<Vec<[f32; 4]>> = boxes
        .iter()
        .map(|bs| bs.iter().copied().filter(|b| b[2] - b[0] >= 1.0 && b[3] - b[1] >= 1.0).collect())
        .collect();
    let labels: Vec<Vec<i64>> = kept.iter().map(|bs| vec![0; bs.len()]).collect();
    Targets::from_lists(&kept, &labels, num_classes, device).map_err(StageError::domain)
}

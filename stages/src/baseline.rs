//! The blob_baseline stage: the non-learned detector of `midog_synth::baseline` (haematoxylin
//! threshold, area window, darkness score) as a pipeline stage, so an experiment scores it with
//! the standard score stage and the report shows it next to the trained model. It needs no
//! training stage: it tunes its parameters on the training images of the split (best summed F1
//! with the official matching, at each image's resolution) and writes what the nms stage writes
//! (`detections.parquet` and `images.json` for the validation and test images).

use std::time::Instant;

use engine::{ParamError, Resources, StageContext, StageDef, StageError};
use midog_data::{TiffImage, TileCache};
use midog_eval::{Detection, Point};
use midog_synth::RgbImage;
use midog_synth::baseline::{BlobDetector, SearchGrid, TuningImage, tune};
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifact::dataset_manifest::LoadedDataset;
use crate::artifact::heldout::HeldoutLabels;
use crate::artifact::inferred::{InferredImage, InferredImages, Role};
use crate::artifact::tables::{DETECTIONS_FILE, Detections};
use crate::artifact::{DatasetImage, DatasetManifest, SplitSets};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BlobBaselineParams {
    /// Haematoxylin thresholds to try, in standard deviations above each image's mean.
    pub thresholds_sd: Vec<f64>,
    /// Smallest blob areas to try, µm².
    pub min_areas_um2: Vec<f64>,
    /// Largest blob areas to try, µm² (every pair with min < max is tried).
    pub max_areas_um2: Vec<f64>,
}

impl Default for BlobBaselineParams {
    fn default() -> Self {
        let g = SearchGrid::default();
        BlobBaselineParams {
            thresholds_sd: g.thresholds_sd,
            min_areas_um2: g.min_areas_um2,
            max_areas_um2: g.max_areas_um2,
        }
    }
}

impl BlobBaselineParams {
    fn grid(&self) -> SearchGrid {
        SearchGrid {
            thresholds_sd: self.thresholds_sd.clone(),
            min_areas_um2: self.min_areas_um2.clone(),
            max_areas_um2: self.max_areas_um2.clone(),
        }
    }
}

pub struct BlobBaselineStage;

impl StageDef for BlobBaselineStage {
    type Params = BlobBaselineParams;
    const KIND: &'static str = "blob_baseline";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "non-learned detector (dark blobs of the right size), tuned on train; detections like nms's";
    const NEEDS: &'static [&'static str] = &["split"];

    fn validate(p: &BlobBaselineParams) -> Result<(), ParamError> {
        for (name, values) in [
            ("thresholds_sd", &p.thresholds_sd),
            ("min_areas_um2", &p.min_areas_um2),
            ("max_areas_um2", &p.max_areas_um2),
        ] {
            if values.is_empty() {
                return Err(ParamError::new(&[name], "needs at least one value"));
            }
            if values.iter().any(|v| !v.is_finite()) {
                return Err(ParamError::new(&[name], "values must be finite numbers"));
            }
        }
        if p.min_areas_um2.iter().chain(&p.max_areas_um2).any(|&a| a < 0.0) {
            return Err(ParamError::new(&["min_areas_um2"], "areas must not be negative"));
        }
        if p.grid().windows().is_empty() {
            return Err(ParamError::new(&["max_areas_um2"], "no area window: every max is at most every min"));
        }
        Ok(())
    }

    fn resources(_p: &BlobBaselineParams) -> Resources {
        Resources { cpus: 0, gpus: 0, memory_mb: 4096 }
    }
}

pub fn run(p: &BlobBaselineParams, ctx: &StageContext) -> Result<(), StageError> {
    let split = SplitSets::load(ctx.input("split")?)?;
    let dataset_artifact = ctx.ancestor("dataset")?;
    let dataset = DatasetManifest::load(dataset_artifact)?;
    // Held-out labels, for the images the split chose (test images, and the oracle's training).
    let heldout =
        if split.heldout.is_empty() { HeldoutLabels::default() } else { HeldoutLabels::load(dataset_artifact)? };
    let grid = p.grid();
    let train = labelled(&dataset, &split.train, &split.heldout, "train")?;
    if train.is_empty() {
        return Err(StageError::msg("the split has no training images to tune the baseline on"));
    }
    let mut targets = Vec::new();
    for (role, ids) in [(Role::Val, &split.val), (Role::Test, &split.test)] {
        targets.extend(labelled(&dataset, ids, &split.heldout, role.as_str())?.into_iter().map(|img| (role, img)));
    }
    if !targets.iter().any(|(role, _)| *role == Role::Test) {
        return Err(StageError::msg("the split has no test images to detect on"));
    }

    let progress = ctx.progress();
    progress.start(train.len() as u64, "baseline: measuring blobs on training images");
    let tuning: Vec<TuningImage> = train
        .par_iter()
        .map(|img| {
            ctx.check_cancelled()?;
            let rgb = read_whole(&dataset, img)?;
            let boxes = match heldout.image(img.id).filter(|_| !img.labelled) {
                Some(h) => &h.mitoses,
                None => &img.mitoses,
            };
            let mitoses = boxes.iter().map(|b| Point::new((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0)).collect();
            let t = TuningImage::new(&rgb, mitoses, &grid);
            progress.inc(1);
            Ok(t)
        })
        .collect::<Result<_, StageError>>()?;
    progress.start(grid.len() as u64, "baseline: grid search");
    let tuned = tune(&tuning, &grid).map_err(StageError::domain)?;
    progress.set(grid.len() as u64);
    let d = tuned.detector;
    tracing::info!(
        "baseline tuned on {} training images: threshold {} sd, area {}–{} µm²; train F1 {:.3} at score > {:.3}",
        train.len(),
        d.threshold_sd,
        d.min_area_um2,
        d.max_area_um2,
        tuned.train.f1,
        tuned.train.threshold
    );

    progress.start(targets.len() as u64, "baseline: detecting on validation and test images");
    let detected: Vec<(InferredImage, Vec<Detection>)> = targets
        .par_iter()
        .map(|&(role, img)| {
            ctx.check_cancelled()?;
            let start = Instant::now();
            let dets = detect(&d, &dataset, img)?;
            progress.inc(1);
            let inferred = InferredImage::new(img, role, 1, start.elapsed().as_secs_f64());
            Ok((inferred, dets))
        })
        .collect::<Result<_, StageError>>()?;

    let mut out = Detections::default();
    for (img, dets) in &detected {
        for det in dets {
            out.push(img.id, det.x, det.y, det.score);
        }
    }
    ctx.set_summary("threshold_sd", d.threshold_sd);
    ctx.set_summary("min_area_um2", d.min_area_um2);
    ctx.set_summary("max_area_um2", d.max_area_um2);
    ctx.set_summary("train_images", train.len() as u64);
    ctx.set_summary("train_f1", tuned.train.f1);
    ctx.set_summary("train_score_threshold", tuned.train.threshold);
    ctx.set_summary("grid_points", tuned.candidates as u64);
    ctx.set_summary("detections", out.score.len() as u64);
    InferredImages { images: detected.into_iter().map(|(img, _)| img).collect() }.save(ctx.out_dir())?;
    out.write(&ctx.out_dir().join(DETECTIONS_FILE))
}

/// The images of `ids`, each required to be labelled or to have held-out labels the split chose
/// (the baseline tunes and is scored on labels).
fn labelled<'a>(
    dataset: &'a LoadedDataset,
    ids: &[u32],
    heldout: &[u32],
    set: &str,
) -> Result<Vec<&'a DatasetImage>, StageError> {
    ids.iter()
        .map(|&id| {
            let img = dataset.image(id)?;
            if img.labelled || heldout.contains(&id) {
                Ok(img)
            } else {
                Err(StageError::msg(format!("{set} image {id} ({}) has no labels", img.scanner)))
            }
        })
        .collect()
}

/// Level 0 of an image whole, at the resolution the dataset stage recorded for it.
fn read_whole(dataset: &LoadedDataset, img: &DatasetImage) -> Result<RgbImage, StageError> {
    let path = dataset.path_of(img);
    // Every chunk is read once: a cache would only hold memory.
    let tiff = TiffImage::open_with_cache(&path, std::sync::Arc::new(TileCache::new(0))).map_err(StageError::domain)?;
    RgbImage::from_tiff(&tiff, img.um_per_px).map_err(StageError::domain)
}

fn detect(d: &BlobDetector, dataset: &LoadedDataset, img: &DatasetImage) -> Result<Vec<Detection>, StageError> {
    let mut dets = d.detect(&read_whole(dataset, img)?);
    // Highest score first, as the nms stage writes them.
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(dets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_synth_crates_grid_and_validate() {
        let p = BlobBaselineParams::default();
        assert_eq!(p.grid(), SearchGrid::default());
        assert!(BlobBaselineStage::validate(&p).is_ok());
    }

    #[test]
    fn empty_or_impossible_grids_are_rejected() {
        let no_thresholds = BlobBaselineParams { thresholds_sd: vec![], ..Default::default() };
        assert!(BlobBaselineStage::validate(&no_thresholds).is_err());
        let no_window =
            BlobBaselineParams { min_areas_um2: vec![50.0], max_areas_um2: vec![40.0], ..Default::default() };
        let e = BlobBaselineStage::validate(&no_window).unwrap_err();
        assert!(format!("{e:?}").contains("window"), "{e:?}");
        let nan = BlobBaselineParams { thresholds_sd: vec![f64::NAN], ..Default::default() };
        assert!(BlobBaselineStage::validate(&nan).is_err());
    }
}

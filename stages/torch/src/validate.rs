//! One validation pass over the (unaugmented) validation patches: the mean loss, and the F1 of
//! the detections at the best threshold with the MIDOG matching (7.5 µm at each image's own
//! resolution), each patch counting as one image.

use engine::StageError;
use midog_data::loader::{AugmentConfig, LoaderConfig, PatchLoader, PatchSpec};
use midog_eval::{Detection, Point, PointMatcher, SweepImage, ThresholdCurve};
use midog_model::{Detector, Precision};
use tch::{Device, Kind, Tensor};

use crate::batch_tensor::TensorBatch;
use crate::image_set::{ImageSet, targets_of};

#[derive(Debug, Clone, Copy)]
pub struct ValidationResult {
    pub loss: f64,
    pub f1: f64,
    pub threshold: f64,
}

#[allow(clippy::too_many_arguments)]
pub fn validate(
    net: &dyn Detector,
    set: &ImageSet,
    batches: Vec<Vec<PatchSpec>>,
    patch: u32,
    device: Device,
    precision: Precision,
    channels_last: bool,
    threads: usize,
    num_classes: i64,
) -> Result<ValidationResult, StageError> {
    let _guard = tch::no_grad_guard();
    let b = batches.iter().map(Vec::len).max().unwrap_or(1) as i64;
    let config =
        LoaderConfig { patch_size: patch, threads, seed: 0, augment: AugmentConfig::NONE, prefetch_batches: 2 };
    let loader = PatchLoader::start(set.images.clone(), batches, config, move |_| {
        TensorBatch::allocate(b, patch as i64, device)
    })
    .map_err(StageError::domain)?;
    let matcher = PointMatcher::MIDOG;
    let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
    let mut n_batches = 0;
    let mut gts: Vec<Vec<Point>> = Vec::new();
    let mut dets: Vec<Vec<Detection>> = Vec::new();
    let mut radii: Vec<f64> = Vec::new();
    for batch in loader {
        let batch = batch.map_err(StageError::domain)?;
        let n = batch.specs.len() as i64;
        let pixels = midog_model::transform::upload(&batch.pixels.tensor.narrow(0, 0, n), device);
        let images = net.normalize(&pixels, channels_last);
        let targets = targets_of(&batch.boxes, num_classes, device)?;
        let (losses, detections) = net.losses_and_detections(&images, &targets, precision);
        loss_sum += losses.total;
        n_batches += 1;
        for (i, d) in detections.into_iter().enumerate() {
            let boxes: Vec<f32> = Vec::try_from(d.boxes.to_device(Device::Cpu).reshape([-1])).unwrap_or_default();
            let scores: Vec<f32> = Vec::try_from(d.scores.to_device(Device::Cpu)).unwrap_or_default();
            dets.push(
                boxes
                    .chunks(4)
                    .zip(&scores)
                    .map(|(b, &s)| Detection::new(((b[0] + b[2]) / 2.0) as f64, ((b[1] + b[3]) / 2.0) as f64, s as f64))
                    .collect(),
            );
            gts.push(
                batch.boxes[i]
                    .iter()
                    .map(|b| Point::new(((b[0] + b[2]) / 2.0) as f64, ((b[1] + b[3]) / 2.0) as f64))
                    .collect(),
            );
            radii.push(matcher.radius_px(set.um_per_px[batch.specs[i].image]));
        }
    }
    let sweep: Vec<SweepImage> =
        (0..gts.len()).map(|i| SweepImage { ground_truth: &gts[i], detections: &dets[i], radius: radii[i] }).collect();
    let curve = ThresholdCurve::compute(&sweep);
    let best = curve.best();
    Ok(ValidationResult {
        loss: loss_sum.double_value(&[]) / n_batches.max(1) as f64,
        f1: best.f1,
        threshold: best.threshold,
    })
}

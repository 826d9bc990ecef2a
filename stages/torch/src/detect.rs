//! `pipeline detect`: a trained model (our checkpoint, or torchvision RetinaNet weights with a
//! model TOML) over whole images, with the same tiling and NMS as the pipeline, written as
//! official MIDOG JSON.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use midog_data::TiffImage;
use midog_eval::BoxDetection;
use midog_eval::formats::DetectionsFile;
use midog_model::{Detector, DetectorConfig};
use stages::cli::DetectArgs;
use tch::nn::VarStore;
use torch_stage_defs::device::loader_threads;
use torch_stage_defs::train::TrainParams;

use crate::device;
use crate::stain_norm::StainReference;
use crate::tiled::TiledDetector;

/// Loads our checkpoint (self-describing), or torchvision weights with the architecture from `model`.
pub fn load_model(checkpoint: &Path, model: Option<&Path>, dev: tch::Device) -> Result<(VarStore, Box<dyn Detector>)> {
    let (_, meta) = midog_model::weights::read_safetensors(checkpoint)?;
    if midog_model::weights::checkpoint_config(checkpoint, &meta).is_ok() && model.is_none() {
        return Ok(midog_model::load_detector(checkpoint, dev)?);
    }
    let Some(model) = model else {
        bail!(
            "{} carries no model config (not a checkpoint of the train stage); give the architecture with --model model.toml",
            checkpoint.display()
        );
    };
    let mut cfg = read_model_toml(model)?;
    cfg.trunk_mut().backbone_weights = Some(checkpoint.to_path_buf());
    Ok(midog_model::build_detector(&cfg, dev)?)
}

/// The model table of a `model.toml` (the train stage's keys), with unknown keys rejected.
pub fn read_model_toml(model: &Path) -> Result<DetectorConfig> {
    let text = std::fs::read_to_string(model).with_context(|| format!("reading {}", model.display()))?;
    let table: toml::Table = toml::from_str(&text).with_context(|| format!("{}: invalid TOML", model.display()))?;
    if let Some(e) = engine::stage::unknown_key::<TrainParams>(&table) {
        bail!("{}: {}{}", model.display(), e.message, e.help.map(|h| format!(" ({h})")).unwrap_or_default());
    }
    let params: TrainParams =
        toml::Value::Table(table).try_into().with_context(|| format!("{}: invalid model keys", model.display()))?;
    Ok(params.model)
}

pub fn run(a: &DetectArgs) -> Result<()> {
    let keys = a.output_keys().map_err(anyhow::Error::msg)?;
    let dev = device::resolve(&a.device, &[]).map_err(anyhow::Error::msg)?;
    let precision: midog_model::Precision = a.precision.parse().map_err(|e| anyhow::anyhow!("--precision: {e}"))?;
    if precision == midog_model::Precision::Fp16 {
        bail!("--precision fp16: inference supports fp32 and bf16");
    }
    // The front end turns --experiment into --checkpoint and the experiment's parameters.
    let Some(checkpoint) = &a.checkpoint else { bail!("give --checkpoint (or --experiment, through `pipeline`)") };
    let (vs, net) = load_model(checkpoint, a.model.as_deref(), dev)?;
    // Stain normalisation as in training, when the checkpoint was trained with it.
    let stain = StainReference::of_checkpoint(checkpoint)?;
    if let Some(r) = &stain {
        eprintln!("stain normalisation ({}) as in training", r.method.name());
    }
    let channels_last = dev.is_cuda();
    if channels_last {
        midog_model::precision::to_channels_last(&vs);
    }
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let detector = TiledDetector {
        net: net.as_ref(),
        device: dev,
        precision,
        tile: a.tile_size,
        overlap: a.overlap,
        batch_size: a.batch_size,
        min_score: a.min_score,
        threads: loader_threads(0, threads, dev.is_cuda()),
        channels_last,
    };
    let mut out = DetectionsFile::default();
    let mut raw = serde_json::Map::new();
    for (path, name) in a.images.iter().zip(keys) {
        let tiff = Arc::new(TiffImage::open(path)?);
        let um = match (tiff.um_per_px(), a.um_per_px) {
            (_, Some(u)) => u,
            (Some(u), None) => u,
            (None, None) => bail!("{}: the file has no resolution tags; give --um-per-px", path.display()),
        };
        let start = std::time::Instant::now();
        let normalise = match &stain {
            Some(r) => r.transform(path, "pipeline detect (the checkpoint's stain normalisation)")?,
            None => None,
        };
        let found = detector.detect_normalised(&tiff, normalise.as_ref(), &mut |_| true).map_err(anyhow::Error::msg)?;
        let boxes: Vec<BoxDetection> = found
            .iter()
            .map(|c| BoxDetection { x1: c.b[0], y1: c.b[1], x2: c.b[2], y2: c.b[3], score: c.score, tile: c.tile })
            .collect();
        let radius_px = a.radius_um.map(|r| r / um).unwrap_or(a.radius_px);
        let mut dets = stages::nms::suppress(&boxes, a.iou, radius_px);
        if let Some(t) = a.threshold {
            // As the score stage counts a detection: strictly above the threshold.
            dets.retain(|d| d.score > t);
        }
        eprintln!(
            "{name}: {} detections ({} candidates) in {:.2} s",
            dets.len(),
            found.len(),
            start.elapsed().as_secs_f64()
        );
        out.insert_pixels(name.clone(), &dets, um);
        if a.raw_boxes.is_some() {
            let list: Vec<serde_json::Value> =
                found.iter().map(|c| serde_json::json!({"tile": c.tile, "box": c.b, "score": c.score})).collect();
            raw.insert(name, serde_json::Value::Array(list));
        }
    }
    out.save(&a.output)?;
    if let Some(p) = &a.raw_boxes {
        std::fs::write(p, serde_json::to_vec_pretty(&raw)?).with_context(|| format!("writing {}", p.display()))?;
    }
    println!("wrote {} ({} images)", a.output.display(), a.images.len());
    Ok(())
}

//! `pipeline score`: score any tool's detections (official MIDOG JSON) against ground truth,
//! exactly as the MIDOG evaluation does — except that an image with ground truth but no entry in
//! the detections counts its mitoses as misses (with a warning) instead of being skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use midog_data::{TiffImage, parse_id_ranges};
use midog_eval::external::{ScoreOptions, render_text, score_external};
use midog_eval::formats::{DetectionsFile, GroundTruth, midog_2021_labelled};
use midog_eval::{PointMatcher, ScoreThreshold};

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// Ground truth: the official evaluation's JSON ({"007.tiff": [[x_mm, y_mm, 0], ...]}) or a MIDOG.json.
    #[arg(long, value_name = "GT.json")]
    pub ground_truth: PathBuf,
    /// Detections: a JSON object keyed by image file name, each a "Multiple points" object (mm).
    #[arg(long, value_name = "DETS.json")]
    pub detections: PathBuf,
    /// Keep points with probability > T (default: every point counts, as in the official evaluation).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Resolution for a MIDOG.json ground truth when the images are not beside it.
    #[arg(long)]
    pub um_per_px: Option<f64>,
    /// Score only these images (comma-separated file names), e.g. a test split.
    #[arg(long, value_delimiter = ',')]
    pub images: Vec<String>,
    /// MIDOG.json ground truth: the ids of unlabelled images (never scored), e.g. "151-200", or
    /// "none". Every other image is labelled, with or without annotations. Default: the MIDOG 2021
    /// definition (1–150 labelled, 151–200 Leica GT450 unlabelled).
    #[arg(long, value_name = "IDS")]
    pub unlabelled_ids: Option<String>,
    /// Hit radius in µm.
    #[arg(long, default_value_t = midog_eval::MIDOG_RADIUS_UM)]
    pub radius_um: f64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: ScoreArgs) -> Result<()> {
    let unlabelled = match a.unlabelled_ids.as_deref() {
        None => None,
        Some("none") => Some(Vec::new()),
        Some(text) => Some(parse_id_ranges(text).map_err(|e| anyhow::anyhow!("--unlabelled-ids: {e}"))?),
    };
    let labelled = |id: u32| -> Option<bool> {
        match &unlabelled {
            None => midog_2021_labelled(id),
            Some(ranges) => Some(!ranges.iter().any(|r| r.contains(&id))),
        }
    };
    let gt = GroundTruth::load(&a.ground_truth, &labelled)?;
    let dets = DetectionsFile::load(&a.detections)?;
    let gt_dir = a.ground_truth.parent().unwrap_or(Path::new(".")).to_path_buf();
    // Resolution of pixel ground truth: the images beside the ground truth, else --um-per-px.
    let um_per_px = |name: &str| -> Option<f64> { resolution_of(&gt_dir, name).or(a.um_per_px) };
    let only: Option<BTreeSet<String>> = (!a.images.is_empty()).then(|| a.images.iter().cloned().collect());
    let options = ScoreOptions {
        matcher: PointMatcher { radius_um: a.radius_um },
        threshold: ScoreThreshold::from(a.threshold),
        um_per_px: &um_per_px,
        only_images: only.as_ref(),
        ..ScoreOptions::default()
    };
    let report = score_external(&gt, &dets, &a.detections, &options)
        .with_context(|| format!("scoring {} against {}", a.detections.display(), a.ground_truth.display()))?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_text(&report));
    }
    Ok(())
}

fn resolution_of(dir: &Path, name: &str) -> Option<f64> {
    TiffImage::open(dir.join(name)).ok().and_then(|t| t.um_per_px())
}

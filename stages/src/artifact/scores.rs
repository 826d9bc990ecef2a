//! The score stage's outputs that later stages (report, export) read.

use std::path::Path;

use engine::StageError;
use midog_eval::{Bootstrap, MetricIntervals};
use serde::{Deserialize, Serialize};

pub const SCORES_FILE: &str = "scores.json";
pub const METRICS_FILE: &str = "metrics.parquet";
pub const PER_IMAGE_FILE: &str = "per_image.parquet";

/// TP/FP/FN and derived metrics of a group of images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupScore {
    /// `val` or `test`.
    pub split: String,
    /// A scanner name, or `all`.
    pub scanner: String,
    pub images: usize,
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Average precision over all thresholds (`None` without ground truth).
    pub ap: Option<f64>,
    /// Bootstrap confidence intervals of F1, precision and recall (resampling this row's images);
    /// `None` when the row cannot have one, and `no_interval` says why.
    #[serde(default)]
    pub intervals: Option<MetricIntervals>,
    /// Why the row has no interval (fewer than 2 images, no mitotic figures).
    #[serde(default)]
    pub no_interval: Option<String>,
    /// Precision–recall curve `(recall, precision)` for plots.
    pub pr_curve: Vec<(f64, f64)>,
    /// F1 against threshold `(threshold, f1)` for plots.
    pub f1_curve: Vec<(f64, f64)>,
}

/// One image's result at the chosen threshold, with every detection's outcome for galleries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageScore {
    pub id: u32,
    pub file_name: String,
    pub split: String,
    pub scanner: String,
    pub um_per_px: f64,
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// Ground-truth centres, and the detection each claimed (`None`: missed).
    pub ground_truth: Vec<(f64, f64, Option<usize>)>,
    /// Detections above the threshold: x, y, score, true positive or not.
    pub detections: Vec<(f64, f64, f64, bool)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// The detection threshold applied to the test images (`score > threshold`).
    pub threshold: f64,
    /// How it was chosen: `best-on-val` or `fixed`.
    pub threshold_rule: String,
    /// Validation F1 at that threshold (`None` without validation images).
    pub val_f1: Option<f64>,
    pub radius_um: f64,
    /// How the intervals were computed (resamples, level, seed).
    #[serde(default)]
    pub bootstrap: Option<Bootstrap>,
    pub groups: Vec<GroupScore>,
    pub images: Vec<ImageScore>,
}

impl Scores {
    pub fn load(dir: &Path) -> Result<Scores, StageError> {
        super::read_json(&dir.join(SCORES_FILE))
    }

    pub fn group(&self, split: &str, scanner: &str) -> Option<&GroupScore> {
        self.groups.iter().find(|g| g.split == split && g.scanner == scanner)
    }

    /// The per-image counts of the images of one row (`scanner` = `all` for the whole split),
    /// keyed by image id, in id order: what a paired comparison resamples.
    pub fn image_counts(&self, split: &str, scanner: &str) -> Vec<(u32, midog_eval::Counts)> {
        let mut out: Vec<(u32, midog_eval::Counts)> = self
            .images
            .iter()
            .filter(|i| i.split == split && (scanner == "all" || i.scanner == scanner))
            .map(|i| (i.id, midog_eval::Counts::new(i.tp, i.fp, i.fn_)))
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }
}

/// The bootstrap stream of a row: the score stage's intervals and compare's paired resamples
/// of the same row draw the same images.
pub fn row_stream(split: &str, scanner: &str) -> u64 {
    Bootstrap::stream(&format!("{split}/{scanner}"))
}

impl GroupScore {
    /// A row from its summed counts, without curves or intervals yet.
    pub fn from_counts(split: &str, scanner: &str, images: usize, c: midog_eval::Counts) -> GroupScore {
        GroupScore {
            split: split.into(),
            scanner: scanner.into(),
            images,
            tp: c.tp,
            fp: c.fp,
            fn_: c.fn_,
            precision: c.precision(),
            recall: c.recall(),
            f1: c.f1(),
            ap: None,
            intervals: None,
            no_interval: None,
            pr_curve: Vec::new(),
            f1_curve: Vec::new(),
        }
    }

    /// The interval of a metric (`f1`, `precision`, `recall`), if the row has one.
    pub fn interval(&self, metric: &str) -> Option<midog_eval::Interval> {
        let i = self.intervals.as_ref()?;
        match metric {
            "f1" => Some(i.f1),
            "precision" => Some(i.precision),
            "recall" => Some(i.recall),
            _ => None,
        }
    }
}

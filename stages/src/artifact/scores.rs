//! The score stage's outputs that later stages (report, export) read.
//!
//! A row (`GroupScore`) holds one split's images overall (`scanner` = `all`), of one scanner, or,
//! for a dataset with more domain attributes (MIDOG++: tumour type, species, origin lab), of one
//! value of such an attribute (`domain` = `tumor_type`, `scanner` = the value, e.g. `canine
//! lymphosarcoma`). A MIDOG 2021 dataset has only scanner rows, and its `scores.json` carries
//! none of the multi-domain fields (so it is the same file it always was).

use std::collections::BTreeMap;
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
    /// A scanner name, or `all`; in a row of another domain attribute, that attribute's value.
    pub scanner: String,
    /// The domain attribute of a row that is not a scanner row (`tumor_type`, `species`, …);
    /// `None` for scanner rows and the overall row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
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
    /// Domain attributes besides the scanner (`tumor_type`, …), as the dataset gives them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub domains: BTreeMap<String, String>,
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

    /// A scanner row (or the overall row, `scanner` = `all`) of a split.
    pub fn group(&self, split: &str, scanner: &str) -> Option<&GroupScore> {
        self.row(split, &RowOf::scanner(scanner))
    }

    /// The row of a split that holds `row`'s images.
    pub fn row(&self, split: &str, row: &RowOf) -> Option<&GroupScore> {
        self.groups.iter().find(|g| g.split == split && g.row() == *row)
    }

    /// The domain attributes besides the scanner that have rows, in the order of the rows.
    pub fn attributes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for d in self.groups.iter().filter_map(|g| g.domain.as_ref()) {
            if !out.contains(d) {
                out.push(d.clone());
            }
        }
        out
    }

    /// The per-image counts of the images of one row (`all` for the whole split), keyed by
    /// image id, in id order: what a paired comparison resamples.
    pub fn image_counts(&self, split: &str, row: &RowOf) -> Vec<(u32, midog_eval::Counts)> {
        let mut out: Vec<(u32, midog_eval::Counts)> = self
            .images
            .iter()
            .filter(|i| i.split == split && row.holds(i))
            .map(|i| (i.id, midog_eval::Counts::new(i.tp, i.fp, i.fn_)))
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }
}

/// Which images a row holds: all of a split, one scanner's, or those with one value of another
/// domain attribute.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowOf {
    /// `scanner` (also for the overall row) or another attribute such as `tumor_type`.
    pub domain: String,
    /// The value (`XR`, `canine lymphosarcoma`), or `all`.
    pub value: String,
}

/// The attribute name of scanner rows.
pub const SCANNER: &str = midog_data::domain_names::SCANNER;
/// The value of the overall row.
pub const ALL: &str = "all";

impl RowOf {
    /// A scanner's row, or the overall row for `all`.
    pub fn scanner(name: &str) -> RowOf {
        RowOf { domain: SCANNER.into(), value: name.into() }
    }

    pub fn all() -> RowOf {
        RowOf::scanner(ALL)
    }

    pub fn is_all(&self) -> bool {
        self.value == ALL && self.domain == SCANNER
    }

    /// A scanner row or the overall row: what MIDOG 2021 reports have.
    pub fn is_scanner_row(&self) -> bool {
        self.domain == SCANNER
    }

    /// How tables and bootstrap streams name the row: `all`, `XR`, `tumor_type=canine lymphosarcoma`.
    pub fn label(&self) -> String {
        if self.is_scanner_row() { self.value.clone() } else { format!("{}={}", self.domain, self.value) }
    }

    /// Whether an image belongs to the row.
    pub fn holds(&self, image: &ImageScore) -> bool {
        self.is_all() || image.domain(&self.domain) == Some(self.value.as_str())
    }
}

impl ImageScore {
    /// The image's value of a domain attribute (`scanner`, `tumor_type`, …).
    pub fn domain(&self, attribute: &str) -> Option<&str> {
        if attribute == SCANNER { Some(&self.scanner) } else { self.domains.get(attribute).map(String::as_str) }
    }
}

/// An attribute as prose for titles and sentences: `tumor_type` → `tumour type`.
pub fn attribute_name(attribute: &str) -> String {
    match attribute {
        "tumor_type" => "tumour type".into(),
        "origin" => "origin lab".into(),
        other => other.replace('_', " "),
    }
}

/// The bootstrap stream of a row: the score stage's intervals and compare's paired resamples
/// of the same row draw the same images. Scanner rows keep the stream they always had
/// (`test/XR`); a row of another attribute has its own (`test/tumor_type=canine lymphosarcoma`).
pub fn row_stream(split: &str, row: &RowOf) -> u64 {
    Bootstrap::stream(&format!("{split}/{}", row.label()))
}

impl GroupScore {
    /// A row from its summed counts, without curves or intervals yet.
    pub fn from_counts(split: &str, row: &RowOf, images: usize, c: midog_eval::Counts) -> GroupScore {
        GroupScore {
            split: split.into(),
            scanner: row.value.clone(),
            domain: (!row.is_scanner_row()).then(|| row.domain.clone()),
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

    /// Which images the row holds.
    pub fn row(&self) -> RowOf {
        RowOf { domain: self.domain.clone().unwrap_or_else(|| SCANNER.into()), value: self.scanner.clone() }
    }

    /// Whether this is a scanner row or the overall row (not a row of another attribute).
    pub fn is_scanner_row(&self) -> bool {
        self.domain.is_none()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: u32, scanner: &str, tumour: Option<&str>) -> ImageScore {
        ImageScore {
            id,
            file_name: format!("{id:03}.tiff"),
            split: "test".into(),
            scanner: scanner.into(),
            um_per_px: 0.25,
            tp: 1,
            fp: 0,
            fn_: 0,
            domains: tumour.map(|t| BTreeMap::from([("tumor_type".to_string(), t.to_string())])).unwrap_or_default(),
            ground_truth: vec![],
            detections: vec![],
        }
    }

    #[test]
    fn rows_hold_their_images_and_keep_the_scanner_streams() {
        let lymph = RowOf { domain: "tumor_type".into(), value: "canine lymphosarcoma".into() };
        assert_eq!(lymph.label(), "tumor_type=canine lymphosarcoma");
        assert_eq!(RowOf::scanner("XR").label(), "XR");
        // The streams of scanner rows are those of the score stage before domain rows existed.
        assert_eq!(row_stream("test", &RowOf::scanner("XR")), Bootstrap::stream("test/XR"));
        assert_eq!(row_stream("val", &RowOf::all()), Bootstrap::stream("val/all"));
        assert_ne!(row_stream("test", &lymph), row_stream("test", &RowOf::scanner("canine lymphosarcoma")));
        let (a, b, c) = (image(1, "XR", Some("canine lymphosarcoma")), image(2, "XR", None), image(3, "CS2", None));
        assert!(lymph.holds(&a) && !lymph.holds(&b));
        assert!(RowOf::scanner("XR").holds(&b) && !RowOf::scanner("XR").holds(&c));
        assert!([&a, &b, &c].iter().all(|i| RowOf::all().holds(i)));
        let g = GroupScore::from_counts("test", &lymph, 1, midog_eval::Counts::new(1, 0, 0));
        assert_eq!(
            (g.scanner.as_str(), g.domain.as_deref(), g.row()),
            ("canine lymphosarcoma", Some("tumor_type"), lymph)
        );
        assert!(GroupScore::from_counts("test", &RowOf::all(), 1, Default::default()).is_scanner_row());
    }

    #[test]
    fn a_midog_2021_row_and_image_serialise_without_the_domain_fields() {
        let g = GroupScore::from_counts("test", &RowOf::scanner("XR"), 1, midog_eval::Counts::new(1, 0, 0));
        let v = serde_json::to_value(&g).unwrap();
        assert!(v.get("domain").is_none(), "{v}");
        let v = serde_json::to_value(image(1, "XR", None)).unwrap();
        assert!(v.get("domains").is_none(), "{v}");
        let with = serde_json::to_value(image(1, "XR", Some("human melanoma"))).unwrap();
        assert_eq!(with["domains"]["tumor_type"], "human melanoma");
    }
}

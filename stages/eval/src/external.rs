//! Scoring a detections file against ground truth: the library half of
//! `pipeline score --ground-truth GT --detections DETS.json [--threshold T] [--um-per-px U] [--json]`.
//!
//! It differs from the official script in one deliberate way: an image that has ground truth but
//! no entry in the detections file is scored as all misses, with a warning. The official script
//! skips such images without a word, which flatters recall when inference failed on one of them.
//! Like the official script, detections for images without ground truth are not scored (listed and
//! warned about), and MIDOG.json images that the dataset's definition calls unlabelled (the
//! GT450 scans, ids 151–200, by default) are never scored. A MIDOG.json image the definition calls
//! labelled is scored even without a single annotation: its detections are false positives.
//!
//! Official ground truth and detections are both in millimetres, so they are matched in
//! millimetres and no resolution is needed. MIDOG.json is in pixels: each scored image then needs
//! its µm/px (from the image file beside MIDOG.json, or `--um-per-px`), and the detections are
//! converted to that image's pixels.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::LazyLock;

use midog_data::ScannerMap;
use serde::Serialize;

use crate::curve::{CurvePoint, SweepImage, ThresholdCurve};
use crate::detection::{Detection, Point};
use crate::error::EvalError;
use crate::formats::{CoordUnit, DetectionsFile, GroundTruth, GroundTruthFormat, checked_resolution, mm_to_px};
use crate::matching::{PointMatcher, greedy_match};
use crate::metrics::{Counts, ImageResult, by_scanner};
use crate::threshold::ScoreThreshold;

/// How to score. [`ScoreOptions::default`] is the official rule: 7.5 µm, no threshold, no known
/// resolutions, MIDOG 2021 scanners by file number, every labelled image.
pub struct ScoreOptions<'a> {
    pub matcher: PointMatcher,
    pub threshold: ScoreThreshold,
    /// µm/px of an image by file name; only asked for when the ground truth is in pixels.
    pub um_per_px: &'a dyn Fn(&str) -> Option<f64>,
    /// Short scanner name of an image by file name; `None` is reported as `unknown`.
    pub scanner_of: &'a dyn Fn(&str) -> Option<String>,
    /// Score only these ground-truth images (e.g. a test split); `None` scores all labelled ones.
    pub only_images: Option<&'a BTreeSet<String>>,
}

impl Default for ScoreOptions<'static> {
    fn default() -> ScoreOptions<'static> {
        ScoreOptions {
            matcher: PointMatcher::MIDOG,
            threshold: ScoreThreshold::KeepAll,
            um_per_px: &no_resolution,
            scanner_of: &midog_scanner_of,
            only_images: None,
        }
    }
}

fn no_resolution(_: &str) -> Option<f64> {
    None
}

static MIDOG_2021: LazyLock<ScannerMap> = LazyLock::new(ScannerMap::midog_2021);

/// The MIDOG 2021 scanner of a file named by its number (`007.tiff` → `XR`, `123.tiff` → `CS2`).
pub fn midog_scanner_of(image: &str) -> Option<String> {
    let stem = Path::new(image).file_stem()?.to_str()?;
    let id: u32 = stem.parse().ok()?;
    MIDOG_2021.scanner_of(id).map(|s| s.name.clone())
}

/// Counts with the scores derived from them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    #[serde(flatten)]
    pub counts: Counts,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

impl From<Counts> for Scores {
    fn from(counts: Counts) -> Scores {
        Scores { counts, precision: counts.precision(), recall: counts.recall(), f1: counts.f1() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageRow {
    #[serde(flatten)]
    pub result: ImageResult,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// The detections file had no entry for this image: all its mitoses count as misses.
    pub missing_detections: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScannerRow {
    pub scanner: String,
    pub images: usize,
    #[serde(flatten)]
    pub scores: Scores,
}

/// Everything `pipeline score` prints, as text or as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreReport {
    pub ground_truth: String,
    pub ground_truth_format: GroundTruthFormat,
    pub detections: String,
    pub radius_um: f64,
    /// `None`: every detection counted, as the official evaluation does; else `score > threshold`.
    pub threshold: Option<f64>,
    /// TP, FP, FN summed over the scored images, and the scores from those sums.
    pub overall: Scores,
    pub scanners: Vec<ScannerRow>,
    pub images: Vec<ImageRow>,
    /// Average precision over all thresholds (see `ThresholdCurve::average_precision`).
    pub average_precision: Option<f64>,
    /// The threshold that would have maximised F1 on exactly these images: an optimistic number,
    /// for diagnosis, never a test result.
    pub best_threshold_on_this_set: CurvePoint,
    /// Images with ground truth but no entry in the detections file (scored as all misses).
    pub missing_detections: Vec<String>,
    /// Entries of the detections file that were not scored: no ground truth, or unlabelled.
    pub not_scored: Vec<String>,
    pub warnings: Vec<String>,
    /// The full F1/precision/recall-vs-threshold curve, for plots (not in the JSON: it has one
    /// point per distinct score).
    #[serde(skip)]
    pub curve: ThresholdCurve,
}

/// Scores `detections` (read from `detections_path`) against `gt`.
pub fn score_external(
    gt: &GroundTruth,
    detections: &DetectionsFile,
    detections_path: &Path,
    options: &ScoreOptions<'_>,
) -> Result<ScoreReport, EvalError> {
    let mut warnings = gt.notes.clone();
    let mut missing_detections = Vec::new();
    let mut scored: Vec<(String, Vec<Point>, Vec<Detection>, f64)> = Vec::new();
    if let Some(only) = options.only_images {
        for image in only.iter().filter(|i| !gt.images.contains_key(*i)) {
            warnings.push(format!("{image}: requested, but the ground truth has no labels for it; not scored"));
        }
    }
    for (image, points) in &gt.images {
        if options.only_images.is_some_and(|only| !only.contains(image)) {
            continue;
        }
        let (scale, radius) = match gt.unit {
            CoordUnit::Millimetre => (None, options.matcher.radius_mm()),
            CoordUnit::Pixel => {
                let u = checked_resolution(image, (options.um_per_px)(image))?;
                (Some(u), options.matcher.radius_px(u))
            }
        };
        let dets = match detections.images.get(image) {
            None => {
                warnings.push(match points.len() {
                    0 => format!("{image}: no entry in the detections file (it has no mitoses, so nothing is missed)"),
                    n => format!("{image}: no entry in the detections file; its {n} mitoses count as misses"),
                });
                missing_detections.push(image.clone());
                Vec::new()
            }
            Some(output) => {
                let decoded = output.decode().map_err(|m| EvalError::entry(detections_path, image, m))?;
                warnings.extend(decoded.notes.into_iter().map(|n| format!("{image}: {n}")));
                match scale {
                    None => decoded.detections_mm,
                    Some(u) => decoded
                        .detections_mm
                        .into_iter()
                        .map(|d| Detection::new(mm_to_px(d.x, u), mm_to_px(d.y, u), d.score))
                        .collect(),
                }
            }
        };
        scored.push((image.clone(), points.clone(), dets, radius));
    }
    let unlabelled: BTreeSet<&String> = gt.unlabelled.iter().collect();
    let mut not_scored = Vec::new();
    for image in detections.images.keys().filter(|i| !gt.images.contains_key(*i)) {
        let why = if unlabelled.contains(image) { "unlabelled image" } else { "no ground truth for this image" };
        warnings.push(format!("{image}: {why}; its detections are not scored"));
        not_scored.push(image.clone());
    }

    if scored.iter().all(|(_, points, _, _)| points.is_empty()) {
        warnings.insert(
            0,
            format!(
                "the ground truth has no mitotic figure in the {} scored image(s): only false positives can \
                 be counted, and F1 is 1 with no detection at all; check that this is the ground truth you meant",
                scored.len()
            ),
        );
    }
    let results: Vec<ImageResult> = scored
        .iter()
        .map(|(image, points, dets, radius)| {
            let counts = greedy_match(points, dets, *radius, options.threshold).counts();
            let scanner = (options.scanner_of)(image).unwrap_or_else(|| "unknown".to_string());
            ImageResult::new(image.clone(), scanner, counts)
        })
        .collect();
    let sweep: Vec<SweepImage<'_>> = scored
        .iter()
        .map(|(_, points, dets, radius)| SweepImage { ground_truth: points, detections: dets, radius: *radius })
        .collect();
    let curve = ThresholdCurve::compute(&sweep);
    let missing: BTreeSet<&String> = missing_detections.iter().collect();
    let images = results
        .iter()
        .map(|r| {
            let c = r.counts();
            ImageRow {
                result: r.clone(),
                precision: c.precision(),
                recall: c.recall(),
                f1: c.f1(),
                missing_detections: missing.contains(&r.image),
            }
        })
        .collect();
    let scanners = by_scanner(&results)
        .into_iter()
        .map(|(scanner, (images, counts))| ScannerRow { scanner, images, scores: counts.into() })
        .collect();
    Ok(ScoreReport {
        ground_truth: gt.path.display().to_string(),
        ground_truth_format: gt.format,
        detections: detections_path.display().to_string(),
        radius_um: options.matcher.radius_um,
        threshold: options.threshold.value(),
        overall: results.iter().map(ImageResult::counts).sum::<Counts>().into(),
        scanners,
        images,
        average_precision: curve.average_precision(),
        best_threshold_on_this_set: *curve.best(),
        missing_detections,
        not_scored,
        warnings,
        curve,
    })
}

/// The report as a terminal table: settings, warnings, overall, per scanner, per image.
pub fn render_text(report: &ScoreReport) -> String {
    let mut out = String::new();
    let gt_kind = match report.ground_truth_format {
        GroundTruthFormat::Official => "official ground truth, mm",
        GroundTruthFormat::MidogJson => "MIDOG.json, px",
    };
    let _ = writeln!(out, "ground truth  {} ({gt_kind})", report.ground_truth);
    let _ = writeln!(out, "detections    {}", report.detections);
    let threshold = match report.threshold {
        None => "none (every detection counts, as in the official evaluation)".to_string(),
        Some(t) => format!("score > {t}"),
    };
    let _ = writeln!(out, "radius        {} µm; threshold {threshold}", report.radius_um);
    for w in &report.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let _ = writeln!(out);
    let header = format!(
        "{:<14}{:>7}{:>7}{:>7}{:>7}{:>11}{:>9}{:>8}",
        "", "images", "TP", "FP", "FN", "precision", "recall", "F1"
    );
    let row = |out: &mut String, label: &str, images: usize, s: &Scores, note: &str| {
        let c = s.counts;
        let _ = writeln!(
            out,
            "{label:<14}{images:>7}{:>7}{:>7}{:>7}{:>11.3}{:>9.3}{:>8.3}{note}",
            c.tp, c.fp, c.fn_, s.precision, s.recall, s.f1
        );
    };
    let _ = writeln!(out, "{header}");
    row(&mut out, "overall", report.images.len(), &report.overall, "");
    let best = &report.best_threshold_on_this_set;
    let ap = report.average_precision.map_or("n/a".to_string(), |ap| format!("{ap:.3}"));
    let best_t = best
        .lowest_kept_score
        .map_or("keep none".to_string(), |lowest| format!("scores ≥ {lowest} (score > {})", best.threshold));
    let _ = writeln!(out, "AP {ap}; best threshold on this set (optimistic): {best_t} → F1 {:.3}", best.f1);
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", header.replacen("              ", &format!("{:<14}", "scanner"), 1));
    for s in &report.scanners {
        row(&mut out, &s.scanner, s.images, &s.scores, "");
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{}",
        header.replacen("              ", &format!("{:<14}", "image"), 1).replacen(" images", "scanner", 1)
    );
    for img in &report.images {
        let s = Scores::from(img.result.counts());
        let note = if img.missing_detections { "  (no detections entry)" } else { "" };
        let c = s.counts;
        let _ = writeln!(
            out,
            "{:<14}{:>7}{:>7}{:>7}{:>7}{:>11.3}{:>9.3}{:>8.3}{note}",
            img.result.image, img.result.scanner, c.tp, c.fp, c.fn_, s.precision, s.recall, s.f1
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::px_to_mm;

    fn official_gt(dir: &Path) -> GroundTruth {
        // 007 (XR) has two mitoses, 123 (CS2) one, 055 (S360) none.
        let p = dir.join("ground-truth.json");
        let text = r#"{"007.tiff": [[1.0, 1.0, 0], [2.0, 2.0, 0]], "123.tiff": [[0.5, 0.5, 0]], "055.tiff": []}"#;
        std::fs::write(&p, text).unwrap();
        GroundTruth::load(&p, &crate::formats::midog_2021_labelled).unwrap()
    }

    fn output(points_mm: &[(f64, f64, f64)]) -> crate::formats::PointsOutput {
        let dets: Vec<Detection> = points_mm.iter().map(|&(x, y, s)| Detection::new(x, y, s)).collect();
        // Written at 1000 µm/px, pixel coordinates equal millimetres.
        crate::formats::PointsOutput::from_detections(&dets, 1000.0)
    }

    #[test]
    fn scores_official_files_and_counts_missing_images_as_misses() {
        let dir = tempfile::tempdir().unwrap();
        let gt = official_gt(dir.path());
        let mut dets = DetectionsFile::default();
        // 007: a hit 7 µm away, a duplicate, a hit on the second mitosis at low score.
        dets.images.insert("007.tiff".into(), output(&[(1.007, 1.0, 0.9), (1.002, 1.0, 0.8), (2.0, 2.0, 0.3)]));
        // 055: no mitosis, one detection → FP. 123 missing. 151 has no ground truth.
        dets.images.insert("055.tiff".into(), output(&[(3.0, 3.0, 0.95)]));
        dets.images.insert("151.tiff".into(), output(&[(3.0, 3.0, 0.95)]));
        let path = dir.path().join("dets.json");
        let report = score_external(&gt, &dets, &path, &ScoreOptions::default()).unwrap();
        assert_eq!(report.overall.counts, Counts::new(2, 2, 1));
        assert_eq!(report.missing_detections, vec!["123.tiff".to_string()]);
        assert_eq!(report.not_scored, vec!["151.tiff".to_string()]);
        assert!(report.warnings.iter().any(|w| w.contains("123.tiff") && w.contains("misses")));
        let per: Vec<(&str, &str, Counts)> = report
            .images
            .iter()
            .map(|r| (r.result.image.as_str(), r.result.scanner.as_str(), r.result.counts()))
            .collect();
        assert_eq!(
            per,
            vec![
                ("007.tiff", "XR", Counts::new(2, 1, 0)),
                ("055.tiff", "S360", Counts::new(0, 1, 0)),
                ("123.tiff", "CS2", Counts::new(0, 0, 1)),
            ]
        );
        assert!(report.images[2].missing_detections);
        assert_eq!(report.scanners.len(), 3);

        // With a threshold the low-score hit and the 0.8 duplicate go: 1 TP, 1 FP, 2 FN.
        let opts = ScoreOptions { threshold: ScoreThreshold::Above(0.8), ..ScoreOptions::default() };
        let report = score_external(&gt, &dets, &path, &opts).unwrap();
        assert_eq!(report.overall.counts, Counts::new(1, 1, 2));
        assert_eq!(report.threshold, Some(0.8));

        let text = render_text(&report);
        assert!(
            text.contains("overall") && text.contains("123.tiff") && text.contains("no detections entry"),
            "{text}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["overall"]["fn"], 2);
        assert_eq!(json["images"][0]["image"], "007.tiff");
        assert!(json.get("curve").is_none());

        let only: BTreeSet<String> = ["007.tiff".to_string(), "999.tiff".to_string()].into();
        let opts = ScoreOptions { only_images: Some(&only), ..ScoreOptions::default() };
        let report = score_external(&gt, &dets, &path, &opts).unwrap();
        assert_eq!(report.images.len(), 1);
        assert!(report.warnings.iter().any(|w| w.contains("999.tiff")));
    }

    #[test]
    fn midog_json_ground_truth_uses_each_images_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("MIDOG.json");
        std::fs::write(
            &p,
            r#"{"images": [{"file_name": "001.tiff", "id": 1, "width": 7215, "height": 5412},
                           {"file_name": "101.tiff", "id": 101, "width": 6476, "height": 4846},
                           {"file_name": "160.tiff", "id": 160, "width": 6206, "height": 4666}],
                "annotations": [{"bbox": [975, 975, 1025, 1025], "category_id": 1, "image_id": 1, "id": 1},
                                {"bbox": [975, 975, 1025, 1025], "category_id": 1, "image_id": 101, "id": 2}]}"#,
        )
        .unwrap();
        let gt = GroundTruth::load(&p, &crate::formats::midog_2021_labelled).unwrap();
        // The same 31 px offset in both images: a hit at 0.23 µm/px (radius 32.6 px), a false
        // positive and a miss at 0.25 µm/px (radius 30 px).
        let mut dets = DetectionsFile::default();
        dets.insert_pixels("001.tiff", &[Detection::new(1031.0, 1000.0, 0.9)], 0.23);
        dets.insert_pixels("101.tiff", &[Detection::new(1031.0, 1000.0, 0.9)], 0.25);
        dets.insert_pixels("160.tiff", &[Detection::new(10.0, 10.0, 0.9)], 0.26);
        let path = dir.path().join("dets.json");
        let resolution = |image: &str| -> Option<f64> {
            match image {
                "001.tiff" => Some(0.23),
                "101.tiff" => Some(0.25),
                _ => None,
            }
        };
        let opts = ScoreOptions { um_per_px: &resolution, ..ScoreOptions::default() };
        let report = score_external(&gt, &dets, &path, &opts).unwrap();
        assert_eq!(report.images[0].result.counts(), Counts::new(1, 0, 0));
        assert_eq!(report.images[1].result.counts(), Counts::new(0, 1, 1));
        assert_eq!(report.not_scored, vec!["160.tiff".to_string()]);
        assert!(report.warnings.iter().any(|w| w.contains("160.tiff") && w.contains("unlabelled")));

        let e = score_external(&gt, &dets, &path, &ScoreOptions::default()).unwrap_err().to_string();
        assert!(e.contains("001.tiff") && e.contains("--um-per-px"), "{e}");
        let bad = |_: &str| Some(0.0);
        let e = score_external(&gt, &dets, &path, &ScoreOptions { um_per_px: &bad, ..ScoreOptions::default() })
            .unwrap_err();
        assert!(matches!(e, EvalError::BadResolution { .. }), "{e}");
        assert!((px_to_mm(1031.0, 0.23) - 0.23713).abs() < 1e-12);
    }

    #[test]
    fn a_labelled_image_without_annotations_counts_its_detections_as_false_positives() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("MIDOG.json");
        std::fs::write(
            &p,
            r#"{"images": [{"file_name": "001.tiff", "id": 1, "width": 2000, "height": 2000},
                           {"file_name": "055.tiff", "id": 55, "width": 2000, "height": 2000}],
                "annotations": [{"bbox": [975, 975, 1025, 1025], "category_id": 1, "image_id": 1, "id": 1}]}"#,
        )
        .unwrap();
        let gt = GroundTruth::load(&p, &crate::formats::midog_2021_labelled).unwrap();
        let mut dets = DetectionsFile::default();
        dets.insert_pixels("001.tiff", &[Detection::new(1000.0, 1000.0, 0.9)], 0.25);
        dets.insert_pixels("055.tiff", &[Detection::new(10.0, 10.0, 0.9)], 0.25);
        let res = |_: &str| Some(0.25);
        let opts = ScoreOptions { um_per_px: &res, ..ScoreOptions::default() };
        let report = score_external(&gt, &dets, &dir.path().join("d.json"), &opts).unwrap();
        assert_eq!(report.overall.counts, Counts::new(1, 1, 0));
        assert!(report.not_scored.is_empty());

        // Scoring only the negative image: a loud warning, not a silent score.
        let only: BTreeSet<String> = ["055.tiff".to_string()].into();
        let opts = ScoreOptions { um_per_px: &res, only_images: Some(&only), ..ScoreOptions::default() };
        let report = score_external(&gt, &dets, &dir.path().join("d.json"), &opts).unwrap();
        assert!(report.warnings[0].contains("no mitotic figure"), "{:?}", report.warnings);
    }

    #[test]
    fn scanner_from_file_number() {
        assert_eq!(midog_scanner_of("007.tiff").as_deref(), Some("XR"));
        assert_eq!(midog_scanner_of("data/midog/100.tiff").as_deref(), Some("S360"));
        assert_eq!(midog_scanner_of("123.tiff").as_deref(), Some("CS2"));
        assert_eq!(midog_scanner_of("foo.tiff"), None);
    }
}

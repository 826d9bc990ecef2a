//! A non-learned mitosis detector, the yardstick of difficulty: threshold the (smoothed)
//! haematoxylin channel relative to the image's own statistics, keep connected blobs whose area
//! is in a size window, and report their centroids, each scored by its darkness. If darkness and
//! size were enough to find mitoses, it would score well; the dataset is meant to keep it below
//! F1 0.5 while a learned detector, which can see shape and texture, does much better.
//!
//! Its three parameters (threshold, smallest and largest area) are tuned by grid search on
//! training images; each grid point is judged by its best F1 over every score threshold
//! ([`ThresholdCurve`]), because a pipeline that scores the detector chooses a score threshold
//! too (the score stage's "best-on-val"). Matching is midog-eval's official MIDOG rule (7.5 µm at
//! each image's resolution, greedy one-to-one, F1 from TP/FP/FN summed over images), the same
//! code that scores the trained models, so the baseline's numbers compare with theirs.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use midog_eval::{Counts, CurvePoint, Detection, Point, PointMatcher, ScoreThreshold, SweepImage, ThresholdCurve};

use crate::error::SynthError;
use crate::render::gaussian_blur;
use crate::rgb_image::RgbImage;
use crate::stain::rgb2hed;

/// Darkness (standardised haematoxylin, in image standard deviations) at which a blob's score is
/// 0.5; the score maps the typical 1–10 sd of blobs onto much of [0, 1], so a threshold sweep or
/// the report's F1-against-threshold plot can resolve them.
pub const HALF_SCORE_SD: f64 = 4.0;

/// A blob's detection score: `d / (d + HALF_SCORE_SD)` of its mean darkness `d` (0 for `d ≤ 0`),
/// monotone and in [0, 1).
pub fn darkness_score(darkness_sd: f64) -> f64 {
    let d = darkness_sd.max(0.0);
    d / (d + HALF_SCORE_SD)
}

/// The detector's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BlobDetector {
    /// Haematoxylin threshold in image standard deviations above the image mean.
    pub threshold_sd: f64,
    /// Blob area window in µm².
    pub min_area_um2: f64,
    pub max_area_um2: f64,
}

/// The values [`tune`] tries: every threshold with every area window `min < max`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchGrid {
    pub thresholds_sd: Vec<f64>,
    pub min_areas_um2: Vec<f64>,
    pub max_areas_um2: Vec<f64>,
}

impl Default for SearchGrid {
    /// Thresholds from barely above the mean to far out in the tail; areas from a fragment of a
    /// metaphase plate (4 µm²) to a large prophase nucleus (150 µm²).
    fn default() -> Self {
        SearchGrid {
            thresholds_sd: vec![1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0],
            min_areas_um2: vec![4.0, 8.0, 12.0, 16.0, 20.0, 25.0],
            max_areas_um2: vec![20.0, 30.0, 40.0, 55.0, 75.0, 100.0, 150.0],
        }
    }
}

impl SearchGrid {
    /// The area windows, `min < max`, in grid order.
    pub fn windows(&self) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        for &lo in &self.min_areas_um2 {
            for &hi in self.max_areas_um2.iter().filter(|&&hi| hi > lo) {
                out.push((lo, hi));
            }
        }
        out
    }

    /// How many parameter sets the grid holds.
    pub fn len(&self) -> usize {
        self.thresholds_sd.len() * self.windows().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A connected component above one threshold: area (px), centroid (px) and mean darkness (sd).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Blob {
    pub area_px: usize,
    pub x: f64,
    pub y: f64,
    pub darkness: f64,
}

impl Blob {
    fn in_window(&self, um2_per_px: f64, min_um2: f64, max_um2: f64) -> bool {
        let a = self.area_px as f64 * um2_per_px;
        a >= min_um2 && a <= max_um2
    }

    fn detection(&self) -> Detection {
        Detection::new(self.x, self.y, darkness_score(self.darkness))
    }
}

/// An image with its true mitotic figure positions (px).
pub struct LabelledImage {
    pub image: RgbImage,
    pub mitoses: Vec<Point>,
}

/// Smoothed haematoxylin, standardised to the image's mean and sd.
fn standardised_hematoxylin(img: &RgbImage) -> Vec<f32> {
    let mut h: Vec<f32> = img.pixels.chunks_exact(3).map(|p| rgb2hed([p[0], p[1], p[2]])[0] * 1000.0).collect();
    gaussian_blur(&mut h, img.width as usize, img.height as usize, 1.0);
    let n = h.len().max(1) as f64;
    let mean = h.iter().map(|&v| v as f64).sum::<f64>() / n;
    let sd = (h.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt().max(1e-6);
    h.iter().map(|&v| ((v as f64 - mean) / sd) as f32).collect()
}

/// The 8-connected components of `h > threshold` in a `w`-wide map, in scan order.
fn blobs_above(h: &[f32], w: usize, threshold: f64) -> Vec<Blob> {
    let threshold = threshold as f32;
    let rows = h.len().checked_div(w).unwrap_or(0);
    let mut seen = vec![false; h.len()];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..h.len() {
        if seen[start] || h[start] <= threshold {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut area, mut sx, mut sy, mut dark) = (0usize, 0.0f64, 0.0f64, 0.0f64);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            area += 1;
            sx += x as f64 + 0.5;
            sy += y as f64 + 0.5;
            dark += h[i] as f64;
            for ny in y.saturating_sub(1)..=(y + 1).min(rows - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    let j = ny * w + nx;
                    if !seen[j] && h[j] > threshold {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        let n = area as f64;
        out.push(Blob { area_px: area, x: sx / n, y: sy / n, darkness: dark / n });
    }
    out
}

impl BlobDetector {
    /// Scored detections (centroids, px) in one image, in scan order.
    pub fn detect(&self, img: &RgbImage) -> Vec<Detection> {
        let h = standardised_hematoxylin(img);
        let um2_per_px = img.um_per_px * img.um_per_px;
        blobs_above(&h, img.width as usize, self.threshold_sd)
            .iter()
            .filter(|b| b.in_window(um2_per_px, self.min_area_um2, self.max_area_um2))
            .map(Blob::detection)
            .collect()
    }

    /// Counts summed over images, keeping the detections that pass `threshold`.
    pub fn evaluate(&self, images: &[LabelledImage], threshold: ScoreThreshold) -> Counts {
        images
            .par_iter()
            .map(|li| {
                let dets = self.detect(&li.image);
                PointMatcher::MIDOG.match_pixels(&li.mitoses, &dets, li.image.um_per_px, threshold).counts()
            })
            .sum()
    }

    /// [`tune`] on images held in memory.
    pub fn tune(train: &[LabelledImage], grid: &SearchGrid) -> Result<Tuned, SynthError> {
        let images: Vec<TuningImage> =
            train.par_iter().map(|li| TuningImage::new(&li.image, li.mitoses.clone(), grid)).collect();
        tune(&images, grid)
    }
}

/// What tuning keeps of one training image: its blobs at every threshold of the grid, its truth
/// and its resolution. The pixels can be dropped once this is made, so tuning on many images
/// holds only blob lists in memory.
#[derive(Debug, Clone)]
pub struct TuningImage {
    pub um_per_px: f64,
    pub mitoses: Vec<Point>,
    /// One list per entry of the grid's `thresholds_sd`, in that order.
    pub blobs: Vec<Vec<Blob>>,
}

impl TuningImage {
    pub fn new(img: &RgbImage, mitoses: Vec<Point>, grid: &SearchGrid) -> TuningImage {
        let h = standardised_hematoxylin(img);
        let blobs = grid.thresholds_sd.iter().map(|&t| blobs_above(&h, img.width as usize, t)).collect();
        TuningImage { um_per_px: img.um_per_px, mitoses, blobs }
    }
}

/// The outcome of [`tune`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tuned {
    pub detector: BlobDetector,
    /// The score threshold (`score > t`) and the summed training counts at which the chosen
    /// parameters reach their best training F1.
    pub train: CurvePoint,
    /// Parameter sets tried.
    pub candidates: usize,
}

impl Tuned {
    pub fn score_threshold(&self) -> ScoreThreshold {
        ScoreThreshold::Above(self.train.threshold)
    }
}

/// Grid search for the parameters whose best F1 over score thresholds, summed over `images`, is
/// highest (compared exactly; ties go to the earlier grid point). `images` must have been made
/// with the same `grid`.
pub fn tune(images: &[TuningImage], grid: &SearchGrid) -> Result<Tuned, SynthError> {
    let windows = grid.windows();
    if grid.thresholds_sd.is_empty() || windows.is_empty() {
        return Err(SynthError::Config(
            "the baseline's search grid is empty (no threshold or no min < max area)".into(),
        ));
    }
    if let Some(bad) = images.iter().find(|i| i.blobs.len() != grid.thresholds_sd.len()) {
        return Err(SynthError::Config(format!(
            "a tuning image has blobs for {} thresholds, the grid has {}",
            bad.blobs.len(),
            grid.thresholds_sd.len()
        )));
    }
    let points: Vec<(usize, (f64, f64))> =
        (0..grid.thresholds_sd.len()).flat_map(|t| windows.iter().map(move |&w| (t, w))).collect();
    let results: Vec<CurvePoint> = points
        .par_iter()
        .map(|&(t, (lo, hi))| {
            let dets: Vec<Vec<Detection>> = images
                .iter()
                .map(|img| {
                    let um2 = img.um_per_px * img.um_per_px;
                    img.blobs[t].iter().filter(|b| b.in_window(um2, lo, hi)).map(Blob::detection).collect()
                })
                .collect();
            let sweep: Vec<SweepImage> = images
                .iter()
                .zip(&dets)
                .map(|(img, d)| SweepImage {
                    ground_truth: &img.mitoses,
                    detections: d,
                    radius: PointMatcher::MIDOG.radius_px(img.um_per_px),
                })
                .collect();
            *ThresholdCurve::compute(&sweep).best()
        })
        .collect();
    let mut best = 0;
    for (k, r) in results.iter().enumerate().skip(1) {
        if r.counts.cmp_f1(&results[best].counts).is_gt() {
            best = k;
        }
    }
    let (t, (lo, hi)) = points[best];
    Ok(Tuned {
        detector: BlobDetector { threshold_sd: grid.thresholds_sd[t], min_area_um2: lo, max_area_um2: hi },
        train: results[best],
        candidates: points.len(),
    })
}

/// Loads the labelled images of a generated dataset whose ids pass `keep`, with their mitotic
/// figures from MIDOG.json.
pub fn load_labelled(
    dir: &std::path::Path,
    keep: &(dyn Fn(u32) -> bool + Sync),
) -> Result<Vec<LabelledImage>, SynthError> {
    let path = dir.join("MIDOG.json");
    let midog = midog_data::MidogJson::load(&path).map_err(|e| SynthError::Data { path, source: e })?;
    let map = midog_data::ScannerMap::midog_2021();
    midog
        .images
        .par_iter()
        .filter(|i| keep(i.id) && map.scanner_of(i.id).is_some_and(|s| s.labelled))
        .map(|i| {
            let image = RgbImage::read(&dir.join(&i.file_name))?;
            let mitoses = midog
                .annotations
                .iter()
                .filter(|a| a.image_id == i.id && a.category_id == midog_data::Category::Mitosis.id())
                .map(|a| {
                    let (x, y) = a.centre();
                    Point::new(x, y)
                })
                .collect();
            Ok(LabelledImage { image, mitoses })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pink 0.25 µm/px image with dark purple discs of the given centres and radii (px).
    fn discs(discs: &[(f64, f64, f64)]) -> RgbImage {
        let (w, h) = (240u32, 160u32);
        let mut pixels = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                let inside = discs.iter().any(|&(cx, cy, r)| (x as f64 - cx).hypot(y as f64 - cy) < r);
                pixels.extend_from_slice(if inside { &[70, 40, 130] } else { &[200, 140, 200] });
            }
        }
        RgbImage { width: w, height: h, um_per_px: 0.25, pixels }
    }

    #[test]
    fn finds_a_dark_disc_of_the_right_size() {
        let img = discs(&[(60.0, 50.0, 11.0)]);
        let det = BlobDetector { threshold_sd: 1.0, min_area_um2: 10.0, max_area_um2: 60.0 }.detect(&img);
        assert_eq!(det.len(), 1);
        assert!((det[0].x - 60.0).abs() < 1.5 && (det[0].y - 50.0).abs() < 1.5, "{det:?}");
        assert!(det[0].score > 0.0 && det[0].score < 1.0, "{det:?}");
    }

    #[test]
    fn score_is_monotone_in_darkness_and_within_0_1() {
        assert_eq!(darkness_score(-3.0), 0.0);
        assert_eq!(darkness_score(HALF_SCORE_SD), 0.5);
        assert!(darkness_score(2.0) < darkness_score(3.0) && darkness_score(1e9) < 1.0);
    }

    #[test]
    fn tuning_picks_the_area_window_that_separates_figures_from_large_blobs() {
        // Figures: radius 11 px (≈ 24 µm²); decoys: radius 26 px (≈ 133 µm²).
        let a = LabelledImage {
            image: discs(&[(40.0, 40.0, 11.0), (190.0, 110.0, 26.0)]),
            mitoses: vec![Point::new(40.0, 40.0)],
        };
        let b = LabelledImage {
            image: discs(&[(120.0, 40.0, 11.0), (50.0, 110.0, 26.0), (190.0, 40.0, 11.0)]),
            mitoses: vec![Point::new(120.0, 40.0), Point::new(190.0, 40.0)],
        };
        let train = [a, b];
        let tuned = BlobDetector::tune(&train, &SearchGrid::default()).unwrap();
        assert_eq!(tuned.train.counts, Counts::new(3, 0, 0), "{tuned:?}");
        assert!(tuned.detector.max_area_um2 < 133.0, "{tuned:?}");
        assert_eq!(tuned.candidates, SearchGrid::default().len());
        assert_eq!(tuned.detector.evaluate(&train, tuned.score_threshold()), Counts::new(3, 0, 0));
        let empty = SearchGrid { max_areas_um2: vec![1.0], ..SearchGrid::default() };
        assert!(BlobDetector::tune(&train, &empty).is_err());
    }
}

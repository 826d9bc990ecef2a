//! A non-learned mitosis detector, the yardstick of difficulty: threshold the (smoothed)
//! haematoxylin channel relative to the image's own statistics, keep connected blobs whose area
//! is in a size window, and report their centroids. Its three parameters are tuned by grid
//! search for the best F1 on training images. If darkness and size were enough to find mitoses,
//! it would score well; the dataset is meant to keep it below F1 0.5 while a learned detector,
//! which can see shape and texture, does much better.
//!
//! Scoring follows the official MIDOG rule: a detection is a true positive if it lies within
//! 7.5 µm of a ground-truth mitotic figure not yet claimed; each ground-truth point in turn takes
//! its nearest unclaimed detection within the radius; F1 = 2TP / (2TP + FP + FN) summed over
//! images.

use serde::{Deserialize, Serialize};

use crate::render::gaussian_blur;
use crate::stain::rgb2hed;
use crate::tiff_reader::RgbImage;

/// MIDOG's matching radius in micrometres.
pub const MATCH_RADIUS_UM: f64 = 7.5;

/// The detector's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BlobDetector {
    /// Haematoxylin threshold in image standard deviations above the image mean.
    pub threshold_sd: f32,
    /// Blob area window in µm².
    pub min_area_um2: f32,
    pub max_area_um2: f32,
}

/// TP / FP / FN counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
}

impl Counts {
    pub fn f1(&self) -> f64 {
        let d = 2 * self.tp + self.fp + self.fn_;
        if d == 0 { 1.0 } else { 2.0 * self.tp as f64 / d as f64 }
    }

    pub fn add(&mut self, o: Counts) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
    }
}

/// Greedy one-to-one matching as in the MIDOG evaluation (distance equal to the radius counts).
pub fn match_points(truth: &[(f64, f64)], detections: &[(f64, f64)], radius_px: f64) -> Counts {
    let mut claimed = vec![false; detections.len()];
    let mut tp = 0;
    for &(gx, gy) in truth {
        let mut best: Option<(usize, f64)> = None;
        for (j, &(dx, dy)) in detections.iter().enumerate() {
            if claimed[j] {
                continue;
            }
            let d = (dx - gx).hypot(dy - gy);
            if d <= radius_px && best.is_none_or(|(_, bd)| d < bd) {
                best = Some((j, d));
            }
        }
        if let Some((j, _)) = best {
            claimed[j] = true;
            tp += 1;
        }
    }
    Counts { tp, fp: detections.len() - tp, fn_: truth.len() - tp }
}

/// An image with its true mitotic figure positions.
pub struct LabelledImage {
    pub image: RgbImage,
    pub mitoses: Vec<(f64, f64)>,
}

/// A blob above one threshold: area (px) and centroid.
#[derive(Debug, Clone, Copy)]
struct Blob {
    area: usize,
    x: f64,
    y: f64,
}

/// Smoothed haematoxylin, standardised to the image's mean and sd.
fn standardised_hematoxylin(img: &RgbImage) -> Vec<f32> {
    let mut h: Vec<f32> = img.pixels.chunks_exact(3).map(|p| rgb2hed([p[0], p[1], p[2]])[0] * 1000.0).collect();
    gaussian_blur(&mut h, img.width as usize, img.height as usize, 1.0);
    let n = h.len() as f64;
    let mean = h.iter().map(|&v| v as f64).sum::<f64>() / n;
    let sd = (h.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt().max(1e-6);
    h.iter().map(|&v| ((v as f64 - mean) / sd) as f32).collect()
}

fn blobs_above(h: &[f32], w: usize, threshold: f32) -> Vec<Blob> {
    let mut seen = vec![false; h.len()];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..h.len() {
        if seen[start] || h[start] <= threshold {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut area, mut sx, mut sy) = (0usize, 0.0f64, 0.0f64);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            area += 1;
            sx += x as f64 + 0.5;
            sy += y as f64 + 0.5;
            let rows = h.len() / w;
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
        out.push(Blob { area, x: sx / area as f64, y: sy / area as f64 });
    }
    out
}

impl BlobDetector {
    /// Detections (centroids, px) in one image.
    pub fn detect(&self, img: &RgbImage) -> Vec<(f64, f64)> {
        let h = standardised_hematoxylin(img);
        let px_area = img.um_per_px * img.um_per_px;
        blobs_above(&h, img.width as usize, self.threshold_sd)
            .into_iter()
            .filter(|b| {
                let a = b.area as f64 * px_area;
                a >= self.min_area_um2 as f64 && a <= self.max_area_um2 as f64
            })
            .map(|b| (b.x, b.y))
            .collect()
    }

    /// Summed counts over images.
    pub fn evaluate(&self, images: &[LabelledImage]) -> Counts {
        let mut c = Counts::default();
        for li in images {
            let r = MATCH_RADIUS_UM / li.image.um_per_px;
            c.add(match_points(&li.mitoses, &self.detect(&li.image), r));
        }
        c
    }

    /// Grid search for the parameters with the best summed F1 on `train`.
    pub fn tune(train: &[LabelledImage]) -> (BlobDetector, Counts) {
        let thresholds = [1.0f32, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0];
        let mins = [4.0f32, 8.0, 12.0, 16.0, 20.0, 25.0];
        let maxs = [20.0f32, 30.0, 40.0, 55.0, 75.0, 100.0, 150.0];
        let hs: Vec<Vec<f32>> = train.iter().map(|li| standardised_hematoxylin(&li.image)).collect();
        let mut best = (BlobDetector { threshold_sd: 2.0, min_area_um2: 8.0, max_area_um2: 75.0 }, Counts::default());
        let mut best_f1 = -1.0;
        for &t in &thresholds {
            let blobs: Vec<Vec<Blob>> =
                hs.iter().zip(train).map(|(h, li)| blobs_above(h, li.image.width as usize, t)).collect();
            for &lo in &mins {
                for &hi in maxs.iter().filter(|&&hi| hi > lo) {
                    let mut c = Counts::default();
                    for (bl, li) in blobs.iter().zip(train) {
                        let pa = li.image.um_per_px * li.image.um_per_px;
                        let det: Vec<(f64, f64)> = bl
                            .iter()
                            .filter(|b| {
                                let a = b.area as f64 * pa;
                                a >= lo as f64 && a <= hi as f64
                            })
                            .map(|b| (b.x, b.y))
                            .collect();
                        c.add(match_points(&li.mitoses, &det, MATCH_RADIUS_UM / li.image.um_per_px));
                    }
                    if c.f1() > best_f1 {
                        best_f1 = c.f1();
                        best = (BlobDetector { threshold_sd: t, min_area_um2: lo, max_area_um2: hi }, c);
                    }
                }
            }
        }
        best
    }
}

/// Hand-made descriptors of the dark object at a position, for diagnostics: darkness and size
/// (which the dataset equalises between mitoses and hard negatives) and outline irregularity and
/// elongation (which it does not).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ObjectFeatures {
    /// Mean standardised haematoxylin of the object.
    pub darkness: f64,
    pub area_um2: f64,
    /// Perimeter² / (4π · area): 1 for a disc, larger for ragged or fragmented outlines.
    pub irregularity: f64,
    /// Ratio of the principal axes of the object's second moments (1 = round).
    pub elongation: f64,
}

/// Features of the union of blobs (standardised haematoxylin > `threshold_sd`) within 6 µm of
/// (x, y); `None` if there is none.
pub fn object_features(img: &RgbImage, x: f64, y: f64, threshold_sd: f32) -> Option<ObjectFeatures> {
    let r = (12.0 / img.um_per_px).ceil() as i64;
    let (x0, y0) = ((x as i64 - r).max(0), (y as i64 - r).max(0));
    let (x1, y1) = ((x as i64 + r).min(img.width as i64), (y as i64 + r).min(img.height as i64));
    let (w, h) = ((x1 - x0) as usize, (y1 - y0) as usize);
    let mut sub = RgbImage { width: w as u32, height: h as u32, um_per_px: img.um_per_px, pixels: Vec::new() };
    for yy in y0..y1 {
        let a = ((yy as usize) * img.width as usize + x0 as usize) * 3;
        sub.pixels.extend_from_slice(&img.pixels[a..a + w * 3]);
    }
    let hs = standardised_hematoxylin_global(&sub, img);
    let mask: Vec<bool> = hs.iter().map(|&v| v > threshold_sd).collect();
    // Keep components that come within 6 µm of the point.
    let near = 6.0 / img.um_per_px;
    let mut keep = vec![false; mask.len()];
    let mut seen = vec![false; mask.len()];
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        let mut comp = vec![start];
        seen[start] = true;
        let mut k = 0;
        while k < comp.len() {
            let i = comp[k];
            k += 1;
            let (cx, cy) = (i % w, i / w);
            for ny in cy.saturating_sub(1)..=(cy + 1).min(h - 1) {
                for nx in cx.saturating_sub(1)..=(cx + 1).min(w - 1) {
                    let j = ny * w + nx;
                    if mask[j] && !seen[j] {
                        seen[j] = true;
                        comp.push(j);
                    }
                }
            }
        }
        let close = comp.iter().any(|&i| {
            let (px, py) = ((i % w) as f64 + x0 as f64 + 0.5, (i / w) as f64 + y0 as f64 + 0.5);
            (px - x).hypot(py - y) <= near
        });
        if close {
            comp.iter().for_each(|&i| keep[i] = true);
        }
    }
    let area = keep.iter().filter(|&&k| k).count();
    if area == 0 {
        return None;
    }
    let (mut perim, mut dark, mut sx, mut sy) = (0usize, 0.0f64, 0.0f64, 0.0f64);
    for i in (0..keep.len()).filter(|&i| keep[i]) {
        let (cx, cy) = (i % w, i / w);
        let edge = cx == 0
            || cy == 0
            || cx + 1 == w
            || cy + 1 == h
            || !keep[i - 1]
            || !keep[i + 1]
            || !keep[i - w]
            || !keep[i + w];
        perim += edge as usize;
        dark += hs[i] as f64;
        sx += cx as f64;
        sy += cy as f64;
    }
    let n = area as f64;
    let (mx, my) = (sx / n, sy / n);
    let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    for i in (0..keep.len()).filter(|&i| keep[i]) {
        let (dx, dy) = ((i % w) as f64 - mx, (i / w) as f64 - my);
        sxx += dx * dx;
        syy += dy * dy;
        sxy += dx * dy;
    }
    let (a, b, c) = (sxx / n, syy / n, sxy / n);
    let disc = (((a - b) / 2.0).powi(2) + c * c).sqrt();
    let (l1, l2) = ((a + b) / 2.0 + disc, ((a + b) / 2.0 - disc).max(1e-6));
    Some(ObjectFeatures {
        darkness: dark / n,
        area_um2: n * img.um_per_px * img.um_per_px,
        irregularity: (perim as f64).powi(2) / (4.0 * std::f64::consts::PI * n),
        elongation: (l1 / l2).sqrt(),
    })
}

/// Standardised haematoxylin of a sub-image using the statistics of its whole image.
fn standardised_hematoxylin_global(sub: &RgbImage, whole: &RgbImage) -> Vec<f32> {
    let hw: Vec<f32> =
        whole.pixels.chunks_exact(3).step_by(7).map(|p| rgb2hed([p[0], p[1], p[2]])[0] * 1000.0).collect();
    let n = hw.len().max(1) as f64;
    let mean = hw.iter().map(|&v| v as f64).sum::<f64>() / n;
    let sd = (hw.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt().max(1e-6);
    let mut h: Vec<f32> = sub.pixels.chunks_exact(3).map(|p| rgb2hed([p[0], p[1], p[2]])[0] * 1000.0).collect();
    gaussian_blur(&mut h, sub.width as usize, sub.height as usize, 1.0);
    h.iter().map(|&v| ((v as f64 - mean) / sd) as f32).collect()
}

/// Area under the ROC curve of `score` separating `pos` from `neg` (0.5 = no information).
pub fn auc(pos: &[f64], neg: &[f64]) -> f64 {
    if pos.is_empty() || neg.is_empty() {
        return 0.5;
    }
    let mut wins = 0.0;
    for p in pos {
        for n in neg {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (pos.len() * neg.len()) as f64
}

/// Loads the labelled images of a generated dataset whose ids pass `keep`, with their mitotic
/// figures from MIDOG.json.
pub fn load_labelled(
    dir: &std::path::Path,
    keep: &(dyn Fn(u32) -> bool + Sync),
) -> Result<Vec<LabelledImage>, crate::error::SynthError> {
    use rayon::prelude::*;
    let path = dir.join("MIDOG.json");
    let midog = midog_data::MidogJson::load(&path).map_err(|e| crate::error::SynthError::Data { path, source: e })?;
    let map = midog_data::ScannerMap::midog_2021();
    midog
        .images
        .par_iter()
        .filter(|i| keep(i.id) && map.scanner_of(i.id).is_some_and(|s| s.labelled))
        .map(|i| {
            let image = crate::tiff_reader::read_rgb_tiff(&dir.join(&i.file_name))?;
            let mitoses = midog
                .annotations
                .iter()
                .filter(|a| a.image_id == i.id && a.category_id == midog_data::Category::Mitosis.id())
                .map(|a| a.centre())
                .collect();
            Ok(LabelledImage { image, mitoses })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_is_greedy_one_to_one_and_inclusive() {
        let gt = [(0.0, 0.0), (100.0, 0.0)];
        let det = [(30.0, 0.0), (1.0, 0.0), (1.5, 0.0), (300.0, 0.0)];
        let c = match_points(&gt, &det, 30.0);
        assert_eq!(c, Counts { tp: 1, fp: 3, fn_: 1 });
        // Exactly at the radius counts.
        assert_eq!(match_points(&[(0.0, 0.0)], &[(30.0, 0.0)], 30.0).tp, 1);
        assert!((Counts { tp: 1, fp: 3, fn_: 1 }.f1() - 2.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn finds_a_dark_disc_of_the_right_size() {
        let (w, h) = (120u32, 100u32);
        let mut pixels = vec![0u8; (w * h * 3) as usize];
        for y in 0..h {
            for x in 0..w {
                let d = ((x as f64 - 60.0).powi(2) + (y as f64 - 50.0).powi(2)).sqrt();
                let p: [u8; 3] = if d < 11.0 { [70, 40, 130] } else { [200, 140, 200] };
                pixels[((y * w + x) * 3) as usize..((y * w + x) * 3 + 3) as usize].copy_from_slice(&p);
            }
        }
        let img = RgbImage { width: w, height: h, um_per_px: 0.25, pixels };
        let det = BlobDetector { threshold_sd: 1.0, min_area_um2: 10.0, max_area_um2: 60.0 }.detect(&img);
        assert_eq!(det.len(), 1);
        assert!((det[0].0 - 60.0).abs() < 1.5 && (det[0].1 - 50.0).abs() < 1.5, "{det:?}");
    }
}

//! Hand-made descriptors of the dark object at an annotated position, for diagnostics of the
//! dataset's difficulty: darkness and size (which the generator equalises between mitotic figures
//! and hard negatives) against outline irregularity and elongation (which it does not), and the
//! ROC AUC that says how well one descriptor separates two sets.

use serde::{Deserialize, Serialize};

use crate::render::gaussian_blur;
use crate::rgb_image::RgbImage;
use crate::stain::rgb2hed;

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
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    let (w, h) = ((x1 - x0) as usize, (y1 - y0) as usize);
    let sub = img.crop(x0 as u32, y0 as u32, w as u32, h as u32);
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
